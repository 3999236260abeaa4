"""The rollout sequence over a fake fleet: canary, waves, gates, approvals, check, resume, Ctrl-C."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrator.results import Command, FleetResult, HostResult, HostStatus, PlanStatus, Status
from orchestrator.rollout import Ending, Options, Rollout, RunRecord
from orchestrator.runner import FleetInterrupted
from orchestrator.waves import Wave

HOSTS = [f"web{i:02d}" for i in range(1, 11)]


@dataclass
class FakeFleet:
    """Hosts by name: what preflight says, how a rollout ends; remembers what was sent where."""

    preflight: dict[str, HostStatus] = field(default_factory=dict)
    rollout_status: dict[str, Status] = field(default_factory=dict)
    gate_codes: list[int] = field(default_factory=list)
    interrupt_at: str | None = None
    rolled_out: list[list[str]] = field(default_factory=list)
    rolled_back: list[list[str]] = field(default_factory=list)
    gated: list[str] = field(default_factory=list)

    def plan(self, hosts: Sequence[str]) -> FleetResult:
        return FleetResult(Command.PLAN, tuple(HostResult(h, Command.PLAN, self.preflight.get(h, PlanStatus.CHANGES))
                                                for h in hosts))

    def rollout(self, hosts: Sequence[str], wave: str) -> FleetResult:
        self.rolled_out.append(list(hosts))
        results = tuple(HostResult(h, Command.ROLLOUT, self.rollout_status.get(h, Status.CHANGED)) for h in hosts)
        if self.interrupt_at in hosts:
            cut = [r if r.host != self.interrupt_at else HostResult(r.host, Command.ROLLOUT, Status.INTERRUPTED)
                   for r in results]
            raise FleetInterrupted(FleetResult(Command.ROLLOUT, tuple(cut)))
        return FleetResult(Command.ROLLOUT, results)

    def rollback(self, hosts: Sequence[str]) -> FleetResult:
        self.rolled_back.append(list(hosts))
        return FleetResult(Command.ROLLBACK, tuple(HostResult(h, Command.ROLLBACK, Status.ROLLED_BACK) for h in hosts))

    def gate_command(self, wave: Wave) -> tuple[int, str]:
        self.gated.append(wave.name)
        return (self.gate_codes.pop(0) if self.gate_codes else 0), "pool: 3 of 4 members up"


@dataclass
class FakeOperator:
    answers: list[bool] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    saved: int = 0

    def approve(self, question: str) -> bool:
        self.asked.append(question)
        return self.answers.pop(0) if self.answers else True

    def show(self, event: str, **details: Any) -> None:
        self.shown.append(event)

    def save(self, record: RunRecord) -> None:
        self.saved += 1


def run(fleet: FakeFleet, operator: FakeOperator | None = None, groups: dict[str, list[str]] | None = None,
        **options: Any) -> tuple[Ending, dict[str, str], RunRecord]:
    rollout = Rollout(groups or {"all": HOSTS}, Options(**{"waves": "1,3", **options}), fleet,
                      operator or FakeOperator(), RunRecord(hosts=list(HOSTS)))
    ending = rollout.prepare() or rollout.run()
    outcome = rollout.outcome(ending)
    assert outcome.result.covers(HOSTS)
    return ending, outcome.result.statuses(), outcome.record


def test_canary_then_waves_every_host_accounted_for() -> None:
    fleet = FakeFleet(preflight={"web04": PlanStatus.COMPLIANT})
    ending, statuses, record = run(fleet)
    assert ending is Ending.FINISHED
    assert [w.name for w in record.waves] == ["canary", "wave 1", "wave 2", "wave 3", "wave 4"]
    assert fleet.rolled_out == [["web01"], ["web02"], ["web03", "web05", "web06"], ["web07", "web08", "web09"],
                                ["web10"]]
    assert statuses["web04"] == "ok" and all(statuses[h] == "changed" for h in HOSTS if h != "web04")


def test_a_failed_canary_stops_before_any_fleet_host() -> None:
    fleet = FakeFleet(rollout_status={"web01": Status.FAILED})
    ending, statuses, record = run(fleet, max_failures="100%")
    assert ending is Ending.ABORTED and fleet.rolled_out == [["web01"]]
    assert statuses["web01"] == "failed" and all(statuses[h] == "aborted" for h in HOSTS[1:])
    assert record.gates[-1]["go_on"] is False and "canary allows (none)" in record.gates[-1]["reasons"][0]


def test_a_canary_group_host_failing_preflight_is_a_failed_canary() -> None:
    fleet = FakeFleet(preflight={"web03": Status.UNREACHABLE})
    ending, statuses, _ = run(fleet, groups={"all": HOSTS, "canary": ["web03"]}, max_unreachable="100%")
    assert ending is Ending.ABORTED and fleet.rolled_out == []
    assert statuses["web03"] == "unreachable" and statuses["web01"] == "aborted"


@pytest.mark.parametrize(("max_failures", "waves_run", "ending"), [
    ("0", 3, Ending.ABORTED),  # wave 2 (3 hosts) has one failure: more than 0
    ("1", 5, Ending.FINISHED),
    ("33%", 3, Ending.ABORTED),  # 33% of 3 = 0 allowed
    ("34%", 5, Ending.FINISHED),  # 34% of 3 = 1 allowed
])
def test_failure_threshold_per_wave(max_failures: str, waves_run: int, ending: Ending) -> None:
    fleet = FakeFleet(rollout_status={"web04": Status.FAILED})
    got, statuses, _ = run(fleet, max_failures=max_failures)
    assert got is ending and len(fleet.rolled_out) == waves_run
    assert statuses["web04"] == "failed"
    if ending is Ending.ABORTED:
        assert all(statuses[h] == "aborted" for h in HOSTS[5:])


def test_unreachable_has_its_own_threshold() -> None:
    fleet = FakeFleet(rollout_status={"web04": Status.UNREACHABLE})
    assert run(fleet, max_failures="5")[0] is Ending.ABORTED
    assert run(FakeFleet(rollout_status={"web04": Status.UNREACHABLE}), max_unreachable="1")[0] is Ending.FINISHED


def test_preflight_beyond_the_thresholds_changes_nothing() -> None:
    fleet = FakeFleet(preflight={"web05": Status.FAILED, "web06": Status.FAILED})
    ending, statuses, record = run(fleet, max_failures="1")
    assert ending is Ending.ABORTED and fleet.rolled_out == []
    assert statuses["web05"] == "failed" and statuses["web01"] == "aborted"
    assert record.gates[0]["wave"] == "preflight"


def test_a_failing_gate_command_aborts_and_rollback_on_abort_undoes_that_wave() -> None:
    fleet = FakeFleet(gate_codes=[0, 2])
    ending, statuses, record = run(fleet, gate_command="check-pool", rollback_on_abort=True)
    assert ending is Ending.ABORTED and fleet.gated == ["canary", "wave 1"]
    assert fleet.rolled_back == [["web02"]]
    assert statuses["web02"] == "rolled_back" and statuses["web01"] == "changed" and statuses["web03"] == "aborted"
    assert "--gate-command exited 2" in record.gates[-1]["reasons"][0]


def test_approval_before_the_first_change_and_after_the_canary() -> None:
    operator = FakeOperator(answers=[True, False])
    fleet = FakeFleet()
    ending, statuses, _ = run(fleet, operator)
    assert ending is Ending.DECLINED and fleet.rolled_out == [["web01"]]
    assert len(operator.asked) == 2 and "canary done" in operator.asked[1]
    assert statuses["web01"] == "changed" and statuses["web02"] == "aborted"
    declined_first = FakeFleet()
    assert run(declined_first, FakeOperator(answers=[False]))[0] is Ending.DECLINED
    assert declined_first.rolled_out == []


def test_pause_after_every_wave() -> None:
    operator = FakeOperator()
    run(FakeFleet(), operator, pause_after_wave=True)
    assert len(operator.asked) == 1 + 4  # before the first change, then after each wave but the last


def test_check_changes_nothing_and_shows_the_waves() -> None:
    fleet = FakeFleet(preflight={"web02": PlanStatus.COMPLIANT})
    ending, statuses, record = run(fleet, check=True)
    assert ending is Ending.FINISHED and fleet.rolled_out == [] and record.waves
    assert statuses["web02"] == "compliant" and statuses["web01"] == "changes"


def test_ctrl_c_marks_what_did_not_finish_interrupted() -> None:
    fleet = FakeFleet(interrupt_at="web03")
    rollout = Rollout({"all": HOSTS}, Options(waves="1,3"), fleet, FakeOperator(), RunRecord(hosts=list(HOSTS)))
    assert rollout.prepare() is None
    with pytest.raises(FleetInterrupted):
        rollout.run()
    outcome = rollout.interrupted()
    statuses = outcome.result.statuses()
    assert statuses["web02"] == "changed" and statuses["web03"] == "interrupted" and statuses["web10"] == "interrupted"


def test_resume_runs_only_what_is_left_with_the_same_waves() -> None:
    fleet = FakeFleet(interrupt_at="web03")
    record = RunRecord(hosts=list(HOSTS))
    first = Rollout({"all": HOSTS}, Options(waves="1,3"), fleet, FakeOperator(), record)
    first.prepare()
    with pytest.raises(FleetInterrupted):
        first.run()
    first.interrupted()
    waves = list(record.waves)

    again = FakeFleet()
    restored = RunRecord.from_dict(record.to_dict())
    resumed = Rollout({"all": HOSTS}, Options(waves="1,3"), again, FakeOperator(), restored)
    ending = resumed.run(first_wave=resumed.resume_from(), approved=True)
    outcome = resumed.outcome(ending)
    assert resumed.record.waves == waves
    assert again.rolled_out[0] == ["web03"]  # web04 and web05 finished before Ctrl-C: not sent again
    assert outcome.result.covers(HOSTS) and all(s == "changed" for s in outcome.result.statuses().values())
