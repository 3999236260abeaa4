"""The lab's fault kinds against WinRM 2.0's quota of 5 shells per user: a rollout never nears it.

Each 2008 R2 host of the fleet gets one fault (an injected WSMan fault, a dropped connection, a pool
open that times out, latency, a step that cuts the connection off). dsrprep deletes every shell it
opens, through a fresh connection when the old one is gone, so a host holds at most one dsrprep
shell at a time; only a shell no connection can reach any more (the cut) is left to the idle
timeout, logged by id. The shell audit of tests/conftest.py then checks creates minus deletes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.rolloutlog import read_host_log
from orchestrator.transport import OPEN_TIMEOUTS_TOLERATED
from tests.shells import let_idle_shells_expire

pytestmark = pytest.mark.lab

Fault = Callable[[LabHost], None]


def _set(**knobs: Any) -> Fault:
    def apply(handle: LabHost) -> None:
        for name, value in knobs.items():
            setattr(handle.faults, name, value)
    return apply


def _cut_on(step: str) -> Fault:
    def apply(handle: LabHost) -> None:
        handle.model.cut_on_step = step
    return apply


# One host per fault kind and place. Request numbers count the host's WS-Management requests: 1 is
# the first pool's Create, 2-3 its opening Receives, 4 the facts pipeline's Command.
FAULTS: dict[str, Fault] = {
    "healthy": _set(),
    "fault on Create": _set(fault_on_request=1),
    "fault on a Command": _set(fault_on_request=4),
    "fault mid-rollout": _set(fault_on_request=14),
    "drop during open": _set(drop_on_request=2),
    "drop on a Command": _set(drop_on_request=4),
    "drop mid-rollout": _set(drop_on_request=17),
    "open times out, then opens": _set(timeout_on_open=OPEN_TIMEOUTS_TOLERATED),
    "latency": _set(latency=0.05),
    "step cuts the connection": _cut_on("loopback_config"),
}
CUT = "step cuts the connection"


def test_fault_kinds_never_near_the_shell_quota(tmp_path: Path) -> None:
    with LabFleet.build(len(FAULTS), seed=17, profile="2008r2") as fleet:
        kinds = dict(zip((h.name for h in fleet), FAULTS, strict=True))
        for handle in fleet:
            assert handle.winrm.max_shells_per_user == 5  # WinRM 2.0's default
            FAULTS[kinds[handle.name]](handle)
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        result = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--json", "--max-failures", "100",
                                          "--runs-dir", str(tmp_path / "runs")])
        doc = json.loads(result.stdout)
        statuses = {kinds[name]: entry["status"] for name, entry in doc["hosts"].items()}
        assert set(statuses.values()) == {"changed"}, statuses

        peaks = {kinds[h.name]: h.counters.shells_peak for h in fleet}
        # The cut shell waits for the idle timeout while the next session works: two at once, once.
        assert peaks == {kind: 2 if kind == CUT else 1 for kind in FAULTS}
        run_dir = Path(doc["run_dir"])
        for handle in fleet:
            text = (run_dir / "hosts" / f"{handle.name}.jsonl").read_text()
            assert "QuotaLimit" not in text
            left = [e for e in read_host_log(run_dir / "hosts" / f"{handle.name}.jsonl").events
                    if e["event"] == "shells_left"]
            assert len(left) == (1 if kinds[handle.name] == CUT else 0), kinds[handle.name]
        # Every other shell ended with a Delete, on its own connection or a fresh one.
        undeleted = {kinds[h.name]: h.counters.shells_created - h.counters.shell_deletes["delete"] for h in fleet}
        assert undeleted == {kind: 1 if kind == CUT else 0 for kind in FAULTS}
        let_idle_shells_expire(*fleet.hosts, left=1)
