"""The rollout's `Fleet` over real hosts: preflight, waves and rollback through the runner, and the
gate command as a subprocess. I/O lives here; the decisions are orchestrator/rollout.py's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.choices import DEFAULT_FORKS
from orchestrator.desired import Desired
from orchestrator.facts import FactsError, parse_facts
from orchestrator.inventory import Host
from orchestrator.results import Command, FleetResult, HostResult, Status
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import HostRecord, RunLog, host_file_name, recorded_rollout
from orchestrator.runner import FactsMemo, RollbackRefusal, RollbackTarget, rollback_fleet, rollout_fleet
from orchestrator.waves import Wave

if TYPE_CHECKING:  # transport imports pypsrp; these names are only annotations here
    from orchestrator.transport import SessionFactory

# A gate command that does not answer in this long stops the rollout, as a failing one does.
GATE_TIMEOUT = 600.0


@dataclass(frozen=True)
class Undo:
    """What a rollout recorded about one host to undo it: a target, a refusal (the host ends failed,
    never contacted), or nothing to undo (`skipped` says why)."""

    target: RollbackTarget | RollbackRefusal | None
    skipped: str | None = None


def rollback_target(run_dir: Path, host: Host) -> Undo:
    """What `host`'s log in the run at `run_dir` says to undo (see `undo_of`)."""
    return undo_of(host, recorded_rollout(run_dir, host.name), run_dir / "hosts" / host_file_name(host.name))


def undo_of(host: Host, recorded: HostRecord, log_path: Path) -> Undo:
    """Whatever the step results say, every host the rollout read is compared with its facts from
    before, against the desired state the rollout recorded; a host no step ran on and that was never
    read is left alone. A host some step ran on without intact facts from before, or with no recorded
    desired state, is refused: nothing proves what to return it to. ValueError when the recorded
    desired state is unreadable."""
    if recorded.facts_before is None:
        if not recorded.steps_ran:
            return Undo(None, skipped=f"{host.name}: the rollout took no facts from it and ran no step there: "
                                      "nothing to undo: skipped")
        what = f"torn ({recorded.torn_lines} unreadable line(s))" if recorded.torn_lines else "missing"
        return Undo(RollbackRefusal(host, f"the facts recorded before the rollout are {what} in {log_path}, yet "
                                          "steps ran there: nothing proves what to return it to; check it by hand"))
    if recorded.desired is None:
        return Undo(RollbackRefusal(host, f"the rollout log {log_path} records no desired state (an older dsrprep): "
                                          "nothing proves what the rollout acted on; check it by hand"))
    desired = Desired.from_dict(recorded.desired)
    try:
        before = parse_facts(recorded.facts_before)
    except FactsError as exc:
        return Undo(RollbackRefusal(host, f"the facts recorded before the rollout in {log_path} do not parse "
                                          f"({exc}); check it by hand"))
    return Undo(RollbackTarget(host, before, desired))


@dataclass
class PsrpFleet:
    """Hosts by name, run over PSRP into one run's log."""

    hosts: Mapping[str, Host]
    log: RunLog
    session_factory: SessionFactory
    peers: Mapping[str, Host]
    forks: int = DEFAULT_FORKS
    gate: str | None = None
    # The preflight's facts, which the waves of this run plan on while they are fresh (runner.py).
    memo: FactsMemo = field(default_factory=dict)

    def _pick(self, names: Sequence[str]) -> list[Host]:
        return [self.hosts[n] for n in names]

    def plan(self, names: Sequence[str]) -> FleetResult:
        self.log.set_context(names, wave="preflight")
        return rollout_fleet(self._pick(names), session_factory=self.session_factory, log=self.log,
                             policy=RetryPolicy(), peers=self.peers, forks=self.forks, dry_run=True,
                             memo=self.memo)

    def rollout(self, names: Sequence[str], wave: str) -> FleetResult:
        self.log.set_context(names, wave=wave)
        return rollout_fleet(self._pick(names), session_factory=self.session_factory, log=self.log,
                             policy=RetryPolicy(), peers=self.peers, forks=self.forks, memo=self.memo)

    def rollback(self, names: Sequence[str]) -> FleetResult:
        """Undo what this run changed on `names`; a host with nothing recorded to undo stays as it is."""
        self.log.set_context(names, wave="rollback")
        targets: list[RollbackTarget | RollbackRefusal] = []
        untouched = []
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
