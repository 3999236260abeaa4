"""Start-up cost: importing the CLI (what `dsrprep --help` and every command pay first) leaves the
heavy libraries to the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys

# Each costs from 10 ms (PyYAML, tree-sitter) to a third of a second (pypsrp with requests, pyspnego
# and cryptography) of CPU at import.
HEAVY = ("pypsrp", "requests", "spnego", "cryptography", "structlog", "tenacity", "yaml", "tree_sitter",
         "psrpcore", "ansible", "jsonschema", "orchestrator.transport", "orchestrator.lab")
# dsrprep's own modules that only the commands reaching hosts or reading runs need: together about
# 0.1 s of CPU (the step registry, facts parsers and planner behind the runner, the drift check and
# every report). The CLI takes its option defaults and choices from orchestrator.choices instead.
OWN = ("orchestrator.runner", "orchestrator.fleetops", "orchestrator.drift", "orchestrator.plan",
       "orchestrator.facts", "orchestrator.results", "orchestrator.steps", "orchestrator.rollout",
       "orchestrator.rolloutlog", "orchestrator.templates", "orchestrator.waves", "orchestrator.locks",
       "orchestrator.progress", "orchestrator.report", "orchestrator.render_report", "orchestrator.runreport",
       "orchestrator.summary")


def _imported_by_the_cli(names: tuple[str, ...]) -> list[str]:
    code = ("import json, sys; import orchestrator.cli; "
            f"print(json.dumps(sorted(m for m in {list(names)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found: list[str] = json.loads(done.stdout)
    return found


def test_importing_the_cli_imports_no_heavy_library() -> None:
    assert _imported_by_the_cli(HEAVY) == []


def test_importing_the_cli_leaves_the_runner_the_planner_and_the_reports_to_the_commands() -> None:
    assert _imported_by_the_cli(OWN) == []


def test_a_command_still_imports_what_it_needs() -> None:
    # `report` of a missing run imports the report modules on its way to its error: the names in OWN
    # are real module paths, so the test above cannot pass by naming modules that do not exist.
    code = ("import json, sys; from typer.testing import CliRunner; from orchestrator.cli import app; "
            "CliRunner().invoke(app, ['report', '/nonexistent-run']); "
            f"print(json.dumps(sorted(m for m in {list(OWN)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    imported = set(json.loads(done.stdout))
    assert {"orchestrator.runreport", "orchestrator.results", "orchestrator.render_report"} <= imported
