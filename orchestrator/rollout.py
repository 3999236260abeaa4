"""A canary-then-fleet rollout: preflight every host, place the hosts needing changes in waves, run
the waves one after the other, and stop at a gate before a bad change spreads.

The decisions (who goes in which wave, whether a gate stops the run) are orchestrator/waves.py's;
this module sequences them over a `Fleet` (running hosts) and an `Operator` (approvals, progress)
that the CLI provides, and keeps the run's record (`RunRecord`, written to run.json) current after
every step, so that `resume` can finish a run stopped at any point: wave membership is computed
once, before any change, and never again.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol, get_type_hints

from orchestrator import rolloutlog as logfile
from orchestrator.choices import DEFAULT_WAVES
from orchestrator.results import Command, FleetResult, HostResult, HostStatus, PlanStatus, Status
from orchestrator.runner import FleetInterrupted
from orchestrator.waves import (
    CanarySpec,
    Gate,
    Threshold,
    Wave,
    judge_wave,
    named_canary,
    parse_threshold,
    parse_waves,
    place,
)

# A rollout's hosts end in one of these when the rollout ran them; those not run get OK (compliant),
# ABORTED (a gate stopped the run first), or the preflight's FAILED / UNREACHABLE.
DONE = frozenset({Status.OK, Status.CHANGED, Status.FAILED, Status.UNREACHABLE, Status.ROLLED_BACK})


class Ending(StrEnum):
    """How a rollout ended (run.json's `ending`), and so its exit code."""

    FINISHED = "finished"
    ABORTED = "aborted"  # a gate or a threshold stopped it: exit 3
    DECLINED = "declined"  # the operator said no: exit 4
    INTERRUPTED = "interrupted"  # Ctrl-C: exit 130


@dataclass(frozen=True)
class Options:
    """What the rollout was asked to do; kept in run.json so that `resume` does the same."""

    canary: str | None = None
    waves: str = DEFAULT_WAVES
    max_failures: str = "0"
    max_unreachable: str = "0"
    order: str = "inventory"
    forks: int = 32
    pause_after_wave: bool = False
    gate_command: str | None = None
    rollback_on_abort: bool = False
    check: bool = False

    def validate(self) -> None:
        """WaveError for a value that cannot be used (before anything is contacted)."""
        CanarySpec.parse(self.canary)
        parse_waves(self.waves)
        self.thresholds()

    def thresholds(self) -> tuple[Threshold, Threshold]:
        return (parse_threshold(self.max_failures, "--max-failures"),
                parse_threshold(self.max_unreachable, "--max-unreachable"))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: object) -> Options:
        """The options run.json recorded, each field's type checked (RunFieldError naming it); unknown
        fields are left out."""
        checked = logfile.fields(data, _option_checks(), at="options")
        return cls(**{k: v for k, v in checked.items() if k in cls.__dataclass_fields__})


@dataclass
class RunRecord:
    """The rollout part of run.json: what was decided, and each host's status as far as it got."""

    hosts: list[str]  # selected, in placement order
    preflight: dict[str, str] = field(default_factory=dict)  # host -> plan status
    waves: list[Wave] = field(default_factory=list)
    gates: list[dict[str, Any]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)  # host -> terminal status so far
    ending: Ending | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"hosts": self.hosts, "preflight": self.preflight,
                "waves": [{"name": w.name, "hosts": list(w.hosts)} for w in self.waves],
                "gates": self.gates, "outcomes": self.outcomes, "ending": self.ending}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """The rollout part of run.json, each field's type checked (RunFieldError naming it)."""
        checked = logfile.fields({k: data[k] for k in _RECORD_CHECKS if data.get(k) is not None}, _RECORD_CHECKS)
        ending = checked.get("ending")
        return cls(hosts=checked.get("hosts", []), preflight=checked.get("preflight", {}),
                   waves=[Wave(w["name"], tuple(w["hosts"])) for w in checked.get("waves", [])],
                   gates=checked.get("gates", []), outcomes=checked.get("outcomes", {}),
                   ending=Ending(ending) if ending else None)


def _wave(value: object, field: str) -> dict[str, Any]:
    return logfile.fields(value, {"name": logfile.text, "hosts": logfile.list_of(logfile.text)},
                          ("name", "hosts"), at=field)


def _any(value: object, field: str) -> object:
    return value


_RECORD_CHECKS: Mapping[str, logfile.Check] = {
    "hosts": logfile.list_of(logfile.text),
    "preflight": logfile.map_of(logfile.text),
    "waves": logfile.list_of(_wave),
    "gates": logfile.list_of(logfile.map_of(_any)),
    "outcomes": logfile.map_of(logfile.text),
    "ending": logfile.choice(Ending),
}
_CHECK_OF_TYPE: Mapping[object, logfile.Check] = {
    str: logfile.text, str | None: logfile.optional(logfile.text), int: logfile.whole, bool: logfile.flag,
}


@functools.cache
def _option_checks() -> Mapping[str, logfile.Check]:
    """Each field of Options checked by its declared type."""
    hints = get_type_hints(Options)
    return {name: _CHECK_OF_TYPE[hints[name]] for name in Options.__dataclass_fields__}


class Fleet(Protocol):
    """Runs hosts by name (the CLI's PSRP fleet, or a fake in tests)."""

    def plan(self, hosts: Sequence[str]) -> FleetResult: ...
    def rollout(self, hosts: Sequence[str], wave: str) -> FleetResult: ...
    def rollback(self, hosts: Sequence[str]) -> FleetResult: ...
    def gate_command(self, wave: Wave) -> tuple[int, str]: ...


class Operator(Protocol):
    """The person running the rollout: approvals, and what they see as it goes."""

    def approve(self, question: str) -> bool: ...
    def show(self, event: str, **details: Any) -> None: ...
    def save(self, record: RunRecord) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How the rollout ended and every selected host's result."""

    ending: Ending
    result: FleetResult
    record: RunRecord


def _placeholder(host: str, status: HostStatus, preflight: HostResult | None = None) -> HostResult:
    """A host the rollout did not run: compliant (ok), aborted, or as its preflight ended."""
    if preflight is None:
        return HostResult(host, Command.ROLLOUT, status)
    return replace(preflight, command=Command.ROLLOUT, status=status)


def host_status(text: str) -> HostStatus:
    """A status as run.json writes it."""
    return PlanStatus(text) if text in PlanStatus.__members__.values() else Status(text)


class Rollout:
    """One rollout (or the resumed rest of one), run wave by wave."""

    def __init__(self, groups: Mapping[str, Sequence[str]], options: Options, fleet: Fleet,
                 operator: Operator, record: RunRecord) -> None:
        self.groups, self.options, self.fleet, self.operator, self.record = groups, options, fleet, operator, record
        self.results: dict[str, HostResult] = {}
        self.checked: dict[str, HostResult] = {}  # the preflight's result of each host
        self.max_failures, self.max_unreachable = options.thresholds()

    # -- preflight and waves ---------------------------------------------------------------------

    def prepare(self) -> Ending | None:
        """Preflight every host and fix the waves; an Ending when the rollout must not start."""
        checked = self.fleet.plan(self.record.hosts)
        self.checked = checked.by_host
        self.record.preflight = {r.host: str(r.status) for r in checked}
        compliant = PlanStatus.COMPLIANT if self.options.check else Status.OK
        for r in checked:
            if r.status == PlanStatus.COMPLIANT:
                self.results[r.host] = _placeholder(r.host, compliant, r)
            elif r.status != PlanStatus.CHANGES:
                self.results[r.host] = _placeholder(r.host, r.status, r)
        candidates = [h for h in self.record.hosts if self.record.preflight[h] == PlanStatus.CHANGES]
        self.record.waves = place(self.record.hosts, candidates, CanarySpec.parse(self.options.canary),
                                  parse_waves(self.options.waves), self.groups)
        self._outcomes()
        self.operator.show("preflight", counts=self._preflight_counts(), waves=self.record.waves)
        gate = self._preflight_gate(candidates)
        if not gate.go_on:
            return self._abort(gate, "preflight", first_wave=0)
        return None

    def _preflight_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in self.record.preflight.values():
            counts[status] = counts.get(status, 0) + 1
        return counts

    def _preflight_gate(self, candidates: list[str]) -> Gate:
        """Hosts that cannot be read or refuse any change, against the thresholds of the whole
        selection; a canary host named by --canary (or the canary group) among them is a failed canary."""
        named = named_canary(CanarySpec.parse(self.options.canary), self.record.hosts, self.groups)
        bad_canary = [h for h in named if self.record.preflight.get(h) in (Status.FAILED, Status.UNREACHABLE)]
        if bad_canary:
            return Gate(False, (f"canary host(s) failed preflight: {', '.join(bad_canary)}",))
        preflight = Wave("preflight", tuple(self.record.hosts))
        failed = sum(1 for s in self.record.preflight.values() if s == Status.FAILED)
        unreachable = sum(1 for s in self.record.preflight.values() if s == Status.UNREACHABLE)
        return judge_wave(preflight, failed, unreachable, max_failures=self.max_failures,
                          max_unreachable=self.max_unreachable)

    # -- the waves -------------------------------------------------------------------------------

    def run(self, *, first_wave: int = 0, approved: bool = False) -> Ending:
        """Run the waves from `first_wave` on; asks before the first change unless `approved`."""
        waves = self.record.waves
        if self.options.check:
            for wave in waves[first_wave:]:
                self._placeholders(wave, PlanStatus.CHANGES)
            return Ending.FINISHED
        if not approved and first_wave < len(waves) and not self._ask(
                f"Roll out to {sum(len(w.hosts) for w in waves[first_wave:])} host(s) in "
                f"{len(waves) - first_wave} wave(s), starting with {waves[first_wave].name}?"):
            return self._declined(first_wave)
        for index in range(first_wave, len(waves)):
            wave = waves[index]
            gate = self._run_wave(wave)
            if not gate.go_on:
                return self._abort(gate, wave.name, first_wave=index + 1, failing=wave)
            last = index == len(waves) - 1
            wants_pause = wave.is_canary or self.options.pause_after_wave
            if not last and wants_pause and not self._ask(f"{wave.name} done; go on with {waves[index + 1].name}?"):
                return self._declined(index + 1)
        return Ending.FINISHED

    def resume_from(self) -> int:
        """The first wave with a host that has not ended (interrupted, never started, cut off by a
        crash); len(waves) when none is left. Waves before it keep their recorded gate decisions:
        resuming past a gate that stopped the run is the operator's decision."""
        return next((i for i, wave in enumerate(self.record.waves)
                     if any(self.record.outcomes.get(h) not in DONE for h in wave.hosts)), len(self.record.waves))

    def _run_wave(self, wave: Wave) -> Gate:
        todo = [h for h in wave.hosts if self.record.outcomes.get(h) not in DONE]
        self.operator.show("wave", wave=wave, todo=todo)
        if todo:
            try:
                ran = self.fleet.rollout(todo, wave.name)
            except FleetInterrupted as exc:
                self.results.update(exc.result.by_host)
                raise
            self.results.update(ran.by_host)
        self._outcomes()
        statuses = [self.record.outcomes.get(h) for h in wave.hosts]
        gate = judge_wave(wave, statuses.count(Status.FAILED), statuses.count(Status.UNREACHABLE),
                          max_failures=self.max_failures, max_unreachable=self.max_unreachable)
        if gate.go_on and self.options.gate_command:
            code, output = self.fleet.gate_command(wave)
            if code != 0:
                gate = Gate(False, (f"{wave.name}: --gate-command exited {code}: {output.strip()[-300:]}",))
        self.record.gates.append({"wave": wave.name, **gate.to_dict()})
        self.operator.save(self.record)
        self.operator.show("gate", wave=wave, gate=gate)
        return gate

    def _abort(self, gate: Gate, where: str, *, first_wave: int, failing: Wave | None = None) -> Ending:
        if where == "preflight":
            self.record.gates.append({"wave": where, **gate.to_dict()})
        if failing is not None and self.options.rollback_on_abort:
            changed = [h for h in failing.hosts if self.record.outcomes.get(h) == Status.CHANGED]
            if changed:
                for r in self.fleet.rollback(changed):
                    self.results[r.host] = replace(r, command=Command.ROLLOUT)
        for wave in self.record.waves[first_wave:]:
            self._placeholders(wave, Status.ABORTED)
        self.record.ending = Ending.ABORTED
        return Ending.ABORTED

    def _declined(self, first_wave: int) -> Ending:
        for wave in self.record.waves[first_wave:]:
            self._placeholders(wave, Status.ABORTED)
        self.record.ending = Ending.DECLINED
        return Ending.DECLINED

    def _placeholders(self, wave: Wave, status: HostStatus) -> None:
        for host in wave.hosts:
            if self.record.outcomes.get(host) not in DONE:
                self.results[host] = _placeholder(host, status, self.checked.get(host))
        self._outcomes()

    def interrupted(self) -> Outcome:
        """After Ctrl-C: hosts the run did not finish are `interrupted`."""
        for host in self.record.hosts:
            if host not in self.results and self.record.outcomes.get(host) not in DONE:
                self.results[host] = _placeholder(host, Status.INTERRUPTED, self.checked.get(host))
        return self.outcome(Ending.INTERRUPTED)

    def _ask(self, question: str) -> bool:
        self.operator.save(self.record)
        return self.operator.approve(question)

    def _outcomes(self) -> None:
        self.record.outcomes.update({h: str(r.status) for h, r in self.results.items()})
        self.operator.save(self.record)

    def outcome(self, ending: Ending) -> Outcome:
        """Every selected host's result, in placement order (a host missing here is a bug)."""
        self.record.ending = ending
        for host in self.record.hosts:
            if host not in self.results and host in self.record.outcomes:
                # Done in an earlier attempt of this run (resume): its recorded status stands.
                self.results[host] = _placeholder(host, host_status(self.record.outcomes[host]))
        missing = [h for h in self.record.hosts if h not in self.results]
        if missing:  # a bug, never bad input: every selected host ends in exactly one status
            raise RuntimeError(f"rollout: no terminal status for {', '.join(missing)}")
        self._outcomes()
        command = Command.PLAN if self.options.check else Command.ROLLOUT
        result = FleetResult(command, tuple(replace(self.results[h], command=command) for h in self.record.hosts))
        return Outcome(ending, result, self.record)
