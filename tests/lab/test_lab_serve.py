"""`dsrprep lab serve` runs a fleet in the foreground, writes its inventory and stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app

pytestmark = pytest.mark.lab


def test_serve_answers_facts_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "lab", "serve", "--hosts", "3", "--seed", "2",
         "--profile", "2008r2", "--inventory-out", str(inventory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not inventory.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the fleet did not write its inventory"
            time.sleep(0.1)
        result = CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 0, result.output
        assert result.output.count("2008r2") == 3
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "lab fleet stopped." in output
    assert "Traceback" not in output
