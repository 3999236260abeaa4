"""Reads the list first (`netsh http show iplisten` / `httpcfg query iplisten`); then 2008+: `netsh
http add iplisten ipaddress=<address>` / `delete iplisten ipaddress=<address>` for each address not
yet as asked; 2003: `httpcfg set iplisten -i <address>` / `httpcfg delete iplisten -i <address>`
(its status is the "completed with N" line; httpcfg.exe from the Support Tools, else the step
throws). http.sys reads the list only when it starts, but WinRM listens through http.sys: `net stop
http /y` inside the session would stop WinRM and cut the session before anything is started again.
So, when the list changed, or when the marker's `HttpRestartPending` says that a restart scheduled
before has not completed, the template writes `HttpRestartPending` = <attempt> under
`HKLM\\SOFTWARE\\dsrprep\\DSR`, then starts through WMI `Win32_Process.Create` (outside the WinRM
session) `cmd.exe /c (ping -n 6 127.0.0.1 >nul & (net stop http /y && net start http && reg delete
... /v HttpRestartPending || echo ...) & (net start <each service that depended on HTTP and was
running, WinRM first> || set DSRPREP_RETRY=1) & <the same again every 10 s, six times at most, while
one did not start>) > %windir%\\Temp\\dsrprep-http-restart.log 2>&1` and returns: **the management
connection drops for a few seconds after the step succeeds**, and the next step must reconnect. The
services are started even when `net stop http` failed or timed out (the log says so), and the marker
value stays until HTTP itself was stopped and started. Planned when the list is not empty (an empty
list means all addresses) and misses a VIP, and whenever `HttpRestartPending` is set (then with
addresses that leave the list as it is, if nothing else is to change), up to 3 attempts; after that
the host is refused until someone restarts HTTP (or reboots) and deletes the value. Result:
`@{changed; addresses; restart_scheduled; restart=@{services; log; process_id; delay_seconds;
attempt} or $null; output}`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator.facts import SECTION_RULE, Facts, FactsError, Reader, excerpt, with_path
from orchestrator.steps import iis_binding
from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    FactsPart,
    PlanContext,
    Step,
    StepOutput,
    StepPlan,
    UndoContext,
    action,
    parse_output,
)

NAME = "http_listen"
# When the template does not say when its restart begins: a few seconds, as Windows takes.
DEFAULT_RESTART_WAIT = 10.0
# The marker value a scheduled HTTP restart stays recorded in until it has happened.
PENDING_RESTART = "HttpRestartPending"
# Restarts scheduled without one completing, after which the planner stops trying and says so.
MAX_RESTARTS = 3


@dataclass(frozen=True)
class ListenList:
    """The http.sys IP listen list; `addresses` None when it could not be read (no httpcfg.exe)."""

    addresses: tuple[str, ...] | None

    def json_fields(self) -> dict[str, Any]:
        return {"http_listen": None if self.addresses is None else list(self.addresses)}


def listen_list(facts: Facts) -> tuple[str, ...] | None:
    return facts.part(NAME, ListenList).addresses


_HTTPCFG_STATUS = re.compile(r"^\s*HttpQueryServiceConfiguration completed with (\d+)\.?\s*$")
_HTTPCFG_EMPTY = 1168  # ERROR_NOT_FOUND: the list has no entries


def _as_ip(text: str) -> str | None:
    candidate = text.strip()
    try:
        ipaddress.ip_address(candidate.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    return candidate


def parse_http_listen(text: str) -> tuple[str, ...]:
    """The http.sys IP listen list, from either tool:

    - `netsh http show iplisten` (2008+): a title, a dashed rule, then one address per line;
      nothing under the rule when the list is empty.
    - `httpcfg query iplisten` (2003 Support Tools): records `IP : <address>` each followed by a
      dashed rule; the line "HttpQueryServiceConfiguration completed with 1168." when empty.

    Layout rule: a line that is just an address, or `<label> :<address>`, is an entry; blank
    lines, dashed rules and the title line (text ending with ":") are skipped. Any other line,
    or a "completed with N" status other than 1168, raises. Output with no address and no
    recognised structure (no rule, no status line) raises, since an empty list means "all
    addresses" and must not be read from unrecognised text.
    """
    entries: list[str] = []
    recognised = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if SECTION_RULE.match(line):
            recognised = True
            continue
        status = _HTTPCFG_STATUS.match(line)
        if status is not None:
            if int(status.group(1)) != _HTTPCFG_EMPTY:
                raise FactsError(f"httpcfg failed: {stripped!r}")
            recognised = True
            continue
        address = _as_ip(stripped)
        if address is None and stripped.endswith(":"):
            continue  # a title such as "IP addresses present in the IP listen list:"
        if address is None and ":" in stripped:
            label, _, value = stripped.partition(":")
            # a bare IPv6 entry has colons too, but no label made of letters only
            if re.fullmatch(r"[^0-9:.\[\]]+", label.strip()):
                address = _as_ip(value)
        if address is None:
            raise FactsError(f"unexpected line in IP listen list output: {stripped!r}")
        entries.append(address)
    if not entries and not recognised:
        raise FactsError("unrecognised IP listen list output: " + excerpt(text))
    return tuple(entries)


def _parse_part(r: Reader) -> ListenList:
    text = r.opt_str("http_listen_text")
    return ListenList(None if text is None else with_path("http_listen_text", partial(parse_http_listen, text)))


# -- plan and undo ----------------------------------------------------------------------------------


def pending_restarts(facts: Facts) -> int:
    """How many HTTP restarts were scheduled since the last one that completed (the marker's
    `HttpRestartPending`, which the restart process deletes once HTTP is up again); 0: none."""
    text = facts.marker.get(PENDING_RESTART, "")
    if not text:
        return 0
    try:
        count = int(text)
    except ValueError:
        return 1
    return count if count > 0 else 1


def plan(ctx: PlanContext) -> StepPlan:
    if ctx.nic is None:
        return NOTHING
    pending = pending_restarts(ctx.facts)
    wanted = _plan_list(ctx)
    if not pending:
        return wanted
    if pending >= MAX_RESTARTS:
        return StepPlan(refusals=(
            f"the HTTP service restart dsrprep scheduled has not completed after {pending} attempts (see "
            "%windir%\\Temp\\dsrprep-http-restart.log): restart the HTTP service by hand (net stop http /y, "
            "then net start for the services that depend on it) or reboot, then delete the value with "
            "reg delete HKLM\\SOFTWARE\\dsrprep\\DSR /v HttpRestartPending /f",),)
    why = (f"the HTTP service restart scheduled earlier has not completed ({PENDING_RESTART}={pending}): "
           "schedule it again")
    if wanted.actions:
        # The template restarts HTTP after changing the list anyway; say why it matters twice.
        return StepPlan(actions=tuple(action(NAME, f"{a.reason}; {why}", **a.params) for a in wanted.actions),
                        warnings=wanted.warnings)
    listen = listen_list(ctx.facts)
    if listen is None:
        return StepPlan(warnings=(*wanted.warnings, f"{why}: impossible, the listen list cannot be read "
                                  "(httpcfg.exe missing)"))
    # An action that leaves the list as it is: the template restarts because of the marker.
    held = {ipaddress.ip_address(a) for a in listen}
    listed = [v.address for v in ctx.desired.vips if ipaddress.ip_address(v.address) in held]
    if listed:
        return StepPlan(actions=(action(NAME, why, Ensure="Present", Addresses=listed),), warnings=wanted.warnings)
    return StepPlan(actions=(action(NAME, why, Ensure="Absent", Addresses=list(ctx.vips)),), warnings=wanted.warnings)


def _plan_list(ctx: PlanContext) -> StepPlan:
    desired = ctx.desired
    if not desired.http_listen or not desired.iis_sites:
        return NOTHING
    listen = listen_list(ctx.facts)
    if listen is None:
        if iis_binding.iis(ctx.facts).installed:
            return StepPlan(warnings=("the http.sys listen list could not be read (httpcfg.exe missing): "
                                      "if it is not empty, add the VIPs by hand",))
        return NOTHING
    if not listen:
        return NOTHING
    held = {ipaddress.ip_address(a) for a in listen}
    missing = [v.address for v in desired.vips if ipaddress.ip_address(v.address) not in held]
    if not missing:
        return NOTHING
    # One action, so that the HTTP service restarts once for all of them.
    return StepPlan(actions=(action(NAME, f"http.sys listens only on {', '.join(listen)}: add {', '.join(missing)}",
                                    Ensure="Present", Addresses=missing),))


def undo(ctx: UndoContext) -> list[Action]:
    """VIP entries added to a list that was not empty (dsrprep never adds to an empty or unreadable one)."""
    now, before = listen_list(ctx.now), listen_list(ctx.before)
    if not now or not before:
        return []
    added = [a for a in now if a not in before and ctx.holds_vip(a)]
    if not added:
        return []
    return [action(NAME, f"remove {', '.join(added)} from the http.sys listen list", Ensure="Absent",
                   Addresses=added)]


@dataclass(frozen=True)
class HttpListenOutput(StepOutput):
    addresses: tuple[str, ...]
    restart_scheduled: bool
    restart_delay: float | None  # seconds between the answer and the start of the restart

    def restart_wait(self) -> float | None:
        if not self.restart_scheduled:
            return None
        return self.restart_delay + 1.0 if self.restart_delay is not None else DEFAULT_RESTART_WAIT


def _read(r: Reader) -> HttpListenOutput:
    restart = r.opt_child("restart")
    delay = restart.opt_number("delay_seconds") if restart is not None else None
    return HttpListenOutput(changed=r.bool_("changed"), addresses=tuple(r.str_list("addresses")),
                            restart_scheduled=r.bool_("restart_scheduled"), restart_delay=delay)


def _parse_output(raw: Any) -> HttpListenOutput:
    return parse_output(NAME, raw, _read)


STEP = Step(
    name=NAME,
    # Last: it restarts the HTTP service (and WinRM with it) once it has answered.
    order=100,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_http_listen", "dsr_iis_sites"),
    plan=plan,
    undo=undo,
    undo_last=True,
    cuts_connection=True,
    parse_output=_parse_output,
    facts=FactsPart(keys=("http_listen_text",), parse=_parse_part),
    docs=Docs(
        commands={"win2003": "`httpcfg set iplisten -i <VIP>`, only when the listen list is not empty",
                  "default": "`netsh http add iplisten ipaddress=<VIP>`, same condition"},
        checked_by="`httpcfg query iplisten` / `netsh http show iplisten`",
        undone_by="entry deleted",
    ),
)
