"""How long the runner goes on recovering from failures mid-apply, and what a host it gives up on says.

The sessions here run each template straight on a lab host model (no network), and lose the
connection after the steps a test names, the change made, as a network change does.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from orchestrator.results import Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import MAX_REPLANS, rollout_host
from tests.modelhosts import ModelSession, model_host

POLICY = RetryPolicy(faults=6)


def _rollout(tmp_path: Path, lose: Counter[str], drop: Counter[str] | None = None, *, degrade: bool = False) -> Any:
    model, host = model_host(tmp_path)
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
