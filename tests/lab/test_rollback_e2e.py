"""Rollback plans against the desired state the rollout acted on, not the inventory as edited since;
non-terminating script errors reach the step's log line. CLI, real pypsrp, lab hosts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.facts import parse_facts
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.rolloutlog import Event, read_host_log

pytestmark = pytest.mark.lab

ALL_ON = {"domain": True, "private": True, "public": True}
ALL_OFF = {"domain": False, "private": False, "public": False}


def cli(*args: str) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, list(args))
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"dsrprep {' '.join(args)} printed no JSON (exit {result.exit_code}):\n{result.output}")
    return result.exit_code, doc, result.stderr


def write_inventory(fleet: LabFleet, path: Path, firewall: str) -> None:
    data = fleet.inventory()
    data["all"]["vars"]["dsr_firewall"] = firewall
    path.write_text(yaml.safe_dump(data))


def profiles(handle: LabHost) -> dict[str, bool] | None:
    return parse_facts(handle.model.facts()).firewall.profiles


def roll_out_with_firewall_disabled(fleet: LabFleet, inventory: Path, runs: str) -> Path:
    handle = fleet.hosts[0]
    handle.model.firewall.domain = handle.model.firewall.private = handle.model.firewall.public = True
    write_inventory(fleet, inventory, "disable")
    code, done, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
    assert code == 0, json.dumps(done, indent=1)[:3000]
    assert done["hosts"][handle.name]["status"] == "changed"
    assert profiles(handle) == ALL_OFF
    # Later, someone switches the inventory to the default: a rule for the VIP ports.
    write_inventory(fleet, inventory, "rule")
    return Path(done["run_dir"])


def test_rollback_turns_the_firewall_back_on_after_the_inventory_changed(tmp_path: Path) -> None:
    with LabFleet.build(1, seed=4, profile="2016") as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        original = parse_facts(handle.model.facts()).to_dict()
        run_dir = roll_out_with_firewall_disabled(fleet, inventory, runs)
        events = read_host_log(run_dir / "hosts" / f"{handle.name}.jsonl").events
        plans = [e for e in events if e["event"] == Event.PLAN]  # the preflight's, then the rollout's
        assert len(plans) == 2 and all(e["desired"]["firewall"] == "disable" for e in plans)

        code, undone, err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "rolled_back"
        assert "firewall_state" in [a["step"] for a in entry["actions"]]
        assert "warning" not in err
        assert profiles(handle) == ALL_ON
        assert parse_facts(handle.model.facts()).to_dict() == original


def test_rollback_of_a_log_without_desired_state_warns_and_follows_the_inventory(tmp_path: Path) -> None:
    with LabFleet.build(1, seed=4, profile="2016") as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        run_dir = roll_out_with_firewall_disabled(fleet, inventory, runs)
        # What a rollout of an older dsrprep wrote: no desired state on its plan line.
        path = run_dir / "hosts" / f"{handle.name}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "desired"}) + "\n"
                                for line in lines))

        code, undone, err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        assert f"warning: {handle.name}: the rollout log records no desired state" in err
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "rolled_back"
        # The inventory now says `rule`, so nothing says the firewall was turned off: it stays off.
        assert "firewall_state" not in [a["step"] for a in entry["actions"]]
        assert profiles(handle) == ALL_OFF


def test_non_terminating_errors_are_logged_on_the_step_line(tmp_path: Path) -> None:
    with LabFleet.build(1, seed=6, profile="2019") as fleet:
        handle = fleet.hosts[0]
        model = handle.model
        answer = model.run
        warning = "Set-ItemProperty: the WINS server list of the loopback could not be read"

        def with_write_error(step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
            # The host's own answer plus a Write-Error record, as a cmdlet that did not stop would leave.
            result = answer(step, params, variant=variant)
            if step != "loopback_config":
                return result
            return dataclasses.replace(result, errors=[*result.errors, warning])

        model.run = with_write_error  # type: ignore[method-assign]  # this host object only
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        code, done, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(tmp_path / "runs"))
        assert code == 0, json.dumps(done, indent=1)[:3000]
        entry = done["hosts"][handle.name]
        assert entry["status"] == "changed"  # the script still succeeded
        (step,) = [s for s in entry["steps"] if s["step"] == "loopback_config"]
        assert step["script_errors"] == [warning]
        events = read_host_log(Path(done["run_dir"]) / "hosts" / f"{handle.name}.jsonl").events
        (line,) = [e for e in events if e["event"] == Event.STEP_RESULT and e["step"] == "loopback_config"]
        assert line["script_errors"] == [warning] and line["level"] == "info"
        assert all("script_errors" not in e for e in events if e.get("step") != "loopback_config")


def test_a_rollback_that_does_not_take_is_reported_failed(tmp_path: Path) -> None:
    """The rollback judge: a host whose undo answers "changed" but leaves the firewall off is not
    rolled back (the facts afterwards still differ from the recorded ones)."""
    with LabFleet.build(1, seed=4, profile="2016") as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        run_dir = roll_out_with_firewall_disabled(fleet, inventory, runs)
        model = handle.model
        answer = model.run

        def ignores_firewall_state(step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
            if step == "firewall_state":  # says it turned the profiles on, and did not
                return ScriptResult(output=[{"changed": True, "profiles": {}, "output": None}])
            return answer(step, params, variant=variant)

        model.run = ignores_firewall_state  # type: ignore[method-assign]  # this host object only
        code, undone, _err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 1, json.dumps(undone, indent=1)[:3000]
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "failed" and entry["error"]["class"] == "NotRestored"
        assert "turn firewall profiles back on" in entry["error"]["message"]
        assert profiles(handle) == ALL_OFF
