"""marker: dsrprep's registry key (HKLM\\SOFTWARE\\dsrprep\\DSR) on the host: Present writes the
given values ([string] as PowerShell converts them; $null deletes one), Absent deletes the key."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.shell import StepFailed, ensure, ps_string, result
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import delete_marker_key, require_registry

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    if not ensure(params):
        return result(delete_marker_key(host.marker, host.elevated), values=[])
    require_registry(host.elevated)
    raw = params.get("Values")
    values = raw if isinstance(raw, dict) else {}
    changed = False
    written = []
    for name, value in values.items():
        key = str(name)
        if not key:
            raise StepFailed("A marker value name is empty")
        if value is None:
            changed = host.marker.pop(key, None) is not None or changed
            continue
        text = ps_string(value)
        if host.marker.get(key) != text:
            host.marker[key] = text
            changed = True
        written.append(key)
    return result(changed, values=written)


STEP = LabStep("marker", _run)
