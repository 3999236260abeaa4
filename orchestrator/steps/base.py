"""What a step is: the contract every module under orchestrator/steps/ fills in.

A step module holds everything dsrprep knows about one step in Python: its place in the order,
whether it can cut the management connection, the `dsr_*` variables it reads, `plan` (what must
change, with a reason per action), `undo` (what takes a host back to the facts recorded before a
rollout), the typed parser of its template's result object, the parser of its own facts fragment
(if it has one) and the text of the generated step table. Its PowerShell lives in
`ps_templates/<step>/`. Pure: data in, data out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any, TypeVar

from orchestrator.desired import Desired, Variable
from orchestrator.errors import ProtocolError
from orchestrator.facts import Adapter, Facts, FactsError, Reader

T = TypeVar("T")

ALL_PROFILES = 0x7FFFFFFF


@dataclass(frozen=True)
class Action:
    """One template run: which step, with which parameters, and why."""

    step: str
    params: Mapping[str, Any]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "reason": self.reason, "params": plain(self.params)}


def action(step: str, reason: str, **params: Any) -> Action:
    return Action(step=step, params=MappingProxyType(params), reason=reason)


def plain(value: Any) -> Any:
    """`value` with mappings and tuples turned into dicts and lists (JSON-able)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


@dataclass(frozen=True)
class StepPlan:
    """What one step's planner found: its actions, refusals (the host must not be touched) and warnings."""

    actions: tuple[Action, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


NOTHING = StepPlan()


@dataclass(frozen=True)
class PlanContext:
    """The facts and desired state of one host, with the look-ups most steps need made once."""

    facts: Facts
    desired: Desired

    @cached_property
    def vips(self) -> list[str]:
        return [v.address for v in self.desired.vips]

    @cached_property
    def nic(self) -> Adapter | None:
        return self.facts.nic(self.desired.nic.by, self.desired.nic.value)

    @cached_property
    def loopback(self) -> Adapter | None:
        return self.facts.dsr_loopback(self.vips)

    @cached_property
    def degraded_mask(self) -> str | None:
        return self.facts.degraded_mask(self.nic, self.vips)


@dataclass(frozen=True)
class UndoContext:
    """A host's facts before the rollout and now, and the desired state that rollout acted on."""

    before: Facts
    now: Facts
    desired: Desired

    @cached_property
    def vip_set(self) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return {ipaddress.ip_address(v.address) for v in self.desired.vips}

    @cached_property
    def loopback_now(self) -> Adapter | None:
        return self.now.dsr_loopback(v.address for v in self.desired.vips)

    @cached_property
    def created(self) -> bool:
        """dsrprep created the loopback that holds the VIPs now (it did not exist before)."""
        made = self.now.created_loopback()
        lb = self.loopback_now
        return (made is not None and lb is not None and made.pnp_device_id.casefold() == lb.pnp_device_id.casefold()
                and self.before.adapter_by_pnp_id(made.pnp_device_id) is None)

    @cached_property
    def loopback_before(self) -> Adapter | None:
        """The loopback as it was before, when it existed then (an adopted one)."""
        lb = self.loopback_now
        if lb is None or self.created:
            return None
        return self.before.adapter_by_pnp_id(lb.pnp_device_id)

    def holds_vip(self, text: str) -> bool:
        try:
            return ipaddress.ip_address(text.strip("[]")) in self.vip_set
        except ValueError:
            return False


@dataclass(frozen=True)
class StepOutput:
    """The result object of a step's template, typed. Each step's module subclasses it with the
    fields its template returns; the runner reads only what is declared here."""

    changed: bool

    def restart_wait(self) -> float | None:
        """Seconds to wait before reconnecting when the step scheduled a restart of a service that
        WinRM depends on (the connection is about to drop); None when it did not."""
        return None

    def state_moved(self) -> bool:
        """Windows chose something other than what was asked (a fallback): re-read facts, re-plan."""
        return False


def parse_output(step: str, raw: Any, build: Callable[[Reader], T]) -> T:
    """Run a step's output parser over a template's raw result; a wrong shape is a ProtocolError."""
    try:
        return build(Reader(raw, step))
    except FactsError as exc:
        raise ProtocolError(f"{step} returned an unexpected result: {exc}") from None


def changed_only(step: str, raw: Any) -> StepOutput:
    """The parser of a template whose result carries nothing the runner needs besides `changed`."""
    return parse_output(step, raw, lambda r: StepOutput(changed=r.bool_("changed")))


@dataclass(frozen=True)
class FactsPart:
    """A step's own facts: the keys its fragment (`ps_templates/<step>/facts.ps1`) adds to the facts
    object, and the parser that turns them into the step's type (kept in `Facts.parts[step]`)."""

    keys: tuple[str, ...]
    parse: Callable[[Reader], object]


@dataclass(frozen=True)
class Docs:
    """What the generated step table says about a step (README and docs/steps.md)."""

    commands: Mapping[str, str]  # template variant -> the commands it runs, in a phrase
    checked_by: str  # the facts that tell whether the step is needed
    undone_by: str  # what rollback does
    not_on: Callable[[Any], bool] | None = None  # OsCaps -> True where the step never runs


@dataclass(frozen=True)
class Step:
    """One step of the DSR runbook (see the module docstring)."""

    name: str
    order: int  # position in a rollout: lower runs first
    description: str  # what it does, for docs/steps.md
    docs: Docs
    parse_output: Callable[[Any], StepOutput]
    reads: tuple[str, ...] = ()  # the dsr_* variables it reads (its own included)
    variables: tuple[Variable, ...] = ()  # dsr_* variables only this step reads, declared here
    cuts_connection: bool = False  # may cut the management connection (network changes, restarts)
    plan: Callable[[PlanContext], StepPlan] | None = None  # None: never planned (run by the runner)
    undo: Callable[[UndoContext], Sequence[Action]] | None = None
    undo_last: bool = False  # rollback runs it after the others (in rollout order), not reversed
    gate: bool = False  # refusals of this step stop the planning of every later step
    # Called after every step has planned, with all their actions (the preflight checks).
    finish: Callable[[PlanContext, Sequence[Action]], StepPlan] | None = None
    facts: FactsPart | None = None
