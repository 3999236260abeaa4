"""How long the runner goes on recovering from failures mid-apply, and what a host it gives up on says.

The sessions here run each template straight on a lab host model (no network), and lose the
connection after the steps a test names, the change made, as a network change does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.errors import ConnectionLost, ScriptError
from orchestrator.inventory import Host, load_inventory
from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LabFleet, template_of
from orchestrator.lab.host import WindowsHost
from orchestrator.results import Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import MAX_REPLANS, rollout_host
from orchestrator.transport import RunResult

POLICY = RetryPolicy(faults=6)


class ModelSession:
    """One session to `model`; the connection is lost after a run of a step in `lose` (the change
    made) and before a run of a step in `drop` (nothing done), as often as they count it, across
    sessions. `degrade`: loopback_config answers at every run that Windows fell back, and changes
    nothing."""

    def __init__(self, model: WindowsHost, lose: Counter[str], drop: Counter[str], degrade: bool) -> None:
        self.model, self.lose, self.drop, self.degrade = model, lose, drop, degrade

    def open(self) -> None:
        pass

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        identified = template_of(script)
        assert identified is not None
        step, variant = identified
        if self.degrade and step == "loopback_config":
            # Windows answers that it fell back, and nothing it did shows in the facts.
            return RunResult(output=[{"changed": True, "degraded": True, "addresses": []}])
        if self.drop[step] > 0:
            self.drop[step] -= 1
            raise ConnectionLost("connection lost: Connection aborted")
        result = self.model.run(step, dict(parameters), variant=variant)
        if result.failed is not None:
            raise ScriptError(result.failed)
        if self.lose[step] > 0:
            self.lose[step] -= 1
            raise ConnectionLost("connection lost: Connection aborted")
        return RunResult(output=list(result.output), errors=list(result.errors))

    def close(self) -> list[str]:
        return []


def _host(tmp_path: Path) -> tuple[WindowsHost, Host]:
    (model,) = build_fleet(1, seed=4, profile="2016")
    document = LabFleet([model]).inventory()
    for group in document["all"]["children"].values():
        for entry in group["hosts"].values():
            entry["ansible_port"] = 5985
    path = tmp_path / "lab.yml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return model, load_inventory(path).hosts[0]


def _rollout(tmp_path: Path, lose: Counter[str], drop: Counter[str] | None = None, *, degrade: bool = False) -> Any:
    model, host = _host(tmp_path)
    log = RunLog.create(tmp_path / "runs")
    drop = drop if drop is not None else Counter()
    result = rollout_host(host, session_factory=lambda _c: ModelSession(model, lose, drop, degrade), log=log,
                          policy=POLICY, sleep=lambda _s: None)
    log.close()
    return result


def test_a_connection_lost_once_in_every_network_step_still_gets_through(tmp_path: Path) -> None:
    steps = ("firewall_rule", "loopback", "loopback_config", "adapter_settings", "weak_host")
    result = _rollout(tmp_path, Counter(dict.fromkeys(steps, 1)))
    assert result.status == Status.CHANGED, result.error
    lost = [s.step for s in result.steps if s.status == Status.FAILED]
    assert lost == list(steps)
    assert all(s.error is not None and s.error.error_class == "ConnectionLost" for s in result.steps
               if s.status == Status.FAILED)


def test_a_step_that_keeps_losing_its_connection_fails_with_that_cause(tmp_path: Path) -> None:
    # One loss after the loopback step, then weak_host cut off until the host run's budget is spent.
    result = _rollout(tmp_path, Counter({"loopback": 1}), Counter({"weak_host": POLICY.faults + 1}))
    assert result.status == Status.FAILED and result.failed_step == "weak_host"
    assert result.error is not None and result.error.error_class == "ConnectionLost"
    message = result.error.message
    assert message.startswith("connection lost: Connection aborted")
    assert f"weak_host cut off {POLICY.faults} times" in message
    assert f"given up: {POLICY.faults + 1} failures, more than the {POLICY.faults}" in message
    assert f"ConnectionLost x{POLICY.faults + 1}" in message
    assert "state still moving" not in message


@pytest.mark.parametrize("lost", [0, 1])
def test_a_state_that_keeps_moving_is_not_converging(tmp_path: Path, lost: int) -> None:
    # loopback_config answers "fell back" at every run: the plan never settles.
    result = _rollout(tmp_path, Counter({"loopback": lost}), degrade=True)
    assert result.status == Status.FAILED and result.failed_step == "loopback_config"
    assert result.error is not None and result.error.error_class == "NotConverging"
    assert result.error.message.startswith(f"state still moving after {MAX_REPLANS} re-plans")
    assert ("the last failure: connection lost" in result.error.message) == bool(lost)
