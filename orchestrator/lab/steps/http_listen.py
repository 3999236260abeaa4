"""http_listen: adds the VIPs to (or removes them from) http.sys's IP listen list, all at once, then
schedules one restart of the HTTP service and what depends on it (W3SVC, WinRM) a few seconds
after the result is sent (Start-HttpRestart). default.ps1 uses `netsh http add|delete iplisten`
(2008+), win2003.ps1 httpcfg.exe from the 2003 Support Tools, which may not be installed. The lab
models the restart as a short WinRM outage (`LabFaults.down_from/down_until`): requests then get
their connection closed unanswered, and the client reconnects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.iis import http_listen_text
from orchestrator.lab.native import netsh
from orchestrator.lab.net import is_ip
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, command_line, ensure, p_list, result, text
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import schedule_http_restart

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _wanted(params: dict[str, Any]) -> list[str]:
    addresses = [str(a) for a in p_list(params, "Addresses")]
    if not addresses:
        raise StepFailed("Addresses is empty")
    for address in addresses:
        if not is_ip(address):
            raise StepFailed(f"'{address}' is not an IP address")
    return [normalize_ip(a) for a in addresses]


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    present = ensure(params)
    wanted = _wanted(params)
    if variant == DEFAULT_VARIANT:
        netsh(host, ["http", "show", "iplisten"], admin=False)
    elif host.caps.listen_tool is not oscaps.ListenTool.HTTPCFG or not host.httpcfg_installed:
        raise StepFailed("httpcfg.exe was not found (Windows Server 2003 Support Tools)")
    current = [normalize_ip(a) for a in host.http_listen]
    todo = [a for a in wanted if (a in current) != present]
    if not todo:
        return result(False, addresses=wanted, restart_scheduled=False, restart=None, output=None)
    outputs = []
    for address in todo:
        outputs.append(_netsh_http(host, present, address) if variant == DEFAULT_VARIANT
                       else _httpcfg(host, present, address))
        if present:
            host.http_listen.append(address)
        else:
            host.http_listen = [a for a in host.http_listen if normalize_ip(a) != address]
    restart = schedule_http_restart(host.faults, host.windir(), f"{host.name}|{host.http_listen}")
    return result(True, addresses=wanted, restart_scheduled=True, restart=restart, output="".join(outputs))


def _netsh_http(host: WindowsHost, present: bool, address: str) -> str:
    verb = "add" if present else "delete"
    netsh(host, ["http", verb, "iplisten", f"ipaddress={address}"])
    return text(["", f"IP address successfully {verb}{'ed' if present else 'd'}", ""])


def _httpcfg(host: WindowsHost, present: bool, address: str) -> str:
    call = "HttpSetServiceConfiguration" if present else "HttpDeleteServiceConfiguration"
    if not host.elevated:
        command = command_line("httpcfg.exe", ["set" if present else "delete", "iplisten", "-i", address])
        raise StepFailed(f"{command} failed (status 5): {call} completed with 5.")
    return text([f"{call} completed with 0."])


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    return {"http_listen_text": http_listen_text(host.caps, host.http_listen, host.httpcfg_installed)}


STEP = LabStep("http_listen", _run, variants=(DEFAULT_VARIANT, "win2003"), facts=_facts)
