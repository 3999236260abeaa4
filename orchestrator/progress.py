"""What a person sees while a run goes: live progress on a terminal, one plain line per host event
elsewhere (a CI log), nothing with --quiet.

The run's own host log lines are the one feed: `Progress.attach(log)` makes the RunLog hand every line
it writes to `Progress.on_line` (RunLog.observe), from the hosts' worker threads. A `Tracker` keeps,
under a lock, what those lines say so far: per host of the current phase (the preflight, a wave, the
whole run of facts, plan or rollback) when it started, the step it is at, and how it ended. The live
view is a rich `Live` that renders a snapshot of the tracker four times a second: the phase, a bar
over its hosts, counts per status, and the hosts in flight the longest with their current step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.rolloutlog import Event, RunLog
from orchestrator.summary import one_line, ordered_counts, style_of

REFRESH_PER_SECOND = 4
SLOWEST_SHOWN = 5
RUNNING = "running"
WAITING = "waiting"


def _error(value: object) -> str:
    """An error as a log line carries it ({"class", "message"}), in one line."""
    if isinstance(value, Mapping):
        return one_line(f"{value.get('class')}: {value.get('message')}")
    return one_line(str(value)) if value else ""


def _seconds(value: object) -> str:
    return f" in {value:.1f} s" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def describe(event: Mapping[str, Any]) -> str | None:
    """What one host log line says to a person, in one line; None for lines only the log needs."""
    name, step = event.get("event"), event.get("step")
    if name == Event.HOST_START:
        wave = f" ({event['wave']})" if event.get("wave") else ""
        return f"started {step}{wave}"
    if name == Event.STEP_START:
        attempt = event.get("attempt")
        return f"step {step} started" + (f" (attempt {attempt})" if isinstance(attempt, int) and attempt > 1 else "")
    if name == Event.STEP_RESULT:
        error = _error(event.get("error"))
        return f"step {step} {event.get('status')}{_seconds(event.get('duration'))}" + (f": {error}" if error else "")
    if name == Event.ATTEMPT_FAILED:
        then = "retrying" if event.get("will_retry") else "given up"
        return f"{step} attempt {event.get('attempt')} failed, {then}: {event.get('error_class')}: " \
               f"{one_line(str(event.get('error')))}"
    if name == Event.HOST_DONE:
        where = f" at {event['failed_step']}" if event.get("failed_step") else ""
        error = _error(event.get("error"))
        return f"done {event.get('status')}{_seconds(event.get('duration'))}{where}" + (f": {error}" if error else "")
    return None


def clock_time(timestamp: object) -> str:
    """A log line's ISO timestamp as local HH:MM:SS ("--:--:--" when it has none)."""
    try:
        return datetime.fromisoformat(str(timestamp)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


@dataclass
class _Host:
    started: float
    step: str
    status: str | None = None


@dataclass(frozen=True)
class InFlight:
    host: str
    step: str
    seconds: float


@dataclass(frozen=True)
class Snapshot:
    """The current phase as the tracker knows it at one moment."""

    phase: str
    total: int
    counts: tuple[tuple[str, int], ...]  # ended hosts per status, troubles first
    running: int
    waiting: int
    slowest: tuple[InFlight, ...]  # in flight, the longest first
    elapsed: float  # since the phase began

    @property
    def done(self) -> int:
        return sum(n for _, n in self.counts)


class Tracker:
    """What the host lines of the current phase say so far. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._phase = ""
        self._members: list[str] = []
        self._hosts: dict[str, _Host] = {}
        self._began = clock()

    def begin(self, phase: str, hosts: Sequence[str]) -> None:
        """A new phase over `hosts`: its counts start from nothing."""
        with self._lock:
            self._phase, self._members, self._hosts, self._began = phase, list(hosts), {}, self._clock()

    def line(self, event: Mapping[str, Any]) -> None:
        host, name = str(event.get("host")), event.get("event")
        with self._lock:
            state = self._hosts.get(host)
            if state is None or name == Event.HOST_START:
                if host not in self._members:  # a host the phase did not announce (a rollback after a gate)
                    self._members.append(host)
                state = self._hosts[host] = _Host(self._clock(), "connect")
            if name == Event.HOST_DONE:
                state.status = str(event.get("status"))
            elif event.get("step"):
                state.step = str(event["step"])

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._clock()
            ended = [h.status for h in self._hosts.values() if h.status is not None]
            flying = [InFlight(name, h.step, now - h.started) for name, h in self._hosts.items() if h.status is None]
            counts: dict[str, int] = {}
            for status in ended:
                counts[status] = counts.get(status, 0) + 1
            flying.sort(key=lambda f: -f.seconds)
            return Snapshot(self._phase, len(self._members), tuple(ordered_counts(counts)), len(flying),
                            len(self._members) - len(self._hosts), tuple(flying[:SLOWEST_SHOWN]), now - self._began)


def render(snapshot: Snapshot) -> RenderableType:
    """The live view of one snapshot."""
    head = Table.grid(padding=(0, 1))
    head.add_row(Text(snapshot.phase or "starting", style="bold"),
                 ProgressBar(total=max(snapshot.total, 1), completed=snapshot.done, width=30),
                 Text(f"{snapshot.done}/{snapshot.total} hosts"), Text(f"{snapshot.elapsed:.0f} s", style="dim"))
    counts = Text()
    for status, n in [*snapshot.counts, (RUNNING, snapshot.running), (WAITING, snapshot.waiting)]:
        counts.append("  " if counts else "").append(f"{status} {n}", style=style_of(status))
    parts: list[RenderableType] = [head, counts]
    if snapshot.slowest:
        slow = Table.grid(padding=(0, 2))
        for flight in snapshot.slowest:
            slow.add_row(Text(f"  {flight.host}"), Text(flight.step, style="cyan"), Text(f"{flight.seconds:.0f} s"))
        parts.append(slow)
    return Group(*parts)


class Progress:
    """The progress of one run: live on a terminal console, lines on any other, nothing without one.

    `live` forces the mode (None: live exactly when the console is a terminal)."""

    def __init__(self, console: Console | None, *, live: bool | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.tracker = Tracker(clock)
        self._clock = clock
        self._started = clock()
        self._print_lock = threading.Lock()
        self._live: Live | None = None
        if console is not None and (console.is_terminal if live is None else live):
            self._live = Live(get_renderable=lambda: render(self.tracker.snapshot()), console=console,
                              refresh_per_second=REFRESH_PER_SECOND, transient=True)

    @property
    def wall(self) -> float:
        """Seconds since the run began."""
        return self._clock() - self._started

    def attach(self, log: RunLog) -> None:
        log.observe(self.on_line)

    def begin(self, phase: str, hosts: Sequence[str]) -> None:
        self.tracker.begin(phase, hosts)

    def on_line(self, event: Mapping[str, Any]) -> None:
        self.tracker.line(event)
        if self.console is None or self._live is not None:
            return
        text = describe(event)
        if text is not None:
            with self._print_lock:
                self.console.print(Text(f"{clock_time(event.get('timestamp'))} {event.get('host')}: {text}"),
                                   soft_wrap=True)

    def __enter__(self) -> Progress:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """The live view off while the person is asked something."""
        if self._live is None or not self._live.is_started:
            yield
            return
        self._live.stop()
        try:
            yield
        finally:
            self._live.start()
