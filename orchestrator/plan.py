"""What must change on a host, and how to undo it: loops over the step registry, pure.

`plan(facts, desired)` asks every step (orchestrator/steps/) what it must change and returns the
actions in step order (empty for a compliant host) plus refusals: reasons that forbid touching the
host at all. The same function serves `plan` (dry run), `rollout`, verification (the plan after
applying must be empty) and drift checks. `rollback_plan(before, now, desired)` asks every step what
takes the host from its current facts back to the facts recorded before a run, for what dsrprep
changed only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator import steps
from orchestrator.desired import Desired
from orchestrator.facts import Facts
from orchestrator.steps.base import Action, PlanContext, StepPlan, UndoContext

__all__ = ["Action", "Plan", "plan", "rollback_plan", "step_order"]


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    refusals: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "actions": [a.to_dict() for a in self.actions],
            "refusals": list(self.refusals),
            "warnings": list(self.warnings),
        }


def step_order() -> tuple[str, ...]:
    """The steps a rollout can plan, in the order they run."""
    return tuple(s.name for s in steps.ordered() if s.plan is not None)


def plan(facts: Facts, desired: Desired) -> Plan:
    """The ordered actions that make this host ready for DSR, and why; refusals forbid any change."""
    ctx = PlanContext(facts, desired)
    parts: list[StepPlan] = []
    for step in steps.ordered():
        if step.plan is None:
            continue
        part = step.plan(ctx)
        parts.append(part)
        if step.gate and part.refusals:
            break
    else:
        planned = [a for part in parts for a in part.actions]
        parts += [step.finish(ctx, planned) for step in steps.ordered() if step.finish is not None]
    order = {name: i for i, name in enumerate(steps.names())}
    actions = sorted((a for part in parts for a in part.actions), key=lambda a: order[a.step])
    return Plan(actions=tuple(actions), refusals=tuple(r for part in parts for r in part.refusals),
                warnings=tuple(w for part in parts for w in part.warnings))


def rollback_plan(before: Facts, now: Facts, desired: Desired) -> Plan:
    """Actions that return a host to `before`, limited to what dsrprep can have changed there.

    Each step undoes only its own kind of change (see each step's `undo`); anything unknown in
    `before` (an unreadable site list or listen list) is left alone. The steps run in the reverse
    of the rollout order, except those that must stay last (the HTTP restart, the marker).
    """
    ctx = UndoContext(before, now, desired)
    undoable = [s for s in steps.ordered() if s.undo is not None]
    sequence = [s for s in reversed(undoable) if not s.undo_last] + [s for s in undoable if s.undo_last]
    actions: list[Action] = []
    for step in sequence:
        assert step.undo is not None
        actions += step.undo(ctx)
    return Plan(actions=tuple(actions))
