"""The arp_retry step: planned only when dsr_arp_retry_count is set, undone to the recorded value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.desired import Desired, FieldError, NicSelector, Vip
from orchestrator.facts import parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LabFleet
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.steps.arp_retry import VALUE
from orchestrator.plan import plan, rollback_plan
from orchestrator.steps import arp_retry

VIP = "10.20.0.200"


def host(value: int | None = None) -> WindowsHost:
    (found,) = build_fleet(1, seed=9, profile="2008r2")
    if value is not None:
        found.registry[VALUE] = value
    return found


def desired(h: WindowsHost, count: int | None) -> Desired:
    options = () if count is None else (("dsr_arp_retry_count", count),)
    return Desired(vips=(Vip(VIP, (80,), "tcp"),), nic=NicSelector("address", h.rip), options=options)


def steps_of(h: WindowsHost, count: int | None) -> dict[str, dict[str, Any]]:
    return {a.step: dict(a.params) for a in plan(parse_facts(h.facts()), desired(h, count)).actions}


@pytest.mark.parametrize(("value", "count", "planned"), [
    (None, None, None),  # not set: left alone
    (3, None, None),
    (None, 0, 0),  # absent means 3
    (3, 0, 0),
    (0, 0, None),  # already so
    (1, 3, 3),
])
def test_plan(value: int | None, count: int | None, planned: int | None) -> None:
    found = steps_of(host(value), count).get("arp_retry")
    assert found == (None if planned is None else {"Count": planned})


@pytest.mark.parametrize(("before", "after_count"), [(None, 0), (2, 0)])
def test_apply_then_undo_in_the_lab(before: int | None, after_count: int) -> None:
    h = host(before)
    was = parse_facts(h.facts())
    result = h.run("arp_retry", {"Count": after_count})
    assert result.failed is None and result.output[0]["changed"] is True
    now = parse_facts(h.facts())
    assert arp_retry.current(now) == after_count
    assert "arp_retry" not in steps_of(h, after_count)  # the plan is empty after applying
    (undo,) = [a for a in rollback_plan(was, now, desired(h, after_count)).actions if a.step == "arp_retry"]
    assert h.run("arp_retry", dict(undo.params)).failed is None
    assert arp_retry.current(parse_facts(h.facts())) == arp_retry.current(was)


def test_undo_leaves_alone_what_the_rollout_did_not_set() -> None:
    h = host(1)
    was = parse_facts(h.facts())
    h.registry[VALUE] = 0
    now = parse_facts(h.facts())

    def undone(desired_count: int | None, before: Any = was, after: Any = now) -> list[Any]:
        plan_ = rollback_plan(before, after, desired(h, desired_count))
        return [dict(a.params) for a in plan_.actions if a.step == "arp_retry"]

    assert undone(0) == [{"Count": 1}]  # dsrprep set 0, the host still has it: back to 1
    assert undone(None) == []  # the rollout did not set it: someone else did
    assert undone(2) == []  # the rollout set 2, the host has 0: changed since, left alone
    raw = h.facts()
    del raw["arp_retry_count"]  # facts recorded by a dsrprep that did not read the value
    assert undone(0, before=parse_facts(raw)) == []


def test_the_lab_refuses_without_elevation() -> None:
    h = host()
    h.elevated = False
    assert h.run("arp_retry", {"Count": 0}).failed == "Requested registry access is not allowed."


@pytest.mark.parametrize("value", [4, -1, "x", True])
def test_the_variable_takes_0_to_3(value: object) -> None:
    with pytest.raises(FieldError):
        arp_retry.VARIABLE.parse(value)
    assert arp_retry.VARIABLE.parse(2) == 2 and arp_retry.VARIABLE.parse(None) is None


@pytest.mark.lab
def test_rollout_and_rollback_through_the_cli(tmp_path: Path) -> None:
    """dsr_arp_retry_count in an inventory, real pypsrp against the lab: set, then restored."""
    with LabFleet.build(2, seed=3, profile="2012r2") as fleet:
        data = fleet.inventory()
        data["all"]["vars"]["dsr_arp_retry_count"] = 0
        inventory = tmp_path / "lab.yml"
        inventory.write_text(yaml.safe_dump(data), encoding="utf-8")
        runs = str(tmp_path / "runs")
        out = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--json", "--runs-dir", runs])
        assert out.exit_code == 0, out.output
        done = json.loads(out.stdout)
        assert all(h.model.registry[VALUE] == 0 for h in fleet.hosts)
        assert all("arp_retry" in [s["step"] for s in entry["steps"]] for entry in done["hosts"].values())
        back = CliRunner().invoke(app, ["rollback", done["run_dir"], "--yes", "--json", "--runs-dir", runs])
        assert back.exit_code == 0, back.output
        assert all(VALUE not in h.model.registry for h in fleet.hosts)
