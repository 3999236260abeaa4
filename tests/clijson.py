"""Running dsrprep in-process for a test and reading its `--json` document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app


def cli(*args: str) -> tuple[int, dict[str, Any]]:
    """dsrprep's exit code and the JSON document it printed (the test fails when it printed none)."""
    result = CliRunner().invoke(app, list(args))
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"dsrprep {' '.join(args)} printed no JSON (exit {result.exit_code}):\n{result.output}")
    return result.exit_code, doc
