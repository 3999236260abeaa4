"""skip_as_source: sets or clears SkipAsSource on one of the loopback's addresses. netsh sets the
flag only when adding an address, so the template reads it (`show ipaddresses level=verbose`),
then deletes the address and adds it back with `skipassource=true|false`, restoring the old flag
if the add is refused. Windows Server 2008 knows the flag only with KB975808; 2003 not at all
(no InterfaceIndex, no `netsh interface ipv4`)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.native import Commands, add_flagged, delete_address, netsh
from orchestrator.lab.net import Nic, is_ip, is_ipv4, render_netsh_ipaddresses
from orchestrator.lab.shell import StepFailed, native_failed, p_bool, p_str, result, text
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    address = p_str(params, "Address")
    mask = p_str(params, "Mask")
    enabled = p_bool(params, "Enabled")
    if not is_ip(address):
        raise StepFailed(f"'{address}' is not an IP address")
    canonical = normalize_ip(address)
    ipv6 = ":" in canonical
    if not ipv6 and not is_ipv4(mask):
        raise StepFailed(f"Mask '{mask}' is not an IPv4 mask")
    nic = host.resolve_adapter(p_str(params, "PnpDeviceId"))
    if nic.interface_index is None:
        raise StepFailed("The adapter has no InterfaceIndex: skipassource needs Windows Server 2008 or later")
    netsh(host, ["interface", "ipv6" if ipv6 else "ipv4", "show", "addresses" if ipv6 else "ipaddresses",
                 "level=verbose"], admin=False)
    current = _current_flag(host, nic, canonical)
    if current == enabled:
        return result(False, address=canonical, skip_as_source=enabled, output=None)
    _set_flag(host, nic, canonical, "128" if ipv6 else normalize_ip(mask), enabled, current)
    return result(True, address=canonical, skip_as_source=enabled, output=text(["Ok.", "", "Ok.", ""]))


def _current_flag(host: WindowsHost, nic: Nic, address: str) -> bool:
    """The flag netsh shows for `address` on the loopback; the template's throws when it cannot
    tell which interface's address that is, or netsh shows no flag at all."""
    holders = [n for n in host.nics if n.ip_enabled and n.interface_index is not None and n.has_address(address)]
    if len(holders) > 1:
        holders = [n for n in holders if n.connection_id == nic.connection_id]
        if len(holders) != 1:
            raise StepFailed(f"{address} is on several interfaces; cannot tell which is the loopback")
    if not holders:
        raise StepFailed(f"{address} is not on the loopback (interface {nic.interface_index})")
    if not host.skip_as_source_supported():
        raise StepFailed(
            f"netsh does not report Skip as Source for {address}: this Windows lacks the skipassource "
            "option (KB975808 on 2008 SP2)"
        )
    return address in holders[0].skip_as_source


def _set_flag(host: WindowsHost, nic: Nic, address: str, mask: str, enabled: bool, current: bool) -> None:
    run = Commands(host)
    if nic.mask_of(address) is None:
        # The address is another interface's: there is nothing of the loopback's to delete.
        args = ["interface", "ipv6" if ":" in address else "ipv4", "delete", "address", str(nic.interface_index),
                address]
        netsh(host, args)
        raise native_failed("netsh.exe", args, 1, "Element not found.")
    delete_address(run, nic, address)
    try:
        add_flagged(run, nic, address, mask, enabled)
    except StepFailed:
        with contextlib.suppress(StepFailed):
            add_flagged(run, nic, address, mask, current)
        raise


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    """The verbose address listings (2008+), with or without the flag as this build prints it."""
    if not host.caps.netsh_ipv4:
        return {"netsh_ipv4_addresses": None, "netsh_ipv6_addresses": None}
    shown, adapters = host.skip_as_source_supported(), host.adapters()
    return {
        "netsh_ipv4_addresses": render_netsh_ipaddresses(adapters, ipv6=False, skip_as_source_shown=shown),
        "netsh_ipv6_addresses": render_netsh_ipaddresses(adapters, ipv6=True, skip_as_source_shown=shown),
    }


STEP = LabStep("skip_as_source", _run, facts=_facts)
