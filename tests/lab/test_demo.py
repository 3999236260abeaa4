"""The README's first quick-start command: `dsrprep demo` plans, rolls out, re-runs and exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.rolloutlog import read_run

pytestmark = pytest.mark.lab


def test_demo_runs_plan_rollout_and_an_idempotent_second_rollout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--hosts", "7", "--seed", "7", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "1. plan" in text and "2. rollout" in text and "3. rollout again" in text
    assert text.strip().endswith("lab fleet stopped.")
    runs = sorted(tmp_path.iterdir(), key=lambda r: read_run(r)["started"])
    assert [read_run(r)["command"] for r in runs] == ["plan", "rollout", "rollout"]
    assert read_run(runs[2])["summary"] == {"ok": 7}
    assert set(read_run(runs[1])["summary"]) <= {"changed", "ok"}
