"""facts: the one script every host runs first; it returns the raw facts object of docs/facts.md
(`WindowsHost.facts_locked`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    return ScriptResult(output=[host.facts_locked()])


STEP = LabStep("facts", _run)
