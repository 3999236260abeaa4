"""Rollback compares each host's facts now with the facts recorded before the rollout, whatever the
step results say, and plans against the desired state the rollout acted on, not the inventory as
edited since; it refuses another machine at the same address, a torn before-state and a run still
running. Non-terminating script errors reach the step's log line. CLI, real pypsrp, lab hosts."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.facts import parse_facts
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.fleet import LAB_VIP, LabFleet, LabHost
from orchestrator.rolloutlog import Event, read_host_log
from tests.shells import let_idle_shells_expire

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


def test_rollback_of_a_log_without_desired_state_is_refused(tmp_path: Path) -> None:
    with LabFleet.build(1, seed=4, profile="2016") as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        run_dir = roll_out_with_firewall_disabled(fleet, inventory, runs)
        # What a rollout of an older dsrprep wrote: no desired state on its plan line.
        path = run_dir / "hosts" / f"{handle.name}.jsonl"
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({k: v for k, v in line.items() if k != "desired"}) + "\n"
                                for line in lines))
        asked = dict(handle.counters.steps)

        code, undone, _err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 1, json.dumps(undone, indent=1)[:3000]
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "failed" and entry["error"]["class"] == "NoBeforeState"
        assert f"the rollout log {path} records no desired state" in entry["error"]["message"]
        # The inventory now says `rule`; following it would have left the firewall off. Nothing was
        # planned from it: the host was not even asked.
        assert entry["actions"] == [] and dict(handle.counters.steps) == asked
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


# -- rollback follows the facts, not the step results, and refuses what it cannot prove -------------


def facts_now(handle: LabHost) -> dict[str, Any]:
    return parse_facts(handle.model.facts()).to_dict()


@dataclasses.dataclass(frozen=True)
class RolledOut:
    """One lab host rolled out through the CLI, and its facts from before."""

    handle: LabHost
    original: dict[str, Any]
    done: dict[str, Any]  # the rollout's --json document
    runs: str
    inventory: Path


@contextmanager
def rolled_out(tmp_path: Path, *, seed: int, profile: str) -> Iterator[RolledOut]:
    with LabFleet.build(1, seed=seed, profile=profile) as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        fleet.write_inventory(inventory)
        original = facts_now(handle)
        code, done, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(done, indent=1)[:3000]
        yield RolledOut(handle, original, done, runs, inventory)


def log_lines(run_dir: Path, host: str) -> tuple[Path, list[str]]:
    path = run_dir / "hosts" / f"{host}.jsonl"
    return path, path.read_text().splitlines(keepends=True)


def test_a_step_a_kill_cut_off_before_its_result_is_undone_from_the_facts(tmp_path: Path) -> None:
    """SIGKILL while firewall_rule ran: the log ends at its step_start line, the host kept the change
    (and, here, the rest of the rollout). Rollback compares the facts and undoes all of it."""
    with rolled_out(tmp_path, seed=4, profile="2016") as host:
        handle, original, done, runs = host.handle, host.original, host.done, host.runs
        run_dir = Path(done["run_dir"])
        path, lines = log_lines(run_dir, handle.name)
        events = [json.loads(line) for line in lines]
        cut = next(i for i, e in enumerate(events) if e["event"] == Event.STEP_START and e["step"] == "firewall_rule")
        path.write_text("".join(lines[:cut + 1]))
        # run.json as the killed process left it: still running, no outcome for the host.
        record = json.loads((run_dir / "run.json").read_text())
        record.update(state="running", outcomes={}, ending=None)
        (run_dir / "run.json").write_text(json.dumps(record))
        assert facts_now(handle) != original

        code, undone, err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        assert f"warning: run {done['run_id']} did not end (its process is gone)" in err
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "rolled_back"
        assert {"firewall_rule", "loopback"} <= {a["step"] for a in entry["actions"]}
        assert facts_now(handle) == original


def test_a_change_whose_connection_was_cut_is_undone(tmp_path: Path) -> None:
    """The metric set on a loopback that was already there, with the connection cut right after: no
    step result says `changed`, the rollout says the hosts changed, and rollback restores the metric."""
    with LabFleet.build(2, seed=5, profile="2016") as fleet:
        inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
        data = fleet.inventory()
        data["all"]["vars"]["dsr_metric"] = 200
        inventory.write_text(yaml.safe_dump(data))
        code, first, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(first, indent=1)[:3000]
        fleet.write_inventory(inventory)  # back to the default metric, 254
        prepared = {h.name: facts_now(h) for h in fleet}
        for handle in fleet:
            handle.model.cut_on_step = "adapter_settings"
        code, second, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(second, indent=1)[:3000]
        run_dir = Path(second["run_dir"])
        for handle in fleet:
            assert second["hosts"][handle.name]["status"] == "changed"
            results = [e for e in read_host_log(run_dir / "hosts" / f"{handle.name}.jsonl").events
                       if e["event"] == Event.STEP_RESULT]
            assert [(e["step"], e["status"]) for e in results if e["step"] != "preflight"] == [
                ("adapter_settings", "failed")]
            assert all(e["status"] != "changed" for e in results)
            assert dsr_loopback_metric(handle) == 254
        let_idle_shells_expire(*fleet.hosts, left=2)  # the cut shells

        code, undone, _err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        for handle in fleet:
            entry = undone["hosts"][handle.name]
            assert entry["status"] == "rolled_back"
            assert [a["step"] for a in entry["actions"]] == ["adapter_settings"]
            assert dsr_loopback_metric(handle) == 200
            assert facts_now(handle) == prepared[handle.name]


def dsr_loopback_metric(handle: LabHost) -> int | None:
    loopback = parse_facts(handle.model.facts()).dsr_loopback([LAB_VIP])
    assert loopback is not None
    return loopback.metric


def test_an_edited_vip_does_not_change_what_is_undone(tmp_path: Path) -> None:
    """IIS bindings and listen entries of the VIP the rollout used go, though the inventory now names another."""
    with rolled_out(tmp_path, seed=6, profile="2012r2") as host:
        handle, original, done, runs = host.handle, host.original, host.done, host.runs
        changed = facts_now(handle)
        assert LAB_VIP in changed["http_listen"]
        assert LAB_VIP in [b["ip"] for site in changed["iis"]["sites"] for b in site["bindings"]]
        data = yaml.safe_load(host.inventory.read_text())
        data["all"]["vars"]["dsr_vips"] = [{"address": "10.20.0.201", "ports": [80], "protocol": "tcp"}]
        host.inventory.write_text(yaml.safe_dump(data))

        code, undone, err = cli("rollback", done["run_dir"], "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        assert "warning" not in err
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "rolled_back"
        assert {"iis_binding", "http_listen"} <= {a["step"] for a in entry["actions"]}
        assert facts_now(handle) == original


def test_another_fleet_at_the_same_addresses_is_refused_and_left_alone(tmp_path: Path) -> None:
    inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
    with LabFleet.build(2, seed=4, profile="2016") as fleet_a:
        fleet_a.write_inventory(inventory)
        code, done, _err = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(done, indent=1)[:3000]
    with LabFleet.build(2, seed=9, profile="2012r2") as fleet_b:
        # The same names and addresses, in the same inventory file: other machines.
        fleet_b.write_inventory(inventory)
        assert [h.address for h in fleet_b] == [h.address for h in fleet_a]
        untouched = {h.name: facts_now(h) for h in fleet_b}
        code, undone, _err = cli("rollback", done["run_dir"], "--yes", "--json", "--runs-dir", runs)
        assert code == 1, json.dumps(undone, indent=1)[:3000]
        for handle in fleet_b:
            entry = undone["hosts"][handle.name]
            assert entry["status"] == "failed" and entry["failed_step"] == "identity"
            assert entry["error"]["class"] == "NotSameMachine" and entry["actions"] == []
            message = entry["error"]["message"]
            recorded = next(h for h in fleet_a if h.name == handle.name).model
            assert f"SMBIOS UUID is {handle.model.machine_uuid}, recorded {recorded.machine_uuid}" in message
            assert "OS product id is" in message and f"has MAC {handle.model.nics[0].mac}" in message
            assert dict(handle.counters.steps) == {"facts": 1}  # read, and nothing run
            assert facts_now(handle) == untouched[handle.name]


def test_a_torn_before_state_fails_the_host_and_changes_nothing(tmp_path: Path) -> None:
    with rolled_out(tmp_path, seed=4, profile="2016") as host:
        handle, done, runs = host.handle, host.done, host.runs
        path, lines = log_lines(Path(done["run_dir"]), handle.name)
        # Both facts_before lines (the preflight's and the canary's) cut in the middle.
        torn = [line[: len(line) // 2] + "\n" if json.loads(line)["event"] == Event.FACTS_BEFORE else line
                for line in lines]
        assert sum(a != b for a, b in zip(torn, lines, strict=True)) == 2
        path.write_text("".join(torn))
        changed, asked = facts_now(handle), dict(handle.counters.steps)

        code, undone, err = cli("rollback", done["run_dir"], "--yes", "--json", "--runs-dir", runs)
        assert code == 1, json.dumps(undone, indent=1)[:3000]
        entry = undone["hosts"][handle.name]
        assert entry["status"] == "failed" and entry["error"]["class"] == "NoBeforeState"
        assert f"the facts recorded before the rollout are torn (2 unreadable line(s)) in {path}" in (
            entry["error"]["message"])
        assert "unreachable" not in err + json.dumps(undone)
        assert dict(handle.counters.steps) == asked and facts_now(handle) == changed


def test_a_run_still_running_is_not_rolled_back(tmp_path: Path) -> None:
    """A rollout held at its gate (a command waiting for a file) is running: rollback refuses (exit 2)
    and touches nothing; once it has finished, rollback goes ahead."""
    with LabFleet.build(1, seed=4, profile="2016") as fleet:
        handle = fleet.hosts[0]
        inventory, runs = tmp_path / "lab.yml", tmp_path / "runs"
        run_dir, release = runs / "held", tmp_path / "release"
        fleet.write_inventory(inventory)
        original = facts_now(handle)
        # Waits for the file, 60 s at the most: the shell ends even if this test does not get to release it.
        gate = f"for i in $(seq 1200); do [ -e '{release}' ] && exit 0; sleep 0.05; done; exit 1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "rollout", str(inventory), "--yes", "--json", "--runs-dir",
             str(runs), "--run-dir", str(run_dir), "--gate-command", gate],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not any(e["event"] == Event.HOST_DONE and e["step"] == "rollout"
                          for e in host_events(run_dir, handle.name)):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the rollout did not reach its gate"
                time.sleep(0.05)
            asked = dict(handle.counters.steps)
            code, doc, err = run_cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", str(runs))
            assert code == 2, doc
            assert f"{run_dir}: run held is still running (run held (rollout, pid {proc.pid}" in err
            assert dict(handle.counters.steps) == asked
            release.touch()
            out, errors = proc.communicate(timeout=60)
        finally:
            release.touch()  # the gate's shell is the rollout's child: killing the rollout leaves it running
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, errors[-3000:]
        assert json.loads(out)["hosts"][handle.name]["status"] == "changed"
        code, undone, err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", str(runs))
        assert code == 0, json.dumps(undone, indent=1)[:3000]
        assert "did not end" not in err
        assert undone["hosts"][handle.name]["status"] == "rolled_back" and facts_now(handle) == original


def host_events(run_dir: Path, host: str) -> list[dict[str, Any]]:
    path = run_dir / "hosts" / f"{host}.jsonl"
    return read_host_log(path).events if path.exists() else []


def run_cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr
