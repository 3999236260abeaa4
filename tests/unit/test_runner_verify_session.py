"""Where a rollout verifies: in a session opened after the last change, on facts read there.

A re-plan after the step that restarts the HTTP service (its last one on these hosts) reads the facts
in a new session; when it leaves nothing to do, verification plans on those facts and runs its checks
in that session. Otherwise it opens a session of its own. The sessions run each template straight on
a lab host model (no network) and count what ran.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from orchestrator.inventory import Host
from orchestrator.lab.host import WindowsHost
from orchestrator.results import HostResult, Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import rollout_host
from tests.modelhosts import ModelSession, model_host

RESTART_LAST = 1  # seed of a 2016 host whose plan ends with http_listen (the HTTP service restart)
NO_RESTART = 2  # seed of a 2016 host whose plan has no restart


def _rollout(tmp_path: Path, model: WindowsHost, host: Host, ran: Counter[str],
             drop: Counter[str] | None = None) -> tuple[HostResult, int]:
    """The host's rollout and the number of sessions it opened."""
    opened: list[ModelSession] = []

    def factory(_connection: object) -> ModelSession:
        opened.append(ModelSession(model, ran=ran, drop=drop))
        return opened[-1]

    log = RunLog.create(tmp_path / "runs")
    result = rollout_host(host, session_factory=factory, log=log, policy=RetryPolicy(), sleep=lambda _s: None)
    log.close()
    return result, len(opened)


def test_a_replan_that_leaves_nothing_is_where_verification_runs(tmp_path: Path) -> None:
    model, host = model_host(tmp_path, "2016", seed=RESTART_LAST)
    ran: Counter[str] = Counter()
    result, sessions = _rollout(tmp_path, model, host, ran)
    assert result.status == Status.CHANGED, result.error
    assert ran["http_listen"] == 1 and ran["verify"] == 1
    # Facts before the changes and after the restart; verification plans on the latter.
    assert ran["facts"] == 2
    assert sessions == 2  # the wave's, and the one opened after the restart


def test_without_a_replan_verification_opens_a_session_of_its_own(tmp_path: Path) -> None:
    model, host = model_host(tmp_path, "2016", seed=NO_RESTART)
    ran: Counter[str] = Counter()
    result, sessions = _rollout(tmp_path, model, host, ran)
    assert result.status == Status.CHANGED, result.error
    assert ran["http_listen"] == 0
    assert ran["facts"] == 2  # before the changes, and verification's own
    assert sessions == 2


def test_a_verification_cut_off_in_the_replans_session_reads_facts_again_in_a_new_one(tmp_path: Path) -> None:
    model, host = model_host(tmp_path, "2016", seed=RESTART_LAST)
    ran: Counter[str] = Counter()
    result, sessions = _rollout(tmp_path, model, host, ran, drop=Counter({"verify": 1}))
    assert result.status == Status.CHANGED, result.error
    assert ran["verify"] == 2
    assert ran["facts"] == 3  # before, after the restart, and the second attempt's own
    assert sessions == 3
