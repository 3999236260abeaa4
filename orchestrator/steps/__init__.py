"""The step registry: every module of this package that defines `STEP` is a step, in `STEP.order`.

Adding a step is adding a module here (plus its templates, the lab's model of it and its tests):
nothing else lists the steps. `plan.py` and the rollback planner loop over `ordered()`, the facts
script is assembled from the steps' fragments, and docs/steps.md is generated from the same list.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from orchestrator.errors import DsrError
from orchestrator.facts import Reader
from orchestrator.steps.base import Step, StepOutput

_NOT_STEPS = frozenset({"base"})


class UnknownStep(DsrError):
    error_class = "UnknownStep"


@functools.cache
def ordered() -> tuple[Step, ...]:
    """Every step, in the order a rollout runs them."""
    found: list[Step] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_STEPS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        step = getattr(module, "STEP", None)
        if not isinstance(step, Step):
            raise UnknownStep(f"{module.__name__} defines no STEP")
        if step.name != info.name:
            raise UnknownStep(f"{module.__name__}: STEP.name is {step.name!r}, the module's name is not")
        found.append(step)
    orders = [s.order for s in found]
    if len(set(orders)) != len(orders):
        raise UnknownStep("two steps share one order number: " + ", ".join(f"{s.name}={s.order}" for s in found))
    return tuple(sorted(found, key=lambda s: s.order))


def names() -> tuple[str, ...]:
    return tuple(s.name for s in ordered())


def get(name: str) -> Step:
    for step in ordered():
        if step.name == name:
            return step
    raise UnknownStep(f"unknown step {name!r}; steps: {', '.join(names())}")


def parse_output(name: str, raw: Any) -> StepOutput:
    """A template's result object, parsed by its step's module."""
    return get(name).parse_output(raw)


def facts_parts() -> list[tuple[str, Callable[[Reader], object]]]:
    """(step, parser) of every step that has facts of its own, in step order."""
    return [(s.name, s.facts.parse) for s in ordered() if s.facts is not None]
