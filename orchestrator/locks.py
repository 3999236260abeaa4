"""One rollout at a time over a host: the lock files under `<runs>/.locks/`.

A rollout, resume or rollback holds `<runs>/.locks/hosts/<host>.lock` for every host it touches,
for as long as it runs. A second one over any of the same hosts refuses at once, naming the run that
holds them. Each lock file is a small JSON object (`LockRecord`) claimed with O_CREAT|O_EXCL, so two
processes racing for the same name cannot both win.

`<runs>/.locks/run.lock` serialises the moment of taking host locks: it is held (an `flock`, which
the kernel drops when its process dies, so a crashed holder never blocks anyone) only while one
process checks and claims its host locks. That is what makes taking over a stale host lock safe:
nobody else can be removing or creating host locks at the same time. The holder writes its record
into run.lock too, so a process kept waiting can say who holds it.

A host lock is stale, and is taken over with a warning, when it was taken on this machine and its
process is gone (no such pid, or a zombie), or its pid now belongs to another process (a different
start time in /proc), or the file is unreadable and older than a grace period (a writer that died
between creating and filling it). A lock taken on another machine is never taken over: this machine
cannot tell whether that process lives. Where /proc is missing (macOS) a live pid counts as alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from orchestrator import privatefs
from orchestrator.errors import DsrError
from orchestrator.rolloutlog import host_file_name

LOCKS_DIR = ".locks"
RUNS_LOCK = "run.lock"
HOST_LOCKS_DIR = "hosts"

DEFAULT_WAIT = 5.0  # seconds to wait for another process to finish taking its host locks
DEFAULT_GRACE = 5.0  # seconds an unreadable lock file may be a writer still filling it
# A lock written without the holder's start in clock ticks is judged by wall-clock times instead:
# a process that began this long after the lock was written cannot be the one that wrote it.
START_TOLERANCE = 5.0
_POLL = 0.05
_MAX_LOCK_BYTES = 64 * 1024


class LockError(DsrError):
    """The lock files could not be read or written (permissions, a full disk, no flock support)."""


class LockHeld(LockError):
    """Another run holds the runs folder or some of the hosts; nothing was taken."""

    def __init__(self, message: str, *, hosts: Sequence[str] = (), run_ids: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.hosts = tuple(hosts)
        self.run_ids = tuple(run_ids)


@dataclass(frozen=True)
class LockRecord:
    """What a lock file says: which run, which process on which machine, since when, doing what.

    `proc_start` is the holder's start time in clock ticks since boot (/proc/<pid>/stat field 22)
    when it could be read: it tells a reused pid apart exactly, whatever the wall clock did since.
    """

    run_id: str
    pid: int
    host: str
    started: str
    command: str
    proc_start: int | None = None

    @classmethod
    def mine(cls, run_id: str, command: str) -> LockRecord:
        stat = _proc_stat(os.getpid())
        return cls(run_id=run_id, pid=os.getpid(), host=socket.gethostname(),
                   started=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), command=command,
                   proc_start=stat[1] if stat else None)

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {"run_id": self.run_id, "pid": self.pid, "host": self.host,
                                "started": self.started, "command": self.command}
        if self.proc_start is not None:
            data["proc_start"] = self.proc_start
        return (json.dumps(data, sort_keys=True) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes) -> LockRecord | None:
        """The record in `raw`, or None when it is not a complete, well-formed one."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        texts = [data.get(k) for k in ("run_id", "host", "started", "command")]
        pid, proc_start = data.get("pid"), data.get("proc_start")
        if not all(isinstance(t, str) for t in texts) or _started_epoch(str(data["started"])) is None:
            return None
        if not (isinstance(pid, int) and _is_int(pid) and pid > 0):
            return None
        if not (proc_start is None or _is_int(proc_start)):
            return None
        return cls(run_id=data["run_id"], pid=pid, host=data["host"], started=data["started"],
                   command=data["command"], proc_start=proc_start)

    def describe(self) -> str:
        return f"run {self.run_id} ({self.command}, pid {self.pid} on {self.host}, since {self.started})"


class Verdict(Enum):
    """What a host lock file found on disk means for a newcomer."""

    LIVE = "live"  # its process runs on this machine
    FOREIGN = "foreign"  # taken on another machine: never judged from here
    WRITING = "writing"  # unreadable, but young enough to be a writer still filling it
    DEAD = "dead"  # stale: its process is gone
    REUSED = "reused"  # stale: its pid now belongs to another process
    TORN = "torn"  # stale: unreadable and older than the grace period

    @property
    def stale(self) -> bool:
        return self in (Verdict.DEAD, Verdict.REUSED, Verdict.TORN)


@dataclass(frozen=True)
class Found:
    """An existing host lock file and the verdict on it."""

    host: str
    path: Path
    record: LockRecord | None
    age: float
    verdict: Verdict


def lock_dir(runs_dir: Path) -> Path:
    return runs_dir / LOCKS_DIR


def host_lock_path(runs_dir: Path, host: str) -> Path:
    """The lock file of `host`. Lower-cased: host names are case-insensitive, WEB01 is web01."""
    return lock_dir(runs_dir) / HOST_LOCKS_DIR / (host_file_name(host.lower()).removesuffix(".jsonl") + ".lock")


class HeldLocks:
    """The host locks one run holds. `release()` removes the files it created, if they are still its own."""

    def __init__(self, record: LockRecord, paths: Sequence[Path], warnings: Sequence[str]) -> None:
        self.record = record
        self.paths = tuple(paths)
        self.warnings = list(warnings)
        self._released = False

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for path in self.paths:
            _remove_if_mine(path, self.record)

    def __enter__(self) -> HeldLocks:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def acquire(runs_dir: Path, *, run_id: str, command: str, hosts: Sequence[str],
            wait: float = DEFAULT_WAIT, grace: float = DEFAULT_GRACE) -> HeldLocks:
    """Take the lock of every host in `hosts` for run `run_id`, or none of them.

    Stale locks are taken over, each with a warning in the result's `.warnings`; a resume of a run
    whose process was killed takes over that run's own locks the same way. Raises LockHeld, naming
    the runs that hold them, when any host is held by a live process or by another machine, or when
    another process keeps the runs folder locked for more than `wait` seconds.
    """
    mine = LockRecord.mine(run_id, command)
    paths = _unique_paths(runs_dir, hosts)
    _ensure_dir(lock_dir(runs_dir) / HOST_LOCKS_DIR)
    with _runs_folder_lock(lock_dir(runs_dir) / RUNS_LOCK, mine, wait=wait, runs_dir=runs_dir):
        found = [f for host, path in paths.items() if (f := inspect(path, host, grace=grace)) is not None]
        blocking = [f for f in found if not f.verdict.stale]
        if blocking:
            raise LockHeld(held_message(blocking), hosts=[f.host for f in blocking],
                           run_ids=sorted({f.record.run_id for f in blocking if f.record}))
        warnings = []
        for stale in found:
            _unlink(stale.path)
            warnings.append(takeover_warning(stale))
        held = HeldLocks(mine, [], warnings)
        try:
            for host, path in paths.items():
                _claim(path, host, mine, grace=grace)
                held.paths += (path,)
        except BaseException:
            held.release()
            raise
    return held


def live_holder(runs_dir: Path, run_id: str, hosts: Sequence[str]) -> LockRecord | None:
    """The lock by which run `run_id` still holds one of `hosts` (its process lives, or runs on another
    machine), or None: the run is over, or its process died (its locks are stale)."""
    for host, path in _unique_paths(runs_dir, hosts).items():
        found = inspect(path, host)
        if found is not None and found.record is not None and found.record.run_id == run_id \
                and not found.verdict.stale:
            return found.record
    return None


def inspect(path: Path, host: str, *, grace: float = DEFAULT_GRACE) -> Found | None:
    """The lock file at `path` and what it means, or None when there is none."""
    try:
        raw = _read(path)
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    record = LockRecord.parse(raw)
    if record is not None:
        return Found(host=host, path=path, record=record, age=age, verdict=judge(record))
    return Found(host=host, path=path, record=None, age=age, verdict=Verdict.TORN if age > grace else Verdict.WRITING)


def judge(record: LockRecord, *, this_machine: str | None = None) -> Verdict:
    """Whether the process that wrote `record` still holds it."""
    if record.host != (this_machine or socket.gethostname()):
        return Verdict.FOREIGN
    if not pid_alive(record.pid):
        return Verdict.DEAD
    stat = _proc_stat(record.pid)
    if stat is None:  # no /proc: a live pid is taken at its word
        return Verdict.LIVE
    state, ticks = stat
    if state in ("Z", "X"):  # exited, waiting to be reaped: it holds nothing any more
        return Verdict.DEAD
    if record.proc_start is not None:
        return Verdict.LIVE if ticks == record.proc_start else Verdict.REUSED
    began, written = _ticks_to_epoch(ticks), _started_epoch(record.started)
    if began is None or written is None:
        return Verdict.LIVE
    return Verdict.REUSED if began > written + START_TOLERANCE else Verdict.LIVE


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive all the same
        return True
    return True


def held_message(found: Sequence[Found]) -> str:
    """One message for every held host, grouped by the run that holds them."""
    groups: dict[object, list[Found]] = {}
    for f in found:
        groups.setdefault(f.record if f.record is not None else f.path, []).append(f)
    return "; ".join(_group_message(items) for items in groups.values())


def _group_message(items: Sequence[Found]) -> str:
    names = ", ".join(f.host for f in items)
    subject = f"host {names} is" if len(items) == 1 else f"hosts {names} are"
    files = ", ".join(str(f.path) for f in items)
    record = items[0].record
    if record is None:
        return (f"{subject} held by a lock file still being written ({files}, {items[0].age:.1f} s old): "
                f"try again in a moment, or remove it if no dsrprep is running")
    if items[0].verdict is Verdict.FOREIGN:
        return (f"{subject} held by {record.describe()}, taken on another machine so it is never taken over "
                f"from here: wait for it to end, or remove {files} once that run is over on {record.host}")
    return f"{subject} held by {record.describe()}: wait for it to end, or remove {files} if that process is gone"


def takeover_warning(found: Found) -> str:
    record = found.record
    if record is None:
        return f"host {found.host}: removed an unreadable lock file {found.path} ({found.age:.0f} s old)"
    why = "no longer running" if found.verdict is Verdict.DEAD else "now another process"
    return f"host {found.host}: took over the lock of run {record.run_id} (pid {record.pid}, {why})"


def _unique_paths(runs_dir: Path, hosts: Sequence[str]) -> dict[str, Path]:
    """Host -> lock path, one host per path (WEB01 and web01 share one), in a stable order."""
    by_path: dict[Path, str] = {}
    for host in hosts:
        by_path.setdefault(host_lock_path(runs_dir, host), host)
    return {host: path for path, host in sorted(by_path.items())}


def _claim(path: Path, host: str, record: LockRecord, *, grace: float) -> None:
    """Create `path` holding `record`; LockHeld if someone else's file appeared there."""
    try:
        fd = privatefs.open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        # Only a process that bypasses run.lock can get here; report it like any holder.
        found = inspect(path, host, grace=grace)
        raise LockHeld(held_message([found]) if found else f"host {host}: {path} changed while it was being taken",
                       hosts=[host]) from None
    except OSError as exc:
        raise LockError(f"cannot create the lock file {path}: {exc.strerror}: check the runs folder") from exc
    try:
        _write_all(fd, record.to_bytes())
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        _unlink(path)
        raise LockError(f"cannot write the lock file {path}: {exc.strerror}: check the runs folder") from exc
    os.close(fd)


@contextlib.contextmanager
def _runs_folder_lock(path: Path, record: LockRecord, *, wait: float, runs_dir: Path) -> Iterator[None]:
    try:
        fh: BinaryIO = privatefs.open_binary(path, "a+b")  # held across the yield, closed in finally
    except OSError as exc:
        raise LockError(f"cannot open {path}: {exc.strerror}: check the runs folder {runs_dir}") from exc
    try:
        _flock_within(fh, path, wait=wait, runs_dir=runs_dir)
        fh.truncate(0)
        fh.write(record.to_bytes())
        fh.flush()
        os.fsync(fh.fileno())
        try:
            yield
        finally:
            fh.truncate(0)
            fh.flush()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def _flock_within(fh: BinaryIO, path: Path, *, wait: float, runs_dir: Path) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        except OSError as exc:
            raise LockError(f"cannot lock {path}: {exc.strerror}: the runs folder {runs_dir} must be on a "
                            f"file system with file locks") from exc
    holder = LockRecord.parse(_read(path))
    who = holder.describe() if holder else "another dsrprep process"
    raise LockHeld(f"the runs folder {runs_dir} is locked by {who}, still taking its host locks after {wait:g} s: "
                   f"try again, or stop that process if it hangs", run_ids=[holder.run_id] if holder else [])


def _remove_if_mine(path: Path, record: LockRecord) -> None:
    try:
        current = LockRecord.parse(_read(path))
    except FileNotFoundError:
        return
    if current is not None and (current.run_id, current.pid) == (record.run_id, record.pid):
        _unlink(path)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as fh:
            return fh.read(_MAX_LOCK_BYTES)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise LockError(f"cannot read the lock file {path}: {exc.strerror}: check its permissions") from exc


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise LockError(f"cannot remove the lock file {path}: {exc.strerror}: check its permissions") from exc


def _ensure_dir(path: Path) -> None:
    try:
        privatefs.make_dirs(path)
    except OSError as exc:
        raise LockError(f"cannot create {path}: {exc.strerror}: check the runs folder") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _started_epoch(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of `pid` from /proc, or None where unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    rest = text[text.rfind(")") + 2:].split()
    try:
        return rest[0], int(rest[19])  # fields 3 (state) and 22 (starttime)
    except (IndexError, ValueError):
        return None


def _ticks_to_epoch(ticks: int) -> float | None:
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in lines if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None

