"""Ctrl-C during a rollout, sent to a real dsrprep process talking to lab hosts over PSRP: the first
stops starting hosts and lets steps in flight finish; a second leaves at once. Either way every host
is accounted for, the locks are released, and `resume` finishes the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator.lab.fleet import LabFleet
from orchestrator.rolloutlog import Event, read_host_log, read_run

pytestmark = pytest.mark.lab


def start(inventory: Path, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "rollout", str(inventory), "--yes", "--json", "--waves", "100%",
         "--forks", "2", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_steps(run_dir: Path, proc: subprocess.Popen[str], count: int, deadline: float) -> None:
    """Until `count` step_start lines are in the run's host logs (the rollout is in its waves)."""
    while True:
        logs = list((run_dir / "hosts").glob("*.jsonl")) if (run_dir / "hosts").is_dir() else []
        started = sum(1 for p in logs for e in read_host_log(p).events if e["event"] == Event.STEP_START)
        if started >= count:
            return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rollout did not reach its waves in time"
        time.sleep(0.05)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def open_steps(run_dir: Path) -> list[str]:
    """Hosts whose log ends a step started and never finished."""
    unfinished = []
    for path in (run_dir / "hosts").glob("*.jsonl"):
        events = [e["event"] for e in read_host_log(path).events if e["event"] in (Event.STEP_START, Event.STEP_RESULT)]
        if events and events[-1] == Event.STEP_START:
            unfinished.append(path.stem)
    return unfinished


def resume(run_dir: Path) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-m", "orchestrator", "resume", str(run_dir), "--yes", "--json"],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {h: e["status"] for h, e in json.loads(done.stdout)["hosts"].items()}


@pytest.mark.parametrize("latency", [0.05])
def test_first_ctrl_c_lets_steps_in_flight_finish(tmp_path: Path, latency: float) -> None:
    with LabFleet.build(6, seed=5, profile="2016") as fleet:
        for handle in fleet.hosts:
            handle.model.faults.latency = latency
        inventory, run_dir = tmp_path / "lab.yml", tmp_path / "runs" / "r1"
        fleet.write_inventory(inventory)
        proc = start(inventory, run_dir)
        wait_for_steps(run_dir, proc, 12, time.monotonic() + 90)
        proc.send_signal(signal.SIGINT)
        code, out, err = finish(proc, 120)
        assert code == 130, err[-2000:]
        record = read_run(run_dir)
        assert record["state"] == "interrupted" and record["ending"] == "interrupted"
        statuses = json.loads(out)["hosts"]
        assert sorted(statuses) == sorted(h.name for h in fleet.hosts)  # every host accounted for
        assert "interrupted" in {e["status"] for e in statuses.values()}
        assert open_steps(run_dir) == []  # the steps in flight finished
        assert not list((tmp_path / "runs" / ".locks" / "hosts").glob("*.lock"))
        assert set(resume(run_dir).values()) <= {"ok", "changed"}


def test_second_ctrl_c_leaves_at_once(tmp_path: Path) -> None:
    with LabFleet.build(4, seed=6, profile="2019") as fleet:
        for handle in fleet.hosts:
            handle.model.faults.latency = 0.05
        inventory, run_dir = tmp_path / "lab.yml", tmp_path / "runs" / "r2"
        fleet.write_inventory(inventory)
        proc = start(inventory, run_dir)
        wait_for_steps(run_dir, proc, 8, time.monotonic() + 90)
        for handle in fleet.hosts:  # from now on every request takes long: steps in flight would too
            handle.model.faults.latency = 3.0
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code, _out, err = finish(proc, 60)
        assert code == 130, err[-2000:]
        assert time.monotonic() - sent < 5, "the second Ctrl-C did not leave at once"
        record = read_run(run_dir)
        assert record["state"] == "interrupted"
        assert sorted(record["outcomes"]) == sorted(h.name for h in fleet.hosts)
        assert not list((tmp_path / "runs" / ".locks" / "hosts").glob("*.lock"))
        for handle in fleet.hosts:
            handle.model.faults.latency = 0.0
        assert set(resume(run_dir).values()) <= {"ok", "changed"}
