"""Ctrl-C, SIGTERM and SIGHUP during a rollout, sent to a real dsrprep process talking to lab hosts
over PSRP: the first request stops starting hosts and lets steps in flight finish; a second one
leaves without waiting for them, and any number after it changes nothing. Either way run.json has
every host's outcome, every host log ends in its final line, the locks are released, and `resume`
finishes the run."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestrator.lab.fleet import LabFleet
from orchestrator.rolloutlog import Event, read_host_log, read_run
from tests.signals import default_ctrl_c

pytestmark = pytest.mark.lab


def start(inventory: Path, run_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "rollout", str(inventory), "--yes", "--json", "--waves", "100%",
         "--forks", "2", "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_ctrl_c)


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


def last_events(run_dir: Path) -> dict[str, dict[str, object]]:
    """Each host log's last line."""
    return {path.stem: read_host_log(path).events[-1] for path in (run_dir / "hosts").glob("*.jsonl")}


def assert_every_host_ended(run_dir: Path, hosts: list[str], runs: Path) -> dict[str, str]:
    """run.json has an outcome for every host, every host log ends in its final line, no lock is left."""
    record = read_run(run_dir)
    assert record["state"] == "interrupted" and record["ending"] == "interrupted"
    assert sorted(record["outcomes"]) == sorted(hosts)
    assert record["summary"] and sum(record["summary"].values()) == len(hosts)
    ends = last_events(run_dir)
    assert ends, "no host log was written"
    assert {e["event"] for e in ends.values()} == {Event.HOST_DONE}, ends
    for host, end in ends.items():
        if end["step"] == "rollout":
            assert end["status"] == record["outcomes"][host]
        else:  # its wave never started it: the preflight's line is its last
            assert end["step"] == "plan" and record["outcomes"][host] == "interrupted", end
    assert not list((runs / ".locks" / "hosts").glob("*.lock"))
    return {str(h): str(s) for h, s in record["outcomes"].items()}


def slow_down(fleet: LabFleet, latency: float) -> None:
    for handle in fleet.hosts:
        handle.model.faults.latency = latency


@pytest.mark.parametrize("signals", [
    pytest.param((signal.SIGINT, signal.SIGINT), id="ctrl-c-twice"),
    pytest.param((signal.SIGINT,) * 3, id="ctrl-c-three-times"),
    pytest.param((signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGINT), id="mixed-five"),
])
def test_a_second_stop_request_leaves_without_waiting_and_keeps_the_record(
        tmp_path: Path, signals: tuple[signal.Signals, ...]) -> None:
    with LabFleet.build(4, seed=6, profile="2019") as fleet:
        slow_down(fleet, 0.05)
        inventory, runs = tmp_path / "lab.yml", tmp_path / "runs"
        run_dir = runs / "r2"
        fleet.write_inventory(inventory)
        proc = start(inventory, run_dir)
        wait_for_steps(run_dir, proc, 8, time.monotonic() + 90)
        slow_down(fleet, 3.0)  # from now on every request takes long: the steps in flight cannot finish
        for number in signals:  # quick presses: the later ones come while the run writes its record
            proc.send_signal(number)
            time.sleep(0.02)
        code, _out, err = finish(proc, 60)
        assert code == 130, err[-2000:]
        outcomes = assert_every_host_ended(run_dir, [h.name for h in fleet.hosts], runs)
        # Hosts whose requests now take seconds each were still in flight: the run left without them,
        # their logs ending in the line written for that (nothing their threads did after it).
        left = [h for h, e in last_events(run_dir).items() if e.get("abandoned")]
        assert left, "no host was left in flight"
        assert all(outcomes[host] == "interrupted" for host in left)
        slow_down(fleet, 0.0)
        assert set(resume(run_dir).values()) <= {"ok", "changed"}


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_the_first_ctrl_c(tmp_path: Path, number: signal.Signals) -> None:
    with LabFleet.build(5, seed=5, profile="2016") as fleet:
        slow_down(fleet, 0.05)
        inventory, runs = tmp_path / "lab.yml", tmp_path / "runs"
        run_dir = runs / "r3"
        fleet.write_inventory(inventory)
        proc = start(inventory, run_dir)
        wait_for_steps(run_dir, proc, 8, time.monotonic() + 90)
        proc.send_signal(number)
        code, out, err = finish(proc, 120)
        assert code == 130, err[-2000:]
        outcomes = assert_every_host_ended(run_dir, [h.name for h in fleet.hosts], runs)
        assert json.loads(out)["ending"] == "interrupted"
        assert "interrupted" in outcomes.values()
        assert open_steps(run_dir) == []  # the steps in flight finished
        assert not any(e.get("abandoned") for e in last_events(run_dir).values())


def test_a_hangup_with_the_terminal_gone_still_records_every_host(tmp_path: Path) -> None:
    """An SSH session that closes: the terminal dsrprep writes to is gone (writes to it fail), then SIGHUP."""
    with LabFleet.build(4, seed=7, profile="2012r2") as fleet:
        slow_down(fleet, 0.05)
        inventory, runs = tmp_path / "lab.yml", tmp_path / "runs"
        run_dir = runs / "r4"
        fleet.write_inventory(inventory)
        master, terminal = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "rollout", str(inventory), "--yes", "--waves", "100%",
             "--forks", "2", "--run-dir", str(run_dir)],
            stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        os.close(terminal)
        stop = threading.Event()
        drain = threading.Thread(target=_drain, args=(master, stop), daemon=True)
        drain.start()
        try:
            wait_for_steps(run_dir, proc, 8, time.monotonic() + 90)
        finally:
            stop.set()
            drain.join(timeout=10)
            os.close(master)  # the terminal is gone: what dsrprep writes to it now fails
        proc.send_signal(signal.SIGHUP)
        code, _out, _err = finish(proc, 120)
        assert code == 130
        outcomes = assert_every_host_ended(run_dir, [h.name for h in fleet.hosts], runs)
        assert "interrupted" in outcomes.values()
        assert open_steps(run_dir) == []


def _drain(fd: int, stop: threading.Event) -> None:
    """Read what dsrprep writes to its terminal until `stop`."""
    with contextlib.suppress(OSError):
        while not stop.is_set():
            if select.select([fd], [], [], 0.05)[0] and not os.read(fd, 4096):
                return
