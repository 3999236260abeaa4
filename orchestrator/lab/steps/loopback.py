"""loopback: the Microsoft loopback adapter (msloop). Present: find it by PNPDeviceID, by dsrprep's
marker, or by a VIP it already holds (adopted, never duplicated), else create one through SetupAPI
(ERROR_IN_WOW64 from a 32-bit process on 64-bit Windows), and record it in the marker. Absent:
remove only a device the marker says dsrprep created.

The driver goes onto the new device alone (DIF_SELECTBESTCOMPATDRV, then DIF_INSTALLDEVICE through
SetupDiCallClassInstaller); `Nic.driver_installs` counts, per adapter, the driver installs that took
it down and up. UpdateDriverForPlugAndPlayDevices, which the template used before, "installs
updated drivers for devices that match the hardware ID", with INSTALLFLAG_FORCE "whether better
drivers already exist" (Microsoft's page on UpdateDriverForPlugAndPlayDevicesW, newdev.h): every
existing `*msloop` adapter, another service's loopback included, would count one more (research
section 7.9)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.firewall import refresh_profiles
from orchestrator.lab.net import Nic, is_ip, new_loopback
from orchestrator.lab.shell import StepFailed, ensure, p_list, p_str, result
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import MARKER_KEY, write_marker

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    present = ensure(params)
    pnp = p_str(params, "PnpDeviceId")
    if present:
        return _present(host, pnp, p_list(params, "Vips"))
    return _absent(host, pnp)


def _assert_native_process(host: WindowsHost) -> None:
    if host.architecture.startswith("64") and not host.process_64bit:
        raise StepFailed(
            "ERROR_IN_WOW64: this is a 32-bit PowerShell on 64-bit Windows; devices can only be "
            "installed from the 64-bit endpoint"
        )


def _find(host: WindowsHost, pnp: str, marker_id: str | None, vips: list[str]) -> Nic | None:
    loopbacks = [n for n in host.nics if n.is_loopback]
    for wanted in (pnp, marker_id):
        if wanted:
            found = next((n for n in loopbacks if n.pnp_device_id == wanted), None)
            if found is not None:
                return found
    # A loopback already holding a VIP is adopted rather than duplicated.
    wanted_ips = {normalize_ip(v) for v in vips if is_ip(v)}
    return next(
        (n for n in sorted(loopbacks, key=lambda n: n.index)
         if any(normalize_ip(a) in wanted_ips for a, _ in n.addresses)),
        None,
    )


def _install(host: WindowsHost) -> Nic:
    _assert_native_process(host)
    if not host.elevated:
        raise StepFailed(
            'Exception calling "Create" with "2" argument(s): "SetupDiCallClassInstaller'
            '(DIF_REGISTERDEVICE) failed: Access is denied. (0x00000005)"'
        )
    nic = new_loopback(host.nics, host.spec, host.caps, host.name)
    # The class installer's DIF_INSTALLDEVICE installs the driver on this one device.
    nic.driver_installs = 1
    host.nics.append(nic)
    host.marker["LoopbackPnpId"] = nic.pnp_device_id
    host.marker["LoopbackCreated"] = "1"
    return nic


def _record(host: WindowsHost, name: str, before: str | None, value: str) -> bool:
    """Writes a marker value the step found different; True when it wrote."""
    if before == value or host.marker.get(name) == value:
        return False
    write_marker(host.marker, host.elevated, name, value)
    return True


def _present(host: WindowsHost, pnp: str, vips: list[str]) -> ScriptResult:
    marker_id = host.marker.get("LoopbackPnpId")
    marker_created = host.marker.get("LoopbackCreated")
    found = _find(host, pnp, marker_id, vips)
    created = found is None
    nic = _install(host) if found is None else found
    pnp_id = nic.pnp_device_id
    created_value = "1" if created or (marker_id == pnp_id and marker_created == "1") else "0"
    changed = _record(host, "LoopbackPnpId", marker_id, pnp_id) or created
    changed = _record(host, "LoopbackCreated", marker_created, created_value) or changed
    return result(changed, pnp_device_id=pnp_id, created=created, reboot_required=False, output=None)


def _absent(host: WindowsHost, pnp: str) -> ScriptResult:
    marker_id = host.marker.get("LoopbackPnpId")
    marker_created = host.marker.get("LoopbackCreated")
    target = pnp or marker_id or ""
    if not target:
        return result(False, pnp_device_id="", created=False, reboot_required=False, output=None)
    ours = marker_id == target and marker_created == "1"
    nic = next((n for n in host.nics if n.is_loopback and n.pnp_device_id == target), None)
    if nic is not None and not ours:
        raise StepFailed(
            f"Refusing to remove {target}: {MARKER_KEY} does not record that dsrprep created it "
            "(LoopbackCreated=1 for that device)"
        )
    changed = False
    if nic is not None:
        _remove(host, nic, target)
        changed = True
    if marker_id == target:
        if not host.elevated:
            raise StepFailed(
                'Exception calling "OpenSubKey" with "2" argument(s): "Requested registry access is not allowed."'
            )
        changed = changed or marker_id is not None or marker_created is not None
        host.marker.pop("LoopbackPnpId", None)
        host.marker.pop("LoopbackCreated", None)
    return result(changed, pnp_device_id=target, created=False, reboot_required=False, output=None)


def _remove(host: WindowsHost, nic: Nic, target: str) -> None:
    _assert_native_process(host)
    if not host.elevated:
        raise StepFailed(
            'Exception calling "Remove" with "1" argument(s): "SetupDiCallClassInstaller(DIF_REMOVE) '
            f'for {target} failed: Access is denied. (0x00000005)"'
        )
    host.nics.remove(nic)
    refresh_profiles(host.firewall, host.nics, host.caps)


STEP = LabStep("loopback", _run)
