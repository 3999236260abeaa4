"""The rollout's `Fleet` over real hosts: preflight, waves and rollback through the runner, and the
gate command as a subprocess. I/O lives here; the decisions are orchestrator/rollout.py's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.desired import Desired
from orchestrator.inventory import Host
from orchestrator.results import Command, FleetResult, HostResult, Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog, recorded_rollout
from orchestrator.runner import DEFAULT_FORKS, RollbackTarget, rollback_fleet, rollout_fleet
from orchestrator.transport import SessionFactory
from orchestrator.waves import Wave

# A gate command that does not answer in this long stops the rollout, as a failing one does.
GATE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Undo:
    """What a rollout recorded about one host to undo it: a target, or why there is none."""

    target: RollbackTarget | None
    skipped: str | None = None  # why nothing is undone there
    warning: str | None = None


def rollback_target(run_dir: Path, host: Host) -> Undo:
    """The facts before the rollout and the desired state it acted on (the inventory's, with a
    warning, when an older log recorded none). ValueError when the recorded desired state is unreadable."""
    recorded = recorded_rollout(run_dir, host.name)
    if recorded.facts_before is None:
        return Undo(None, skipped=f"{host.name}: the rollout took no facts from it (unreachable?): skipped")
    if not recorded.changed:
        return Undo(None, skipped=f"{host.name}: the rollout changed nothing there: skipped")
    if recorded.desired is None:
        return Undo(RollbackTarget(host, recorded.facts_before, host.desired),
                    warning=f"warning: {host.name}: the rollout log records no desired state (an older run): "
                            "rolling back against the inventory's current dsr_* settings")
    return Undo(RollbackTarget(host, recorded.facts_before, Desired.from_dict(recorded.desired)))


@dataclass
class PsrpFleet:
    """Hosts by name, run over PSRP into one run's log."""

    hosts: Mapping[str, Host]
    log: RunLog
    session_factory: SessionFactory
    peers: Mapping[str, Host]
    forks: int = DEFAULT_FORKS
    gate: str | None = None

    def _pick(self, names: Sequence[str]) -> list[Host]:
        return [self.hosts[n] for n in names]

    def plan(self, names: Sequence[str]) -> FleetResult:
        self.log.set_context(names, wave="preflight")
        return rollout_fleet(self._pick(names), session_factory=self.session_factory, log=self.log,
                             policy=RetryPolicy(), peers=self.peers, forks=self.forks, dry_run=True)

    def rollout(self, names: Sequence[str], wave: str) -> FleetResult:
        self.log.set_context(names, wave=wave)
        return rollout_fleet(self._pick(names), session_factory=self.session_factory, log=self.log,
                             policy=RetryPolicy(), peers=self.peers, forks=self.forks)

    def rollback(self, names: Sequence[str]) -> FleetResult:
        """Undo what this run changed on `names`; a host with nothing recorded to undo stays as it is."""
        self.log.set_context(names, wave="rollback")
        targets, untouched = [], []
        for host in self._pick(names):
            target = rollback_target(self.log.path, host).target
            if target is None:
                untouched.append(HostResult(host.name, Command.ROLLBACK, Status.OK))
            else:
                targets.append(target)
        undone = rollback_fleet(targets, session_factory=self.session_factory, log=self.log,
                                policy=RetryPolicy(), forks=self.forks) if targets else None
        results = list(undone or ()) + untouched
        return FleetResult(Command.ROLLBACK, tuple(results))

    def gate_command(self, wave: Wave) -> tuple[int, str]:
        """Run --gate-command through the shell, with the run directory and the wave in its
        environment; (exit code, its output)."""
        assert self.gate is not None
        env = {**os.environ, "DSRPREP_RUN_DIR": str(self.log.path), "DSRPREP_RUN_ID": self.log.run_id,
               "DSRPREP_WAVE": wave.name, "DSRPREP_WAVE_HOSTS": " ".join(wave.hosts)}
        try:
            # Through the shell: it is the operator's own command line, as they would type it.
            done = subprocess.run(self.gate, shell=True, env=env, capture_output=True, text=True,
                                  timeout=GATE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return 124, f"did not finish in {GATE_TIMEOUT:.0f} s"
        except OSError as exc:
            return 127, str(exc)
        return done.returncode, (done.stdout + done.stderr)
