"""http_listen: adds the VIPs to (or removes them from) http.sys's IP listen list, all at once, then
schedules one restart of the HTTP service and what depends on it (W3SVC, WinRM) a few seconds
after the result is sent (Start-HttpRestart). default.ps1 uses `netsh http add|delete iplisten`
(2008+), win2003.ps1 httpcfg.exe from the 2003 Support Tools, which may not be installed. The lab
models the restart as a short WinRM outage (`LabFaults.down_from/down_until`): requests then get
their connection closed unanswered, and the client reconnects.

The restart is recorded before it is scheduled (`HttpRestartPending` = attempt in dsrprep's marker)
and the restart process deletes the value only after `net stop http` and `net start http` both
succeeded; a run that finds it set schedules the restart again even when the list is as asked.
`WindowsHost.http_restart_fails` makes that many restarts fail, as when HTTP sticks in STOP_PENDING
and `net stop http /y` gives up (the administrator's review; not captured here): http.sys keeps its
old list, the value stays, and the services that depended on HTTP are started again all the same
(the restart process tries them again for a minute), so WinRM comes back after the usual outage.
The lab's listen list is the configured one, effective at once; what http.sys actually listens on
is not modelled (the facts cannot see it either)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.iis import http_listen_text
from orchestrator.lab.native import netsh
from orchestrator.lab.net import is_ip
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, command_line, ensure, p_list, result, text
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import schedule_http_restart, write_marker

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

# The marker value that records a scheduled HTTP restart until the restart has happened.
PENDING_RESTART = "HttpRestartPending"


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
    pending = _pending(host)
    if not todo and not pending:
        return result(False, addresses=wanted, restart_scheduled=False, restart=None, output=None)
    outputs = []
    for address in todo:
        outputs.append(_netsh_http(host, present, address) if variant == DEFAULT_VARIANT
                       else _httpcfg(host, present, address))
        if present:
            host.http_listen.append(address)
        else:
            host.http_listen = [a for a in host.http_listen if normalize_ip(a) != address]
    restart = _restart(host, pending + 1)
    return result(True, addresses=wanted, restart_scheduled=True, restart=restart,
                  output="".join(outputs) if outputs else None)


def _pending(host: WindowsHost) -> int:
    """Get-HttpRestartPending: the restarts scheduled since the last one that completed."""
    text = host.marker.get(PENDING_RESTART, "")
    if not text:
        return 0
    try:
        count = int(text)
    except ValueError:
        return 1
    return count if count > 0 else 1


def _restart(host: WindowsHost, attempt: int) -> Hashtable:
    """Start-HttpRestart: the marker first, then the detached restart. The restart process deletes
    the marker value once `net stop http` and `net start http` succeeded; the lab decides at once
    whether they will (`http_restart_fails`)."""
    write_marker(host.marker, host.elevated, PENDING_RESTART, str(attempt))
    restart = schedule_http_restart(host.faults, host.windir(), f"{host.name}|{host.http_listen}")
    restart["attempt"] = attempt
    if host.http_restart_fails > 0:
        host.http_restart_fails -= 1
    else:
        host.marker.pop(PENDING_RESTART, None)
    return restart


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
