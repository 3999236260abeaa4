"""The pure parts of the benchmark: the ideal wall time of a run, how long hosts waited to start,
and the Markdown table.

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

No host starved: in each phase (a rollout's preflight and each wave; the one phase of `facts`), a
host's wait to start is the time from the phase's start, its first `host_start` line in the run's
host logs, to the host's own `host_start` line; the run's figure is the longest wait of any phase.
The first `forks` hosts start at once, every other host waits for a free worker, and workers take
hosts in order: a wait is bounded by the window when it is at most ceil(hosts_in_phase / forks) *
the phase's slowest host (its `host_start` to its `host_done`), the time that many rounds of
workers would take if every host were that slow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.rolloutlog import Event

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
class PhaseWait:
    """How long the hosts of one phase waited for a worker (see the module's docstring)."""

    phase: str
    hosts: int
    max_wait_s: float
    slowest_host_s: float
    bound_s: float

    @property
    def bounded(self) -> bool:
        return self.max_wait_s <= self.bound_s


def _moment(line: Mapping[str, Any]) -> datetime | None:
    stamp = line.get("timestamp")
    try:
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None


def start_waits(lines: Iterable[Mapping[str, Any]], forks: int) -> list[PhaseWait]:
    """Per phase (the `wave` of the lines: "preflight", a wave's name; none for `facts`), in the
    order the phases started: the hosts' longest wait to start and its bound. `lines`: every
    host log line of one run, in any order; lines without a usable timestamp are left out."""
    starts: dict[str, dict[str, datetime]] = {}
    ends: dict[str, dict[str, datetime]] = {}
    for line in lines:
        moment, host, event = _moment(line), line.get("host"), line.get("event")
        if moment is None or not isinstance(host, str) or event not in (Event.HOST_START, Event.HOST_DONE):
            continue
        phase = str(line.get("wave") or "all")
        if event == Event.HOST_START:
            first = starts.setdefault(phase, {}).get(host)
            starts[phase][host] = moment if first is None else min(first, moment)
        else:
            last = ends.setdefault(phase, {}).get(host)
            ends[phase][host] = moment if last is None else max(last, moment)
    waits = []
    for phase, began in sorted(starts.items(), key=lambda item: min(item[1].values())):
        start = min(began.values())
        done = ends.get(phase, {})
        slowest = max(((done[h] - t).total_seconds() for h, t in began.items() if h in done), default=0.0)
        waits.append(PhaseWait(phase, len(began), max((t - start).total_seconds() for t in began.values()),
                               slowest, math.ceil(len(began) / max(forks, 1)) * slowest))
    return waits


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
    # The longest wait of a host for a worker, over the run's phases (None: no host logs, the baseline).
    max_wait_start_s: float | None = None
    waits: tuple[PhaseWait, ...] = field(default=())

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.hosts, self.latency_ms, self.scenario)


def median_measure(runs: Sequence[Measure]) -> Measure:
    """The median of each figure over repeats of one (hosts, latency, scenario); the worst exit code."""
    first = runs[0]

    def med(values: list[float]) -> float:
        return float(statistics.median(values))

    waited = [r.max_wait_start_s for r in runs if r.max_wait_start_s is not None]
    return Measure(first.scenario, first.hosts, first.latency_ms, med([r.wall_s for r in runs]),
                   med([r.requests_per_host for r in runs]), med([r.cpu_ms_per_host for r in runs]),
                   med([r.peak_rss_mib for r in runs]), med([r.ideal_s for r in runs]),
                   max(r.exit_code for r in runs), med(waited) if waited else None)


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if denominator > 0 else "n/a"


def markdown_table(measures: Sequence[Measure]) -> str:
    """One row per (hosts, latency, scenario); rollouts compared with the baseline of the same cell
    (wall time baseline / dsrprep: above 1, dsrprep is faster) and with the ideal (wall / ideal)."""
    baseline = {(m.hosts, m.latency_ms): m for m in measures if m.scenario == "baseline"}
    lines = ["| hosts | latency | run | wall s | ideal s | wall/ideal | requests/host | CPU ms/host | "
             "peak RSS MiB | max wait to start s | baseline wall / this | exit |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in sorted(measures, key=lambda m: m.key):
        base = baseline.get((m.hosts, m.latency_ms))
        versus = _ratio(base.wall_s, m.wall_s) if base is not None and m.scenario == "rollout" else ""
        waited = "n/a" if m.max_wait_start_s is None else f"{m.max_wait_start_s:.1f}"
        lines.append(f"| {m.hosts} | {m.latency_ms} ms | {m.scenario} | {m.wall_s:.1f} | {m.ideal_s:.1f} | "
                     f"{_ratio(m.wall_s, m.ideal_s)} | {m.requests_per_host:.1f} | {m.cpu_ms_per_host:.0f} | "
                     f"{m.peak_rss_mib:.0f} | {waited} | {versus} | {m.exit_code} |")
    return "\n".join(lines) + "\n"
