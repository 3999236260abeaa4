"""weak_host: an interface's weak host send/receive flags (`netsh interface ipv4|ipv6 set
interface <idx> weakhostreceive=... weakhostsend=...`), by interface index; 0 is the loopback in
dsrprep's marker. Families without per-interface weak host settings (2003, weak host by design)
have neither the netsh context nor an InterfaceIndex, and fail on both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.native import netsh
from orchestrator.lab.net import render_netsh_interface
from orchestrator.lab.shell import StepFailed, enabled, native_failed, p_bool, p_int, result, text
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    index = p_int(params, "InterfaceIndex")
    version = p_int(params, "IpVersion")
    receive = p_bool(params, "Receive")
    send = p_bool(params, "Send")
    if version not in (4, 6):
        raise StepFailed(f"IpVersion must be 4 or 6, not {version}")
    context = f"ipv{version}"
    if index == 0:
        loopback = host.resolve_adapter("")
        if loopback.interface_index is None:
            raise StepFailed(
                "The loopback has no InterfaceIndex: weak host settings need Windows Server 2008 or later"
            )
        index = loopback.interface_index
    show = ["interface", context, "show", "interface", str(index)]
    netsh(host, show, admin=False)
    nic = next((n for n in host.nics if n.interface_index == index), None)
    if nic is None:
        raise native_failed("netsh.exe", show, 1, "Element not found.")
    current = (nic.weak_host_receive_v6, nic.weak_host_send_v6) if version == 6 else (
        nic.weak_host_receive, nic.weak_host_send
    )
    changed = current != (receive, send)
    output = None
    if changed:
        netsh(host, ["interface", context, "set", "interface", str(index),
                     f"weakhostreceive={enabled(receive)}", f"weakhostsend={enabled(send)}"])
        if version == 6:
            nic.weak_host_receive_v6, nic.weak_host_send_v6 = receive, send
        else:
            nic.weak_host_receive, nic.weak_host_send = receive, send
        output = text(["Ok.", ""])
    return result(changed, interface_index=index, receive=receive, send=send, output=output)


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    """`netsh interface ipv4|ipv6 show interface <idx>` per adapter, by interface index; nothing
    where the family has no such netsh context (2003)."""
    ipv4, ipv6 = Hashtable(), Hashtable()
    if host.caps.netsh_ipv4:
        for nic in host.adapters():
            if nic.interface_index is not None:
                key = str(nic.interface_index)
                ipv4[key] = render_netsh_interface(nic, host.spec.netsh_level, ipv6=False)
                ipv6[key] = render_netsh_interface(nic, host.spec.netsh_level, ipv6=True)
    return {"netsh_ipv4": ipv4, "netsh_ipv6": ipv6}


STEP = LabStep("weak_host", _run, facts=_facts)
