"""The verification judges at work in a rollout: through the CLI and real pypsrp, a step that says it
changed something it did not, and a verify check that fails, each leave the host failed (its one host
is the canary, so the rollout stops: exit 3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.fleet import LabFleet

pytestmark = pytest.mark.lab

Answer = Callable[..., ScriptResult]


def rollout_with(tmp_path: Path, change: Callable[[Answer], Answer]) -> tuple[int, dict[str, Any]]:
    """Roll out one 2019 lab host whose answers go through `change`; the exit code and this host's entry."""
    with LabFleet.build(1, seed=6, profile="2019") as fleet:
        model = fleet.hosts[0].model
        model.run = change(model.run)  # type: ignore[method-assign]  # this host object only
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        result = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--json", "--runs-dir",
                                          str(tmp_path / "runs")])
        return result.exit_code, json.loads(result.stdout)["hosts"][fleet.hosts[0].name]


def test_a_step_that_does_not_take_fails_verification(tmp_path: Path) -> None:
    def claims_weak_host(answer: Answer) -> Answer:
        def run(step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
            if step == "weak_host":  # says it changed the flags, and did not
                return ScriptResult(output=[{"changed": True, "interface_index": params["InterfaceIndex"],
                                             "receive": True, "send": True, "output": None}])
            return answer(step, params, variant=variant)
        return run

    code, entry = rollout_with(tmp_path, claims_weak_host)
    assert code == 3  # the only host is the canary: a failed canary stops the rollout
    assert entry["status"] == "failed" and entry["failed_step"] == "verify"
    assert entry["error"]["class"] == "NotCompliant" and "weak host" in entry["error"]["message"]


def test_a_failed_live_check_fails_verification(tmp_path: Path) -> None:
    def vip_port_closed(answer: Answer) -> Answer:
        def run(step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
            result = answer(step, params, variant=variant)
            if step == "verify":
                out = dict(result.output[0])
                out["tcp"] = [{**check, "ok": check["address"] != params["Vips"][0]} for check in out["tcp"]]
                return ScriptResult(output=[out])
            return result
        return run

    code, entry = rollout_with(tmp_path, vip_port_closed)
    assert code == 3
    assert entry["status"] == "failed" and entry["error"]["class"] == "VerifyFailed"
    assert "TCP connect to 10.20.0.200:80 failed" in entry["error"]["message"]


def test_an_answer_of_another_shape_fails_its_own_step_and_is_kept(tmp_path: Path) -> None:
    def drops_addresses(answer: Answer) -> Answer:
        def run(step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
            result = answer(step, params, variant=variant)
            if step == "loopback_config":
                return ScriptResult(output=[{k: v for k, v in result.output[0].items() if k != "addresses"}])
            return result
        return run

    code, entry = rollout_with(tmp_path, drops_addresses)
    assert code == 3
    assert entry["status"] == "failed" and entry["failed_step"] == "loopback_config"
    assert entry["error"]["class"] == "ProtocolError" and "addresses" in entry["error"]["message"]
    (step,) = [s for s in entry["steps"] if s["step"] == "loopback_config"]
    assert step["status"] == "failed" and step["result"]["changed"] is True  # what came back is kept
