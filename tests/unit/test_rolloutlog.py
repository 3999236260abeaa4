"""The rollout log: durable JSON lines per host, atomic run.json, torn lines skipped, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.results import Status
from orchestrator.rolloutlog import (
    Event,
    HostRecord,
    RunLog,
    drop_torn_tail,
    host_file_name,
    read_host_log,
    read_run,
    recorded_rollout,
    redact,
)


def test_events_are_json_lines_with_run_and_host(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-1")
    logger = log.host_logger("web01", wave=0)
    logger.info("facts_taken", step="facts", attempt=1)
    logger.warning("attempt_failed", step="facts", attempt=2, error_class="Unreachable")
    log.close()
    lines = (tmp_path / "run-1" / "hosts" / "web01.jsonl").read_text().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["event"] == "facts_taken"
    assert first["run_id"] == "run-1" and first["host"] == "web01" and first["wave"] == 0
    assert first["step"] == "facts" and first["attempt"] == 1
    assert "timestamp" in first and first["level"] == "info"


def test_secrets_never_reach_the_log(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-2")
    log.host_logger("web01").info("x", connection={"user": "a", "password": "hunter2"}, ansible_password="p")
    log.write_run({"options": {"Password": "hunter2", "forks": 3}})
    log.close()
    text = (tmp_path / "run-2" / "hosts" / "web01.jsonl").read_text() + (tmp_path / "run-2" / "run.json").read_text()
    assert "hunter2" not in text and '"p"' not in text
    assert read_run(tmp_path / "run-2")["options"]["forks"] == 3


def test_torn_last_line_is_skipped(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-3")
    log.host_logger("web01").info("one")
    log.host_logger("web01").info("two")
    log.close()
    path = tmp_path / "run-3" / "hosts" / "web01.jsonl"
    with path.open("a") as fh:
        fh.write('{"event": "thr')
    read = read_host_log(path)
    assert [e["event"] for e in read.events] == ["one", "two"]
    assert read.torn_lines == 1


def test_run_json_is_replaced_whole(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-4")
    log.write_run({"state": "running"})
    log.write_run({"state": "finished"})
    assert read_run(tmp_path / "run-4") == {"run_id": "run-4", "state": "finished"}
    assert not list((tmp_path / "run-4").glob("*.tmp"))


def test_host_file_names_are_safe() -> None:
    assert host_file_name("web01.example.com") == "web01.example.com.jsonl"
    assert host_file_name("../etc/x") == ".._etc_x.jsonl"
    assert "/" not in host_file_name("a/b")


def test_redact_is_deep() -> None:
    assert redact({"a": [{"secret": 1, "b": 2}]}) == {"a": [{"secret": "***", "b": 2}]}


def test_host_names_that_look_like_secret_words_are_data() -> None:
    data = {"outcomes": {"passport01": "changed", "tokyo-web": "ok"}, "ansible_password": "x", "token": "y"}
    assert redact(data) == {"outcomes": {"passport01": "changed", "tokyo-web": "ok"},
                            "ansible_password": "***", "token": "***"}


def test_recorded_rollout_reads_facts_before_the_desired_state_and_whether_it_changed(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-5")
    logger = log.host_logger("web01")
    logger.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "WEB01"})
    logger.info(Event.PLAN, step="plan", plan={"actions": []}, desired={"firewall": "disable"})
    logger.info(Event.STEP_RESULT, step="weak_host", status=Status.OK)
    log.host_logger("web02").info(Event.STEP_RESULT, step="weak_host", status=Status.CHANGED)
    log.close()
    assert recorded_rollout(log.path, "web01") == HostRecord({"computer_name": "WEB01"}, False,
                                                             {"firewall": "disable"}, steps_ran=True)
    assert recorded_rollout(log.path, "web02") == HostRecord(None, True, None, steps_ran=True)
    assert recorded_rollout(log.path, "web03") == HostRecord(None, False, None)
    line = json.loads((log.hosts_dir / "web02.jsonl").read_text())
    assert line["event"] == "step_result" and line["status"] == "changed"  # plain names on disk


def _connect(password: str) -> None:
    raise ConnectionError("no route")


def test_an_exception_is_logged_as_structured_frames_without_locals(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-6")
    try:
        _connect("hunter2")
    except ConnectionError as exc:
        log.host_logger("web01").error(Event.INTERNAL_ERROR, step="rollout", exc_info=exc)
    log.close()
    (event,) = read_host_log(log.hosts_dir / "web01.jsonl").events
    (exception,) = event["exception"]
    assert exception["exc_type"] == "ConnectionError" and exception["exc_value"] == "no route"
    assert exception["frames"][-1]["name"] == "_connect"
    assert "hunter2" not in (log.hosts_dir / "web01.jsonl").read_text()


def test_facts_logged_after_a_step_are_not_the_state_before(tmp_path: Path) -> None:
    """A resumed host logs its facts again after steps of the first attempt ran: those are not what a
    rollback returns to. A torn line (a crash mid-write) before the first step leaves the later
    facts_before of the same attempt good: every change is preceded by an intact step_start line."""
    log = RunLog.create(tmp_path, "run-7")
    logger = log.host_logger("web01")
    logger.info(Event.STEP_START, step="loopback")
    logger.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "AFTER"})
    other = log.host_logger("web02")
    other.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "PREFLIGHT"})
    log.close()
    path = log.hosts_dir / "web02.jsonl"
    torn = path.read_text()
    path.write_text(torn[: len(torn) // 2] + "\n")
    again = RunLog(tmp_path, "run-7")
    again.host_logger("web02").info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "WAVE"})
    again.host_logger("web02").info(Event.STEP_START, step="loopback")
    again.host_logger("web02").info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "RESUMED"})
    again.close()
    first = recorded_rollout(log.path, "web01")
    assert first.facts_before is None and first.steps_ran and first.torn_lines == 0
    second = recorded_rollout(log.path, "web02")
    assert second.facts_before == {"computer_name": "WAVE"} and second.steps_ran and second.torn_lines == 1


def test_a_torn_last_line_is_cut_off_when_the_log_is_opened_again(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path, "run-8")
    log.host_logger("web01").info("one")
    log.close()
    path = log.hosts_dir / "web01.jsonl"
    whole = path.read_text()
    torn = '{"event": "step_start", "step": "loopb'
    path.write_text(whole + torn)  # what a kill in the middle of a write leaves
    again = RunLog(tmp_path, "run-8")
    again.host_logger("web01").info("two")
    again.close()
    lines = path.read_text().splitlines()
    assert lines[0] == whole.strip() and len(lines) == 3
    dropped, two = json.loads(lines[1]), json.loads(lines[2])
    assert dropped["event"] == Event.TORN_LINE_DROPPED and dropped["level"] == "warning"
    assert dropped["bytes"] == len(torn)
    assert two["event"] == "two"
    assert read_host_log(path).torn_lines == 0


def test_a_log_that_ends_whole_or_is_one_torn_line_is_handled(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jsonl"
    whole.write_text('{"event": "one"}\n')
    assert drop_torn_tail(whole) == 0 and whole.read_text() == '{"event": "one"}\n'
    only = tmp_path / "only.jsonl"
    only.write_text('{"event": "on')
    assert drop_torn_tail(only) == 13 and only.read_text() == ""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert drop_torn_tail(empty) == 0 and drop_torn_tail(tmp_path / "none.jsonl") == 0
