"""A rollout of a lab fleet under seeded random faults, and what it leaves behind: the harness of the
fault suite (tests/lab/test_fault_suite.py) and of its matrix (python -m tests.fault_matrix).

The fleet is a mixed one (every OS family in turn). Its first host is the canary and meets no
fault; every other host gets `RandomFaults` of the asked kinds and rate, with a seed of its own;
the last `hung` hosts hang for good (they accept connections and never answer). The inventory's
timeouts are short so that a faulted request costs seconds, not minutes: WinRM's OperationTimeout
1 s, the read timeout 4 s, and `slow` / `hang` hold a request 5 s, past both the read timeout and
what pypsrp waits for a Receive (the OperationTimeout + 2 s). `dsrprep rollout` runs
in-process (typer's CliRunner) with every wave after the canary one wave, and thresholds that never
stop it.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.common import FAULT_KINDS, RandomFaults
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.rolloutlog import Event
from tests.shells import let_idle_shells_expire

OPERATION_TIMEOUT = 1
READ_TIMEOUT = 4
HOLD = READ_TIMEOUT + 1.0  # and 2 s past a Receive's OperationTimeout + 2 s
RECONNECTION_BACKOFF = 0.2  # pypsrp's pause before it sends a Receive that timed out again


@dataclass(frozen=True)
class Setting:
    hosts: int
    rate: float
    kinds: tuple[str, ...] = FAULT_KINDS
    seed: int = 1
    hung: int = 0
    forks: int = 32

    @property
    def label(self) -> str:
        return "all kinds" if set(self.kinds) == set(FAULT_KINDS) else ", ".join(self.kinds)


@dataclass
class Run:
    """One rollout of a faulted fleet: what the CLI printed and how long it took."""

    exit_code: int
    doc: dict[str, Any]
    seconds: float
    output: str

    @property
    def run_dir(self) -> Path:
        return Path(self.doc["run_dir"])

    def statuses(self) -> dict[str, str]:
        return {name: entry["status"] for name, entry in self.doc["hosts"].items()}


@dataclass
class Faulted:
    """A running faulted fleet, the hosts' loopback adapters before anything ran, and its inventory."""

    fleet: LabFleet
    setting: Setting
    inventory: Path
    loopbacks_before: dict[str, int] = field(default_factory=dict)

    @property
    def canary(self) -> LabHost:
        return self.fleet.hosts[0]

    def hung(self) -> list[LabHost]:
        return [h for h in self.fleet.hosts if h.faults.hang]

    def injected(self, handle: LabHost) -> Counter[str]:
        spec = handle.faults.random
        return Counter(spec.injected) if spec is not None else Counter()

    def served(self) -> float:
        """The share of the faulted hosts' WS-Management requests that met a fault (cuts strike step
        runs, not requests, and are not in it)."""
        hosts = [h for h in self.fleet.hosts if h.faults.random is not None]
        faulted = sum(n for h in hosts for kind, n in self.injected(h).items() if kind != "cut")
        requests = sum(sum(h.counters.wsman.values()) for h in hosts)
        return faulted / requests if requests else 0.0

    def loopbacks_created(self, handle: LabHost) -> int:
        return _loopbacks(handle) - self.loopbacks_before[handle.name]

    def stop_faults(self) -> None:
        """Faults end: no more draws, no hung host. Requests the lab still holds end within HOLD;
        then the shells left behind end by the hosts' idle timeout, whose length is then restored."""
        for handle in self.fleet.hosts:
            handle.faults.random = None
            handle.faults.hang = False
        time.sleep(HOLD + 1.0)
        idle = [h.winrm.idle_timeout_ms for h in self.fleet.hosts]
        let_idle_shells_expire(*self.fleet.hosts)
        for handle, timeout in zip(self.fleet.hosts, idle, strict=True):
            handle.winrm.idle_timeout_ms = timeout


def _loopbacks(handle: LabHost) -> int:
    model = handle.model
    return sum(1 for nic in [*model.nics, *model.pnp_only] if nic.is_loopback)


@contextmanager
def faulted_fleet(setting: Setting, workdir: Path) -> Iterator[Faulted]:
    """A started fleet with the setting's faults, and its inventory (short timeouts) in `workdir`."""
    with LabFleet.build(setting.hosts, seed=setting.seed, profile="mixed") as fleet:
        others = fleet.hosts[1:]
        for number, handle in enumerate(others, start=1):
            handle.faults.random = RandomFaults(setting.rate, seed=setting.seed * 10_000 + number,
                                                kinds=setting.kinds, hold=HOLD)
        for handle in others[len(others) - setting.hung:] if setting.hung else []:
            handle.faults.hang = True
        document = fleet.inventory()
        document["all"]["vars"].update(
            ansible_psrp_operation_timeout=OPERATION_TIMEOUT, ansible_psrp_read_timeout=READ_TIMEOUT,
            ansible_psrp_connection_timeout=READ_TIMEOUT, ansible_psrp_reconnection_backoff=RECONNECTION_BACKOFF)
        inventory = workdir / "lab.yml"
        inventory.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        yield Faulted(fleet, setting, inventory, {h.name: _loopbacks(h) for h in fleet.hosts})


def cli(*args: str) -> Run:
    started = time.monotonic()
    result = CliRunner().invoke(app, list(args))
    seconds = time.monotonic() - started
    try:
        doc = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"dsrprep {' '.join(args)} printed no JSON:\n{result.output[-3000:]}") from None
    return Run(result.exit_code, doc, seconds, result.output)


def rollout(faulted: Faulted, runs_dir: Path) -> Run:
    return cli("rollout", str(faulted.inventory), "--yes", "--json", "--canary", faulted.canary.name,
               "--waves", "100%", "--max-failures", "100%", "--max-unreachable", "100%",
               "--forks", str(faulted.setting.forks), "--runs-dir", str(runs_dir))


def host_logs(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every host log of a run, each line parsed (a line that does not parse fails)."""
    logs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((run_dir / "hosts").glob("*.jsonl")):
        events = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise AssertionError(f"{path}:{number} is not JSON ({exc}): {line[:200]}") from None
        logs[path.stem] = events
    return logs


def retries(events: list[dict[str, Any]]) -> int:
    """What a host's log shows dsrprep trying again: failed attempts it retried (connecting, facts,
    verify), and steps cut off that it recovered from (fresh facts, a new plan)."""
    count = sum(1 for e in events if e["event"] == Event.ATTEMPT_FAILED and e.get("will_retry"))
    pending = False
    for event in events:
        if event["event"] == Event.STEP_RESULT:
            pending = event["status"] == "failed"
        elif event["event"] == Event.REPLANNED and pending:
            count += 1
            pending = False
        elif event["event"] == Event.STEP_START:
            pending = False
    return count


COMPLIANT = ("ok", "changed")


def matrix_row(setting: Setting, workdir: Path) -> dict[str, Any]:
    """One line of the fault matrix: a rollout of a fleet faulted as `setting` says."""
    with faulted_fleet(setting, workdir) as faulted:
        run = rollout(faulted, workdir / "runs")
        statuses = run.statuses()
        logs = host_logs(run.run_dir)
        durations = [entry.get("duration", 0.0) for entry in run.doc["hosts"].values()]
        row = {
            "kind": setting.label,
            "rate": setting.rate,
            "served": round(faulted.served(), 3),
            "faults": sum(sum(faulted.injected(h).values()) for h in faulted.fleet.hosts),
            "compliant": sum(1 for s in statuses.values() if s in COMPLIANT),
            "hosts": setting.hosts,
            "retries": sum(retries(events) for events in logs.values()),
            "seconds": round(run.seconds, 1),
            "slowest_host": round(max(durations), 1),
        }
        faulted.stop_faults()
    return row


def kinds_of(names: Collection[str]) -> tuple[str, ...]:
    unknown = sorted(set(names) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kinds {unknown}; the kinds are {', '.join(FAULT_KINDS)}")
    return tuple(k for k in FAULT_KINDS if k in names)
