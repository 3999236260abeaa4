"""When a host run reads facts: a wave plans on its preflight's facts while they are fresh.

The sessions run each template straight on a lab host model (no network) and count what ran.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from orchestrator.inventory import Host
from orchestrator.lab.host import WindowsHost
from orchestrator.results import PlanStatus, Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import Event, RunLog, host_file_name
from orchestrator.runner import PREFLIGHT_FACTS_FRESH, FactsMemo, rollout_host
from tests.modelhosts import ModelSession, model_host


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run(host: Host, model: WindowsHost, log: RunLog, ran: Counter[str], clock: Clock, *,
         memo: FactsMemo | None, dry_run: bool = False) -> Any:
    return rollout_host(host, session_factory=lambda _c: ModelSession(model, ran=ran), log=log,
                        policy=RetryPolicy(), sleep=lambda _s: None, clock=clock, dry_run=dry_run, memo=memo)


def _facts_before_lines(log: RunLog, host: str) -> list[dict[str, Any]]:
    text = (log.path / "hosts" / host_file_name(host)).read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    return [line for line in lines if line.get("event") == Event.FACTS_BEFORE]


def test_a_wave_plans_on_fresh_preflight_facts(tmp_path: Path) -> None:
    model, host = model_host(tmp_path)
    log, clock, memo = RunLog.create(tmp_path / "runs"), Clock(), FactsMemo()
    preflight: Counter[str] = Counter()
    assert _run(host, model, log, preflight, clock, memo=memo, dry_run=True).status == PlanStatus.CHANGES
    assert preflight["facts"] == 1 and host.name in memo
    clock.now += PREFLIGHT_FACTS_FRESH
    wave: Counter[str] = Counter()
    result = _run(host, model, log, wave, clock, memo=memo)
    log.close()
    assert result.status == Status.CHANGED, result.error
    assert wave["facts"] == 1  # verification's only: the plan came from the preflight's reading
    assert host.name not in memo  # used once
    wave_line = _facts_before_lines(log, host.name)[-1]
    assert wave_line["preflight_age"] == PREFLIGHT_FACTS_FRESH
    assert wave_line["raw"] == _facts_before_lines(log, host.name)[0]["raw"]


def test_stale_preflight_facts_are_read_again(tmp_path: Path) -> None:
    model, host = model_host(tmp_path)
    log, clock, memo = RunLog.create(tmp_path / "runs"), Clock(), FactsMemo()
    _run(host, model, log, Counter(), clock, memo=memo, dry_run=True)
    clock.now += PREFLIGHT_FACTS_FRESH + 0.5
    wave: Counter[str] = Counter()
    result = _run(host, model, log, wave, clock, memo=memo)
    log.close()
    assert result.status == Status.CHANGED, result.error
    assert wave["facts"] == 2  # before the changes, and verification
    assert "preflight_age" not in _facts_before_lines(log, host.name)[-1]


def test_without_a_memo_every_rollout_reads_its_facts(tmp_path: Path) -> None:
    model, host = model_host(tmp_path)
    log, clock = RunLog.create(tmp_path / "runs"), Clock()
    _run(host, model, log, Counter(), clock, memo=None, dry_run=True)
    wave: Counter[str] = Counter()
    assert _run(host, model, log, wave, clock, memo=None).status == Status.CHANGED
    log.close()
    assert wave["facts"] == 2

