"""The rollout log on disk: runs/<run-id>/run.json and runs/<run-id>/hosts/<host>.jsonl.

Every host event is one JSON line, appended, flushed and fsynced before the call returns, so a crash
loses at most the line being written; a torn last line is detected and skipped when reading, and cut
off when the log is opened again to go on with the run (a `torn_line_dropped` line says so).
run.json is replaced atomically (write a temporary file, fsync, rename). No secret is ever written:
keys that name a secret are redacted whatever their depth. Folders are 0700 and files 0600 whatever
the umask (orchestrator/privatefs.py): the logs hold every host's facts. A host whose worker a run
leaves behind gets its last line from `RunLog.abandon`; nothing after it is written.

The names of the events (`Event`) and of a run's states (`RunState`) are typed constants shared by
the writer (the runner, the CLI) and the readers (`recorded_rollout`). A line logged with an
exception carries its traceback as structured frames (never the frames' local variables: they can
hold passwords).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from orchestrator import privatefs
from orchestrator.once import once
from orchestrator.results import Command, Status

# Keys whose values are secrets, whatever their depth. Names, not patterns: a host called
# "passport01" or "tokyo-web" is data.
_SECRET_KEY = re.compile(r"(.*_)?(password|passwd|secret|token|credentials?)", re.IGNORECASE)
_REDACTED = "***"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class Event(StrEnum):
    """The `event` of a host log line."""

    HOST_START = "host_start"  # a worker began the host's run (facts, plan, rollout or rollback)
    FACTS_START = "facts_start"  # facts: about to connect and take facts
    FACTS_TAKEN = "facts_taken"  # facts: the raw facts object
    ATTEMPT_FAILED = "attempt_failed"  # a connect / facts / verify attempt failed (will_retry says what next)
    FACTS_BEFORE = "facts_before"  # rollout: the raw facts before any change (what rollback returns to)
    PLAN = "plan"  # rollout and plan: the plan, and the desired state it was made for
    STEP_START = "step_start"  # one action: template, sha256, parameters
    STEP_RESULT = "step_result"  # one action's StepResult
    REPLANNED = "replanned"  # the actions left after fresh facts
    VERIFY_PLAN = "verify_plan"  # the plan after applying (must be empty)
    VERIFY_RESULT = "verify_result"  # the verify template's result
    PEER_ARP = "peer_arp"  # a peer's ARP table entry for a VIP
    ROLLBACK_PLAN = "rollback_plan"  # rollback: the undo plan and the desired state it was made for
    INTERNAL_ERROR = "internal_error"  # an unexpected exception, with its traceback
    SHELLS_LEFT = "shells_left"  # remote shells a lost connection kept from deleting (deleted later, or expire)
    HOST_DONE = "host_done"  # the host's terminal status
    TORN_LINE_DROPPED = "torn_line_dropped"  # a crash's torn last line, cut off when the log was opened again


class RunState(StrEnum):
    """run.json's `state`."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"
    CRASHED = "crashed"


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by start time to the millisecond, unique by its random tail."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S')}.{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def redact(value: Any) -> Any:
    """A copy of `value` with every secret-named key's value replaced."""
    if isinstance(value, Mapping):
        return {
            k: (_REDACTED if isinstance(k, str) and _SECRET_KEY.fullmatch(k) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    return redact(event_dict)


# `exc_info=exc` on a log call becomes an `exception` list of {exc_type, exc_value, frames: [{filename,
# lineno, name}]}, one per chained exception. Locals stay out: a frame can hold a password.
# structlog is imported when the first line is written: commands that write no log (`--help`, the
# offline ones) do without its fifth of a second of CPU at start-up.
@once
def _tracebacks() -> Any:
    import structlog.tracebacks

    return structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))


def drop_torn_tail(path: Path) -> int:
    """Cut off the last line of `path` when it has no newline (a crash in the middle of writing it: it
    holds no whole event, and what is appended next would run into it); the bytes cut off."""
    try:
        fh = path.open("r+b")
    except FileNotFoundError:
        return 0
    with fh:
        size = end = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - 1))
        if size == 0 or fh.read(1) == b"\n":
            return 0
        keep = 0
        while end > 0:
            start = max(0, end - 65536)
            fh.seek(start)
            newline = fh.read(end - start).rfind(b"\n")
            if newline >= 0:
                keep = start + newline + 1
                break
            end = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return size - keep


class FsyncLineWriter:
    """A structlog logger target that appends one line per event and makes it durable. A torn last
    line a crash left is cut off first (`torn_tail`: its length in bytes).

    Once `last()` has written a host's last line, later lines are dropped: the log ends there."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self.torn_tail = drop_torn_tail(path)
        self._file = privatefs.open_text(path, "a")
        self._sealed = False

    def msg(self, message: str) -> None:
        with self._lock:
            if not self._sealed:
                self._write(message)

    def last(self, message: str) -> None:
        """Write `message` as the file's last line: nothing written after it is kept."""
        with self._lock:
            if not self._sealed:
                self._write(message)
                self._sealed = True

    def _write(self, message: str) -> None:
        self._file.write(message + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    # structlog calls the method named after the level; every level is one line here.
    debug = info = warning = error = critical = msg

    def close(self) -> None:
        with self._lock:
            self._sealed = True
            self._file.close()


class _LastLine:
    """A structlog logger target whose one line is its writer's last."""

    def __init__(self, writer: FsyncLineWriter) -> None:
        self._writer = writer

    def msg(self, message: str) -> None:
        self._writer.last(message)

    debug = info = warning = error = critical = msg


# Called with each host line as it is written (redacted, before its JSON), from the writing thread.
Observer = Callable[[Mapping[str, Any]], None]


def host_file_name(host: str) -> str:
    return _UNSAFE_NAME.sub("_", host) + ".jsonl"


def _write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    privatefs.replace_text(path, json.dumps(redact(data), indent=2, sort_keys=True, default=str) + "\n")


class RunLog:
    """One run's directory: run.json plus a JSON-lines file per host."""

    def __init__(self, root: Path, run_id: str) -> None:
        self.run_id = run_id
        self.path = root / run_id
        self.hosts_dir = self.path / "hosts"
        privatefs.make_dirs(root)  # the runs folder, when it is new
        privatefs.private_dir(self.path)
        privatefs.private_dir(self.hosts_dir)
        self._writers: dict[str, FsyncLineWriter] = {}
        self._context: dict[str, dict[str, Any]] = {}  # host -> fields every line of it carries (its wave)
        self._lock = threading.Lock()
        self._observer: Observer | None = None

    @classmethod
    def create(cls, root: Path | str, run_id: str | None = None) -> RunLog:
        return cls(Path(root), run_id or new_run_id())

    def write_run(self, record: Mapping[str, Any]) -> None:
        _write_json_atomic(self.path / "run.json", {"run_id": self.run_id, **record})

    def set_context(self, hosts: Sequence[str], **fields: Any) -> None:
        """Fields the lines of `hosts` carry from now on (a rollout's wave)."""
        with self._lock:
            for host in hosts:
                self._context[host] = dict(fields)

    def observe(self, observer: Observer | None) -> None:
        """`observer(line)` for every host line written from now on (None: no more): the one feed of a
        run's live progress. It runs in the host's worker thread, so it must be quick and thread-safe."""
        self._observer = observer

    def _notify(self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
        observer = self._observer
        if observer is not None:
            with suppress(Exception):  # what the operator is shown must never cost the record
                observer(dict(event_dict))
        return event_dict

    def host_logger(self, host: str, **context: Any) -> Any:
        """A structlog logger bound to this run and host; each call writes one durable line."""
        return self._logger(host, context, last=False)

    def abandon(self, hosts: Sequence[str], **fields: Any) -> None:
        """The last line of each host in `hosts` (a `host_done` with `fields`), written now for hosts
        whose workers the run leaves behind; what their threads log afterwards is dropped."""
        for host in hosts:
            self._logger(host, {}, last=True).warning(Event.HOST_DONE, abandoned=True, **fields)

    def _logger(self, host: str, context: Mapping[str, Any], *, last: bool) -> Any:
        with self._lock:
            context = {**self._context.get(host, {}), **context}
            writer = self._writers.get(host)
            opened = writer is None
            if writer is None:
                writer = FsyncLineWriter(self.hosts_dir / host_file_name(host))
                self._writers[host] = writer
        import structlog  # see _tracebacks

        logger = structlog.wrap_logger(
            _LastLine(writer) if last else writer,
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _tracebacks(),
                _redact_processor,
                self._notify,
                structlog.processors.JSONRenderer(sort_keys=True, default=str),
            ],
        )
        bound = logger.bind(run_id=self.run_id, host=host, **context)
        if opened and writer.torn_tail:
            bound.warning(Event.TORN_LINE_DROPPED, step="log", bytes=writer.torn_tail)
        return bound

    def close(self) -> None:
        with self._lock:
            for writer in self._writers.values():
                writer.close()
            self._writers.clear()


# --- reading ------------------------------------------------------------------------------------------
# A run directory may have been edited, truncated or damaged: every reader checks what it reads and
# reports a file or field it cannot use as a RunFileError naming both (a ValueError), never a crash.


class RunFieldError(ValueError):
    """One unusable value in a run file; `field` says where (`hosts[2]`, `options.forks`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RunFileError(ValueError):
    """A file of a run directory that cannot be used: its path, the field (if any) and why."""

    def __init__(self, path: Path, message: str, field: str | None = None) -> None:
        super().__init__(": ".join(str(p) for p in (path, field, message) if p))
        self.path = path
        self.field = field


T = TypeVar("T")
Check = Callable[[object, str], Any]  # (value, field) -> the value, or RunFieldError


def _shown(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def text(value: object, field: str) -> str:
    if not isinstance(value, str):
        raise RunFieldError(field, f"{_shown(value)} is not text")
    if "\0" in value:
        raise RunFieldError(field, "holds a NUL character")
    return value


def optional(check: Callable[[object, str], T]) -> Callable[[object, str], T | None]:
    return lambda value, field: None if value is None else check(value, field)


def whole(value: object, field: str, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise RunFieldError(field, f"{_shown(value)} is not a whole number >= {low}")
    return value


def count(value: object, field: str) -> int:
    return whole(value, field, 0)


def flag(value: object, field: str) -> bool:
    if not isinstance(value, bool):
        raise RunFieldError(field, f"{_shown(value)} is not true or false")
    return value


def list_of(check: Callable[[object, str], T]) -> Callable[[object, str], list[T]]:
    def checked(value: object, field: str) -> list[T]:
        if not isinstance(value, list):
            raise RunFieldError(field, f"{_shown(value)} is not a list")
        return [check(item, f"{field}[{index}]") for index, item in enumerate(value)]
    return checked


def map_of(check: Callable[[object, str], T]) -> Callable[[object, str], dict[str, T]]:
    def checked(value: object, field: str) -> dict[str, T]:
        if not isinstance(value, dict):
            raise RunFieldError(field, f"{_shown(value)} is not a mapping")
        return {key: check(item, _member(field, key)) for key, item in value.items()}
    return checked


def _member(field: str, key: str) -> str:
    """`field.key`, or `field["key"]` for a key that would not read as one (spaces, newlines...)."""
    return f"{field}.{key}" if re.fullmatch(r"[\w@-]+", key) else f"{field}[{json.dumps(key)}]"


def choice(values: type[StrEnum]) -> Callable[[object, str], str]:
    def checked(value: object, field: str) -> str:
        if not isinstance(value, str) or value not in set(values):
            raise RunFieldError(field, f"{_shown(value)} is not one of: {', '.join(values)}")
        return str(value)
    return checked


def fields(data: object, checks: Mapping[str, Check], required: Sequence[str] = (), *, at: str = "") -> dict[str, Any]:
    """`data`, a mapping, with every field that `checks` knows checked (a field it does not know is
    kept as it is); RunFieldError for the first field missing or unusable. `at`: where `data` is."""
    if not isinstance(data, dict):
        raise RunFieldError(at or "(top)", f"{_shown(data)} is not a mapping")
    where = f"{at}." if at else ""
    for name in required:
        if name not in data:
            raise RunFieldError(f"{where}{name}", "is missing")
    return {k: (checks[k](v, f"{where}{k}") if k in checks else v) for k, v in data.items()}


# The fields of run.json every command writes (orchestrator/cli.py; a rollout adds those of
# orchestrator.rollout.RunRecord and Options, which check themselves).
RUN_FIELDS: Mapping[str, Check] = {
    "run_id": text,
    "command": choice(Command),
    "inventory": text,
    "limit": optional(text),
    "forks": whole,
    "hosts": list_of(text),
    "state": choice(RunState),
    "started": text,
    "resumed": list_of(text),
    "runs_dir": text,
    "outcomes": map_of(text),
    "summary": map_of(count),
    "of_run": optional(text),
    "rerun_of": optional(text),
}


@dataclass(frozen=True)
class HostLog:
    events: list[dict[str, Any]]
    torn_lines: int


def _host_lines(path: Path) -> Iterator[dict[str, Any] | None]:
    """Every non-blank line of a host's JSON-lines file, in order: its event, or None for a torn or
    corrupt line. RunFileError when the file cannot be read at all (a directory in its place...)."""
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    item = json.loads(line)
                except (json.JSONDecodeError, RecursionError):  # RecursionError: a line of [[[[...
                    yield None
                    continue
                yield item if isinstance(item, dict) else None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise RunFileError(path, f"cannot read the host log ({_reason(exc)})") from None


def read_host_log(path: Path) -> HostLog:
    """Read a host's JSON-lines file, skipping a torn or corrupt line instead of failing;
    RunFileError when the file cannot be read at all."""
    lines = list(_host_lines(path))
    events = [e for e in lines if e is not None]
    return HostLog(events=events, torn_lines=len(lines) - len(events))


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)


def read_run(run_dir: Path, *, required: Sequence[str] = ()) -> dict[str, Any]:
    """run.json of `run_dir`, its fields checked (RUN_FIELDS) and `required` ones present;
    RunFileError naming the file and the field otherwise."""
    path = run_dir / "run.json"
    try:
        with path.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON, bad UTF-8, a NUL in the path
        raise RunFileError(path, f"cannot read the run record ({_reason(exc)})") from None
    if not isinstance(data, dict):
        raise RunFileError(path, "is not a JSON object")
    try:
        return fields(data, RUN_FIELDS, required)
    except RunFieldError as exc:
        raise RunFileError(path, exc.message, exc.field) from None


# Lines that show a step ran on the host (its start is logged, fsynced, before the script is sent).
_STEP_EVENTS = frozenset({Event.STEP_START, Event.STEP_RESULT, Event.REPLANNED})


@dataclass(frozen=True)
class HostRecord:
    """What a rollout's log says about one host.

    `facts_before`: the raw facts of the first intact `facts_before` line that comes before any line
    of a step (None when there is none: the host was never read, or that line is torn or missing).
    A crash can tear only the line being written, and every change is preceded by its intact
    `step_start` line, so facts logged before the first step line are the host as it was.
    `desired`: the desired state the rollout planned against (None in logs written before it was
    recorded). `steps_ran`: a line of a step is there (something may have changed, whatever the
    step results say). `torn_lines`: lines that do not parse.
    """

    facts_before: dict[str, Any] | None
    changed: bool
    desired: dict[str, Any] | None = None
    # The status of the last rollout of the host that ended (None: none ended, e.g. cut off by a crash).
    outcome: str | None = None
    steps_ran: bool = False
    torn_lines: int = 0


def recorded_rollout(run_dir: Path, host: str) -> HostRecord:
    path = run_dir / "hosts" / host_file_name(host)
    if not path.exists():
        return HostRecord(None, False)
    before: dict[str, Any] | None = None
    desired: dict[str, Any] | None = None
    changed = steps_ran = False
    outcome: str | None = None
    torn = 0
    for event in _host_lines(path):
        if event is None:
            torn += 1
            continue
        if event.get("host") != host:
            continue  # another host whose name maps to the same file
        name = event.get("event")
        if name == Event.FACTS_BEFORE and before is None and not steps_ran and isinstance(event.get("raw"), dict):
            before = event["raw"]
        elif name == Event.PLAN and desired is None and isinstance(event.get("desired"), dict):
            desired = event["desired"]
        elif name == Event.HOST_DONE and event.get("step") == Command.ROLLOUT and isinstance(event.get("status"), str):
            outcome = event["status"]
        if name in _STEP_EVENTS:
            steps_ran = True
            changed = changed or (name == Event.STEP_RESULT and event.get("status") == Status.CHANGED)
    return HostRecord(before, changed, desired, outcome, steps_ran, torn)
