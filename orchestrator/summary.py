"""The end of a run for people: hosts in a stable order, and the summary printed last.

Tables list hosts by name (naturally: web2 before web10), or, for a rollout, in the order of its
waves; never in the order hosts happened to finish. The summary puts failures first: the counts per
status, then each failed and unreachable host with the step it stopped at and a one-line reason,
then the run's wall time, its slowest host, and the run folder. Pure: data in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text

from orchestrator.report import STATUS_STYLE
from orchestrator.results import FleetResult, HostResult, PlanStatus, Status
from orchestrator.waves import Wave

# Counts are shown in this order, troubles first; a status not listed comes after these.
STATUS_ORDER: tuple[str, ...] = (
    Status.FAILED, Status.UNREACHABLE, Status.INTERRUPTED, Status.ABORTED, Status.CHANGED, Status.ROLLED_BACK,
    PlanStatus.CHANGES, Status.OK, PlanStatus.COMPLIANT, Status.SKIPPED,
)
# The hosts the summary names one by one, each with its step and reason.
LISTED: tuple[Status, ...] = (Status.FAILED, Status.UNREACHABLE)
REASON_WIDTH = 160


_STYLE_BY_NAME = {str(status): style for status, style in STATUS_STYLE.items()}


def style_of(status: str) -> str:
    """The colour of a status as logs and run.json write it."""
    return _STYLE_BY_NAME.get(status, "")


def name_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sorts host names as people read them: web2 before web10, case aside."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def by_name(results: Iterable[HostResult]) -> list[HostResult]:
    return sorted(results, key=lambda r: name_key(r.host))


def in_wave_order(results: Iterable[HostResult], waves: Sequence[Wave]) -> list[tuple[str, HostResult]]:
    """(wave name, result) in the rollout's order: wave by wave, each by name; the hosts no wave held
    (compliant, or stopped at the preflight) after them by name, with an empty wave name."""
    index = {host: number for number, wave in enumerate(waves) for host in wave.hosts}
    names = {host: wave.name for wave in waves for host in wave.hosts}
    ordered = sorted(results, key=lambda r: (index.get(r.host, len(waves)), name_key(r.host)))
    return [(names.get(r.host, ""), r) for r in ordered]


def ordered_counts(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    rank = {status: index for index, status in enumerate(STATUS_ORDER)}
    return sorted(counts.items(), key=lambda item: (rank.get(item[0], len(rank)), item[0]))


def one_line(text: str, width: int = REASON_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


@dataclass(frozen=True)
class Trouble:
    """A host the summary names: how it ended, where, and why."""

    host: str
    status: str
    step: str
    reason: str


def troubles(result: FleetResult) -> list[Trouble]:
    """The failed hosts, then the unreachable ones, each by name."""
    found = []
    for status in LISTED:
        for r in by_name(x for x in result if x.status == status):
            step = r.failed_step or _where(r)
            reason = f"{r.error.error_class}: {r.error.message}" if r.error else "no reason recorded"
            found.append(Trouble(r.host, str(status), step, one_line(reason)))
    return found


def _where(result: HostResult) -> str:
    """Where a host without a failed step stopped: connecting, or its last step, or taking facts."""
    if result.status == Status.UNREACHABLE:
        return "connect"
    return result.steps[-1].step if result.steps else "facts"


@dataclass(frozen=True)
class Summary:
    """What the end of a run says (`lines()` renders it)."""

    title: str  # "rollout finished", "facts"...
    counts: tuple[tuple[str, int], ...]
    troubles: tuple[Trouble, ...]
    wall: float
    slowest: tuple[str, float] | None
    run_dir: Path
    stops: tuple[str, ...] = ()  # why a gate stopped the rollout

    def lines(self) -> list[Text]:
        total = sum(n for _, n in self.counts)
        head = Text(f"{self.title}: ", style="bold")
        for index, (status, n) in enumerate(self.counts):
            head.append(", " if index else "").append(f"{status} {n}", style=style_of(status))
        head.append(f" ({total} host{'' if total == 1 else 's'})")
        out = [head]
        out += [Text.assemble(("stopped: ", "bold red"), reason) for reason in self.stops]
        for t in self.troubles:
            out.append(Text.assemble("  ", (f"{t.status:<11}", style_of(t.status)), f" {t.host}  ",
                                     (f"at {t.step}", "bold"), f": {t.reason}"))
        timing = f"time: {self.wall:.1f} s"
        if self.slowest is not None:
            timing += f"; slowest host {self.slowest[0]} ({self.slowest[1]:.1f} s)"
        out.append(Text(timing))
        out.append(Text(f"run folder: {self.run_dir}"))
        return out


def summarize(result: FleetResult, *, title: str, wall: float, run_dir: Path,
              gates: Sequence[Mapping[str, object]] = ()) -> Summary:
    """The summary of `result`; `gates` are a rollout's gate decisions (run.json's `gates`)."""
    timed = [r for r in result if r.duration > 0]
    slowest = max(timed, key=lambda r: r.duration, default=None)
    stops = tuple(str(reason) for gate in gates if not gate.get("go_on")
                  for reason in _reasons(gate.get("reasons")))
    return Summary(title, tuple(ordered_counts(result.counts())), tuple(troubles(result)), wall,
                   (slowest.host, slowest.duration) if slowest else None, run_dir, stops)


def _reasons(value: object) -> list[str]:
    return [one_line(str(v)) for v in value] if isinstance(value, list | tuple) else []
