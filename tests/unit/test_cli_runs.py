"""Runs through the CLI with a fake session: a bug's traceback goes to the host log only, and rollback
reads the desired state the rollout recorded (and refuses a host without one)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import Deps, app
from orchestrator.inventory import Connection
from orchestrator.rolloutlog import Event, RunLog, read_host_log, read_run
from orchestrator.transport import RunResult

INVENTORY = """\
all:
  vars:
    ansible_user: admin
    dsr_vips: [10.0.0.50]
    dsr_firewall: rule
  hosts:
    web1:
      ansible_host: 10.0.0.11
"""
ENV = {"DSRPREP_PASSWORD": "Pa55-word-never-logged"}


def _read_client_certificate(settings: Mapping[str, str]) -> str:
    return settings["certificate_pem"]  # the bug: a key that is not there


class BuggySession:
    """A session whose opening hits a bug in dsrprep's own code (not a transport failure)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def open(self) -> None:
        _read_client_certificate({})

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        raise AssertionError("never opened")

    def close(self) -> None:
        pass


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    return path


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV, obj=Deps(session_factory=BuggySession))


@pytest.mark.parametrize(("command", "code"), [(["facts"], 1), (["plan"], 1), (["rollout", "--yes"], 3)])
def test_a_bug_shows_one_line_and_its_traceback_is_in_the_host_log(command: list[str], code: int, inventory: Path,
                                                                   tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    result = invoke(*command, str(inventory), "--runs-dir", str(runs))
    assert result.exit_code == code, result.output  # a rollout stops at its preflight: exit 3
    assert "InternalError: KeyError: 'certificate_pem'" in result.stdout
    assert "Traceback" not in result.output and "_read_client_certificate" not in result.output
    (run_dir,) = [p for p in runs.iterdir() if not p.name.startswith(".")]  # .locks: the run's locks
    events = read_host_log(run_dir / "hosts" / "web1.jsonl").events
    (internal,) = [e for e in events if e["event"] == Event.INTERNAL_ERROR]
    assert internal["level"] == "error"
    (exception,) = internal["exception"]
    assert exception["exc_type"] == "KeyError"
    frames = [f["name"] for f in exception["frames"]]
    assert frames[-2:] == ["open", "_read_client_certificate"]
    assert not any("locals" in f for f in exception["frames"])  # a frame's locals can hold a password
    assert events[-1]["event"] == Event.HOST_DONE and events[-1]["status"] == "failed"
    assert events[-1]["error"] == {"class": "InternalError", "message": "KeyError: 'certificate_pem'"}
    assert ENV["DSRPREP_PASSWORD"] not in (run_dir / "hosts" / "web1.jsonl").read_text()
    assert read_run(run_dir)["outcomes"] == {"web1": "failed"}


def test_json_output_of_a_bug_is_one_document_without_a_traceback(inventory: Path, tmp_path: Path) -> None:
    result = invoke("rollout", "--yes", "--json", str(inventory), "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 3  # stopped at the preflight
    doc = json.loads(result.stdout)
    assert doc["summary"] == {"failed": 1}
    assert doc["hosts"]["web1"]["error"] == {"class": "InternalError", "message": "KeyError: 'certificate_pem'"}
    assert "Traceback" not in result.stdout


def _fake_rollout(tmp_path: Path, inventory: Path, plan_line: dict[str, Any]) -> Path:
    """A rollout's run directory as dsrprep writes it: web1 had facts taken, a plan, a changed step."""
    log = RunLog.create(tmp_path / "old-runs", "20240101T000000.000Z-abcdef")
    log.write_run({"command": "rollout", "inventory": str(inventory), "hosts": ["web1"], "state": "finished"})
    logger = log.host_logger("web1")
    logger.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "WEB1"})
    logger.info(Event.PLAN, step="plan", **plan_line)
    logger.info(Event.STEP_RESULT, step="firewall_state", status="changed")
    log.close()
    return log.path


def test_rollback_of_a_run_without_a_recorded_desired_state_refuses_the_host(inventory: Path, tmp_path: Path) -> None:
    run_dir = _fake_rollout(tmp_path, inventory, {"plan": {"actions": []}})
    result = invoke("rollback", str(run_dir), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 1, result.output
    (rollback_dir,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]  # .locks
    assert read_run(rollback_dir)["command"] == "rollback" and read_run(rollback_dir)["outcomes"] == {"web1": "failed"}
    # Refused before any connection: the session (which would fail on a bug) was never opened.
    (done,) = [e for e in read_host_log(rollback_dir / "hosts" / "web1.jsonl").events if e["event"] == Event.HOST_DONE]
    assert done["error"]["class"] == "NoBeforeState" and done["failed_step"] == "rollback"
    assert f"the rollout log {run_dir / 'hosts' / 'web1.jsonl'} records no desired state" in done["error"]["message"]
    assert "NoBeforeState" in result.stdout and "Traceback" not in result.output


def test_rollback_refuses_an_unreadable_recorded_desired_state(inventory: Path, tmp_path: Path) -> None:
    run_dir = _fake_rollout(tmp_path, inventory, {"desired": {"vips": "10.0.0.50"}})
    result = invoke("rollback", str(run_dir), "--yes", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 2
    assert f"{run_dir}: host web1: the recorded desired state is unreadable" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_rollback_of_a_plan_run_is_refused(inventory: Path, tmp_path: Path) -> None:
    log = RunLog.create(tmp_path / "old-runs", "r-plan")
    log.write_run({"command": "plan", "inventory": str(inventory), "hosts": ["web1"]})
    result = invoke("rollback", str(log.path), "--yes")
    assert result.exit_code == 2 and "not a rollout" in result.stderr
