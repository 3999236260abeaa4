"""Types shared by the lab's protocol server (server.py) and its Windows host model (host.py, steps/)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Collection, Iterator
from contextlib import contextmanager
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


# The fault kinds of `RandomFaults`, each answered as Windows or HTTP.sys would; docs/lab.md's table
# has the sources in full.
#   drop        a Receive's TCP connection closes unanswered, nothing of its output taken
#               (pypsrp issue 178: connections cut under a session)
#   slow        a request held past the client's read timeout; the client gone, a Receive is
#               cancelled before it takes output (pypsrp's WSMan.receive: sent again, it "will
#               return the same data"), any other request is carried out and its answer lost
#   timeout     a Receive answers wsman:TimedOut (2150858793) after its wait, while a pool opens and
#               mid-session (MS-WSMV 3.1.4.1.7)
#   shell_gone  the shell a request names is deleted, as the idle timeout does, and the request gets
#               the unknown-ShellId fault (2150858843; MS-WSMV 2.2.4.42 IdleTimeout)
#   quota       a Create answers wsman:QuotaLimit (2150859173): the user's shells all taken
#               (test-kitchen issue 656, vagrant issue 7489)
#   http_503    HTTP.sys answers 503 with its own page and closes the connection; the request never
#               reaches WinRM (IIS 6.0 Technical Reference, "503-Service Unavailable")
#   http_401    the connection's NTLM context is rejected: 401 with a fresh challenge, the request not
#               carried out; pypsrp authenticates again and resends the body sealed by the old
#               context, which the new one cannot read (HTTP 400) (HTTP.sys authenticates per
#               connection; zenoss/txwinrm pull request 159)
#   hang        the host stops answering for `hold` seconds: connections are accepted, requests (this
#               one included) wait, then go as `slow` ones do (HTTP.sys queues requests for a stuck
#               service: Timer_AppPool in the IIS 6.0 Technical Reference)
#   cut         a step that changes the network (`Step.cuts_connection`) and changed something cuts
#               the management connection off, as `WindowsHost.cut_on_step` does (pypsrp issue 178)
FAULT_KINDS = ("drop", "slow", "timeout", "shell_gone", "quota", "http_503", "http_401", "hang", "cut")


class RandomFaults:
    """A host's seeded, rate-based faults: each WS-Management request is faulted with probability
    `rate`, by one of the enabled `kinds` that applies to it (drawn evenly), and each run of a step
    that cuts connections likewise when `cut` is enabled. The same seed and the same sequence of
    requests give the same faults. `injected` counts the faults served, per kind.

    `hold`: how long `slow` and `hang` keep a request waiting; longer than the client waits for an
    answer (pypsrp: its read timeout, and the OperationTimeout + 2 s for a Receive), with room to
    spare, so that the client has given up first. `actions`: the WS-Management actions whose requests
    may be faulted (None: every one), to aim the faults at one part of the protocol.
    """

    def __init__(self, rate: float, seed: int, kinds: Collection[str] = FAULT_KINDS, *, hold: float = 35.0,
                 actions: Collection[str] | None = None) -> None:
        unknown = sorted(set(kinds) - set(FAULT_KINDS))
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown}; the kinds are {', '.join(FAULT_KINDS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"a fault rate is between 0 and 1, not {rate}")
        if hold <= 0:
            raise ValueError(f"hold must be positive, not {hold}")
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(k for k in FAULT_KINDS if k in kinds)
        self.hold = hold
        self.actions = frozenset(actions) if actions is not None else None
        self.injected: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._lock = Lock()

    def draw(self, applicable: Collection[str], action: str | None = None) -> str | None:
        """The fault to serve a request (of WS-Management `action`; None: a step run) to which
        `applicable` kinds apply, or None. Every call takes the same number of draws, so that a
        request's fate does not depend on the kinds or actions of earlier ones."""
        with self._lock:
            chance, pick = self._rng.random(), self._rng.random()
            choices = [k for k in self.kinds if k in applicable]
            aimed = self.actions is None or action is None or action in self.actions
            if not choices or not aimed or chance >= self.rate:
                return None
            kind = choices[int(pick * len(choices))]
            self.injected[kind] += 1
            return kind


@dataclass
class LabFaults:
    """Per-host fault knobs. All default to a healthy host.

    unreachable:        nothing listens on the host's address (connections are refused).
    latency:            seconds added before answering every HTTP request.
    fault_on_request:   answer the Nth WS-Management request (1-based, counting every POST that
                        carries a SOAP body) with a WSMan fault instead of handling it.
    drop_on_request:    close the TCP connection without answering the Nth such request.
    down_from/until:    the service restart window (set by the host model's http_listen step).
    timeout_on_open:    the first this many Receives of a runspace pool that is still opening
                        answer the wsman:TimedOut fault (OperationTimeout), as a host whose
                        PowerShell plugin is slow to start does; pypsrp's `RunspacePool.open()`
                        raises it, dsrprep's transport Receives again.
    hang:               the host accepts TCP connections and never answers (a hung WinRM service);
                        cleared, the requests it held go on if their clients still wait.
    random:             seeded, rate-based faults of the kinds `RandomFaults` names.
    """

    unreachable: bool = False
    latency: float = 0.0
    fault_on_request: int | None = None
    drop_on_request: int | None = None
    # WinRM is down (an HTTP service restart) between these time.monotonic() instants: requests then
    # get their connection closed unanswered. When the window begins, every TCP connection is
    # closed and every shell deleted, as a restart of the WinRM service does.
    down_from: float = 0.0
    down_until: float = 0.0
    timeout_on_open: int = 0
    hang: bool = False
    random: RandomFaults | None = None


@dataclass
class WinRMConfig:
    """A lab host's WinRM service and PowerShell endpoint settings, as `winrm get winrm/config` and
    the plugin's quotas would show them. The defaults are a Windows Server 2016 host's at Windows'
    own defaults; orchestrator.lab.profiles.winrm_config gives each family its own. The server reads
    them at every request, so tests may change a running host's (shorten `idle_timeout_ms`, turn
    `basic` on).

    psrp_protocol:      the protocolversion of the server's SESSION_CAPABILITY ("2.1" for
                        PowerShell 2.0, "2.3" for 5.1); `powershell` and `build_version` fill the
                        PSVersionTable it sends as application private data.
    max_envelope_kb:    MaxEnvelopeSizekb: a larger request is refused with HTTP 413; replies are
                        cut to the smaller of it and the client's MaxEnvelopeSize.
    max_shells_per_user, max_concurrent_operations_per_user, max_commands_per_shell: the quotas a
                        Create or Command over them is refused by (wsman:QuotaLimit); None: none.
    idle_timeout_ms:    a shell nobody sent a request for in this long is deleted.
    max_timeout_ms:     MaxTimeoutms: a request's OperationTimeout above it is cut to it ([MS-WSMV]
                        3.1.4.1.7); 60000 on every version.
    server_assigned_ids: WinRM 2.0 ignores the ShellId and CommandId a client proposes and answers
                        with its own (and no rsp:Shell in its CreateResponse).
    split_open:         a pool's RUNSPACEPOOL_STATE (Opened) comes in a second Receive, after the
                        SESSION_CAPABILITY and APPLICATION_PRIVATE_DATA of the first, as both of
                        pypsrp's recordings (protocol 2.1 and 2.3) show.
    endpoints:          the PowerShell session configurations registered (lower case): another
                        ResourceURI is refused.
    allow_unencrypted:  AllowUnencrypted: off, a message that is not encrypted over plain HTTP is
                        refused (HTTP 500).
    basic:              Auth/Basic; even on, only local accounts may use it.
    enforce_shell_quota: off, `max_shells_per_user` is not enforced (a knob for clients that are
                        known to leak shells; Windows always enforces it).
    tls_maximum:        the newest TLS version the HTTPS listener speaks ("1.0", "1.2", "1.3").
    """

    psrp_protocol: str = "2.3"
    powershell: str = "5.1"
    build_version: str = "10.0.14393.0"
    wsman_stack: str = "3.0"
    max_envelope_kb: int = 500
    max_shells_per_user: int | None = 25
    max_concurrent_operations_per_user: int | None = 1500
    max_commands_per_shell: int | None = 1000
    idle_timeout_ms: int = 7_200_000
    max_timeout_ms: int = 60_000
    server_assigned_ids: bool = False
    split_open: bool = True
    endpoints: tuple[str, ...] = (
        "microsoft.powershell",
        "microsoft.powershell.workflow",
        "microsoft.powershell32",
        "microsoft.windows.servermanagerworkflows",
    )
    allow_unencrypted: bool = False
    basic: bool = False
    enforce_shell_quota: bool = True
    tls_maximum: str = "1.2"


@dataclass
class RequestCounters:
    """Per-host request counters, readable by tests and benchmarks while the fleet runs."""

    http_requests: int = 0
    wsman: Counter[str] = field(default_factory=Counter)
    steps: Counter[str] = field(default_factory=Counter)
    auth_failures: int = 0
    # Completed Negotiate/NTLM/Kerberos handshakes by the mechanism that authenticated ("ntlm",
    # "kerberos"), and the requests that came sealed, by that mechanism and by the protocol their
    # body named (application/HTTP-SPNEGO-session-encrypted, ...-Kerberos-session-encrypted).
    authentications: Counter[str] = field(default_factory=Counter)
    sealed: Counter[str] = field(default_factory=Counter)
    sealed_protocols: Counter[str] = field(default_factory=Counter)
    # Remote shells (runspace pools) created and deleted, whatever deleted them: the client's
    # Delete, the idle timeout or a service restart (`shell_deletes` says which). Counted as the
    # host's shell table changes, under its lock: `shells_open` is the table's size at every moment.
    shells_created: int = 0
    shells_deleted: int = 0
    shell_deletes: Counter[str] = field(default_factory=Counter)
    # The most shells this host had at one time (a client that keeps one shell a host sees 1).
    shells_peak: int = 0
    # POST requests the host is serving now (one a client gave up on included, until it is done).
    in_flight: int = 0
    _lock: Lock = field(default_factory=Lock, repr=False, compare=False)

    @property
    def shells_open(self) -> int:
        """Shells created and not deleted yet: a client that deletes what it creates leaves 0."""
        with self._lock:
            return self.shells_created - self.shells_deleted

    def count_shell_created(self) -> None:
        with self._lock:
            self.shells_created += 1
            self.shells_peak = max(self.shells_peak, self.shells_created - self.shells_deleted)

    def count_shell_deleted(self, reason: str) -> None:
        with self._lock:
            self.shells_deleted += 1
            self.shell_deletes[reason] += 1

    def shells_now(self) -> tuple[int, Counter[str]]:
        """The shells open and the deletes by reason so far, read together."""
        with self._lock:
            return self.shells_created - self.shells_deleted, Counter(self.shell_deletes)

    def count_http(self) -> int:
        with self._lock:
            self.http_requests += 1
            return self.http_requests

    @contextmanager
    def serving(self) -> Iterator[None]:
        """Counts a POST request from its arrival until it is answered or dropped."""
        with self._lock:
            self.http_requests += 1
            self.in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

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

    def count_authentication(self, mechanism: str) -> None:
        with self._lock:
            self.authentications[mechanism] += 1

    def count_sealed(self, mechanism: str, protocol: str) -> None:
        with self._lock:
            self.sealed[mechanism] += 1
            self.sealed_protocols[protocol] += 1

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (`dsrprep lab serve --counters-out`), taken under the lock."""
        with self._lock:
            return {"http_requests": self.http_requests, "wsman": dict(self.wsman), "steps": dict(self.steps),
                    "auth_failures": self.auth_failures, "authentications": dict(self.authentications),
                    "sealed": dict(self.sealed), "sealed_protocols": dict(self.sealed_protocols),
                    "shells_created": self.shells_created,
                    "shells_deleted": self.shells_deleted, "shells_peak": self.shells_peak}
