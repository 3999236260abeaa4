"""`dsrprep lab serve` runs a fleet in the foreground, writes its inventory and stops on Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from tests.serving import lab_serve

pytestmark = pytest.mark.lab


def test_serve_answers_facts_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    with lab_serve("--hosts", "3", "--seed", "2", "--profile", "2008r2", inventory=inventory) as proc:
        result = CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 0, result.output
        assert result.output.count("2008r2") == 3
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert "lab fleet stopped." in output
    assert "Traceback" not in output


def test_serve_writes_its_request_counters_on_sigusr1_and_when_it_stops(tmp_path: Path) -> None:
    inventory, counters = tmp_path / "lab.yml", tmp_path / "counters.json"

    def read_snapshot(proc: subprocess.Popen[str], wanted: int) -> dict[str, Any]:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            if counters.exists():
                document: dict[str, Any] = json.loads(counters.read_text(encoding="utf-8"))
                if document["snapshot"] >= wanted:
                    return document
            assert time.monotonic() < deadline, "the fleet did not write its counters"
            time.sleep(0.05)

    with lab_serve("--hosts", "2", "--seed", "3", "--latency", "0.01", "--counters-out", str(counters),
                   inventory=inventory) as proc:
        assert not counters.exists()  # written only when asked
        result = CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs")])
        assert result.exit_code == 0, result.output
        proc.send_signal(signal.SIGUSR1)
        asked = read_snapshot(proc, 1)
        counters.unlink()  # what the fleet writes when it stops
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert sorted(asked["hosts"]) == ["web01", "web02"]
    for host in asked["hosts"].values():
        assert host["http_requests"] > 0
        assert host["steps"] == {"facts": 1}
        # The lab process is not audited by conftest: its own counters show facts left no shell.
        assert host["shells_created"] == host["shells_deleted"] == 1
    final = json.loads(counters.read_text(encoding="utf-8"))
    assert final["snapshot"] == 1  # the count of requests for them so far
    assert final["hosts"] == asked["hosts"]


def test_serve_refuses_a_counters_file_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "counters.json"
    result = CliRunner().invoke(app, ["lab", "serve", "--hosts", "1", "--counters-out", str(missing),
                                      "--inventory-out", str(tmp_path / "lab.yml")])
    assert result.exit_code == 2, result.output
    assert f"--counters-out {missing}: its folder does not exist" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "lab.yml").exists()  # refused before any server started
