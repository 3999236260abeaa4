"""Making one lab host's step fail, for tests that need a failed host in a run."""

from __future__ import annotations

from typing import Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.fleet import LabHost


def failing(handle: LabHost, step: str) -> None:
    """Make this one host object throw in `step` (the other hosts answer as usual)."""
    answer = handle.model.run

    def run(name: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
        if name == step:
            return ScriptResult(failed=f"lab: {step} refused on purpose")
        return answer(name, params, variant=variant)

    handle.model.run = run  # type: ignore[method-assign,assignment]  # this host object only
