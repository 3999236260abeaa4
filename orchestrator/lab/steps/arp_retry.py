"""arp_retry: the TCP/IP `ArpRetryCount` registry value (Microsoft's TCP/IP registry reference:
REG_DWORD 0-3, Windows uses 3 when absent), read and written through .NET's registry classes as
the template does. Writing HKLM without elevation fails as .NET does ("Requested registry access
is not allowed.", SecurityException)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.shell import StepFailed, p_int, result
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

VALUE = "HKLM\\SYSTEM\\CurrentControlSet\\Services\\Tcpip\\Parameters\\ArpRetryCount"


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    count = p_int(params, "Count")
    if not -1 <= count <= 3:
        raise StepFailed(f"ArpRetryCount must be 0 to 3 (or -1 to delete it), not {count}")
    if not host.elevated:
        raise StepFailed("Requested registry access is not allowed.")
    previous = host.registry.get(VALUE)
    changed = (previous is not None) if count == -1 else previous != count
    if changed and count == -1:
        del host.registry[VALUE]
    elif changed:
        host.registry[VALUE] = count
    return result(changed, previous=previous)


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    return {"arp_retry_count": host.registry.get(VALUE)}


STEP = LabStep("arp_retry", _run, facts=_facts)
