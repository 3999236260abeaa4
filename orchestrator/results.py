"""What running a command on hosts produces: the status vocabulary and one pair of result types.

`StepResult` is one template run on one host. `HostResult` is how one host ended for one command
(`facts`, `plan`, `rollout`, `rollback`) and what was learned on the way: the facts (facts), the
planned actions (plan, rollout, rollback), the step results (rollout, rollback), the error. A
`FleetResult` holds every host's result of one run, with the counts, the failed hosts and the
success rule of its command. The runner builds them; the CLI's tables, its `--json` documents,
run.json and the exit code all read them. Pure data.

Statuses are typed. `Status` is the terminal status of a host (DESIGN §3) and the status of a
step (`ok`, `changed` or `failed`). `PlanStatus` is what a dry run (`dsrprep plan`) ends in on a
host it could read: `compliant` or `changes`; a dry run that could not read its host ends in a
`Status` (failed, unreachable, interrupted) like any other command.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from orchestrator.errors import ErrorInfo
from orchestrator.facts import Facts
from orchestrator.plan import Action


class Status(StrEnum):
    OK = "ok"  # nothing needed changing (or, for facts, the facts were taken)
    CHANGED = "changed"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    SKIPPED = "skipped"  # filtered out
    ABORTED = "aborted"  # its wave never started: a gate stopped the rollout
    ROLLED_BACK = "rolled_back"
    INTERRUPTED = "interrupted"


class PlanStatus(StrEnum):
    COMPLIANT = "compliant"  # the plan is empty
    CHANGES = "changes"  # a rollout would change the host


HostStatus = Status | PlanStatus


class Command(StrEnum):
    """What a run did: run.json's `command`, and what shape a HostResult has."""

    FACTS = "facts"
    PLAN = "plan"
    ROLLOUT = "rollout"
    ROLLBACK = "rollback"
    CHECK = "check"  # a drift check: a dry run like `plan`, its hosts' results are plan results


# A host ends a command successfully in one of these; a run exits 0 when every host did.
SUCCESS: Mapping[Command, frozenset[HostStatus]] = MappingProxyType({
    Command.FACTS: frozenset({Status.OK}),
    Command.PLAN: frozenset({PlanStatus.COMPLIANT, PlanStatus.CHANGES}),
    Command.ROLLOUT: frozenset({Status.OK, Status.CHANGED}),
    Command.ROLLBACK: frozenset({Status.OK, Status.ROLLED_BACK}),
    Command.CHECK: frozenset({PlanStatus.COMPLIANT}),  # orchestrator/drift.py judges the plan results
})


@dataclass(frozen=True)
class StepResult:
    """One attempt of one action on one host.

    `result` is the template's result object; `script_errors` the non-terminating error records the
    script left on its error stream while still succeeding.
    """

    step: str
    reason: str
    status: Status  # changed | ok | failed
    attempt: int
    duration: float
    result: Any = None
    error: ErrorInfo | None = None
    script_errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "reason": self.reason, "status": self.status,
                                "attempt": self.attempt, "duration": round(self.duration, 3)}
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error.to_dict()
        if self.script_errors:
            data["script_errors"] = list(self.script_errors)
        return data


@dataclass(frozen=True)
class HostResult:
    """How one host ended one command, and what the run learned about it on the way."""

    host: str
    command: Command
    status: HostStatus
    facts: Facts | None = None  # facts: the facts taken
    planned: tuple[Action, ...] = ()  # plan, rollout, rollback: the actions planned first
    steps: tuple[StepResult, ...] = ()  # rollout, rollback: every step attempt, in order
    error: ErrorInfo | None = None
    failed_step: str | None = None
    warnings: tuple[str, ...] = ()
    attempts: int = 0  # facts: connection attempts made
    duration: float = 0.0
    os_family: str | None = None  # as the first facts said

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS[self.command]

    @property
    def changed_something(self) -> bool:
        return any(s.status == Status.CHANGED for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The host's entry in a `--json` document (its shape depends on the command)."""
        if self.command == Command.FACTS:
            data: dict[str, Any] = {"status": self.status, "attempts": self.attempts,
                                    "duration": round(self.duration, 3)}
            if self.facts is not None:
                data["facts"] = self.facts.to_dict()
        else:
            data = {"status": self.status, "os_family": self.os_family,
                    "actions": [{"step": a.step, "reason": a.reason} for a in self.planned]}
            if self.command != Command.PLAN:
                data["steps"] = [s.to_dict() for s in self.steps]
            data["warnings"] = list(self.warnings)
            data["duration"] = round(self.duration, 3)
        if self.error is not None:
            data["error"] = self.error.to_dict()
        if self.failed_step is not None:
            data["failed_step"] = self.failed_step
        return data


@dataclass(frozen=True)
class FleetResult:
    """Every host's result of one run, in the order the hosts were given."""

    command: Command
    hosts: tuple[HostResult, ...]

    def __iter__(self) -> Iterator[HostResult]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    @property
    def by_host(self) -> dict[str, HostResult]:
        return {r.host: r for r in self.hosts}

    @property
    def failed_hosts(self) -> tuple[str, ...]:
        """Hosts that did not end in a success status of the command."""
        return tuple(r.host for r in self.hosts if not r.succeeded)

    @property
    def succeeded(self) -> bool:
        return all(r.succeeded for r in self.hosts)

    def counts(self) -> dict[str, int]:
        """How many hosts ended in each status."""
        return {str(status): n for status, n in Counter(r.status for r in self.hosts).items()}

    def statuses(self) -> dict[str, str]:
        """Each host's status (run.json's `outcomes`)."""
        return {r.host: str(r.status) for r in self.hosts}

    def summary_text(self) -> str:
        return ", ".join(f"{status} {n}" for status, n in sorted(self.counts().items()))

    def covers(self, names: list[str]) -> bool:
        """Exactly one result per host named (a missing or doubled host is a bug)."""
        return sorted(r.host for r in self.hosts) == sorted(names)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.counts(), "hosts": {r.host: r.to_dict() for r in self.hosts}}
