"""Canary and waves: who goes when, and whether the rollout may go on. Pure: names in, decisions out.

- `--canary N|HOST,...|@GROUP`: the first N hosts that need changes, those hosts, or that inventory
  group; without it, the inventory group `canary` when there is one, else the first host needing
  changes. Hosts already compliant never take a place in the canary: it must prove the change.
- `--waves 1,5,25%,100%` (Ansible's `serial` list) for the hosts after the canary: counts and
  percentages of those hosts, the last size repeating until every host is placed. A percentage is
  rounded down, and a wave holds at least one host.
- `--order inventory|sorted|shuffle:SEED`: the order hosts are placed in, decided once.
- Thresholds `--max-failures` / `--max-unreachable`: `N` hosts or `P%` of the wave (rounded down);
  a gate stops the rollout when a count strictly exceeds its threshold. The canary allows nothing.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.choices import DEFAULT_WAVES
from orchestrator.errors import DsrError

CANARY = "canary"
ORDERS = ("inventory", "sorted", "shuffle:SEED")


class WaveError(DsrError):
    """A --canary, --waves, --order or threshold value that cannot be used."""


@dataclass(frozen=True)
class Size:
    """A wave size: a count of hosts, or a percentage of the hosts after the canary."""

    value: int
    percent: bool = False

    def hosts(self, total: int) -> int:
        return max(1, total * self.value // 100) if self.percent else self.value

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


@dataclass(frozen=True)
class Threshold:
    """How many failed (or unreachable) hosts a wave may have before the rollout stops."""

    value: int
    percent: bool = False

    def allowed(self, wave_size: int) -> int:
        return wave_size * self.value // 100 if self.percent else self.value

    def exceeded(self, count: int, wave_size: int) -> bool:
        return count > self.allowed(wave_size)

    def __str__(self) -> str:
        return f"{self.value}%" if self.percent else str(self.value)


NOTHING_MAY_FAIL = Threshold(0)


def _number(text: str, what: str, *, allow_percent: bool, low: int) -> tuple[int, bool]:
    match = re.fullmatch(r"\s*(\d+)\s*(%?)\s*", text)
    if match is None or (match.group(2) and not allow_percent):
        form = "a number or a percentage (10%)" if allow_percent else "a number"
        raise WaveError(f"{what}: {text!r} is not {form}")
    value, percent = int(match.group(1)), bool(match.group(2))
    if value < low or (percent and value > 100):
        raise WaveError(f"{what}: {text!r} is out of range ({low}-100%)" if percent else
                        f"{what}: {text!r} must be at least {low}")
    return value, percent


def parse_waves(spec: str) -> tuple[Size, ...]:
    """`1,5,25%,100%` -> sizes; WaveError naming the bad item."""
    items = [item for item in spec.split(",")]
    if not spec.strip() or any(not item.strip() for item in items):
        raise WaveError(f"--waves: {spec!r} is not a comma-separated list of sizes (like {DEFAULT_WAVES})")
    return tuple(Size(*_number(item, "--waves", allow_percent=True, low=1)) for item in items)


def parse_threshold(text: str, option: str) -> Threshold:
    return Threshold(*_number(text, option, allow_percent=True, low=0))


@dataclass(frozen=True)
class CanarySpec:
    """What --canary asked for: a count, host names, or a group (None: the default rule)."""

    count: int | None = None
    hosts: tuple[str, ...] = ()
    group: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> CanarySpec:
        if text is None:
            return cls()
        text = text.strip()
        if text.startswith("@"):
            if not text[1:]:
                raise WaveError("--canary: @ needs a group name (@canary)")
            return cls(group=text[1:])
        if re.fullmatch(r"\d+", text):
            return cls(count=_number(text, "--canary", allow_percent=False, low=1)[0])
        names = tuple(n.strip() for n in text.split(","))
        if not names or any(not n for n in names):
            raise WaveError(f"--canary: {text!r} is not a count, a list of host names or @group")
        return cls(hosts=names)


def order_hosts(names: Sequence[str], order: str) -> list[str]:
    """The hosts in the order they are placed: as the inventory lists them, sorted, or shuffled by a seed."""
    if order == "inventory":
        return list(names)
    if order == "sorted":
        return sorted(names)
    match = re.fullmatch(r"shuffle:(\d+)", order)
    if match is None:
        raise WaveError(f"--order: {order!r} is not one of {', '.join(ORDERS)}")
    shuffled = list(names)
    random.Random(int(match.group(1))).shuffle(shuffled)
    return shuffled


@dataclass(frozen=True)
class Wave:
    name: str  # "canary", "wave 1", ...
    hosts: tuple[str, ...]

    @property
    def is_canary(self) -> bool:
        return self.name == CANARY


def named_canary(spec: CanarySpec, selected: Sequence[str], groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The selected hosts the canary spec names: its hosts, its group's members, or (with neither a
    count nor names) the inventory group `canary`'s; [] when it names none (a count, or no such group)."""
    if spec.hosts:
        missing = [h for h in spec.hosts if h not in selected]
        if missing:
            raise WaveError(f"--canary: not among the selected hosts: {', '.join(missing)}")
        return list(spec.hosts)
    if spec.group is not None:
        if spec.group not in groups:
            raise WaveError(f"--canary: no inventory group {spec.group!r}")
        return [h for h in groups[spec.group] if h in selected]
    if spec.count is None:
        return [h for h in groups.get(CANARY, ()) if h in selected]
    return []


def choose_canary(spec: CanarySpec, candidates: Sequence[str], selected: Sequence[str],
                  groups: Mapping[str, Sequence[str]]) -> list[str]:
    """The canary hosts among `candidates` (the selected hosts needing changes, in order).

    Named hosts and group members must be selected; those of them that need no change are left out
    (they are already as the canary would make them). An empty result means there is nothing to do.
    """
    if spec.count is not None:
        return list(candidates[: spec.count])
    named = set(named_canary(spec, selected, groups))
    if not named and not spec.hosts and spec.group is None:
        return list(candidates[:1])  # no canary group: the first host needing changes
    return [h for h in candidates if h in named]


def build_waves(candidates: Sequence[str], canary: Sequence[str], sizes: Sequence[Size]) -> list[Wave]:
    """The canary wave, then the other candidates in waves of `sizes` (the last one repeating)."""
    waves = [Wave(CANARY, tuple(canary))] if canary else []
    rest = [h for h in candidates if h not in set(canary)]
    total, placed, index = len(rest), 0, 0
    while placed < total:
        size = sizes[min(index, len(sizes) - 1)].hosts(total)
        waves.append(Wave(f"wave {index + 1}", tuple(rest[placed: placed + size])))
        placed += size
        index += 1
    return waves


@dataclass(frozen=True)
class Gate:
    """The decision after a wave: go on, or stop with the reasons."""

    go_on: bool
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {"go_on": self.go_on, "reasons": list(self.reasons)}


def judge_wave(wave: Wave, failed: int, unreachable: int, *, max_failures: Threshold,
               max_unreachable: Threshold) -> Gate:
    """Whether the rollout may go on after `wave` had `failed` and `unreachable` hosts.

    The canary allows nothing: every canary host must end ok or changed (verified).
    """
    size = len(wave.hosts)
    failures = NOTHING_MAY_FAIL if wave.is_canary else max_failures
    unreach = NOTHING_MAY_FAIL if wave.is_canary else max_unreachable
    reasons = []
    if failures.exceeded(failed, size):
        reasons.append(f"{wave.name}: {failed} of {size} host(s) failed, more than the "
                       f"{'canary allows (none)' if wave.is_canary else f'--max-failures {failures}'}"
                       f" ({failures.allowed(size)} allowed)")
    if unreach.exceeded(unreachable, size):
        reasons.append(f"{wave.name}: {unreachable} of {size} host(s) unreachable, more than the "
                       f"{'canary allows (none)' if wave.is_canary else f'--max-unreachable {unreach}'}"
                       f" ({unreach.allowed(size)} allowed)")
    return Gate(go_on=not reasons, reasons=tuple(reasons))


def place(hosts: Sequence[str], needs_changes: Sequence[str], canary: CanarySpec, sizes: Sequence[Size],
          groups: Mapping[str, Sequence[str]]) -> list[Wave]:
    """The waves of a rollout of `hosts` (in placement order), of which `needs_changes` need changes."""
    wanted = set(needs_changes)
    candidates = [h for h in hosts if h in wanted]
    return build_waves(candidates, choose_canary(canary, candidates, hosts, groups), sizes)
