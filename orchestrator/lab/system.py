"""The rest of a lab host's Windows: services (the HTTP service restart that http_listen
schedules, which takes WinRM down with it), the System event log (Tcpip address conflicts), and
dsrprep's marker in the registry.
"""

from __future__ import annotations

import time
import zlib
from datetime import datetime
from typing import Any

from orchestrator.lab.common import Hashtable, LabFaults
from orchestrator.lab.shell import StepFailed

MARKER_KEY = "HKLM\\SOFTWARE\\dsrprep\\DSR"
# The http_listen step's service restart: it begins this long after the step answers and keeps
# WinRM away for this long (seconds). Windows takes about five seconds to begin.
HTTP_RESTART_DELAY = 0.3
HTTP_RESTART_OUTAGE = 0.5
# Event 4199 (Tcpip): another machine answers ARP for one of this host's addresses.
ADDRESS_CONFLICT = 4199


# --------------------------------------------------------------------------------------------------
# Services


def schedule_http_restart(faults: LabFaults, windir: str, seed_text: str) -> Hashtable:
    """What Start-HttpRestart reports. The restart itself (HTTP, then W3SVC and WinRM again)
    happens seconds after the result is sent; the lab's http.sys list is effective at once."""
    seed = zlib.crc32(seed_text.encode())
    # The lab restarts faster than Windows (about five seconds there), but the same way: WinRM
    # goes away shortly after the result was sent, and comes back.
    now = time.monotonic()
    faults.down_from = now + HTTP_RESTART_DELAY
    faults.down_until = now + HTTP_RESTART_DELAY + HTTP_RESTART_OUTAGE
    return Hashtable(
        services=["W3SVC", "WinRM"],
        log=f"{windir}\\Temp\\dsrprep-http-restart.log",
        process_id=1000 + seed % 8000 * 4,
        delay_seconds=HTTP_RESTART_DELAY,
    )


# --------------------------------------------------------------------------------------------------
# Event log


def conflict_message(address: str, mac: str) -> str:
    """Event 4199's text; `mac` as Windows prints it (upper case, dashes)."""
    return (
        f"The system detected an address conflict for IP address {address} with the system "
        f"having network hardware address {mac}. Network operations on this system "
        "may be disrupted as a result."
    )


def tcpip_event(event_id: int, message: str, when: datetime) -> dict[str, Any]:
    """A System log entry of source Tcpip, as the facts script lists it."""
    return {"event_id": event_id, "source": "Tcpip", "time": when.strftime("%Y-%m-%dT%H:%M:%S"), "message": message}


# --------------------------------------------------------------------------------------------------
# Registry: dsrprep's marker


def require_registry(elevated: bool) -> None:
    """Creating or writing the marker key needs an elevated session."""
    if not elevated:
        raise StepFailed(
            'Exception calling "CreateSubKey" with "1" argument(s): "Access to the registry key '
            f"'{_marker_path()}' is denied.\""
        )


def write_marker(marker: dict[str, str], elevated: bool, name: str, value: str) -> None:
    require_registry(elevated)
    marker[name] = value


def delete_marker_key(marker: dict[str, str], elevated: bool) -> bool:
    """DeleteSubKeyTree of the marker key: True when there was something to delete."""
    changed = bool(marker)
    if changed and not elevated:
        raise StepFailed(
            'Exception calling "DeleteSubKeyTree" with "1" argument(s): "Access to the registry key '
            f"'{_marker_path()}' is denied.\""
        )
    marker.clear()
    return changed


def _marker_path() -> str:
    return MARKER_KEY.replace("HKLM", "HKEY_LOCAL_MACHINE", 1)
