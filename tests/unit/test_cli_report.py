"""`dsrprep report` on run folders written by RunLog: every format, --output, a torn last line, and
folders that are not runs (exit 2, one line naming the path and what is wrong)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from orchestrator.choices import ReportFormat
from orchestrator.cli import app
from orchestrator.rolloutlog import Event, RunLog


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["report", *args])


def write_run(root: Path, **record: object) -> Path:
    log = RunLog.create(root, "20250301T100000.000Z-abcdef")
    log.write_run({"command": "plan", "inventory": "inv.yml", "hosts": ["web01", "web02"], "state": "finished",
                   "started": "2025-03-01T10:00:00.000+00:00", "outcomes": {"web01": "changes", "web02": "failed"},
                   **record})
    web01 = log.host_logger("web01")
    web01.info(Event.FACTS_BEFORE, step="facts", raw={})
    web01.info(Event.HOST_DONE, step="plan", status="changes", duration=1.0)
    error = {"class": "PreflightRefused", "message": "not elevated"}
    log.host_logger("web02").info(Event.HOST_DONE, step="plan", status="failed", duration=2.0,
                                  failed_step="preflight", error=error)
    log.close()
    return log.path


@pytest.mark.parametrize("fmt", list(ReportFormat))
def test_every_format_of_a_plan_run(tmp_path: Path, fmt: ReportFormat) -> None:
    run = write_run(tmp_path)
    result = invoke(str(run), "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "web02" in result.stdout and "not elevated" in result.stdout


def test_output_file_is_private_and_stdout_stays_empty(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    target = tmp_path / "report.json"
    result = invoke(str(run), "--format", "json", "--output", str(target))
    assert result.exit_code == 0 and result.stdout == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["hosts"]["web02"]["failed_step"] == "preflight"


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    run = write_run(tmp_path, state="crashed", outcomes={})
    with (run / "hosts" / "web01.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"event": "host_done", "host": "web01", "sta')
    result = invoke(str(run), "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["hosts"]["web01"]["status"] == "changes" and doc["hosts"]["web01"]["torn_lines"] == 1


@pytest.mark.parametrize(("damage", "named"), [
    ("no-folder", "no such folder"),
    ("no-run-json", "run.json: cannot read the run record"),
    ("not-json", "run.json: cannot read the run record"),
    ("bad-status", "run.json: outcomes.web01: 'fine' is not a host status"),
    ("bad-command", "run.json: command:"),
    ("bad-waves", "run.json: waves:"),
    ("host-log-dir", "web02.jsonl: cannot read the host log"),
])
def test_a_folder_that_is_not_a_run_is_refused_in_one_line(tmp_path: Path, damage: str, named: str) -> None:
    run = write_run(tmp_path)
    if damage == "no-folder":
        run = tmp_path / "nothing-here"
    elif damage == "no-run-json":
        (run / "run.json").unlink()
    elif damage == "not-json":
        (run / "run.json").write_text("{", encoding="utf-8")
    elif damage == "host-log-dir":
        (run / "hosts" / "web02.jsonl").unlink()
        (run / "hosts" / "web02.jsonl").mkdir()
    else:
        record = json.loads((run / "run.json").read_text())
        record.update({"bad-status": {"outcomes": {"web01": "fine"}}, "bad-command": {"command": "deploy"},
                       "bad-waves": {"waves": "canary"}}[damage])
        (run / "run.json").write_text(json.dumps(record), encoding="utf-8")
    result = invoke(str(run), "--format", "html")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and str(run) in lines[0], result.stderr
    assert "Traceback" not in result.output and result.stdout == ""


def test_an_output_that_cannot_be_written_is_refused_naming_it(tmp_path: Path) -> None:
    run = write_run(tmp_path)
    target = tmp_path / "missing" / "r.html"
    result = invoke(str(run), "--format", "html", "-o", str(target))
    assert result.exit_code == 2 and f"--output {target}: cannot write the report there" in result.stderr
