"""Canary, waves, thresholds, approvals, the gate command, --check and host locks, end to end: the CLI
over real pypsrp against in-process lab fleets, with the lab's own request counters as the witness of
what each host was sent."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from orchestrator.cli import Deps, app
from orchestrator.facts import parse_facts
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.lab.scenes import refuse_step
from orchestrator.locks import acquire
from orchestrator.rolloutlog import read_run

pytestmark = pytest.mark.lab

PROFILE = "2019"  # one family with the full runbook; the OS families have tests of their own


def invoke(*args: str, obj: Deps | None = None, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), obj=obj, input=input)


def cli(*args: str, obj: Deps | None = None, input: str | None = None) -> tuple[int, dict[str, Any]]:
    """Run dsrprep with --json; its exit code and its one JSON document.

    With `input`, CliRunner echoes the answers typed at prompts on stdout as a terminal would show
    them, so the document is read from its first line on (test_prompts_stay_out_of_the_json_document
    checks that the questions themselves are not on stdout)."""
    result = invoke(*args, obj=obj, input=input)
    text = result.stdout
    if input is not None:
        lines = text.splitlines(keepends=True)
        start = next((i for i, line in enumerate(lines) if line.startswith("{")), len(lines))
        text = "".join(lines[start:])
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        pytest.fail(f"dsrprep {' '.join(args)} printed no JSON (exit {result.exit_code}):\n{result.output}")
    return result.exit_code, doc


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {name: entry["status"] for name, entry in doc["hosts"].items()}


def sent(handle: LabHost) -> set[str]:
    """The steps a lab host has received so far (facts alone: nothing was changed there)."""
    return {step for step, count in handle.counters.steps.items() if count}


def dump(doc: dict[str, Any]) -> str:
    return json.dumps({k: doc.get(k) for k in ("ending", "waves", "gates", "summary")}, indent=1) + "\n" + \
        json.dumps(statuses(doc), indent=1)


def rollout_args(inventory: Path, runs: Path, *extra: str) -> list[str]:
    return ["rollout", str(inventory), "--json", "--runs-dir", str(runs), *extra]


# -- 1. the canary ------------------------------------------------------------------------------


def test_a_failing_canary_stops_the_rollout_before_any_other_host_is_changed(tmp_path: Path) -> None:
    with LabFleet.build(6, seed=31, profile=PROFILE) as fleet:
        canary = fleet.hosts[2]
        refuse_step(canary, "loopback_config")
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--yes", "--canary", canary.name,
                                      "--waves", "2"))
        assert code == 3, dump(doc)
        assert doc["ending"] == "aborted"
        assert doc["waves"][0] == {"name": "canary", "hosts": [canary.name]}
        entry = doc["hosts"][canary.name]
        assert entry["status"] == "failed" and entry["failed_step"] == "loopback_config"
        others = [h for h in fleet if h is not canary]
        assert {h.name: doc["hosts"][h.name]["status"] for h in others} == {h.name: "aborted" for h in others}
        assert {h.name: sent(h) for h in others} == {h.name: {"facts"} for h in others}
        assert "loopback_config" in sent(canary)
        gate = doc["gates"][-1]
        assert gate["wave"] == "canary" and gate["go_on"] is False
        assert "canary allows (none)" in gate["reasons"][0]


# -- 2. waves and --max-failures ------------------------------------------------------------------


def test_one_failure_within_max_failures_goes_on(tmp_path: Path) -> None:
    with LabFleet.build(7, seed=32, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        names = [h.name for h in fleet]
        victim = fleet.hosts[1]  # the canary is the first host; wave 1 is the next two
        refuse_step(victim, "weak_host")
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--yes", "--waves", "2", "--max-failures", "1"))
        assert code == 1, dump(doc)
        assert doc["ending"] == "finished"
        assert [w["hosts"] for w in doc["waves"]] == [names[:1], names[1:3], names[3:5], names[5:7]]
        assert doc["hosts"][victim.name]["status"] == "failed"
        assert doc["hosts"][victim.name]["failed_step"] == "weak_host"
        assert {n: s for n, s in statuses(doc).items() if n != victim.name} == {
            n: "changed" for n in names if n != victim.name}
        assert [g["go_on"] for g in doc["gates"]] == [True, True, True, True]


@pytest.mark.parametrize(("max_failures", "failures", "goes_on"), [
    ("1", 2, False),  # both hosts of wave 1 fail: 2 > 1
    ("50%", 1, True),  # 50% of a wave of 2 is 1 host
    ("49%", 1, False),  # rounded down: 0 hosts
])
def test_max_failures_per_wave(tmp_path: Path, max_failures: str, failures: int, goes_on: bool) -> None:
    with LabFleet.build(7, seed=33, profile=PROFILE) as fleet:
        names = [h.name for h in fleet]
        victims = fleet.hosts[1:1 + failures]  # wave 1 is hosts 1 and 2
        for victim in victims:
            refuse_step(victim, "loopback")
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--yes", "--waves", "2",
                                      "--max-failures", max_failures))
        got = statuses(doc)
        assert {v.name: got[v.name] for v in victims} == {v.name: "failed" for v in victims}, dump(doc)
        later = fleet.hosts[3:]
        if goes_on:
            assert code == 1 and doc["ending"] == "finished", dump(doc)
            assert {n: s for n, s in got.items() if s != "failed"} == {
                n: "changed" for n in names if n not in {v.name for v in victims}}
        else:
            assert code == 3 and doc["ending"] == "aborted", dump(doc)
            assert got[names[0]] == "changed"
            assert {h.name: got[h.name] for h in later} == {h.name: "aborted" for h in later}
            assert {h.name: sent(h) for h in later} == {h.name: {"facts"} for h in later}
            assert doc["gates"][-1]["wave"] == "wave 1" and doc["gates"][-1]["go_on"] is False
            assert f"--max-failures {max_failures}" in doc["gates"][-1]["reasons"][0]


# -- 3. --max-unreachable, apart from failures ------------------------------------------------------


def test_unreachable_hosts_have_their_own_threshold(tmp_path: Path) -> None:
    fleet = LabFleet.build(4, seed=34, profile=PROFILE)
    lost = fleet.hosts[2]
    lost.model.faults.unreachable = True
    with fleet:
        names = [h.name for h in fleet]
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs = tmp_path / "runs"
        code, doc = cli(*rollout_args(inventory, runs, "--yes", "--max-failures", "5"))
        assert code == 3, dump(doc)
        assert doc["ending"] == "aborted"
        assert doc["gates"] == [{"wave": "preflight", "go_on": False, "reasons": doc["gates"][0]["reasons"]}]
        assert "unreachable" in doc["gates"][0]["reasons"][0]
        assert statuses(doc) == {n: ("unreachable" if n == lost.name else "aborted") for n in names}
        assert {h.name: sent(h) for h in fleet if h is not lost} == {h.name: {"facts"} for h in fleet
                                                                    if h is not lost}

        code, doc = cli(*rollout_args(inventory, runs, "--yes", "--max-failures", "5", "--max-unreachable", "1"))
        assert code == 1, dump(doc)
        assert doc["ending"] == "finished"
        assert statuses(doc) == {n: ("unreachable" if n == lost.name else "changed") for n in names}
        assert all(lost.name not in w["hosts"] for w in doc["waves"])


# -- 4. approvals ---------------------------------------------------------------------------------


def test_approvals_at_the_terminal(tmp_path: Path) -> None:
    with LabFleet.build(3, seed=35, profile=PROFILE) as fleet:
        names = [h.name for h in fleet]
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs = tmp_path / "runs"
        terminal = Deps(terminal=True)

        # No before the first change: nothing anywhere, and run.json says so.
        code, doc = cli(*rollout_args(inventory, runs), obj=terminal, input="n\n")
        assert code == 4, dump(doc)
        assert doc["ending"] == "declined"
        assert set(statuses(doc).values()) == {"aborted"}
        assert {h.name: sent(h) for h in fleet} == {n: {"facts"} for n in names}
        assert read_run(Path(doc["run_dir"]))["ending"] == "declined"

        # Yes, then no after the canary: the canary is changed, the rest is not touched.
        code, doc = cli(*rollout_args(inventory, runs), obj=terminal, input="y\nn\n")
        assert code == 4, dump(doc)
        assert doc["ending"] == "declined"
        canary = doc["waves"][0]["hosts"]
        assert canary == [names[0]]
        assert statuses(doc) == {n: ("changed" if n in canary else "aborted") for n in names}
        assert {h.name: sent(h) for h in fleet if h.name not in canary} == {n: {"facts"} for n in names[1:]}
        assert read_run(Path(doc["run_dir"]))["ending"] == "declined"

        # Yes twice: the rest goes (the first canary is compliant now, so the next host is the canary).
        code, doc = cli(*rollout_args(inventory, runs), obj=terminal, input="y\ny\n")
        assert code == 0, dump(doc)
        assert doc["ending"] == "finished"
        assert statuses(doc) == {names[0]: "ok", names[1]: "changed", names[2]: "changed"}


def test_prompts_stay_out_of_the_json_document(tmp_path: Path) -> None:
    """`rollout --json > out.json` at a terminal: the questions must reach the person (stderr), not
    the file that should hold one JSON document."""
    with LabFleet.build(1, seed=35, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        result = invoke("rollout", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"),
                        obj=Deps(terminal=True), input="n\n")
        assert result.exit_code == 4, result.output
        assert "Roll out to" in result.stderr, result.output
        assert "Roll out to" not in result.stdout, result.stdout[:300]


def test_no_terminal_and_no_yes_is_refused_before_anything(tmp_path: Path) -> None:
    with LabFleet.build(2, seed=35, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs, run_dir = tmp_path / "runs", tmp_path / "elsewhere" / "run1"
        for extra in ((), ("--run-dir", str(run_dir))):
            result = invoke("rollout", str(inventory), "--runs-dir", str(runs), *extra, obj=Deps(terminal=False))
            assert result.exit_code == 2, result.output
            assert "--yes" in result.stderr
            assert not runs.exists() and not run_dir.exists()
        assert all(not h.counters.steps for h in fleet)


# -- 5. the gate command -------------------------------------------------------------------------


def gate_script(tmp_path: Path, code: int) -> tuple[str, Path]:
    """A gate command that records the environment it ran with, one JSON line per run, then exits `code`."""
    record = tmp_path / "gate.jsonl"
    script = tmp_path / "gate.py"
    script.write_text(
        "import json, os, sys\n"
        f"with open({str(record)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps({k: os.environ.get(k) for k in\n"
        "        ('DSRPREP_RUN_DIR', 'DSRPREP_WAVE', 'DSRPREP_WAVE_HOSTS')}) + '\\n')\n"
        f"print('pool check: 1 member down')\nsys.exit({code})\n")
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}", record


def gate_runs(record: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


def test_a_failing_gate_command_stops_after_the_canary(tmp_path: Path) -> None:
    with LabFleet.build(4, seed=36, profile=PROFILE) as fleet:
        names = [h.name for h in fleet]
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        command, record = gate_script(tmp_path, 3)
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--yes", "--gate-command", command))
        assert code == 3, dump(doc)
        assert doc["ending"] == "aborted"
        assert gate_runs(record) == [{"DSRPREP_RUN_DIR": doc["run_dir"], "DSRPREP_WAVE": "canary",
                                      "DSRPREP_WAVE_HOSTS": names[0]}]
        assert statuses(doc) == {n: ("changed" if n == names[0] else "aborted") for n in names}
        assert {h.name: sent(h) for h in fleet.hosts[1:]} == {n: {"facts"} for n in names[1:]}
        gate = doc["gates"][-1]
        assert gate["wave"] == "canary" and not gate["go_on"]
        assert "--gate-command exited 3" in gate["reasons"][0] and "1 member down" in gate["reasons"][0]


def test_rollback_on_abort_undoes_the_wave_the_gate_stopped(tmp_path: Path) -> None:
    with LabFleet.build(5, seed=37, profile=PROFILE) as fleet:
        names = [h.name for h in fleet]
        original = {h.name: parse_facts(h.model.facts()).to_dict() for h in fleet}
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        command, record = gate_script(tmp_path, 3)
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--yes", "--canary", "2",
                                      "--gate-command", command, "--rollback-on-abort"))
        assert code == 3, dump(doc)
        assert doc["ending"] == "aborted"
        canary = names[:2]
        assert doc["waves"][0] == {"name": "canary", "hosts": canary}
        assert [r["DSRPREP_WAVE_HOSTS"] for r in gate_runs(record)] == [" ".join(canary)]
        assert statuses(doc) == {n: ("rolled_back" if n in canary else "aborted") for n in names}
        for handle in fleet:
            assert parse_facts(handle.model.facts()).to_dict() == original[handle.name], handle.name
        assert {h.name: sent(h) for h in fleet.hosts[2:]} == {n: {"facts"} for n in names[2:]}


# -- 6. --check and plan -------------------------------------------------------------------------


def test_check_changes_nothing_and_shows_the_waves(tmp_path: Path) -> None:
    with LabFleet.build(5, seed=38, profile=PROFILE) as fleet:
        names = [h.name for h in fleet]
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        expected = [{"name": "canary", "hosts": names[:2]}, {"name": "wave 1", "hosts": names[2:4]},
                    {"name": "wave 2", "hosts": names[4:]}]
        code, doc = cli(*rollout_args(inventory, tmp_path / "runs", "--check", "--canary", "2", "--waves", "2"))
        assert code == 0, dump(doc)
        assert doc["ending"] == "finished" and doc["waves"] == expected
        assert set(statuses(doc).values()) == {"changes"}
        assert {h.name: sent(h) for h in fleet} == {n: {"facts"} for n in names}

        code, doc = cli("plan", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"),
                        "--canary", "2", "--waves", "2")
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        assert doc["waves"] == expected
        assert {h.name: sent(h) for h in fleet} == {n: {"facts"} for n in names}


# -- 7. host locks --------------------------------------------------------------------------------


def test_a_host_held_by_another_run_refuses_the_rollout(tmp_path: Path) -> None:
    with LabFleet.build(2, seed=39, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs = tmp_path / "runs"
        other_run = "20260101T000000.000Z-0badc0"
        held = acquire(runs, run_id=other_run, command="rollout", hosts=[fleet.hosts[1].name])
        try:
            result = invoke("rollout", str(inventory), "--yes", "--runs-dir", str(runs))
            assert result.exit_code == 2, result.output
            assert other_run in result.stderr and fleet.hosts[1].name in result.stderr
            assert all(set(h.counters.steps) <= {"facts"} for h in fleet)
        finally:
            held.release()
        code, doc = cli(*rollout_args(inventory, runs, "--yes"))
        assert code == 0, dump(doc)


def test_a_run_dir_elsewhere_still_respects_the_locks_of_the_runs_folder(tmp_path: Path) -> None:
    """--run-dir says where this run's log goes; the hosts' locks are still those of --runs-dir, where
    every other rollout over them looks."""
    with LabFleet.build(1, seed=39, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs = tmp_path / "runs"
        other_run = "20260101T000000.000Z-0badc1"
        held = acquire(runs, run_id=other_run, command="rollout", hosts=[fleet.hosts[0].name])
        try:
            result = invoke("rollout", str(inventory), "--yes", "--runs-dir", str(runs),
                            "--run-dir", str(tmp_path / "ci" / "run-42"))
            assert result.exit_code == 2, result.output
            assert other_run in result.stderr
            assert set(fleet.hosts[0].counters.steps) <= {"facts"}
        finally:
            held.release()
