"""Bad input through the command line, case by case: corrupted run directories, unusable runs
folders, and text that rich would take for markup or emoji codes. Exit 2 with a line naming the
file and the field; text printed exactly as written; never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from orchestrator.cli import Deps, app
from orchestrator.errors import AuthError, ErrorInfo
from orchestrator.inventory import Connection
from orchestrator.report import result_row, steps_cell
from orchestrator.results import Command, HostResult, PlanStatus, Status, StepResult
from orchestrator.rolloutlog import Event, RunLog
from orchestrator.steps.base import Action
from orchestrator.transport import RunResult

INVENTORY = """\
all:
  vars:
    dsr_vips: [10.0.0.50]
  hosts:
    web1:
      ansible_host: 10.0.0.11
"""
ENV = {"DSRPREP_PASSWORD": "x", "COLUMNS": "200"}
RUN_ID = "20240101T000000.000Z-abcdef"


class Refused:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    def open(self) -> None:
        raise AuthError("refused")

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        raise AssertionError("never opened")

    def close(self) -> list[str]:
        return []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=ENV, obj=Deps(session_factory=Refused, terminal=False))


def refused(result: Result, line: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert line in result.stderr.splitlines(), result.stderr


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(INVENTORY)
    return path


def rollout_dir(tmp_path: Path, inventory: Path, changes: Mapping[str, Any] | None = None) -> Path:
    """A stopped rollout's run directory as dsrprep writes it, with `changes` made to run.json."""
    log = RunLog.create(tmp_path / "old", RUN_ID)
    record: dict[str, Any] = {
        "command": "rollout", "inventory": str(inventory), "hosts": ["web1"], "state": "interrupted",
        "limit": None, "forks": 2, "runs_dir": str(tmp_path / "runs"),
        "options": {"waves": "1", "forks": 2}, "preflight": {"web1": "changes"},
        "waves": [{"name": "canary", "hosts": ["web1"]}], "gates": [], "outcomes": {"web1": "failed"},
        "ending": None,
    }
    record.update(changes or {})
    log.write_run(record)
    logger = log.host_logger("web1")
    logger.info(Event.FACTS_BEFORE, step="facts", raw={"computer_name": "WEB1"})
    logger.info(Event.STEP_RESULT, step="firewall_state", status="changed")
    log.close()
    return log.path


COMMANDS = {
    "resume": ("resume", "--yes"),
    "rollback": ("rollback", "--yes"),
    "rerun": ("rerun", "--failed", "--yes"),
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"hosts": 5}, "hosts: 5 is not a list"),
        ({"hosts": ["web1", 7]}, "hosts[1]: 7 is not text"),
        ({"inventory": "inv\0.yml"}, "inventory: holds a NUL character"),
        ({"inventory": None}, "inventory: null is not text"),
        ({"command": ["rollout"]}, 'command: ["rollout"] is not one of: facts, plan, rollout, rollback, check'),
        ({"state": {}}, "state: {} is not one of: running, finished, interrupted, crashed"),
        ({"outcomes": {"web1": 3}}, "outcomes.web1: 3 is not text"),
        ({"outcomes": {"a\nb": 3}}, 'outcomes["a\\nb"]: 3 is not text'),
        ({"forks": True}, "forks: true is not a whole number >= 1"),
        ({"resumed": "yesterday"}, 'resumed: "yesterday" is not a list'),
    ],
)
def test_a_corrupted_run_json_field_is_named(
        tmp_path: Path, inventory: Path, command: str, changes: dict[str, Any], expected: str) -> None:
    run_dir = rollout_dir(tmp_path, inventory, changes)
    result = invoke(*COMMANDS[command], str(run_dir))
    refused(result, f"error: {run_dir / 'run.json'}: {expected} (not a usable run directory)")


@pytest.mark.parametrize("command", ["resume", "rerun"])
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"options": {"forks": "2"}}, 'options.forks: "2" is not a whole number >= 1'),
        ({"options": {"check": "no"}}, 'options.check: "no" is not true or false'),
        ({"options": ["waves"]}, 'options: ["waves"] is not a mapping'),
        ({"waves": [{"name": "canary"}]}, "waves[0].hosts: is missing"),
        ({"waves": [{"name": "canary", "hosts": "web1"}]}, 'waves[0].hosts: "web1" is not a list'),
        ({"ending": "exploded"}, 'ending: "exploded" is not one of: finished, aborted, declined, interrupted'),
        ({"options": {"waves": "0"}}, "options: --waves"),
    ],
)
def test_a_corrupted_rollout_record_is_named(
        tmp_path: Path, inventory: Path, command: str, changes: dict[str, Any], expected: str) -> None:
    run_dir = rollout_dir(tmp_path, inventory, changes)
    result = invoke(*COMMANDS[command], str(run_dir))
    assert result.exit_code == 2, result.output
    assert f"error: {run_dir / 'run.json'}: {expected}" in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["resume", "rollback"])
def test_a_directory_where_a_host_log_should_be_is_named(tmp_path: Path, inventory: Path, command: str) -> None:
    run_dir = rollout_dir(tmp_path, inventory)
    log = run_dir / "hosts" / "web1.jsonl"
    log.unlink()
    log.mkdir()
    result = invoke(*COMMANDS[command], str(run_dir))
    refused(result, f"error: {log}: cannot read the host log (Is a directory)")


@pytest.mark.parametrize("damage", ["missing", "directory", "torn", "not-an-object", "not-utf8"])
def test_an_unreadable_run_json_is_named(tmp_path: Path, inventory: Path, damage: str) -> None:
    run_dir = rollout_dir(tmp_path, inventory)
    run_json = run_dir / "run.json"
    text = run_json.read_text()
    run_json.unlink()
    if damage == "directory":
        run_json.mkdir()
    elif damage == "torn":
        run_json.write_text(text[: len(text) // 2])
    elif damage == "not-an-object":
        run_json.write_text("[1, 2]")
    elif damage == "not-utf8":
        run_json.write_bytes(b"\xff\xfe{}")
    result = invoke("resume", "--yes", str(run_dir))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {run_json}: ") and line.endswith("(not a usable run directory)"), line


def test_a_run_directory_that_is_a_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    result = invoke("rollback", "--yes", str(path))
    refused(result, f"error: {path / 'run.json'}: cannot read the run record (Not a directory) "
                    "(not a usable run directory)")


# --- the runs folder -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["facts", "plan", "rollout"])
@pytest.mark.parametrize("where", ["file", "under-a-file", "dev-null", "proc"])
def test_an_unusable_runs_dir_is_named(tmp_path: Path, inventory: Path, command: str, where: str) -> None:
    (tmp_path / "a-file").write_text("x")
    runs = {"file": tmp_path / "a-file", "under-a-file": tmp_path / "a-file" / "runs",
            "dev-null": Path("/dev/null"), "proc": Path("/proc/dsrprep-runs")}[where]
    result = invoke(command, str(inventory), "--runs-dir", str(runs), *(["--yes"] if command == "rollout" else []))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --runs-dir {runs}: cannot write run logs there: "), line


def test_a_run_dir_that_is_a_file_is_named(tmp_path: Path, inventory: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    result = invoke("rollout", str(inventory), "--yes", "--run-dir", str(tmp_path / "a-file"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --run-dir {tmp_path / 'a-file'}: cannot write run logs there: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_runs_dir_is_named(tmp_path: Path, inventory: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir(mode=0o555)
    result = invoke("plan", str(inventory), "--runs-dir", str(runs))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --runs-dir {runs}: cannot write run logs there: Permission denied")


def test_a_runs_dir_on_a_file_system_that_refuses_it_is_named(inventory: Path) -> None:
    if not Path("/sys").is_dir():  # sysfs refuses a new folder at its top, to root too
        pytest.skip("no /sys here")
    result = invoke("plan", str(inventory), "--runs-dir", "/sys/dsrprep-runs")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --runs-dir /sys/dsrprep-runs: cannot write run logs there: ")


# --- markup and emoji codes ---------------------------------------------------------------------------------

MARKUP = "[/x] [bold]b[/bold] :smile: 2001:db8::100:80"


def rendered(*cells: Any) -> str:
    console = Console(width=400, markup=False, emoji=False, highlight=False, record=True)
    for cell in cells:
        console.print(cell)
    return console.export_text()


def test_result_rows_are_text_never_markup() -> None:
    error = HostResult(MARKUP, Command.ROLLOUT, Status.FAILED, error=ErrorInfo("ScriptError", MARKUP),
                       failed_step="iis_binding", warnings=(MARKUP,))
    host, status, detail = result_row(error)
    assert (host.plain, status.plain) == (MARKUP, "failed")
    assert detail.plain == f"iis_binding: ScriptError: {MARKUP}\nwarning: {MARKUP}"
    planned = HostResult("h", Command.PLAN, PlanStatus.CHANGES,
                         planned=(Action("iis_binding", {}, f"site '{MARKUP}' not bound"),))
    assert result_row(planned)[2].plain == f"iis_binding: site '{MARKUP}' not bound"
    assert rendered(host, detail) == f"{MARKUP}\niis_binding: ScriptError: {MARKUP}\nwarning: {MARKUP}\n"


def test_the_steps_cell_counts_repeats_and_spells_out_failures() -> None:
    def step(name: str, status: Status, error: ErrorInfo | None = None) -> StepResult:
        return StepResult(name, "why", status, 1, 0.0, error=error)

    steps = [step("loopback", Status.CHANGED), step("loopback_config", Status.CHANGED),
             step("loopback_config", Status.CHANGED), step("iis_binding", Status.FAILED, ErrorInfo("ScriptError", "x")),
             step("iis_binding", Status.CHANGED)]
    cell = steps_cell(steps)
    assert cell.plain == "loopback, loopback_config x2, iis_binding failed (ScriptError), iis_binding"
    assert [cell.plain[s.start:s.end] for s in cell.spans] == ["iis_binding failed"]
    assert steps_cell([]).plain == "-"


def test_cli_errors_print_names_as_written(inventory: Path) -> None:
    result = invoke("render", str(inventory), "--host", MARKUP)
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: {inventory}: no host named {MARKUP!r}\n"
    result = invoke("facts", str(inventory), "--limit", "web[/x],[bold]b[/bold],:smile:")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"{inventory}: limit: {term!r} matches no host or group"
                                          for term in ("web[/x]", "[bold]b[/bold]", ":smile:")]


def test_inventory_check_prints_every_field_as_written(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(json.dumps({"all": {
        "vars": {"dsr_vips": ["10.0.0.50", {"address": "2001:db8::100", "ports": [80]}], "ansible_user": "[/u]:+1:",
                 "ansible_password": "env:NOT_SET_X"},
        "children": {"[bold]g[/bold]": {"hosts": {"web[/x]:smile:": {"ansible_host": "10.0.0.11",
                                                                    "dsr_nic": {"name": "[i]:x:"}}}}},
    }}))
    result = CliRunner().invoke(app, ["inventory", "check", str(path)])
    assert result.exit_code == 0, result.output
    cells = [c.strip() for line in result.stdout.splitlines() for c in line.split("│") if c.strip()]
    for text in ("web[/x]:smile:", "[/u]:+1:", "[bold]g[/bold]", "2001:db8::100:80/tcp", "name [i]:x:",
                 "env NOT_SET_X (not set)"):
        assert text in cells, (text, cells)
    assert "groups: all (1), [bold]g[/bold] (1)" in result.stdout


def test_a_recorded_runs_folder_that_cannot_hold_locks_is_named(tmp_path: Path, inventory: Path) -> None:
    (tmp_path / "a-file").write_text("x")
    run_dir = rollout_dir(tmp_path, inventory, {"runs_dir": str(tmp_path / "a-file")})
    result = invoke("resume", "--yes", str(run_dir))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {tmp_path / 'a-file'}: cannot lock the hosts there: "), result.stderr
