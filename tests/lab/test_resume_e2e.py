"""A rollout killed with SIGKILL at several points and then resumed, and `rerun --failed`, end to end.

The rollout must die as a separate OS process while the lab fleet lives on, so the fleet runs as
`python -m orchestrator lab serve` and the rollout and the resume as `python -m orchestrator ...`,
each in its own subprocess. What the hosts are like before and after is read through the CLI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.fleet import LabFleet
from orchestrator.rolloutlog import Event, read_host_log, read_run
from tests.clijson import cli

pytestmark = pytest.mark.lab

HOSTS = 7  # with --waves 2: the canary, then three waves of two
PROFILE = "mixed"  # every OS family in turn: 2003, 2008, 2008 R2, 2012, ...
SEED = 17
ROLLOUT_TIMEOUT = 60.0


def dsrprep(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def serving(inventory: Path) -> bool:
    """Whether the fleet's inventory is there, whole (it is not written atomically)."""
    try:
        data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False
    groups = (data or {}).get("all", {}).get("children", {}) if isinstance(data, dict) else {}
    return sum(len(g.get("hosts") or {}) for g in groups.values()) == HOSTS


@contextmanager
def lab_serve(tmp_path: Path) -> Iterator[Path]:
    """A lab fleet in its own process; its inventory file once it serves. Stopped (or killed) on exit."""
    inventory = tmp_path / "lab.yml"
    proc = subprocess.Popen(
        dsrprep("lab", "serve", "--hosts", str(HOSTS), "--seed", str(SEED), "--profile", PROFILE,
                "--inventory-out", str(inventory)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not serving(inventory):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the lab fleet did not write its inventory"
            time.sleep(0.05)
        yield inventory
        assert proc.poll() is None, "the lab fleet did not outlive the rollout"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def loopbacks(inventory: Path, runs: Path) -> dict[str, dict[str, Any]]:
    """Per host: how many msloop adapters it has, and how many of them are the one dsrprep's marker names."""
    code, doc = cli("facts", str(inventory), "--json", "--runs-dir", str(runs))
    assert code == 0, json.dumps(doc, indent=1)[:3000]
    found = {}
    for name, entry in doc["hosts"].items():
        facts = entry["facts"]
        msloop = [a for a in facts["adapters"] if a["is_loopback"]]
        marked = facts["marker"].get("LoopbackPnpId", "")
        found[name] = {"loopbacks": len(msloop),
                       "marked": sum(1 for a in msloop if marked and a["pnp_device_id"].lower() == marked.lower())}
    return found


def step_started(run_dir: Path, hosts: list[str] | None, step: str | None) -> bool:
    """Whether the log of one of `hosts` (None: any host) shows a step_start line (of `step`, or any)."""
    hosts_dir = run_dir / "hosts"
    if not hosts_dir.is_dir():
        return False
    for path in hosts_dir.glob("*.jsonl"):
        if hosts is not None and path.stem not in hosts:
            continue
        for event in read_host_log(path).events:
            if event.get("event") == Event.STEP_START and (step is None or event.get("step") == step):
                return True
    return False


def second_wave_started(run_dir: Path) -> bool:
    """A host of `wave 2` (the third wave after the canary and wave 1) has begun its steps."""
    try:
        waves = read_run(run_dir).get("waves") or []
    except (OSError, ValueError):
        return False
    later = [w["hosts"] for w in waves if w["name"] == "wave 2"]
    return bool(later) and step_started(run_dir, list(later[0]), None)


def finished_logs(run_dir: Path) -> dict[str, str]:
    """The log of every host whose rollout has ended (a host_done line of the rollout), by host."""
    logs = {}
    for path in (run_dir / "hosts").glob("*.jsonl"):
        if any(e.get("event") == Event.HOST_DONE and e.get("step") == "rollout" for e in read_host_log(path).events):
            logs[path.stem] = path.read_text()
    return logs


KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "loopback": lambda run_dir: step_started(run_dir, None, "loopback"),
    "loopback_config": lambda run_dir: step_started(run_dir, None, "loopback_config"),
    "wave_2": second_wave_started,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_resume_finishes_the_same_waves(tmp_path: Path, point: str) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "killed"
    with lab_serve(tmp_path) as inventory:
        before = loopbacks(inventory, tmp_path / "facts")
        proc = subprocess.Popen(
            dsrprep("rollout", str(inventory), "--yes", "--json", "--run-dir", str(run_dir), "--waves", "2"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            deadline = time.monotonic() + ROLLOUT_TIMEOUT
            reached = KILL_POINTS[point]
            while not reached(run_dir):
                if proc.poll() is not None:
                    _out, err = proc.communicate()
                    pytest.fail(f"the rollout ended (exit {proc.returncode}) before {point}:\n{err[-3000:]}")
                assert time.monotonic() < deadline, f"the rollout did not reach {point} in {ROLLOUT_TIMEOUT:.0f} s"
                time.sleep(0.01)
            proc.kill()
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        killed = read_run(run_dir)
        assert killed["state"] == "running"  # nobody had the chance to say otherwise
        waves_at_kill = killed["waves"]
        assert [w["name"] for w in waves_at_kill] == ["canary", "wave 1", "wave 2", "wave 3"]
        finished = finished_logs(run_dir)
        if point == "wave_2":
            assert set(finished) >= {h for w in waves_at_kill[:2] for h in w["hosts"]}

        done = subprocess.run(dsrprep("resume", str(run_dir), "--yes", "--json"), capture_output=True, text=True,
                              timeout=ROLLOUT_TIMEOUT)
        assert done.returncode == 0, f"{done.stderr[-3000:]}\n{done.stdout[-3000:]}"
        doc = json.loads(done.stdout)
        assert "took over the lock of run killed" in done.stderr  # the killed process's own locks
        assert doc["ending"] == "finished"
        assert set(doc["hosts"]) == {h for w in waves_at_kill for h in w["hosts"]}
        assert {n: e["status"] for n, e in doc["hosts"].items() if e["status"] not in ("ok", "changed")} == {}
        assert doc["waves"] == waves_at_kill
        resumed = read_run(run_dir)
        assert resumed["waves"] == waves_at_kill
        assert resumed["state"] == "finished" and resumed["ending"] == "finished"

        # Hosts that had ended before the kill were not run again: their logs did not grow.
        assert {h: (run_dir / "hosts" / f"{h}.jsonl").read_text() for h in finished} == finished

        code, plan = cli("plan", str(inventory), "--json", "--runs-dir", str(tmp_path / "plans"))
        assert code == 0
        assert {n: e["status"] for n, e in plan["hosts"].items()} == {n: "compliant" for n in plan["hosts"]}

        after = loopbacks(inventory, tmp_path / "facts")
        assert {n: a["marked"] for n, a in after.items()} == {n: 1 for n in after}, after
        gained = {n: after[n]["loopbacks"] - before[n]["loopbacks"] for n in after}
        assert all(g in (0, 1) for g in gained.values()), (before, after)


def test_rerun_failed_runs_only_the_host_that_failed(tmp_path: Path) -> None:
    fleet = LabFleet.build(3, seed=18, profile="2012r2")
    victim = fleet.hosts[1]
    victim.model.elevated = False
    with fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs = tmp_path / "runs"
        code, first = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(runs),
                          "--max-failures", "1")
        assert code == 1, json.dumps(first, indent=1)[:3000]
        assert first["hosts"][victim.name]["status"] == "failed"
        assert first["hosts"][victim.name]["failed_step"] == "preflight"
        assert {n: e["status"] for n, e in first["hosts"].items() if n != victim.name} == {
            h.name: "changed" for h in fleet if h is not victim}
        counts = {h.name: dict(h.counters.steps) for h in fleet if h is not victim}

        victim.model.elevated = True  # what the admin fixes before running it again
        code, again = cli("rerun", "--failed", first["run_dir"], "--yes", "--json", "--runs-dir", str(runs))
        assert code == 0, json.dumps(again, indent=1)[:3000]
        assert again["run_id"] != first["run_id"]
        assert {n: e["status"] for n, e in again["hosts"].items()} == {victim.name: "changed"}
        assert again["waves"] == [{"name": "canary", "hosts": [victim.name]}]
        record = read_run(Path(again["run_dir"]))
        assert record["hosts"] == [victim.name] and record["rerun_of"] == first["run_id"]
        # The hosts that had succeeded were not contacted at all.
        assert {h.name: dict(h.counters.steps) for h in fleet if h is not victim} == counts
