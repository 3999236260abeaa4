"""The order hosts are listed in, and the end-of-run summary."""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import ErrorInfo
from orchestrator.results import Command, FleetResult, HostResult, Status, StepResult
from orchestrator.summary import by_name, in_wave_order, name_key, summarize
from orchestrator.waves import Wave


def result(host: str, status: Status, **kw: object) -> HostResult:
    return HostResult(host, Command.ROLLOUT, status, **kw)  # type: ignore[arg-type]  # test data, typed by HostResult


FLEET = FleetResult(Command.ROLLOUT, (
    result("web10", Status.CHANGED, duration=4.0),
    result("web9", Status.UNREACHABLE, duration=6.5, error=ErrorInfo("Unreachable", "connection refused")),
    result("web2", Status.FAILED, duration=9.25, failed_step="weak_host",
           error=ErrorInfo("ScriptError", "Access is denied. " + "x" * 300),
           steps=(StepResult("weak_host", "r", Status.FAILED, 1, 0.5),)),
    result("Web1", Status.OK, duration=1.0),
    result("web3", Status.FAILED, duration=2.0, error=ErrorInfo("AuthError", "the credentials were rejected")),
    result("web4", Status.ABORTED),
))


def test_hosts_are_sorted_by_name_as_people_read_them() -> None:
    assert [r.host for r in by_name(FLEET)] == ["Web1", "web2", "web3", "web4", "web9", "web10"]
    assert sorted(["a10b", "a2b", "a2a"], key=name_key) == ["a2a", "a2b", "a10b"]


def test_a_rollout_lists_its_hosts_wave_by_wave_then_the_others_by_name() -> None:
    waves = [Wave("canary", ("web9",)), Wave("wave 1", ("web3", "web2", "web10"))]
    assert [(w, r.host) for w, r in in_wave_order(FLEET, waves)] == [
        ("canary", "web9"), ("wave 1", "web2"), ("wave 1", "web3"), ("wave 1", "web10"), ("", "Web1"), ("", "web4")]


def test_the_summary_puts_failures_first_with_their_step_and_a_one_line_reason() -> None:
    gates = [{"wave": "canary", "go_on": True, "reasons": []},
             {"wave": "wave 1", "go_on": False, "reasons": ["wave 1: 2 failed hosts, more than 0"]}]
    summary = summarize(FLEET, title="rollout aborted", wall=61.04, run_dir=Path("runs/r1"), gates=gates)
    assert [status for status, _ in summary.counts] == ["failed", "unreachable", "aborted", "changed", "ok"]
    assert [(t.status, t.host, t.step) for t in summary.troubles] == [
        ("failed", "web2", "weak_host"), ("failed", "web3", "facts"), ("unreachable", "web9", "connect")]
    assert summary.troubles[0].reason.startswith("ScriptError: Access is denied. xxx")
    assert len(summary.troubles[0].reason) <= 160 and summary.troubles[0].reason.endswith("...")
    text = [line.plain for line in summary.lines()]
    assert text[0] == "rollout aborted: failed 2, unreachable 1, aborted 1, changed 1, ok 1 (6 hosts)"
    assert text[1] == "stopped: wave 1: 2 failed hosts, more than 0"
    assert text[2].split() == ["failed", "web2", "at", "weak_host:", "ScriptError:", "Access", "is", "denied.",
                               text[2].split()[-1]]
    assert text[4].split()[:3] == ["unreachable", "web9", "at"]
    assert text[-2] == "time: 61.0 s; slowest host web2 (9.2 s)"
    assert text[-1] == "run folder: runs/r1"
    assert all("\n" not in line for line in text)


def test_a_clean_run_names_no_host() -> None:
    clean = FleetResult(Command.FACTS, (HostResult("web01", Command.FACTS, Status.OK),))
    text = [line.plain for line in summarize(clean, title="facts", wall=0.5, run_dir=Path("r")).lines()]
    assert text == ["facts: ok 1 (1 host)", "time: 0.5 s", "run folder: r"]
