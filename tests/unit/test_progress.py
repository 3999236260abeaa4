"""Live progress and plain progress lines over a synthetic stream of host log lines, and the feed
that carries a run's own lines to them (RunLog.observe)."""

from __future__ import annotations

import re
import threading
from io import StringIO
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestrator.progress import REFRESH_PER_SECOND, Progress, Tracker, describe, render
from orchestrator.rolloutlog import Event, RunLog, read_host_log

LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\S+): (.+)$")
ANSI = re.compile(r"\x1b\[")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(host: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"host": host, "event": event, "timestamp": "2024-06-01T10:15:00.250000Z", **fields}


def wave_of_four() -> list[dict[str, Any]]:
    """web01 changed, web02 failed at a step, web03 in flight at loopback_config, web04 not started."""
    return [
        line("web01", Event.HOST_START, step="rollout", wave="wave 1"),
        line("web02", Event.HOST_START, step="rollout", wave="wave 1"),
        line("web03", Event.HOST_START, step="rollout", wave="wave 1"),
        line("web01", Event.STEP_START, step="loopback", attempt=1),
        line("web01", Event.STEP_RESULT, step="loopback", status="changed", duration=1.25),
        line("web01", Event.HOST_DONE, step="rollout", status="changed", duration=3.5),
        line("web02", Event.STEP_START, step="weak_host", attempt=2),
        line("web02", Event.STEP_RESULT, step="weak_host", status="failed", duration=0.5,
             error={"class": "ScriptError", "message": "Access is denied.\n  at line 3"}),
        line("web02", Event.HOST_DONE, step="rollout", status="failed", failed_step="weak_host", duration=4.0,
             error={"class": "ScriptError", "message": "Access is denied."}),
        line("web03", Event.STEP_START, step="loopback_config", attempt=1),
    ]


def test_each_host_event_reads_as_one_line() -> None:
    said = [describe(e) for e in wave_of_four()]
    assert said[0] == "started rollout (wave 1)"
    assert said[3] == "step loopback started"
    assert said[4] == "step loopback changed in 1.2 s"
    assert said[5] == "done changed in 3.5 s"
    assert said[6] == "step weak_host started (attempt 2)"
    assert said[7] == "step weak_host failed in 0.5 s: ScriptError: Access is denied. at line 3"
    assert said[8] == "done failed in 4.0 s at weak_host: ScriptError: Access is denied."
    retry = describe(line("web05", Event.ATTEMPT_FAILED, step="facts", attempt=1, error_class="Unreachable",
                          error="connection refused", will_retry=True))
    assert retry == "facts attempt 1 failed, retrying: Unreachable: connection refused"
    assert describe(line("web01", Event.FACTS_TAKEN, step="facts", raw={})) is None


def test_the_tracker_counts_a_phase_and_names_the_slowest_hosts_in_flight() -> None:
    clock = Clock()
    tracker = Tracker(clock)
    tracker.begin("wave 1", ["web01", "web02", "web03", "web04"])
    for event in wave_of_four()[:2]:
        tracker.line(event)
    clock.now += 5
    for event in wave_of_four()[2:]:
        tracker.line(event)
    clock.now += 2
    snap = tracker.snapshot()
    assert snap.phase == "wave 1" and snap.total == 4 and snap.done == 2
    assert snap.counts == (("failed", 1), ("changed", 1))  # troubles first
    assert (snap.running, snap.waiting) == (1, 1)
    assert [(f.host, f.step, f.seconds) for f in snap.slowest] == [("web03", "loopback_config", 2.0)]
    assert snap.elapsed == 7.0
    tracker.begin("wave 2", ["web05"])
    assert tracker.snapshot().done == 0 and tracker.snapshot().waiting == 1


def test_the_tracker_takes_lines_from_many_threads() -> None:
    tracker = Tracker()
    hosts = [f"web{n:02d}" for n in range(40)]
    tracker.begin("facts", hosts)

    def run(host: str) -> None:
        tracker.line(line(host, Event.HOST_START, step="facts"))
        for _ in range(20):
            tracker.line(line(host, Event.FACTS_START, step="facts"))
        tracker.line(line(host, Event.HOST_DONE, step="facts", status="ok"))

    threads = [threading.Thread(target=run, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = tracker.snapshot()
    assert snap.counts == (("ok", 40),) and snap.running == 0 and snap.waiting == 0


def test_the_live_view_shows_the_wave_a_bar_counts_and_the_slowest_host_on_a_terminal() -> None:
    file = StringIO()
    console = Console(file=file, force_terminal=True, width=100, color_system="standard")
    clock = Clock()
    progress = Progress(console, clock=clock)
    progress.begin("wave 1", ["web01", "web02", "web03", "web04"])
    with progress:
        for event in wave_of_four():
            progress.on_line(event)
        clock.now += 12
        console.print(render(progress.tracker.snapshot()))
    shown = file.getvalue()
    assert ANSI.search(shown), "a terminal gets colours and cursor moves"
    plain = ANSI.sub("", re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown))
    assert "wave 1" in plain and "2/4 hosts" in plain
    assert "failed 1" in plain and "changed 1" in plain and "running 1" in plain and "waiting 1" in plain
    assert re.search(r"web03\s+loopback_config\s+12 s", plain), plain
    assert "━" in plain  # the bar
    assert not LINE.search(plain.replace("\r", "\n")), "no plain progress lines on a terminal"
    assert REFRESH_PER_SECOND >= 1


def test_the_live_view_steps_aside_for_a_question() -> None:
    console = Console(file=StringIO(), force_terminal=True, width=80)
    progress = Progress(console)
    with progress:
        assert progress._live is not None and progress._live.is_started
        with progress.paused():
            assert not progress._live.is_started
        assert progress._live.is_started
    assert not progress._live.is_started


def test_off_a_terminal_every_host_event_is_one_plain_line() -> None:
    file = StringIO()
    progress = Progress(Console(file=file, force_terminal=False, width=40))
    for event in wave_of_four():
        progress.on_line(event)
    lines = file.getvalue().splitlines()
    assert not ANSI.search(file.getvalue())
    parsed = [LINE.match(text) for text in lines]
    assert all(parsed), lines  # long lines are not wrapped at the console's width
    assert [(m.group(2), m.group(3).split()[0]) for m in parsed if m] == [
        ("web01", "started"), ("web02", "started"), ("web03", "started"), ("web01", "step"), ("web01", "step"),
        ("web01", "done"), ("web02", "step"), ("web02", "step"), ("web02", "done"), ("web03", "step")]


def test_quiet_progress_prints_nothing() -> None:
    progress = Progress(None)
    with progress:
        for event in wave_of_four():
            progress.on_line(event)
    assert progress.tracker.snapshot().done == 2


def test_the_run_log_hands_each_line_it_writes_to_its_observer(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run")
    seen: list[dict[str, Any]] = []
    log.observe(lambda event: seen.append(dict(event)))
    logger = log.host_logger("web01")
    logger.info(Event.HOST_START, step="rollout")
    logger.info(Event.STEP_START, step="loopback", params={"password": "Secret-1"})
    log.observe(None)
    logger.info(Event.HOST_DONE, step="rollout", status="changed")
    log.close()
    assert [e["event"] for e in seen] == [Event.HOST_START, Event.STEP_START]
    assert seen[1]["params"] == {"password": "***"}, "the observer sees lines as redacted as the file"
    assert all(e["host"] == "web01" and e["run_id"] == "run" and "timestamp" in e for e in seen)


def test_an_observer_that_fails_costs_the_log_nothing(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run")

    def broken(_event: object) -> None:
        raise RuntimeError("display bug")

    log.observe(broken)
    log.host_logger("web01").info(Event.HOST_START, step="facts")
    log.close()
    events = read_host_log(tmp_path / "run" / "hosts" / "web01.jsonl").events
    assert [e["event"] for e in events] == [Event.HOST_START]
