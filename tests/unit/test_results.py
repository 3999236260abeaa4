"""The one result vocabulary: typed statuses, HostResult shapes per command, FleetResult aggregates."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from orchestrator.errors import ErrorInfo
from orchestrator.plan import Action
from orchestrator.results import (
    SUCCESS,
    Command,
    FleetResult,
    HostResult,
    PlanStatus,
    Status,
    StepResult,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_terminal_statuses_are_the_designed_eight() -> None:
    assert [str(s) for s in Status] == ["ok", "changed", "failed", "unreachable", "skipped", "aborted",
                                        "rolled_back", "interrupted"]
    assert [str(s) for s in PlanStatus] == ["compliant", "changes"]
    assert not {str(s) for s in Status} & {str(s) for s in PlanStatus}


def test_every_command_has_its_success_statuses() -> None:
    assert set(SUCCESS) == set(Command)
    assert SUCCESS[Command.PLAN] == {PlanStatus.COMPLIANT, PlanStatus.CHANGES}
    assert SUCCESS[Command.ROLLOUT] == {Status.OK, Status.CHANGED}
    assert SUCCESS[Command.ROLLBACK] == {Status.OK, Status.ROLLED_BACK}
    assert SUCCESS[Command.FACTS] == {Status.OK}
    assert SUCCESS[Command.CHECK] == {PlanStatus.COMPLIANT}


def _step(status: Status, step: str = "weak_host", **kw: object) -> StepResult:
    return StepResult(step, "why", status, 1, 0.12345, **kw)  # type: ignore[arg-type]


def test_step_result_dict_carries_script_errors_only_when_there_are_some() -> None:
    assert "script_errors" not in _step(Status.OK).to_dict()
    data = _step(Status.CHANGED, result={"changed": True}, script_errors=("WINS not set",)).to_dict()
    assert data == {"step": "weak_host", "reason": "why", "status": "changed", "attempt": 1, "duration": 0.123,
                    "result": {"changed": True}, "script_errors": ["WINS not set"]}


def test_host_result_shape_follows_its_command() -> None:
    actions = (Action("preflight", {}, "check"), Action("weak_host", {}, "weak host receive off"))
    error = ErrorInfo("PreflightRefused", "not elevated")
    rollout = HostResult("web01", Command.ROLLOUT, Status.FAILED, planned=actions, steps=(_step(Status.OK),),
                         error=error, failed_step="preflight", os_family="2016")
    assert list(rollout.to_dict()) == ["status", "os_family", "actions", "steps", "warnings", "duration", "error",
                                       "failed_step"]
    plan = HostResult("web01", Command.PLAN, PlanStatus.CHANGES, planned=actions, os_family="2016")
    assert "steps" not in plan.to_dict()
    assert plan.to_dict()["actions"] == [{"step": "preflight", "reason": "check"},
                                         {"step": "weak_host", "reason": "weak host receive off"}]
    facts = HostResult("web01", Command.FACTS, Status.UNREACHABLE, attempts=3,
                       error=ErrorInfo("Unreachable", "refused"))
    assert facts.to_dict() == {"status": "unreachable", "attempts": 3, "duration": 0.0,
                               "error": {"class": "Unreachable", "message": "refused"}}
    # Statuses serialise as their plain names.
    assert json.loads(json.dumps(plan.to_dict()))["status"] == "changes"


def test_fleet_result_counts_and_failed_hosts() -> None:
    fleet = FleetResult(Command.ROLLOUT, (
        HostResult("a", Command.ROLLOUT, Status.CHANGED, steps=(_step(Status.CHANGED),)),
        HostResult("b", Command.ROLLOUT, Status.OK),
        HostResult("c", Command.ROLLOUT, Status.UNREACHABLE),
        HostResult("d", Command.ROLLOUT, Status.CHANGED),
    ))
    assert fleet.counts() == {"changed": 2, "ok": 1, "unreachable": 1}
    assert fleet.summary_text() == "changed 2, ok 1, unreachable 1"
    assert fleet.failed_hosts == ("c",)
    assert not fleet.succeeded
    assert fleet.by_host["a"].changed_something and not fleet.by_host["b"].changed_something
    assert fleet.statuses() == {"a": "changed", "b": "ok", "c": "unreachable", "d": "changed"}
    assert fleet.covers(["d", "c", "b", "a"]) and not fleet.covers(["a", "b", "c"])
    assert [r.host for r in fleet] == ["a", "b", "c", "d"] and len(fleet) == 4
    assert set(fleet.to_dict()) == {"summary", "hosts"}


def test_a_plan_succeeds_with_changes_to_make() -> None:
    fleet = FleetResult(Command.PLAN, (HostResult("a", Command.PLAN, PlanStatus.CHANGES),
                                       HostResult("b", Command.PLAN, PlanStatus.COMPLIANT)))
    assert fleet.succeeded and fleet.failed_hosts == ()
    assert fleet.counts() == {"changes": 1, "compliant": 1}


STATUS_WORDS = {str(s) for s in Status} | {str(s) for s in PlanStatus}


@pytest.mark.parametrize("module", ["runner.py", "cli.py", "report.py", "rolloutlog.py"])
def test_no_free_form_status_strings(module: str) -> None:
    """Statuses are spelled once, in results.py; everywhere else they are enum members."""
    tree = ast.parse((ROOT / "orchestrator" / module).read_text())
    # Other vocabularies' own enum definitions (run.json's RunState has an `interrupted` too) are theirs.
    enums = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
             and any(isinstance(b, ast.Name) and b.id == "StrEnum" for b in node.bases)]
    in_enums = {id(n) for enum in enums for n in ast.walk(enum)}
    literals = [node for node in ast.walk(tree)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in STATUS_WORDS
                and id(node) not in in_enums]
    assert [(n.lineno, n.value) for n in literals] == []
