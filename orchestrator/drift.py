"""Drift checks for monitoring (`dsrprep check`): whether each host is still in DSR shape, judged
from the same dry-run plan as `dsrprep plan`, and that verdict as a table row, a JSON document,
node_exporter textfile metrics and a Nagios plugin status line. Pure: a plan's results in, text and
exit codes out.

A host is `compliant` when its plan is empty, `drifted` when a rollout would change it, and
`unchecked` when it could not be read or planned (unreachable, wrong credentials, not elevated, a
plan refused). The exit codes and the Nagios codes are orchestrator/exitcodes.py's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

from rich.text import Text

from orchestrator.exitcodes import ExitCode, Nagios
from orchestrator.results import FleetResult, HostResult, PlanStatus
from orchestrator.steps import preflight


class State(StrEnum):
    COMPLIANT = "compliant"
    DRIFTED = "drifted"
    UNCHECKED = "unchecked"


_STYLE = {State.COMPLIANT: "green", State.DRIFTED: "yellow", State.UNCHECKED: "red"}
# Host names a Nagios status line lists at most per state; the counts are in the perfdata.
_NAGIOS_NAMES = 5


@dataclass(frozen=True)
class Pending:
    step: str
    reason: str


@dataclass(frozen=True)
class HostCheck:
    """One host's verdict: what a rollout would change there, or why it could not be checked."""

    host: str
    state: State
    pending: tuple[Pending, ...] = ()
    reason: str | None = None  # unchecked: the step and the error
    error_class: str | None = None  # unchecked: the error's class (Unreachable, AuthError...)


def judge(result: HostResult) -> HostCheck:
    """The verdict on one host from its dry-run result. Only a host that was planned with nothing to
    change is compliant; preflight is a check, never a change, so it alone is no drift."""
    pending = tuple(Pending(a.step, a.reason) for a in result.planned if a.step != preflight.NAME)
    if result.status == PlanStatus.COMPLIANT and not pending:
        return HostCheck(result.host, State.COMPLIANT)
    if isinstance(result.status, PlanStatus) and result.error is None:
        return HostCheck(result.host, State.DRIFTED, pending)
    where = f"{result.failed_step}: " if result.failed_step else ""
    error_class = result.error.error_class if result.error else str(result.status)
    error = f"{error_class}: {result.error.message}" if result.error else f"ended {result.status}"
    return HostCheck(result.host, State.UNCHECKED, pending, reason=where + error, error_class=error_class)


@dataclass(frozen=True)
class Check:
    """Every selected host's verdict, from one dry run finished at `checked_at` (seconds since the epoch)."""

    result: FleetResult
    checked_at: float

    @cached_property
    def hosts(self) -> tuple[HostCheck, ...]:
        return tuple(sorted((judge(r) for r in self.result), key=lambda c: c.host))

    def named(self, state: State) -> list[HostCheck]:
        return [c for c in self.hosts if c.state == state]

    def counts(self) -> dict[State, int]:
        return {state: len(self.named(state)) for state in State}

    def exit_code(self) -> ExitCode:
        """0 all compliant; 5 some host drifted (whatever else); 6 none drifted, some not checked."""
        counts = self.counts()
        if counts[State.DRIFTED]:
            return ExitCode.DRIFTED
        if counts[State.UNCHECKED] or not self.result.hosts:
            return ExitCode.UNCHECKED
        return ExitCode.OK

    def nagios(self) -> tuple[str, Nagios]:
        """The plugin's one status line (with perfdata) and its exit code: CRITICAL when a host has
        drifted, WARNING when none has but some host could not be checked, else OK."""
        code = {ExitCode.DRIFTED: Nagios.CRITICAL, ExitCode.UNCHECKED: Nagios.WARNING}.get(self.exit_code(), Nagios.OK)
        counts, total = self.counts(), len(self.result.hosts)
        parts = []
        if counts[State.DRIFTED]:
            parts.append(f"{counts[State.DRIFTED]} of {total} hosts drifted: "
                         + _names(self.named(State.DRIFTED), lambda c: ",".join(p.step for p in c.pending)))
        if counts[State.UNCHECKED]:
            parts.append(f"{counts[State.UNCHECKED]} of {total} hosts cannot be checked: "
                         + _names(self.named(State.UNCHECKED), lambda c: c.error_class or ""))
        parts.append(f"{counts[State.COMPLIANT]} hosts compliant" if parts or total
                     else "no host checked")
        perfdata = " ".join(f"{state}={n};;;0;{total}" for state, n in counts.items())
        return f"DSRPREP {code.name} - {'; '.join(parts)} | {perfdata}", code

    def prometheus(self) -> str:
        """node_exporter textfile collector metrics (Prometheus text exposition format 0.0.4)."""
        checks = self.hosts
        lines: list[str] = []
        _family(lines, "dsrprep_host_compliant",
                "1 when the host's DSR plan is empty; 0 when a rollout would change it or it could not be checked.",
                [({"host": c.host}, int(c.state == State.COMPLIANT)) for c in checks])
        _family(lines, "dsrprep_host_actions_pending",
                "Actions a rollout would run on the host; absent for a host that could not be checked.",
                [({"host": c.host}, len(c.pending)) for c in checks if c.state != State.UNCHECKED])
        _family(lines, "dsrprep_host_checked",
                "1 when the host's facts were read and planned; 0 when it was unreachable or failed.",
                [({"host": c.host}, int(c.state != State.UNCHECKED)) for c in checks])
        _family(lines, "dsrprep_check_hosts", "Hosts of the last check, by state.",
                [({"state": str(state)}, n) for state, n in self.counts().items()])
        _family(lines, "dsrprep_check_timestamp", "When the last check finished, in seconds since the epoch.",
                [({}, round(self.checked_at, 3))])
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        """The check's part of `dsrprep check --format json`: the verdicts beside each host's plan."""
        plans = self.result.to_dict()["hosts"]
        hosts = {}
        for c in self.hosts:
            verdict: dict[str, Any] = {"state": c.state, "pending": [{"step": p.step, "reason": p.reason}
                                                                     for p in c.pending]}
            if c.reason is not None:
                verdict["reason"] = c.reason
            hosts[c.host] = {**verdict, **{k: v for k, v in plans[c.host].items() if k not in verdict}}
        return {"checked_at": datetime.fromtimestamp(self.checked_at, UTC).isoformat(timespec="seconds"),
                "exit_code": int(self.exit_code()), "counts": {str(s): n for s, n in self.counts().items()},
                "hosts": hosts}

    def summary_text(self) -> str:
        return ", ".join(f"{state} {n}" for state, n in self.counts().items())


def nagios_unknown(message: str) -> str:
    """The status line of a check that could not run."""
    return f"DSRPREP {Nagios.UNKNOWN.name} - {_plain(message)}"


def row(check: HostCheck) -> tuple[Text, Text, Text]:
    """host, state, and what a rollout would change there or why it could not be checked."""
    if check.state == State.UNCHECKED:
        detail = Text(check.reason or "")
    else:
        detail = Text("\n".join(f"{p.step}: {p.reason}" for p in check.pending) or "-")
    return Text(check.host), Text(str(check.state), style=_STYLE[check.state]), detail


def _names(checks: Sequence[HostCheck], detail: Any) -> str:
    shown = [f"{_plain(c.host)} ({_plain(detail(c))})" for c in checks[:_NAGIOS_NAMES]]
    more = len(checks) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def _plain(text: str) -> str:
    """Text for a Nagios status line: one line, and no '|' (it starts the perfdata)."""
    return " ".join(text.replace("|", "/").split())


def _family(lines: list[str], name: str, help_text: str, samples: list[tuple[dict[str, str], int | float]]) -> None:
    lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for labels, value in samples:
        body = ",".join(f'{key}="{_label_value(v)}"' for key, v in labels.items())
        lines.append(f"{name}{{{body}}} {value}" if body else f"{name} {value}")


def _label_value(value: str) -> str:
    """A label value escaped as the text exposition format asks: backslash, double quote, line feed."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
