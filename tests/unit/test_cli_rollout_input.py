"""Bad rollout options are refused before any host is contacted or any run folder made (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

INVENTORY = """all:
  hosts:
    web01: {ansible_host: 127.0.0.1, ansible_port: 9, ansible_password: x, dsr_vips: [10.0.0.100]}
  children:
    edge:
      hosts:
        web01: {}
"""


@pytest.mark.parametrize(("options", "message"), [
    (["--canary", "web99"], "--canary: not among the selected hosts: web99"),
    (["--canary", "@nope"], "--canary: no inventory group 'nope'"),
    (["--waves", "1,,2"], "--waves"),
    (["--max-failures", "x"], "--max-failures"),
    (["--order", "random"], "--order"),
])
def test_bad_options_exit_2_before_anything(tmp_path: Path, options: list[str], message: str) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(INVENTORY, encoding="utf-8")
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--runs-dir", str(runs), *options])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not runs.exists()
