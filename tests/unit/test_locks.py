"""Lock files: one run at a time per host, stale locks taken over with a warning, racing processes never share."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.locks import (
    HeldLocks,
    LockHeld,
    LockRecord,
    Verdict,
    acquire,
    host_lock_path,
    inspect,
    live_holder,
)

ROOT = Path(__file__).resolve().parents[2]
HAS_PROC = Path(f"/proc/{os.getpid()}/stat").exists()
ME = socket.gethostname()


def take(runs: Path, run_id: str, *hosts: str, **kw: Any) -> HeldLocks:
    return acquire(runs, run_id=run_id, command="rollout", hosts=list(hosts), **kw)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    return proc.pid


def my_start_ticks() -> int:
    text = Path(f"/proc/{os.getpid()}/stat").read_text()
    return int(text[text.rfind(")") + 2:].split()[19])


def record(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"run_id": "old-run", "pid": os.getpid(), "host": ME,
                            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": "rollout"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def plant(runs: Path, host: str, content: str | dict[str, Any], age: float = 0.0) -> Path:
    path = host_lock_path(runs, host)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


# --- two runs over the same hosts -----------------------------------------------------------------


def test_a_second_run_over_an_overlapping_host_is_refused_naming_the_first(runs: Path) -> None:
    first = take(runs, "20261201T120000.123Z-ab12cd", "web02", "web03")
    with pytest.raises(LockHeld) as caught:
        take(runs, "second", "web03", "web04")
    path = host_lock_path(runs, "web03")
    assert str(caught.value) == (
        f"host web03 is held by run 20261201T120000.123Z-ab12cd (rollout, pid {os.getpid()} on {ME}, "
        f"since {first.record.started}): wait for it to end, or remove {path} if that process is gone")
    assert caught.value.error_class == "LockHeld"
    assert caught.value.hosts == ("web03",) and caught.value.run_ids == ("20261201T120000.123Z-ab12cd",)
    assert not host_lock_path(runs, "web04").exists(), "all or none: the free host was not taken"
    assert json.loads(path.read_text())["run_id"] == "20261201T120000.123Z-ab12cd"


def test_several_held_hosts_make_one_message_grouped_by_run(runs: Path) -> None:
    a = take(runs, "run-a", "web01", "web02")
    b = take(runs, "run-b", "web03")
    with pytest.raises(LockHeld) as caught:
        take(runs, "run-c", "web01", "web02", "web03", "web04")
    lock = host_lock_path
    assert str(caught.value) == (
        f"hosts web01, web02 are held by run run-a (rollout, pid {os.getpid()} on {ME}, since {a.record.started}): "
        f"wait for it to end, or remove {lock(runs, 'web01')}, {lock(runs, 'web02')} if that process is gone; "
        f"host web03 is held by run run-b (rollout, pid {os.getpid()} on {ME}, since {b.record.started}): "
        f"wait for it to end, or remove {lock(runs, 'web03')} if that process is gone")
    assert caught.value.run_ids == ("run-a", "run-b")


def test_disjoint_hosts_are_taken_by_both_runs(runs: Path) -> None:
    a = take(runs, "run-a", "web01", "web02")
    b = take(runs, "run-b", "web03")
    assert a.warnings == [] and b.warnings == []
    assert {p.name for p in (runs / ".locks" / "hosts").iterdir()} == {"web01.lock", "web02.lock", "web03.lock"}


def test_host_names_are_locked_case_insensitively(runs: Path) -> None:
    take(runs, "run-a", "WEB01.corp.example")
    with pytest.raises(LockHeld, match="run-a"):
        take(runs, "run-b", "web01.corp.example")


def test_the_lock_file_says_who_holds_it(runs: Path) -> None:
    held = take(runs, "run-a", "web01")
    data = json.loads(host_lock_path(runs, "web01").read_text())
    assert data["run_id"] == "run-a" and data["pid"] == os.getpid() and data["host"] == ME
    assert data["command"] == "rollout" and data["started"].endswith("Z")
    assert LockRecord.parse(host_lock_path(runs, "web01").read_bytes()) == held.record


# --- release --------------------------------------------------------------------------------------


def test_release_removes_only_its_own_files_and_is_idempotent(runs: Path) -> None:
    a = take(runs, "run-a", "web01", "web02")
    b = take(runs, "run-b", "web03")
    # web02's lock was taken over by another run since (as if run-a had been judged dead): not ours any more.
    plant(runs, "web02", record(run_id="run-z"))
    a.release()
    a.release()
    assert not host_lock_path(runs, "web01").exists()
    assert json.loads(host_lock_path(runs, "web02").read_text())["run_id"] == "run-z"
    assert host_lock_path(runs, "web03").exists()
    b.release()
    assert not host_lock_path(runs, "web03").exists()


def test_the_context_manager_releases_and_the_hosts_are_free_again(runs: Path) -> None:
    with take(runs, "run-a", "web01") as held:
        assert held.paths == (host_lock_path(runs, "web01"),)
    with take(runs, "run-b", "web01") as again:
        assert again.warnings == []


# --- stale or held: what an existing lock file means ----------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    content: Callable[[], str | dict[str, Any]]
    age: float  # seconds since the file was last written
    taken: bool  # True: taken over with a warning; False: refused
    says: str  # in the warning, or in the LockHeld message


CASES = [
    Case("dead pid", lambda: record(pid=DEAD), 0, True,
         "host web01: took over the lock of run old-run (pid {DEAD}, no longer running)"),
    Case("another machine, even with a dead pid", lambda: record(host="controller-2.example", pid=DEAD), 60, False,
         "taken on another machine so it is never taken over from here"),
    Case("unparseable and old", lambda: '{"run_id": "old-r', 10, True, "removed an unreadable lock file"),
    Case("empty and old", lambda: "", 10, True, "removed an unreadable lock file"),
    Case("unparseable but fresh", lambda: '{"run_id": "old-r', 0, False, "still being written"),
    Case("a pid that is not a pid", lambda: record(pid=0), 10, True, "removed an unreadable lock file"),
    Case("a live pid without a start time", lambda: record(), 0, False, "held by run old-run"),
]
PROC_CASES = [
    Case("live pid, same start", lambda: record(proc_start=my_start_ticks()), 0, False, "held by run old-run"),
    Case("live pid, another start (pid reused)", lambda: record(proc_start=my_start_ticks() + 1000), 0, True,
         "took over the lock of run old-run (pid {ME_PID}, now another process)"),
    Case("live pid that began after the lock was written", lambda: record(started="2000-01-01T00:00:00Z"), 0, True,
         "(pid {ME_PID}, now another process)"),
]
DEAD = 0  # set once per session: a pid that has exited and been reaped


@pytest.fixture(scope="module", autouse=True)
def _dead_pid() -> Iterator[None]:
    global DEAD
    DEAD = dead_pid()
    yield


def run_case(runs: Path, case: Case) -> None:
    path = plant(runs, "web01", case.content(), age=case.age)
    says = case.says.replace("{DEAD}", str(DEAD)).replace("{ME_PID}", str(os.getpid()))
    if case.taken:
        held = take(runs, "new-run", "web01", grace=5.0)
        assert len(held.warnings) == 1 and says in held.warnings[0], held.warnings
        assert json.loads(path.read_text())["run_id"] == "new-run"
    else:
        before = path.read_bytes()
        with pytest.raises(LockHeld) as caught:
            take(runs, "new-run", "web01", grace=5.0)
        assert says in str(caught.value) and str(path) in str(caught.value)
        assert path.read_bytes() == before, "a held lock is left as it was"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_an_existing_lock_is_taken_over_or_refused(runs: Path, case: Case) -> None:
    run_case(runs, case)


@pytest.mark.skipif(not HAS_PROC, reason="process start times come from /proc")
@pytest.mark.parametrize("case", PROC_CASES, ids=lambda c: c.name)
def test_a_live_pid_holds_only_if_it_is_the_process_that_wrote_the_lock(runs: Path, case: Case) -> None:
    run_case(runs, case)


@pytest.mark.skipif(not HAS_PROC, reason="zombies are seen in /proc")
def test_an_exited_process_not_yet_reaped_holds_nothing(runs: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/stat").read_text().split(")")[-1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        found = inspect(plant(runs, "web01", record(pid=proc.pid)), "web01")
        assert found is not None and found.verdict is Verdict.DEAD
    finally:
        proc.wait(timeout=5)


def test_only_a_stale_lock_is_touched_when_another_host_is_held(runs: Path) -> None:
    take(runs, "run-a", "web02")
    stale = plant(runs, "web01", record(pid=DEAD))
    with pytest.raises(LockHeld, match="host web02 is held by run run-a"):
        take(runs, "new-run", "web01", "web02")
    assert json.loads(stale.read_text())["pid"] == DEAD, "all or none: nothing was taken over either"


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"{}", b"not json", b"\xff\xfe",
    json.dumps(record(pid=True)).encode(), json.dumps(record(pid="42")).encode(),
    json.dumps(record(pid=-1)).encode(), json.dumps(record(started="yesterday")).encode(),
    json.dumps(record(run_id=None)).encode(), json.dumps(record(proc_start="12")).encode(),
])
def test_a_malformed_record_is_no_record(raw: bytes) -> None:
    assert LockRecord.parse(raw) is None


# --- resume after a crash -------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from orchestrator.locks import acquire
acquire(Path(sys.argv[1]), run_id="run-x", command="rollout", hosts=["web01", "web02"])
print("ready", flush=True)
time.sleep(60)
"""


def test_a_resume_takes_over_the_locks_of_its_own_killed_run(runs: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(runs)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with pytest.raises(LockHeld, match=f"held by run run-x \\(rollout, pid {proc.pid} "):
            acquire(runs, run_id="run-x", command="resume", hosts=["web01"])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    held = acquire(runs, run_id="run-x", command="resume", hosts=["web01", "web02"])
    assert held.warnings == [f"host web01: took over the lock of run run-x (pid {proc.pid}, no longer running)",
                             f"host web02: took over the lock of run run-x (pid {proc.pid}, no longer running)"]
    assert json.loads(host_lock_path(runs, "web02").read_text())["command"] == "resume"


# --- the runs folder lock -------------------------------------------------------------------------


def hold_runs_folder(runs: Path) -> Any:
    path = runs / ".locks" / "run.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = path.open("a+b")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    fh.write(json.dumps(record(run_id="busy-run")).encode())
    fh.flush()
    return fh


def test_a_runs_folder_kept_locked_is_refused_after_the_wait_naming_the_holder(runs: Path) -> None:
    fh = hold_runs_folder(runs)
    try:
        started = time.monotonic()
        with pytest.raises(LockHeld) as caught:
            take(runs, "run-a", "web01", wait=0.2)
        assert 0.2 <= time.monotonic() - started < 2
        assert str(caught.value).startswith(f"the runs folder {runs} is locked by run busy-run (rollout, pid ")
        assert str(caught.value).endswith("still taking its host locks after 0.2 s: try again, or stop that process "
                                          "if it hangs")
        assert caught.value.run_ids == ("busy-run",)
        assert not host_lock_path(runs, "web01").exists()
    finally:
        fh.close()


def test_a_runs_folder_lock_released_within_the_wait_is_taken(runs: Path) -> None:
    fh = hold_runs_folder(runs)
    threading.Timer(0.2, fh.close).start()
    held = take(runs, "run-a", "web01", wait=3.0)
    assert held.paths == (host_lock_path(runs, "web01"),)
    assert (runs / ".locks" / "run.lock").read_bytes() == b"", "the holder's record is cleared on release"


# --- processes racing -----------------------------------------------------------------------------


def race_worker(runs: str, run_id: str, hosts: list[str], start: Any, done: Any, out: Any) -> None:
    start.wait(timeout=30)
    try:
        held = acquire(Path(runs), run_id=run_id, command="rollout", hosts=hosts, wait=20)
    except LockHeld as exc:
        out.put((run_id, "refused", str(exc)))
        done.wait(timeout=30)
        return
    out.put((run_id, "won", held.warnings))
    done.wait(timeout=30)  # hold the locks until every racer has tried
    held.release()


@pytest.mark.parametrize("stale_first", [False, True], ids=["free", "stale lock to take over"])
def test_racing_processes_never_both_hold_a_host(runs: Path, stale_first: bool) -> None:
    if stale_first:
        plant(runs, "shared", record(pid=DEAD))
    ctx = multiprocessing.get_context("spawn")
    n = 4
    start, done, out = ctx.Barrier(n), ctx.Barrier(n + 1), ctx.Queue()
    procs = [ctx.Process(target=race_worker, args=(str(runs), f"run-{i}", [f"own{i}", "shared"], start, done, out))
             for i in range(n)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
        winners = [r for r in results if r[1] == "won"]
        assert len(winners) == 1, results
        winner = winners[0][0]
        assert json.loads(host_lock_path(runs, "shared").read_text())["run_id"] == winner
        assert all(f"held by run {winner} " in r[2] for r in results if r[1] == "refused")
        assert winners[0][2] == ([f"host shared: took over the lock of run old-run (pid {DEAD}, no longer running)"]
                                 if stale_first else [])
        done.wait(timeout=30)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0] * n
    assert sorted(p.name for p in (runs / ".locks" / "hosts").iterdir()) == [], "every winner released"


# --- whether a run still runs (rollback asks) ---------------------------------------------------------


def test_a_run_holding_a_host_is_live_and_a_dead_or_other_one_is_not(runs: Path) -> None:
    with take(runs, "r-live", "web01", "web02"):
        holder = live_holder(runs, "r-live", ["web02", "web03"])
        assert holder is not None and holder.run_id == "r-live" and holder.pid == os.getpid()
        assert live_holder(runs, "r-other", ["web01", "web02"]) is None
    assert live_holder(runs, "r-live", ["web01", "web02"]) is None  # released when it ended
    plant(runs, "web01", record(run_id="r-killed", pid=dead_pid()))
    assert live_holder(runs, "r-killed", ["web01"]) is None
    plant(runs, "web02", record(run_id="r-elsewhere", host="another-machine"))
    assert live_holder(runs, "r-elsewhere", ["web02"]) is not None  # cannot be judged from here
