"""A failed HTTP service restart, end to end: CLI, real pypsrp, a lab host whose restarts fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.lab.fleet import LabFleet
from tests.clijson import cli

pytestmark = pytest.mark.lab


def rollout_with_failing_restarts(tmp_path: Path, failures: int) -> tuple[int, dict[str, Any], LabFleet]:
    fleet = LabFleet.build(1, seed=4, profile="2016")
    model = fleet.hosts[0].model
    model.http_listen = [model.rip]  # a listen list that is not empty: the VIP must be added
    model.http_restart_fails = failures
    with fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        code, done = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(tmp_path / "runs"))
    return code, done, fleet


def http_listen_results(done: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [s for s in done["hosts"][name]["steps"] if s["step"] == "http_listen"]


def test_a_failed_http_restart_is_scheduled_again_and_the_rollout_converges(tmp_path: Path) -> None:
    code, done, fleet = rollout_with_failing_restarts(tmp_path, 1)
    handle = fleet.hosts[0]
    assert code == 0, json.dumps(done, indent=1)[:4000]
    assert done["hosts"][handle.name]["status"] == "changed"
    first, second = http_listen_results(done, handle.name)
    assert first["result"]["restart"]["attempt"] == 1 and second["result"]["restart"]["attempt"] == 2
    assert "has not completed" in second["reason"]
    assert "HttpRestartPending" not in handle.model.marker


def test_a_restart_that_keeps_failing_stops_with_what_to_do(tmp_path: Path) -> None:
    code, done, fleet = rollout_with_failing_restarts(tmp_path, 5)
    handle = fleet.hosts[0]
    assert code != 0, json.dumps(done, indent=1)[:4000]  # the only host, so the canary gate stops too
    entry = done["hosts"][handle.name]
    assert entry["status"] == "failed"
    assert "has not completed after 3 attempts" in entry["error"]["message"]
    assert len(http_listen_results(done, handle.name)) == 3
    assert handle.model.marker["HttpRestartPending"] == "3"
