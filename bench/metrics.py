"""The pure parts of the benchmark: the ideal wall time of a run and the Markdown table.

The ideal wall time is the critical path of a run on a network whose every request costs `latency`
seconds and whose hosts answer in no time but for their own outages. A run goes through phases one
after the other: for `rollout`, the preflight (facts of every host, all at once) and then each wave;
for `facts` and the baseline, one phase of every host. In a phase of hosts h with minimum requests
r(h) and unavoidable wait w(h), at most `forks` hosts in flight:

    phase = max( max_h (r(h) * latency + w(h)),  ceil(sum_h r(h) / forks) * latency )
    ideal = sum of the phases

r(h) is the floor of requests for what the host needs, whoever the client is (NTLM + message
encryption): 8 for one session that opens a runspace pool, runs one pipeline and closes (the
facts; the preflight of a rollout), and 2 per action plus a second and a third session of 8
(applying; verifying on a fresh session) for a host with n actions: 8 + (2n + 8) = 2n + 16 in all.
w(h) is the time the host itself is away: the HTTP service restart the http_listen step schedules
(the lab's delay before it and its outage; 0 for other hosts). The client's own think time, its
retries and any wait longer than the host's outage are what the ratio wall / ideal shows.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SESSION_FLOOR = 8  # one session: NTLM handshake, Create, the pool's opening Receives, one pipeline, Delete
PER_ACTION = 2  # one more pipeline on an open session: Command and Receive


def rollout_floor(actions: int) -> int:
    """Minimum requests for a host with `actions` actions, the preflight facts included."""
    return SESSION_FLOOR if actions == 0 else PER_ACTION * actions + 2 * SESSION_FLOOR


@dataclass(frozen=True)
class Need:
    """What one host needs of a run: its actions, and the seconds it is away on its own (a restart)."""

    actions: int = 0
    wait: float = 0.0


def phase_time(floors: Sequence[tuple[int, float]], latency: float, forks: int) -> float:
    """Critical path of one phase of (requests, wait) per host: its slowest host, or its requests
    spread over `forks` workers."""
    if not floors:
        return 0.0
    slowest = max(requests * latency + wait for requests, wait in floors)
    spread = math.ceil(sum(requests for requests, _ in floors) / max(forks, 1)) * latency
    return max(slowest, spread)


def ideal_rollout(waves: Sequence[Sequence[str]], needs: Mapping[str, Need], latency: float, forks: int) -> float:
    """Ideal wall time of a rollout: the preflight of every host, then each wave in turn."""
    everyone = [h for wave in waves for h in wave]
    preflight = phase_time([(SESSION_FLOOR, 0.0)] * len(everyone), latency, forks)
    rest = sum(phase_time([(rollout_floor(needs[h].actions) - SESSION_FLOOR, needs[h].wait) for h in wave],
                          latency, forks)
               for wave in waves)
    return preflight + rest


def ideal_single_phase(needs: Mapping[str, Need], latency: float, forks: int) -> float:
    """Ideal wall time of one phase of every host (`facts`: nothing needed; the baseline)."""
    return phase_time([(rollout_floor(n.actions), n.wait) for n in needs.values()], latency, forks)


@dataclass(frozen=True)
class Measure:
    """One run of one client: what the benchmark reports of it."""

    scenario: str  # facts, rollout, rollout-again, baseline
    hosts: int
    latency_ms: int
    wall_s: float
    requests_per_host: float
    cpu_ms_per_host: float
    peak_rss_mib: float
    ideal_s: float
    exit_code: int

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.hosts, self.latency_ms, self.scenario)


def median_measure(runs: Sequence[Measure]) -> Measure:
    """The median of each figure over repeats of one (hosts, latency, scenario); the worst exit code."""
    first = runs[0]

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    return Measure(first.scenario, first.hosts, first.latency_ms, med([r.wall_s for r in runs]),
                   med([r.requests_per_host for r in runs]), med([r.cpu_ms_per_host for r in runs]),
                   med([r.peak_rss_mib for r in runs]), med([r.ideal_s for r in runs]),
                   max(r.exit_code for r in runs))


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "n/a"


def markdown_table(measures: Sequence[Measure]) -> str:
    """One row per (hosts, latency, scenario); rollouts compared with the baseline of the same cell
    (wall time baseline / dsrprep: above 1, dsrprep is faster) and with the ideal (wall / ideal)."""
    baseline = {(m.hosts, m.latency_ms): m for m in measures if m.scenario == "baseline"}
    lines = ["| hosts | latency | run | wall s | ideal s | wall/ideal | requests/host | CPU ms/host | "
             "peak RSS MiB | baseline wall / this | exit |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in sorted(measures, key=lambda m: m.key):
        base = baseline.get((m.hosts, m.latency_ms))
        versus = _ratio(base.wall_s, m.wall_s) if base is not None and m.scenario == "rollout" else ""
        lines.append(f"| {m.hosts} | {m.latency_ms} ms | {m.scenario} | {m.wall_s:.1f} | {m.ideal_s:.1f} | "
                     f"{_ratio(m.wall_s, m.ideal_s)} | {m.requests_per_host:.1f} | {m.cpu_ms_per_host:.0f} | "
                     f"{m.peak_rss_mib:.0f} | {versus} | {m.exit_code} |")
    return "\n".join(lines) + "\n"
