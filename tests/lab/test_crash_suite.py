"""The rollout process SIGKILLed at seeded points of preflight, canary, waves and steps; then `resume`,
and `rollback` of the killed run.

The lab fleet runs in this process, so it outlives the killed rollout and its counters and models
can be read; the rollout runs as `python -m orchestrator rollout ... --yes` in a subprocess, killed
(SIGKILL) once its logs show the kill point's event for the nth time. At some points a torn last
line is added to a log, as a kill in the middle of a write leaves one. Then, each time:

- the killed run's logs are intact: every line parses, except possibly the last line of a file;
- `resume` finishes the run: every host ends ok or changed, and the plan of every host's facts is
  empty (compliant);
- no loopback was created twice, no loopback there before had its driver installed again, and
  nothing a step adds (a rule, a port opening, a binding, a listen entry, an address) is there twice;
- every log line parses (a torn last line was dropped when the log was opened again);
- `rollback` of the run brings every host back to its facts before the rollout, as the lab's model
  shows them and as the run's log recorded them.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.facts import parse_facts
from orchestrator.inventory import load_inventory
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.plan import plan
from orchestrator.rolloutlog import Event, recorded_rollout
from tests.lab.test_rollback_e2e import cli
from tests.shells import let_idle_shells_expire

pytestmark = pytest.mark.lab

HOSTS = 4  # with --waves 1,2: the canary (web02, 2003, whose listen list makes http_listen restart HTTP),
SEED = 1  # then web04 (2008), then web03 (2008 R2) and web01 (2012, a loopback there before) together
PROFILE = "mixed"  # every OS family in turn
WAVES = "1,2"
KILL_WITHIN = 60.0  # seconds the rollout may take to reach its kill point


@dataclass(frozen=True)
class KillPoint:
    """Kill once the run's host logs hold `nth` lines of `event` (of `step`, of `wave`, when given)."""

    name: str
    event: str
    wave: str | None = None
    step: str | None = None
    most: int = 1  # the seed draws nth from 1..most (no more than a rollout of this fleet logs)
    tear: bool = False  # then add a torn last line to the log of the host that wrote the nth line

    def matches(self, line: dict[str, Any]) -> bool:
        return (line.get("event") == self.event and (self.wave is None or line.get("wave") == self.wave)
                and (self.step is None or line.get("step") == self.step))


POINTS = [
    KillPoint("preflight-facts", Event.FACTS_BEFORE, wave="preflight", most=HOSTS, tear=True),
    KillPoint("preflight-plan", Event.PLAN, wave="preflight", most=HOSTS),
    KillPoint("canary-step", Event.STEP_START, wave="canary", most=5, tear=True),
    KillPoint("canary-http-restart", Event.STEP_RESULT, step="http_listen"),  # the restart still to come
    KillPoint("canary-done", Event.HOST_DONE, wave="canary"),
    KillPoint("wave-1-facts", Event.FACTS_BEFORE, wave="wave 1"),
    KillPoint("firewall-rule", Event.STEP_START, step="firewall_rule", most=3),
    KillPoint("loopback", Event.STEP_START, step="loopback", most=4, tear=True),
    KillPoint("loopback-result", Event.STEP_RESULT, step="loopback", most=4),
    KillPoint("wave-2-step", Event.STEP_START, wave="wave 2", most=12),
    KillPoint("wave-2-verify", Event.VERIFY_PLAN, wave="wave 2", most=2, tear=True),
]
_DRAW = random.Random(SEED)
NTH = {point.name: _DRAW.randint(1, point.most) for point in POINTS}


def dsrprep(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator", *args]


def host_logs(run_dir: Path) -> list[Path]:
    hosts = run_dir / "hosts"
    return sorted(hosts.glob("*.jsonl")) if hosts.is_dir() else []


class Watch:
    """The matching lines the run's host logs hold so far, read a file's new whole lines at a time
    (the rollout shares the machine's cores with this loop)."""

    def __init__(self, run_dir: Path, point: KillPoint) -> None:
        self.run_dir, self.point = run_dir, point
        self.read: dict[Path, int] = {}  # bytes of whole lines read, per log
        self.found: list[tuple[str, Path]] = []  # (timestamp, log) of each matching line

    def nth(self, nth: int) -> Path | None:
        """The log that holds the nth matching line (by time), once there are that many."""
        for path in host_logs(self.run_dir):
            with path.open("rb") as fh:
                fh.seek(self.read.get(path, 0))
                chunk = fh.read()
            whole = chunk[: chunk.rfind(b"\n") + 1]
            self.read[path] = self.read.get(path, 0) + len(whole)
            for line in whole.splitlines():
                event = json.loads(line)
                if self.point.matches(event):
                    self.found.append((str(event["timestamp"]), path))
        return sorted(self.found)[nth - 1][1] if len(self.found) >= nth else None


def kill_at(proc: subprocess.Popen[str], run_dir: Path, point: KillPoint, nth: int) -> Path:
    """SIGKILL the rollout once its logs hold the kill point's nth line; the log that holds it."""
    deadline = time.monotonic() + KILL_WITHIN
    watch = Watch(run_dir, point)
    while (where := watch.nth(nth)) is None:
        if proc.poll() is not None:
            pytest.fail(f"the rollout ended (exit {proc.returncode}) before {point.name} #{nth}:\n"
                        f"{proc.communicate()[1][-3000:]}")
        assert time.monotonic() < deadline, f"the rollout did not reach {point.name} #{nth} in {KILL_WITHIN:.0f} s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return where


def torn_lines(path: Path) -> list[int]:
    """The numbers (from 1) of the lines of `path` that do not parse as a JSON object."""
    bad = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            ok = isinstance(json.loads(line), dict)
        except json.JSONDecodeError:
            ok = False
        if not ok:
            bad.append(number)
    return bad


def facts_now(handle: LabHost) -> dict[str, Any]:
    return parse_facts(handle.model.facts()).to_dict()


def repeated(handle: LabHost) -> list[str]:
    """What the host holds twice that a step adds: firewall rules and port openings, site bindings,
    listen entries, addresses of an adapter."""
    model = handle.model
    fw = model.firewall
    entries = [f"rule {r.name} {r.local_addresses}:{r.local_ports}" for r in getattr(fw, "rules", [])]
    entries += [f"opening {o.protocol}/{o.port} {o.profile}" for o in getattr(fw, "port_openings", [])]
    entries += [f"binding {site.name} {proto}/{info}" for site in model.sites for proto, info in site.bindings]
    entries += [f"listen {a}" for a in model.http_listen]
    entries += [f"address {n.pnp_device_id} {a}" for n in model.nics for a, _ in n.addresses]
    return sorted({e for e in entries if entries.count(e) > 1})


def loopbacks(handle: LabHost) -> dict[str, int]:
    """The host's loopback adapters (PnP ones still late in WMI included): PNP id -> driver installs."""
    return {n.pnp_device_id: n.driver_installs for n in [*handle.model.nics, *handle.model.pnp_only] if n.is_loopback}


@pytest.mark.parametrize("point", POINTS, ids=[f"{p.name}-{NTH[p.name]}" for p in POINTS])
def test_killed_resumed_and_rolled_back(tmp_path: Path, point: KillPoint) -> None:
    nth = NTH[point.name]
    runs, run_dir = tmp_path / "runs", tmp_path / "runs" / "killed"
    with LabFleet.build(HOSTS, seed=SEED, profile=PROFILE) as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        original = {h.name: facts_now(h) for h in fleet}
        existing = {h.name: loopbacks(h) for h in fleet}
        proc = subprocess.Popen(
            dsrprep("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(runs), "--run-dir", str(run_dir),
                    "--waves", WAVES),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            last = kill_at(proc, run_dir, point, nth)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        for path in host_logs(run_dir):
            lines = path.read_text().splitlines()
            assert torn_lines(path) in ([], [len(lines)]), f"{path.name}: a line other than the last is torn"
        if point.tear:
            with last.open("a", encoding="utf-8") as fh:
                fh.write('{"event": "step_result", "step": "loopb')  # what a kill in mid-write leaves

        code, done, err = cli("resume", str(run_dir), "--yes", "--json")
        assert code == 0, f"{err[-3000:]}\n{json.dumps(done, indent=1)[:3000]}"
        assert done["ending"] == "finished"
        assert set(done["hosts"]) == {h.name for h in fleet}
        assert all(e["status"] in ("ok", "changed") for e in done["hosts"].values()), done["summary"]
        for path in host_logs(run_dir):
            assert torn_lines(path) == [], f"{path.name} holds a torn line after the resume"
        inv = load_inventory(inventory, default_password=None, env={})
        for handle in fleet:
            left = plan(parse_facts(handle.model.facts()), inv.host(handle.name).desired)
            assert left.actions == () and left.refusals == (), f"{handle.name}: {left.to_dict()}"
        for handle in fleet:
            made = {pnp for pnp in loopbacks(handle) if pnp not in existing[handle.name]}
            assert len(made) <= 1, f"{handle.name}: loopbacks created {sorted(made)}"
            assert handle.model.marker.get("LoopbackPnpId") in {*made, *existing[handle.name]}
            # The driver of a loopback that was there before was never installed again.
            assert {p: n for p, n in loopbacks(handle).items() if p in existing[handle.name]} == existing[handle.name]
            assert repeated(handle) == [], handle.name
        let_idle_shells_expire(*fleet.hosts)  # the shells the killed process left

        code, undone, err = cli("rollback", str(run_dir), "--yes", "--json", "--runs-dir", str(runs))
        assert code == 0, f"{err[-3000:]}\n{json.dumps(undone, indent=1)[:3000]}"
        for handle in fleet:
            assert undone["hosts"][handle.name]["status"] == "rolled_back"
            recorded = recorded_rollout(run_dir, handle.name).facts_before
            assert recorded is not None
            assert facts_now(handle) == original[handle.name] == parse_facts(recorded).to_dict(), handle.name
