"""Sets `HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters\\ArpRetryCount` (REG_DWORD, 0-3:
how many gratuitous ARPs Windows sends for its own addresses while initialising; Microsoft's
TCP/IP registry reference, default 3 when absent) to `Count`, or deletes the value when `Count` is
-1, through .NET's registry classes. Planned only when `dsr_arp_retry_count` is set. Result:
`@{changed; previous}` (the value before, $null when absent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator.desired import FieldError, Variable, parse_int
from orchestrator.facts import Facts, Reader
from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    FactsPart,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)

NAME = "arp_retry"
ABSENT = -1  # the template's Count for "delete the value"


def _parse_count(value: object) -> int | None:
    if value is None:
        return None
    try:
        return parse_int(value, 0, 3, "an ARP retry count")
    except FieldError:
        raise FieldError(f"{value!r} is not an ARP retry count (0-3, or null to leave it alone)") from None


VARIABLE = Variable("dsr_arp_retry_count", int | None, None, _parse_count,
                    "ArpRetryCount of the host's TCP/IP stack, 0-3 (gratuitous ARPs sent for its own "
                    "addresses at start); null leaves it alone", example=0)


@dataclass(frozen=True)
class ArpRetry:
    count: int | None  # None: the value is absent
    known: bool = True  # False: facts taken by a dsrprep that did not read it

    def json_fields(self) -> dict[str, Any]:
        return {"arp_retry_count": self.count}


def current(facts: Facts) -> int | None:
    return facts.part(NAME, ArpRetry).count


def _parse_part(r: Reader) -> ArpRetry:
    if not isinstance(r.value, Mapping) or "arp_retry_count" not in r.value:
        return ArpRetry(None, known=False)
    return ArpRetry(r.opt_int("arp_retry_count"))


def plan(ctx: PlanContext) -> StepPlan:
    wanted = ctx.desired.option(VARIABLE.name)
    if ctx.nic is None or not isinstance(wanted, int):
        return NOTHING
    now = current(ctx.facts)
    if now == wanted:
        return NOTHING
    shown = "absent (3)" if now is None else str(now)
    return StepPlan(actions=(action(NAME, f"ArpRetryCount {shown} -> {wanted}", Count=wanted),))


def undo(ctx: UndoContext) -> list[Action]:
    """The recorded value back, only where the rollout set one and the host still has it (a value
    someone changed since, or one the recorded facts do not show, is left alone)."""
    wanted = ctx.desired.option(VARIABLE.name)
    before = ctx.before.part(NAME, ArpRetry)
    was, now = before.count, current(ctx.now)
    if not isinstance(wanted, int) or not before.known or now != wanted or was == now:
        return []
    return [action(NAME, f"restore ArpRetryCount ({'absent' if was is None else was})",
                   Count=ABSENT if was is None else was)]


STEP = Step(
    name=NAME,
    order=65,
    description=__doc__ or "",
    reads=(VARIABLE.name,),
    variables=(VARIABLE,),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    facts=FactsPart(keys=("arp_retry_count",), parse=_parse_part),
    docs=Docs(
        commands={"default": "`ArpRetryCount` under `Tcpip\\Parameters` set through .NET's registry classes "
                             "(only with `dsr_arp_retry_count`)"},
        checked_by="the registry value",
        undone_by="value restored (or deleted)",
    ),
)
