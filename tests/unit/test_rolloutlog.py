"""The rollout log: durable JSON lines per host, atomic run.json, torn lines skipped, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

from orchestrator.rolloutlog import RunLog, host_file_name, read_host_log, read_run, redact


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
