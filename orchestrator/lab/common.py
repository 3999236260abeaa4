"""Types shared by the lab's protocol server (server.py) and its Windows host model (host.py, steps/)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Protocol


@dataclass
class ScriptResult:
    """What a simulated PowerShell pipeline produced.

    `output` holds plain Python values (dict, list, str, int, bool, None); the server serializes
    dicts as PSCustomObjects unless they are wrapped in `Hashtable`. `errors` are non-terminating
    error records (Write-Error); `failed` is the message of a terminating error (throw), which ends
    the pipeline in the Failed state.
    """

    output: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failed: str | None = None
    # The step changed the network under the management connection (research: pypsrp issue 178):
    # the server drops the TCP connection instead of answering; the change itself stays made.
    cut_connection: bool = False


class Hashtable(dict[str, Any]):
    """A dict the lab server must send as a PowerShell Hashtable rather than a PSCustomObject."""


class ScriptHandler(Protocol):
    """Runs one pipeline's script with the parameters the client bound."""

    def __call__(self, script: str, parameters: dict[str, Any]) -> ScriptResult: ...


@dataclass
class LabFaults:
    """Per-host fault knobs. All default to a healthy host.

    unreachable:        nothing listens on the host's address (connections are refused).
    latency:            seconds added before answering every HTTP request.
    fault_on_request:   answer the Nth WS-Management request (1-based, counting every POST that
                        carries a SOAP body) with a WSMan fault instead of handling it.
    drop_on_request:    close the TCP connection without answering the Nth such request.
    down_from/until:    the service restart window (set by the host model's http_listen step).
    """

    unreachable: bool = False
    latency: float = 0.0
    fault_on_request: int | None = None
    drop_on_request: int | None = None
    # WinRM is down (an HTTP service restart) between these time.monotonic() instants: requests then
    # get their connection closed unanswered.
    down_from: float = 0.0
    down_until: float = 0.0


@dataclass
class RequestCounters:
    """Per-host request counters, readable by tests and benchmarks while the fleet runs."""

    http_requests: int = 0
    wsman: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)
    auth_failures: int = 0
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    def count_http(self) -> int:
        with self._lock:
            self.http_requests += 1
            return self.http_requests

    def count_wsman(self, action: str) -> int:
        with self._lock:
            self.wsman[action] += 1
            return sum(self.wsman.values())

    def count_step(self, step: str) -> None:
        with self._lock:
            self.steps[step] += 1

    def count_auth_failure(self) -> None:
        with self._lock:
            self.auth_failures += 1
