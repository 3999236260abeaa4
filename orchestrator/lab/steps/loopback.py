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
section 7.9). devcon install still does so: it creates the devnode and calls that function with
INSTALLFLAG_FORCE (microsoft/Windows-driver-samples, setup/devcon/cmds.cpp, cmdInstall and
cmdUpdate), and prints no instance id (msg.mc: "Device node created. Install is complete when
drivers are installed...", "Updating drivers for %1 from %2.", "Drivers installed successfully.").

`WindowsHost.devcon_path` is where devcon.exe is (DevconPath elsewhere: "does not exist").
`WindowsHost.loopback_wmi_late` makes a new device's adapter late in Win32_NetworkAdapter: that
many runs of the template wait for it in vain (30 s each, the template's limit), the device being
meanwhile only a PnP device (`WindowsHost.pnp_only`, what Win32_PnPEntity lists); the device is
in the marker before that wait on both paths."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.firewall import refresh_profiles
from orchestrator.lab.net import Nic, is_ip, new_loopback
from orchestrator.lab.shell import StepFailed, ensure, p_list, p_str, result, text
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import MARKER_KEY, write_marker

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    present = ensure(params)
    pnp = p_str(params, "PnpDeviceId")
    devcon = p_str(params, "DevconPath")
    if devcon and (host.devcon_path or "").casefold() != devcon.casefold():
        raise StepFailed(f"DevconPath '{devcon}' does not exist")
    _reveal(host)
    if present:
        return _present(host, pnp, p_list(params, "Vips"), devcon)
    return _absent(host, pnp)


def _reveal(host: WindowsHost) -> None:
    """Devices whose adapter was late in WMI show up once no more runs are to wait in vain."""
    if host.loopback_wmi_late == 0 and host.pnp_only:
        host.nics.extend(host.pnp_only)
        host.pnp_only.clear()


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


def _install(host: WindowsHost, devcon: str) -> tuple[Nic, str | None]:
    """Creates the device (SetupAPI, or devcon) and waits for its adapter: (adapter, devcon's output)."""
    _assert_native_process(host)
    if not host.elevated:
        raise StepFailed(
            'Exception calling "Create" with "2" argument(s): "SetupDiCallClassInstaller'
            '(DIF_REGISTERDEVICE) failed: Access is denied. (0x00000005)"'
        )
    nic = new_loopback(host.nics + host.pnp_only, host.spec, host.caps, host.name)
    output = None
    if devcon:
        # devcon install: a new devnode, then UpdateDriverForPlugAndPlayDevices(INSTALLFLAG_FORCE)
        # for the hardware id, which reinstalls the driver of every msloop device there is.
        for other in host.nics + host.pnp_only:
            if other.is_loopback:
                other.driver_installs += 1
        output = _devcon_install_output(host)
        # Find-NewLoopbackDevice: the new device from Win32_PnPEntity, into the marker at once.
        host.marker["LoopbackPnpId"] = nic.pnp_device_id
        host.marker["LoopbackCreated"] = "1"
    else:
        # SetupAPI: the marker is written as soon as the device exists, then DIF_INSTALLDEVICE
        # installs the driver on this one device.
        host.marker["LoopbackPnpId"] = nic.pnp_device_id
        host.marker["LoopbackCreated"] = "1"
    nic.driver_installs = 1
    host.pnp_only.append(nic)
    _wait(host, nic.pnp_device_id)
    return nic, output


def _devcon_install_output(host: WindowsHost) -> str:
    """devcon's messages for `install` (MSG_INSTALL_UPDATE, MSG_UPDATE_INF, MSG_UPDATE_OK)."""
    return text([
        "Device node created. Install is complete when drivers are installed...",
        f"Updating drivers for *msloop from {host.windir()}\\inf\\netloop.inf.",
        "Drivers installed successfully.",
    ])


def _wait(host: WindowsHost, named: str) -> None:
    """Wait-LoopbackAdapter: up to 30 seconds for the new adapter in Win32_NetworkAdapter; `named`
    is the instance id the template knows ('' when it knows none)."""
    if host.loopback_wmi_late > 0:
        host.loopback_wmi_late -= 1
        raise StepFailed(f"A loopback device was installed ({named}) but no new msloop adapter appeared in WMI "
                         "within 30 seconds")
    _reveal(host)


def _record(host: WindowsHost, name: str, before: str | None, value: str) -> bool:
    """Writes a marker value the step found different; True when it wrote."""
    if before == value or host.marker.get(name) == value:
        return False
    write_marker(host.marker, host.elevated, name, value)
    return True


def _present(host: WindowsHost, pnp: str, vips: list[str], devcon: str) -> ScriptResult:
    marker_id = host.marker.get("LoopbackPnpId")
    marker_created = host.marker.get("LoopbackCreated")
    found = _find(host, pnp, marker_id, vips)
    pending = next((n for n in host.pnp_only if n.pnp_device_id == marker_id), None)
    if found is None and pending is not None and marker_created == "1":
        # Created by an earlier run whose wait for WMI ran out: waited for again, not duplicated.
        if host.loopback_wmi_late > 0:
            host.loopback_wmi_late -= 1
            raise StepFailed(f"{marker_id}, created by an earlier run, is still not listed by Win32_NetworkAdapter "
                             "after 30 seconds")
        _reveal(host)
        found = pending
    created = found is None
    output = None
    if found is None:
        nic, output = _install(host, devcon)
    else:
        nic = found
    pnp_id = nic.pnp_device_id
    created_value = "1" if created or (marker_id == pnp_id and marker_created == "1") else "0"
    changed = _record(host, "LoopbackPnpId", marker_id, pnp_id) or created
    changed = _record(host, "LoopbackCreated", marker_created, created_value) or changed
    return result(changed, pnp_device_id=pnp_id, created=created, reboot_required=False, output=output)


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
