"""The lab's protocol server: one simulated Windows host's WinRM endpoint.

`LabServer` owns everything between the socket and the host model: HTTP/1.1 with keep-alive on
`/wsman`, NTLM/Negotiate and Kerberos (pyspnego) and Basic authentication, WinRM message encryption, the
WS-Management shell actions (Create, Command, Send, Receive, Signal, Delete, Get), the PSRP
runspace pools and pipelines (psrpcore's server side), the injected faults of `LabFaults` and the
per-host `RequestCounters`. What a script *does* is not decided here: the first command of every
pipeline, with the parameters the client bound, is handed to a `ScriptHandler`, whose
`ScriptResult` is sent back as PowerShell objects, error records and a final pipeline state - or,
with `cut_connection`, not at all: the client's connection closes as if the network had gone.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import logging
import os
import re
import select
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import spnego
import spnego.channel_bindings
import spnego.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from psrpcore import PSRPPayload as _PSRPPayload
from psrpcore import ServerPipeline, ServerRunspacePool, StreamType
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PSCustomObject,
    PSInvocationState,
    PSObject,
    PSVersion,
    RunspacePoolState,
    RunspacePoolStateMsg,
    SessionCapability,
)

from orchestrator.lab.common import (
    Hashtable,
    LabFaults,
    RandomFaults,
    RequestCounters,
    ScriptHandler,
    ScriptResult,
    WinRMConfig,
)
from orchestrator.lab.sealing import KERBEROS_PROTOCOL, SPNEGO_PROTOCOL, seal, unseal
from orchestrator.lab.tls import server_context

log = logging.getLogger(__name__)

# WS-Management fault codes ([MS-WSMV] WSManFault Code values as Windows sends them).
OPERATION_TIMEOUT_CODE = 2150858793  # ERROR_WSMAN_OPERATION_TIMEDOUT, the long-poll "no data yet"
UNKNOWN_SHELL_CODE = 2150858843  # what Windows answers for an unknown ShellId or CommandId
ACTION_NOT_SUPPORTED_CODE = 2150858771  # ERROR_WSMAN_ACTION_NOT_SUPPORTED
INVALID_RESOURCE_URI_CODE = 2150858811  # ERROR_WSMAN_INVALID_RESOURCE_URI
INVALID_BODY_CODE = 2150858791  # ERROR_WSMAN_INVALID_SOAP_BODY
PLUGIN_FAILURE_CODE = 2150858755  # ERROR_WSMAN_PROVIDER_FAILURE
INJECTED_FAULT_CODE = 2150858772  # ERROR_WSMAN_ENDPOINT_UNAVAILABLE, answered for `fault_on_request`
# wsman:QuotaLimit on Create/Command. Codes and texts as Windows 7 / 2008 R2 sent them (test-kitchen
# issue 656, hashicorp/vagrant issue 7489, dmitry-zaets/vagrantfile-windows-iis-mssql issue 7).
QUOTA_SHELLS_CODE = 2150859173
QUOTA_OPERATIONS_CODE = 2150859174

_NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "f": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
}
_ENVELOPE_NS = " ".join(f'xmlns:{prefix}="{_NS[prefix]}"' for prefix in ("s", "a", "x", "w", "rsp", "p"))
_ACTION_PREFIXES = (
    "http://schemas.xmlsoap.org/ws/2004/09/transfer/",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/",
    "http://schemas.xmlsoap.org/ws/2004/09/enumeration/",
)
_RESPONSE_ACTION_PREFIX = {
    "Create": _ACTION_PREFIXES[0],
    "Delete": _ACTION_PREFIXES[0],
    "Get": _ACTION_PREFIXES[0],
    "Command": _ACTION_PREFIXES[1],
    "Send": _ACTION_PREFIXES[1],
    "Receive": _ACTION_PREFIXES[1],
    "Signal": _ACTION_PREFIXES[1],
}
_ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
_POWERSHELL_URI = "http://schemas.microsoft.com/powershell/"
_SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
_CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
_COMMAND_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
_COMMAND_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
_SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/Terminate"
_SIGNAL_CTRL_C = (
    "powershell/signal/ctrl_c",
    "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c",
)
_SOAP_CONTENT_TYPE = "application/soap+xml;charset=UTF-8"
_TERMINAL_STATES = (PSInvocationState.Completed, PSInvocationState.Failed, PSInvocationState.Stopped)

# PSRP output is cut into fragments of this size as soon as it is produced; a ReceiveResponse then
# carries as many of them as the client's MaxEnvelopeSize allows.
_FRAGMENT_SIZE = 32 * 1024
_ENVELOPE_OVERHEAD = 4096
# How often a request held by a hung host (LabFaults.hang) looks whether the host answers again.
HANG_POLL = 0.05


# --- NTLM accounts ---------------------------------------------------------------------------------


class _NtlmAccounts:
    """Points pyspnego's NTLM acceptor at the account of the server that is authenticating.

    The acceptor reads `NTLM_USER_FILE` (process-wide) while it steps, and several LabServers with
    different accounts - possibly the same user name with different passwords - share a process.
    Every accepting step therefore runs under one lock, with the file holding exactly the stepping
    server's account. A step costs well under a millisecond, so the lock is never contended for long.
    The contexts of the `Kerberos` scheme are made and stepped here too: their acceptor reads the keys
    of the keytab `KRB5_KTNAME` names and ignores the account file.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dir: str | None = None
        self._path = ""
        self._content: str | None = None

    def new_context(self, channel_bindings: Any, hostname: str, protocol: str = "negotiate") -> Any:
        with self._lock:
            self._ensure_file()
            return spnego.server(
                hostname=hostname, service="HTTP", protocol=protocol, channel_bindings=channel_bindings
            )

    def step(self, context: Any, token: bytes, account: str) -> bytes | None:
        with self._lock:
            self._ensure_file()
            if self._content != account:
                tmp = self._path + ".tmp"
                with open(tmp, "w", encoding="utf-8") as fd:
                    fd.write(account)
                os.replace(tmp, self._path)
                self._content = account
            out: bytes | None = context.step(token)
            return out

    def _ensure_file(self) -> None:
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="dsrprep-lab-ntlm-")
            atexit.register(shutil.rmtree, self._dir, True)
            self._path = os.path.join(self._dir, "users")
            with open(self._path, "w", encoding="utf-8"):
                pass
            self._content = ""
        if os.environ.get("NTLM_USER_FILE") != self._path:
            os.environ["NTLM_USER_FILE"] = self._path


_NTLM = _NtlmAccounts()
AUTH_METHODS = frozenset({"negotiate", "ntlm", "kerberos", "basic"})


def _check_account(
    username: str, password: str, hostname: str, auth: frozenset[str], kerberos_name: str | None
) -> None:
    """A LabServer's account and auth settings, refused before anything starts."""
    for text in (username, password, hostname):
        if ":" in text or "\n" in text or "\r" in text:
            # The NTLM account file is colon separated, one account a line.
            raise ValueError("username, password and hostname must not contain ':' or line breaks")
    unknown = set(auth) - AUTH_METHODS
    if unknown:
        raise ValueError(f"unsupported auth methods: {sorted(unknown)}")
    if "kerberos" in auth and not kerberos_name:
        raise ValueError("kerberos auth needs the host's name in its SPNs (kerberos_name)")


def _ticket_service(context: Any) -> str:
    """The service principal ("WSMAN/web01.lab.test@LAB.TEST") whose key opened the Kerberos ticket of
    a complete accepting context; "" when it cannot be told. pyspnego does not expose it: its Negotiate
    proxy holds the chosen mechanism's GSSAPI proxy, which holds python-gssapi's SecurityContext, whose
    `target_name` on the accepting side is that principal (MIT krb5 names the keytab entry used)."""
    for _ in range(3):
        target = getattr(context, "target_name", None)
        if target is not None:
            return str(target)
        context = getattr(context, "_context", None)
    return ""


def _split_user(name: str) -> tuple[str, str]:
    if "\\" in name:
        domain, user = name.split("\\", 1)
        return domain, user
    return "", name


# --- value conversion ------------------------------------------------------------------------------


def _to_plain(value: Any) -> Any:
    """Turns a value deserialized by psrpcore into plain Python (str/int/float/bool/None/list/dict)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {_to_plain(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    if isinstance(value, (datetime, date, bytes, uuid.UUID)):
        return value
    if isinstance(value, PSObject):
        meta = value.PSObject
        props = [*meta.adapted_properties, *meta.extended_properties]
        return {str(p.name): _to_plain(p.get_value(value)) for p in props}
    return value


def _to_ps(value: Any) -> Any:
    """Turns a handler's output value into what psrpcore serializes like PowerShell would."""
    if isinstance(value, Hashtable):
        return {key: _to_ps(item) for key, item in value.items()}
    if isinstance(value, dict):
        return PSCustomObject(**{str(key): _to_ps(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return [_to_ps(item) for item in value]
    return value


# --- SOAP ------------------------------------------------------------------------------------------


class _WSManFault(Exception):
    """A WS-Management fault to answer instead of a response."""

    def __init__(
        self,
        code: int,
        reason: str,
        *,
        subcode: str = "w:InternalError",
        sender: bool = False,
        status: int = 500,
        detail: bool = True,
    ) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.subcode = subcode
        self.sender = sender
        self.status = status
        # Some faults carry no f:WSManFault detail (then pypsrp's code is the subcode's text).
        self.detail = detail


class _Dropped(Exception):
    """The connection must close without an answer."""


class _Answered(Exception):
    """The request has been answered already, outside WS-Management (an HTTP-level fault)."""


# What HTTP.sys sends with a 503 it answers itself (the request never reaches WinRM): its own error
# page, and the connection closed (IIS 6.0 Technical Reference, "503-Service Unavailable", table
# 11.11 "HTTP 503 Errors from HTTP.sys"; MS-ASHTTP's 503 example carries `Connection: close`).
_HTTPSYS_503 = (
    b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01//EN""http://www.w3.org/TR/html4/strict.dtd">\r\n'
    b"<HTML><HEAD><TITLE>Service Unavailable</TITLE>\r\n"
    b'<META HTTP-EQUIV="Content-Type" Content="text/html; charset=us-ascii"></HEAD>\r\n'
    b"<BODY><h2>Service Unavailable</h2>\r\n<hr><p>HTTP Error 503. The service is unavailable.</p>\r\n"
    b"</BODY></HTML>\r\n"
)


def _unknown_shell_fault() -> _WSManFault:
    return _WSManFault(
        UNKNOWN_SHELL_CODE,
        "The WS-Management service cannot process the request because the request contained invalid "
        "selectors for the resource.",
        subcode="w:InvalidSelectors",
        sender=True,
    )


def _unknown_command_fault() -> _WSManFault:
    return _WSManFault(
        UNKNOWN_SHELL_CODE,
        "The Windows Remote Shell received a request to perform an operation on a command identifier that "
        "does not exist. Either the command has completed execution or the client specified an invalid "
        "command identifier.",
        subcode="w:InvalidSelectors",
        sender=True,
    )


def _timeout_fault() -> _WSManFault:
    return _WSManFault(
        OPERATION_TIMEOUT_CODE,
        "The WS-Management service cannot complete the operation within the time specified in "
        "OperationTimeout.",
        subcode="w:TimedOut",
    )


def _bad_body_fault(detail: str) -> _WSManFault:
    return _WSManFault(
        INVALID_BODY_CODE,
        f"The WS-Management service cannot process the request because the request packet does not have a "
        f"valid SOAP body. {detail}",
        subcode="w:InvalidBody",
        sender=True,
    )


def _unknown_endpoint_fault(resource_uri: str) -> _WSManFault:
    return _WSManFault(
        INVALID_RESOURCE_URI_CODE,
        f"The WS-Management service cannot process the request. The resource URI ({resource_uri}) was not "
        "found in the WS-Management catalog. The catalog contains the metadata that describes resources, or "
        "logical endpoints.",
        subcode="a:DestinationUnreachable",
        sender=True,
    )


def _shells_quota_fault(limit: int) -> _WSManFault:
    return _WSManFault(
        QUOTA_SHELLS_CODE,
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent shells, which has been exceeded. Close existing shells or raise the quota for this "
        "user. ",
        subcode="w:QuotaLimit",
        sender=True,
    )


def _operations_quota_fault(limit: int) -> _WSManFault:
    return _WSManFault(
        QUOTA_OPERATIONS_CODE,
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent operations, which has been exceeded. Close existing operations for this user, or "
        "raise the quota for this user. ",
        subcode="w:QuotaLimit",
        sender=True,
    )


def _commands_quota_fault() -> _WSManFault:
    # As pypsrp issue 148 shows it from 2012 R2: no WSManFault detail, the subcode is all the code.
    return _WSManFault(
        0,
        "The WS-Management service cannot process the request. The maximum number of concurrent commands per "
        "shell has been exceeded. Retry the request later or raise the Maximum Commands per Shell quota.",
        detail=False,
    )


@dataclass
class _Request:
    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str]
    operation_timeout: float
    max_envelope: int
    body: ET.Element

    @property
    def shell_id(self) -> str:
        return self.selectors.get("ShellId", "").upper()


_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def _parse_duration(text: str | None, default: float) -> float:
    match = _DURATION.match((text or "").strip())
    if not match or not any(match.groups()):
        return default
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _parse_request(xml: bytes) -> _Request:
    try:
        envelope = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise _bad_body_fault(str(exc)) from None
    header = envelope.find("s:Header", _NS)
    body = envelope.find("s:Body", _NS)
    if header is None or body is None:
        raise _bad_body_fault("The envelope has no Header or Body.")

    def text(path: str) -> str:
        node = header.find(path, _NS)
        return (node.text or "").strip() if node is not None else ""

    action_uri = text("a:Action")
    action = action_uri.rsplit("/", 1)[-1] if action_uri.startswith(_ACTION_PREFIXES) else ""
    selectors = {
        sel.get("Name", ""): (sel.text or "").strip()
        for sel in header.findall("w:SelectorSet/w:Selector", _NS)
    }
    try:
        max_envelope = int(text("w:MaxEnvelopeSize") or 153600)
    except ValueError:
        max_envelope = 153600
    return _Request(
        action=action or action_uri,
        message_id=text("a:MessageID"),
        resource_uri=text("w:ResourceURI"),
        selectors=selectors,
        operation_timeout=_parse_duration(text("w:OperationTimeout"), 60.0),
        max_envelope=max_envelope,
        body=body,
    )


def _envelope(action_uri: str, relates_to: str, body: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" {_ENVELOPE_NS}><s:Header>'
        f"<a:Action>{escape(action_uri)}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<p:ActivityId>{str(uuid.uuid4()).upper()}</p:ActivityId>"
        f"<a:To>{_ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault_envelope(fault: _WSManFault, relates_to: str, machine: str) -> bytes:
    code = "s:Sender" if fault.sender else "s:Receiver"
    reason = escape(fault.reason)
    detail = (
        f'<s:Detail><f:WSManFault xmlns:f="{_NS["f"]}" Code="{fault.code}" Machine={quoteattr(machine)}>'
        f"<f:Message>{reason}</f:Message></f:WSManFault></s:Detail>"
        if fault.detail else ""
    )
    body = (
        f"<s:Fault><s:Code><s:Value>{code}</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{reason}</s:Text></s:Reason>{detail}</s:Fault>'
    )
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


# --- shells and pipelines --------------------------------------------------------------------------


class _LabRunspacePool(ServerRunspacePool):
    """psrpcore's server pool as a host's PowerShell answers: its protocol version and PSVersionTable,
    the Opened state held back for a second Receive when `split_open` (`release_open` lets it go),
    and tolerant of pypsrp naming the call id `CI` where psrpcore reads `ci`."""

    def __init__(self, config: WinRMConfig) -> None:
        table = {
            "PSVersion": PSVersion(config.powershell),
            "PSRemotingProtocolVersion": PSVersion(config.psrp_protocol),
            "SerializationVersion": PSVersion("1.1.0.1"),
            "WSManStackVersion": PSVersion(config.wsman_stack),
            "BuildVersion": PSVersion(config.build_version),
        }
        super().__init__(application_private_data={"PSVersionTable": table})
        # Windows PowerShell says PSVersion 2.0 here whatever its version (both pypsrp recordings).
        self.our_capability = SessionCapability(
            PSVersion=PSVersion("2.0"),
            protocolversion=PSVersion(config.psrp_protocol),
            SerializationVersion=PSVersion("1.1.0.1"),
        )
        self.split_open = config.split_open
        self.open_pending = False

    def _change_state(self, state: RunspacePoolState, error: Any = None, emit: bool = True) -> None:
        if state == RunspacePoolState.Opened and emit and self.split_open:
            super()._change_state(state, error, emit=False)
            self.open_pending = True
            return
        super()._change_state(state, error, emit)

    def release_open(self) -> None:
        """Queues the RUNSPACEPOOL_STATE (Opened) that `split_open` held back."""
        if self.open_pending:
            self.open_pending = False
            self.prepare_message(RunspacePoolStateMsg(RunspaceState=RunspacePoolState.Opened.value))

    def _process_SetMaxRunspaces(self, event: Any) -> None:
        self._answer_availability(event, "_max_runspaces", event._ps_object.MaxRunspaces)

    def _process_SetMinRunspaces(self, event: Any) -> None:
        self._answer_availability(event, "_min_runspaces", event._ps_object.MinRunspaces)

    def _answer_availability(self, event: Any, attribute: str, count: int) -> None:
        obj = event._ps_object
        ci = getattr(obj, "ci", None)
        if ci is None:
            ci = obj.CI
        ci = int(ci)
        self._ci_events[ci] = event
        self._ci_handlers[ci] = lambda _e: setattr(self, attribute, int(count))
        self.runspace_availability_response(ci, True)


@dataclass
class _Pipeline:
    ps: Any  # psrpcore ServerPipeline
    command_id: str  # the WS-Management CommandId (the PSRP pipeline id is `ps.pipeline_id`)
    started: bool = False
    done_sent: bool = False


@dataclass
class _Shell:
    shell_id: str
    resource_uri: str
    owner: str
    client_ip: str
    input_streams: str
    output_streams: str
    pool: Any  # _LabRunspacePool
    created: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)
    cond: threading.Condition = field(init=False)
    out: dict[uuid.UUID | None, deque[bytes]] = field(default_factory=dict)
    pipelines: dict[uuid.UUID, _Pipeline] = field(default_factory=dict)
    # WS-Management CommandId -> PSRP pipeline id (they differ where the server assigns the ids).
    commands: dict[str, uuid.UUID] = field(default_factory=dict)
    closed: bool = False
    # A step cut the client off (ScriptResult.cut_connection).
    cut: bool = False
    # The Receive that delivered the last of the pool's opening (Opened state) has gone out.
    open_done: bool = False
    # Receives of the opening pool answered with the OperationTimeout fault (LabFaults.timeout_on_open).
    open_timeouts: int = 0
    # For the idle timeout: when a request last named the shell, and how many are in flight
    # (guarded by the server's shells lock).
    last_active: float = field(default_factory=time.monotonic)
    busy: int = 0

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)

    def pump(self) -> None:
        """Moves psrpcore's pending output into the per-target queues. Caller holds `lock`."""
        moved = False
        while True:
            payload = self.pool.data_to_send(_FRAGMENT_SIZE)
            if payload is None:
                break
            self.out.setdefault(payload.pipeline_id, deque()).append(bytes(payload.data))
            moved = True
        if moved:
            self.cond.notify_all()


@dataclass
class _Work:
    shell: _Shell
    pipeline: _Pipeline
    script: str
    parameters: dict[str, Any]


# --- HTTP ------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """One TCP connection; its authentication state lives as long as the connection."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds, as HTTP.sys does.
    timeout = 120
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.auth_context: Any = None
        self.principal: str | None = None
        self.sealed_protocol: str | None = None  # set once a request came sealed
        self.scheme = ""  # the HTTP scheme that authenticated the connection: negotiate, ntlm or kerberos
        self.mechanism = ""  # what authenticated inside it: ntlm or kerberos
        self.accepted = time.monotonic()  # a service restart closes the connections it finds

    def do_POST(self) -> None:
        self.server.lab._handle_post(self)

    def _reject_method(self) -> None:
        self.server.lab.counters.count_http()
        self.send_body(405, b"", headers=[("Allow", "POST")])

    do_GET = do_PUT = do_DELETE = do_HEAD = _reject_method

    def send_body(
        self,
        status: int,
        body: bytes,
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], lab: LabServer, tls: ssl.SSLContext | None) -> None:
        self.lab = lab
        self.tls = tls
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the bound address with getfqdn, which can stall on DNS.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True, name="lab-conn"
        )
        self.lab._track(thread, request)
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        sock = request
        try:
            if self.tls is not None:
                # The handshake runs here rather than in accept() so a slow client stalls only itself.
                sock = self.tls.wrap_socket(request, server_side=True)
                self.lab._track(threading.current_thread(), sock)
            self.finish_request(sock, client_address)
        except Exception as exc:
            if not self.lab._stopping.is_set():
                log.debug("connection from %s ended: %r", client_address, exc)
        finally:
            self.shutdown_request(sock)
            self.lab._untrack(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("error on connection from %s", client_address, exc_info=True)


# --- the server ------------------------------------------------------------------------------------


def _drop(conn: _Handler) -> None:
    """Leave the client without an answer: the TCP connection just closes."""
    conn.close_connection = True
    with contextlib.suppress(OSError):
        conn.connection.shutdown(socket.SHUT_RDWR)


def _client_gone(conn: _Handler) -> bool:
    """Whether the client closed the connection while its request waited. A client that waits for
    its answer sends nothing meanwhile (no pipelining), so anything readable is its FIN (or TLS
    close_notify)."""
    with contextlib.suppress(OSError, ValueError):
        readable, _, _ = select.select([conn.connection], [], [], 0)
        return bool(readable)
    return True


# Told of every LabServer that starts in this process (`watching_starts`): how an audit finds the
# servers a run started, e.g. the test suite's check that every shell a test created was deleted.
_start_watchers: list[Callable[[LabServer], None]] = []


@contextlib.contextmanager
def watching_starts(watcher: Callable[[LabServer], None]) -> Iterator[None]:
    """Calls `watcher(server)` for each LabServer started while the block runs."""
    _start_watchers.append(watcher)
    try:
        yield
    finally:
        _start_watchers.remove(watcher)


class LabServer:
    """A simulated Windows host's WinRM listener (`http[s]://address:port/wsman`).

    Each pipeline's first command reaches `handler(script, parameters)`: `script` is its text as the
    client sent it (`add_script`/`add_cmdlet`), `parameters` the named parameters bound to it
    converted to plain Python; positional arguments, further commands and pipeline input are not
    passed on. The handler runs in a thread of its own, so slow handlers only delay their pipeline.

    `winrm` is the host's WinRM configuration (protocol version, quotas, idle timeout, what it
    refuses); `faults`, `counters` and `winrm` may be replaced or mutated while the server runs: the
    knobs are read at every request. `tls` makes it an HTTPS listener speaking TLS up to
    `winrm.tls_maximum`. After `stop()`, `start()` binds the same port again.
    """

    def __init__(
        self,
        address: str,
        port: int,
        handler: ScriptHandler,
        *,
        username: str,
        password: str,
        auth: frozenset[str] = frozenset({"negotiate", "ntlm", "basic"}),
        kerberos_name: str | None = None,
        faults: LabFaults | None = None,
        counters: RequestCounters | None = None,
        tls: tuple[str, str] | None = None,
        hostname: str = "WIN-LAB",
        receive_wait: float = 1.0,
        winrm: WinRMConfig | None = None,
        poll_interval: float = 0.05,
    ) -> None:
        """`receive_wait` caps how long a Receive long-polls for output before it answers the
        OperationTimeout fault (never longer than the OperationTimeout the client asked for).

        `kerberos` in `auth` makes the host a member of a Kerberos realm whose keys are in the keytab
        `KRB5_KTNAME` names, known there as `kerberos_name` (its SPNs are service/kerberos_name): it
        offers the `Kerberos` scheme beside `Negotiate`, and takes a ticket in either only when the key
        that opens it is one of its own SPNs' and the ticket's client is the host's user.

        `poll_interval`: how often the accept loop wakes to see whether `stop()` was asked, which is
        at most how long `stop()` waits for it; every listener of a fleet wakes that often, so a
        large fleet takes a longer one (LabFleet)."""
        _check_account(username, password, hostname, auth, kerberos_name)
        self.kerberos_name = kerberos_name
        self.address = address
        self.handler = handler
        self.username = username
        self.password = password
        self.auth = frozenset(auth)
        self.faults = faults if faults is not None else LabFaults()
        self.counters = counters if counters is not None else RequestCounters()
        self.winrm = winrm if winrm is not None else WinRMConfig()
        self.hostname = hostname
        self.receive_wait = receive_wait
        self._poll_interval = poll_interval
        self._requested_port = port
        self._tls_files = tls
        self._domain, self._user = _split_user(username)
        domains = {"", ".", hostname}
        if self._domain:
            domains.add(self._domain)
        self._ntlm_account = "".join(f"{d}:{self._user}:{password}\n" for d in sorted(domains))
        self._channel_bindings: Any = None
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lifecycle = threading.Lock()
        self._conn_lock = threading.Lock()
        self._connections: dict[threading.Thread, list[Any]] = {}
        self._shells_lock = threading.Lock()
        self._shells: dict[str, _Shell] = {}
        # Shells whose client a step cut off: the client can only abandon them.
        self._cut_shells: set[str] = set()
        # The service restart last carried out (LabFaults.down_from/down_until), and when: a
        # connection accepted before it is gone.
        self._restarted: tuple[float, float] = (0.0, 0.0)
        self._restart_epoch = float("-inf")
        self._restart_lock = threading.Lock()
        self._keeper: threading.Thread | None = None
        # RandomFaults' `hang`: the host answers nothing until this time.monotonic() instant.
        self._hung_until = 0.0

    # lifecycle

    @property
    def running(self) -> bool:
        return self._httpd is not None

    @property
    def port(self) -> int:
        if self._httpd is None:
            return self._requested_port
        return int(self._httpd.server_address[1])

    def start(self) -> None:
        with self._lifecycle:
            if self._httpd is not None:
                return
            tls_context = None
            if self._tls_files is not None:
                certfile, keyfile = self._tls_files
                tls_context = server_context(certfile, keyfile, self.winrm.tls_maximum)
                self._channel_bindings = _tls_channel_bindings(certfile)
            self._stopping.clear()
            httpd = _HTTPServer((self.address, self._requested_port), self, tls_context)
            self._httpd = httpd
            self._serve_thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": self._poll_interval},
                daemon=True,
                name=f"lab-{self.address}",
            )
            self._serve_thread.start()
            self._keeper = threading.Thread(target=self._keep_house, daemon=True, name=f"lab-keeper-{self.address}")
            self._keeper.start()
        for watcher in list(_start_watchers):
            watcher(self)

    def stop(self) -> None:
        with self._lifecycle:
            httpd, self._httpd = self._httpd, None
            if httpd is None:
                return
            self._requested_port = int(httpd.server_address[1])
            self._stopping.set()
            httpd.shutdown()
            httpd.server_close()
            with self._conn_lock:
                connections = dict(self._connections)
            for socks in connections.values():
                for sock in socks:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                    with contextlib.suppress(OSError):
                        sock.close()
            with self._shells_lock:
                shells = list(self._shells.values())
                self._shells.clear()
                self._cut_shells.clear()
            for shell in shells:
                with shell.lock:
                    shell.closed = True
                    shell.cond.notify_all()
            deadline = time.monotonic() + 5.0
            for thread in (self._serve_thread, self._keeper, *connections):
                if thread is not None:
                    thread.join(max(0.0, deadline - time.monotonic()))

    def shells(self) -> dict[str, list[str]]:
        """The ShellId of every shell the host has (an abandoned one too, until it is deleted) and
        the CommandIds of the commands in it, as the server named them."""
        with self._shells_lock:
            shells = list(self._shells.values())
        result: dict[str, list[str]] = {}
        for shell in shells:
            with shell.lock:
                result[shell.shell_id] = sorted(shell.commands)
        return result

    def _track(self, thread: threading.Thread, sock: Any) -> None:
        with self._conn_lock:
            self._connections.setdefault(thread, []).append(sock)
        if self._stopping.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _untrack(self, thread: threading.Thread) -> None:
        with self._conn_lock:
            self._connections.pop(thread, None)

    # housekeeping: the idle timeout and the service restart

    def _keep_house(self) -> None:
        while not self._stopping.wait(self._housekeeping_interval()):
            self._check_restart()
            self._expire_idle()

    def _housekeeping_interval(self) -> float:
        idle = self.winrm.idle_timeout_ms / 1000
        wait = min(1.0, max(0.02, idle / 4))
        faults = self.faults
        window = (faults.down_from, faults.down_until)
        if window[1] > window[0] and window != self._restarted:
            wait = min(wait, max(0.01, window[0] - time.monotonic()))
        return wait

    def _check_restart(self) -> None:
        """Carries out the service restart whose window (LabFaults.down_from/down_until) has begun:
        every TCP connection closes and every shell is deleted, as restarting WinRM does."""
        faults = self.faults
        window = (faults.down_from, faults.down_until)
        if window[1] <= window[0] or window == self._restarted or time.monotonic() < window[0]:
            return
        with self._restart_lock:
            if window == self._restarted:
                return
            self._restarted = window
            self._restart_epoch = window[1]
        with self._shells_lock:
            shells = list(self._shells.values())
            self._shells.clear()
            self._cut_shells.clear()
            for _ in shells:
                self.counters.count_shell_deleted("restart")
        for shell in shells:
            _close_shell(shell)
        with self._conn_lock:
            sockets = [sock for socks in self._connections.values() for sock in socks]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _expire_idle(self) -> None:
        """Deletes the shells no request named for the idle timeout (IdleTimeout)."""
        limit = self.winrm.idle_timeout_ms / 1000
        now = time.monotonic()
        with self._shells_lock:
            expired = [s for s in self._shells.values() if s.busy <= 0 and now - s.last_active >= limit]
            for shell in expired:
                del self._shells[shell.shell_id]
                self._cut_shells.discard(shell.shell_id)
                self.counters.count_shell_deleted("idle")
        for shell in expired:
            _close_shell(shell)

    # HTTP and authentication

    def _handle_post(self, conn: _Handler) -> None:
        with self.counters.serving():
            self._serve_post(conn)

    def _serve_post(self, conn: _Handler) -> None:
        if not self._admit(conn):
            # The WinRM service is restarting, or restarted since this connection was made.
            _drop(conn)
            return
        body = self._read_body(conn)
        if body is None:
            return
        if not self._wait_out_hang(conn):
            _drop(conn)
            return
        authenticated = self._authenticate(conn)
        if authenticated is None:
            return
        auth_headers, basic_user = authenticated
        opened = self._open_message(conn, body, auth_headers, basic=basic_user is not None)
        if opened is None:
            return
        protocol, xml, encrypted = opened
        try:
            status, reply = self._handle_soap(conn, xml, conn.principal or basic_user or "")
        except _Answered:
            return
        if status == 0:
            _drop(conn)  # drop_on_request: leave without a word.
        elif encrypted and conn.sealed_protocol is not None:
            sealed_type, payload = seal(conn.auth_context, protocol, reply)
            conn.send_body(status, payload, sealed_type, headers=auth_headers)
        else:
            conn.send_body(status, reply, _SOAP_CONTENT_TYPE, headers=auth_headers)

    def _admit(self, conn: _Handler) -> bool:
        """False while the WinRM service restarts, and for a connection made before a restart."""
        self._check_restart()
        faults = self.faults
        if faults.down_from <= time.monotonic() < faults.down_until:
            return False
        return conn.accepted >= self._restart_epoch

    def _open_message(
        self, conn: _Handler, body: bytes, auth_headers: list[tuple[str, str]], *, basic: bool
    ) -> tuple[str, bytes, bool] | None:
        """(sealing protocol, SOAP envelope, whether it came encrypted) of an authenticated request;
        None when it has been answered already."""
        content_type = conn.headers.get("Content-Type", "")
        encrypted = content_type.startswith(("multipart/encrypted", "multipart/x-multi-encrypted"))
        if encrypted and (conn.principal is None or basic):
            conn.send_body(400, b"", headers=auth_headers)
            return None
        if not body:
            conn.send_body(200, b"", headers=auth_headers)
            return None
        if len(body) > self.winrm.max_envelope_kb * 1024:
            # MaxEnvelopeSizekb also bounds the request packets the service takes ([MS-WSMV] 2.2.4.10):
            # a bigger one gets HTTP 413 and no body, which Windows' own client reports as "the request
            # size exceeded the configured MaxEnvelopeSize quota" (0x80338111,
            # ERROR_WSMAN_HTTP_REQUEST_TOO_LARGE_STATUS) and pypsrp as WinRMTransportError 413.
            conn.send_body(413, b"", headers=auth_headers)
            return None
        if not encrypted:
            if self._tls_files is None and not self.winrm.allow_unencrypted:
                # AllowUnencrypted=false: a message in clear over plain HTTP is refused with HTTP 500
                # and no body (pywinrm issues 129 and 208, rundeck-winrm-plugin issue 18).
                conn.send_body(500, b"", headers=auth_headers)
                return None
            return SPNEGO_PROTOCOL, body, False
        unsealed = self._unseal(conn, content_type, body)
        if unsealed is None:
            conn.send_body(400, b"", headers=auth_headers)
            return None
        return unsealed[0], unsealed[1], True

    def _read_body(self, conn: _Handler) -> bytes | None:
        """The request body, after the injected latency; None when an answer was already sent."""
        try:
            length = int(conn.headers.get("Content-Length") or 0)
        except ValueError:
            conn.close_connection = True
            conn.send_body(400, b"")
            return None
        body = conn.rfile.read(length) if length > 0 else b""
        if self.faults.latency > 0:
            time.sleep(self.faults.latency)
        if conn.path.split("?", 1)[0].rstrip("/").lower() != "/wsman":
            conn.send_body(404, b"")
            return None
        return body

    def _authenticate(self, conn: _Handler) -> tuple[list[tuple[str, str]], str | None] | None:
        """(headers for the answer, the Basic user if Basic was used); None when the client was
        challenged or refused (the answer is sent)."""
        authorization = conn.headers.get("Authorization")
        if not authorization:
            if conn.principal is None:
                self._challenge(conn)
                return None
            return [], None
        scheme, _, token = authorization.strip().partition(" ")
        scheme_l = scheme.lower()
        if (scheme_l in ("negotiate", "ntlm") and self.auth & {"negotiate", "ntlm"}) or (
            scheme_l == "kerberos" and "kerberos" in self.auth
        ):
            result = self._step_negotiate(conn, scheme, token.strip())
            return None if result is None else (result, None)
        if scheme_l == "basic" and self._basic_enabled():
            basic_user = self._check_basic(token.strip())
            if basic_user is not None:
                return [], basic_user
            self.counters.count_auth_failure()
        self._challenge(conn)
        return None

    def _unseal(self, conn: _Handler, content_type: str, body: bytes) -> tuple[str, bytes] | None:
        """(protocol, clear body) of an encrypted request; None when it cannot be decrypted."""
        protocol_match = re.search(r'protocol="([^"]+)"', content_type)
        boundary_match = re.search(r'boundary="([^"]+)"', content_type)
        protocol = protocol_match.group(1) if protocol_match else SPNEGO_PROTOCOL
        if conn.scheme == "kerberos" and protocol != KERBEROS_PROTOCOL:
            # The Kerberos scheme's messages name their own protocol (MS-WSMV 2.2.9.1).
            log.debug("a request of the Kerberos scheme sealed as %s", protocol)
            return None
        try:
            clear = unseal(conn.auth_context, body, boundary_match.group(1) if boundary_match else "")
        except Exception:
            log.debug("could not decrypt a request", exc_info=True)
            return None
        conn.sealed_protocol = protocol
        self.counters.count_sealed(conn.mechanism, protocol)
        return protocol, clear

    def _challenge(self, conn: _Handler) -> None:
        headers = []
        if "negotiate" in self.auth:
            headers.append(("WWW-Authenticate", "Negotiate"))
        if "kerberos" in self.auth:
            # Windows offers Kerberos as a scheme of its own beside Negotiate (Auth/Kerberos, on by default).
            headers.append(("WWW-Authenticate", "Kerberos"))
        if "ntlm" in self.auth:
            headers.append(("WWW-Authenticate", "NTLM"))
        if self._basic_enabled():
            headers.append(("WWW-Authenticate", 'Basic realm="WSMAN"'))
        conn.send_body(401, b"", headers=headers)

    def _step_negotiate(self, conn: _Handler, scheme: str, token_b64: str) -> list[tuple[str, str]] | None:
        """Advances the connection's security context; None when a 401 has already been sent."""
        try:
            token = base64.b64decode(token_b64, validate=True)
        except (binascii.Error, ValueError):
            self.counters.count_auth_failure()
            self._challenge(conn)
            return None
        if conn.auth_context is None or conn.principal is not None:
            # A fresh token on an authenticated connection starts over, as HTTP.sys allows.
            conn.principal = None
            conn.sealed_protocol = None
            conn.scheme = scheme.lower()
            kerberos = conn.scheme == "kerberos"
            conn.auth_context = _NTLM.new_context(
                self._channel_bindings,
                str(self.kerberos_name) if kerberos else self.hostname,
                "kerberos" if kerberos else "negotiate",
            )
        try:
            out = _NTLM.step(conn.auth_context, token, self._ntlm_account)
        except (spnego.exceptions.SpnegoError, ValueError, struct.error) as exc:
            log.debug("authentication failed: %s", exc)
            conn.auth_context = None
            self.counters.count_auth_failure()
            conn.send_body(401, b"", headers=[("WWW-Authenticate", scheme)])
            return None
        if not conn.auth_context.complete:
            challenge = base64.b64encode(out or b"").decode()
            conn.send_body(401, b"", headers=[("WWW-Authenticate", f"{scheme} {challenge}")])
            return None
        mechanism = str(conn.auth_context.negotiated_protocol or "")
        if not self._accepts(conn.auth_context, mechanism):
            conn.auth_context = None
            self.counters.count_auth_failure()
            conn.send_body(401, b"", headers=[("WWW-Authenticate", scheme)])
            return None
        conn.mechanism = mechanism
        self.counters.count_authentication(mechanism)
        conn.principal = f"{self.hostname}\\{self._user}"
        if out:
            return [("WWW-Authenticate", f"{scheme} {base64.b64encode(out).decode()}")]
        return []

    def _accepts(self, context: Any, mechanism: str) -> bool:
        """Whether a complete context authenticated this host's user, and, with Kerberos, with a ticket
        for one of this host's SPNs: a ticket for another host or service is refused, as Windows cannot
        open it with its own key (the shared keytab of the lab holds every host's keys)."""
        principal = str(context.client_principal or "")
        if mechanism != "kerberos":
            return _split_user(principal)[1].lower() == self._user.lower()
        if "kerberos" not in self.auth or self.kerberos_name is None:
            return False  # a host outside the realm has no key
        name, _, realm = principal.rpartition("@")
        user, _, user_realm = self._user.partition("@")
        if name.lower() != user.lower() or (user_realm and realm.upper() != user_realm.upper()):
            return False
        spn = _ticket_service(context).rpartition("@")[0]
        return spn.partition("/")[2].lower() == self.kerberos_name.lower()

    def _basic_enabled(self) -> bool:
        # Auth/Basic is off on Windows until someone turns it on (Ansible's WinRM guide).
        return "basic" in self.auth and self.winrm.basic

    def _check_basic(self, token_b64: str) -> str | None:
        try:
            user, sep, password = base64.b64decode(token_b64, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        domain, name = _split_user(user)
        local = {"", ".", self.hostname.lower()}
        # Basic authenticates local accounts only: a DOMAIN\user or user@domain name never passes,
        # nor does any name when the host's account is a domain account.
        if "@" in name or domain.lower() not in local or self._domain.lower() not in local:
            return None
        if sep and name.lower() == self._user.lower() and password == self.password:
            return f"{self.hostname}\\{self._user}"
        return None

    # WS-Management

    def _handle_soap(self, conn: _Handler, xml: bytes, principal: str) -> tuple[int, bytes]:
        """Returns (HTTP status, SOAP reply); status 0 means drop the connection unanswered."""
        relates_to = ""
        try:
            request = _parse_request(xml)
            relates_to = request.message_id
            total = self.counters.count_wsman(request.action)
            faults = self.faults
            if faults.drop_on_request is not None and total == faults.drop_on_request:
                return 0, b""
            if request.shell_id:
                with self._shells_lock:
                    if request.shell_id in self._cut_shells:
                        return 0, b""
            if faults.fault_on_request is not None and total == faults.fault_on_request:
                raise _WSManFault(
                    INJECTED_FAULT_CODE,
                    "The WS-Management service cannot process the request because the resource is offline. "
                    "Retry the request later when the resource is online.",
                    subcode="a:EndpointUnavailable",
                )
            method = getattr(self, f"_wsman_{request.action.lower()}", None)
            if method is None:
                raise _WSManFault(
                    ACTION_NOT_SUPPORTED_CODE,
                    "The WS-Management service does not support the action specified in the request.",
                    subcode="a:ActionNotSupported",
                    sender=True,
                )
            if faults.random is not None:
                self._random_fault(faults.random, request, conn)
            shell = self._enter_shell(request.shell_id)
            try:
                body: str = method(request, conn, principal)
            finally:
                self._leave_shell(shell)
            prefix = _RESPONSE_ACTION_PREFIX[request.action]
            return 200, _envelope(f"{prefix}{request.action}Response", relates_to, body)
        except _Dropped:
            return 0, b""
        except _Answered:
            raise
        except _WSManFault as fault:
            return fault.status, _fault_envelope(fault, relates_to, self.hostname)
        except Exception as exc:
            log.exception("lab server failed on a WS-Management request")
            internal = _WSManFault(PLUGIN_FAILURE_CODE, f"An error was encountered inside the plugin. {exc}")
            return 500, _fault_envelope(internal, relates_to, self.hostname)

    # random faults (LabFaults.random; the kinds are described at common.FAULT_KINDS)

    def _random_fault(self, spec: RandomFaults, request: _Request, conn: _Handler) -> None:
        """Serves the fault `spec` draws for this request, if any: raises what answers it instead,
        or returns when the request is to be handled (a `slow` one whose client still waits)."""
        kind = spec.draw(self._fault_kinds(request, conn), request.action)
        if kind == "drop":
            raise _Dropped()
        if kind == "timeout":
            self._stopping.wait(self._receive_wait(request))
            raise _timeout_fault()
        if kind == "shell_gone":
            self._lose_shell(request.shell_id)
            raise _unknown_shell_fault()
        if kind == "quota":
            raise _shells_quota_fault(self.winrm.max_shells_per_user or 5)
        if kind == "http_503":
            conn.send_body(503, _HTTPSYS_503, "text/html; charset=us-ascii", headers=[("Connection", "close")])
            raise _Answered()
        if kind == "http_401":
            # The connection's security context is rejected: authenticate again, from the start.
            conn.auth_context, conn.principal, conn.sealed_protocol = None, None, None
            self._challenge(conn)
            raise _Answered()
        if kind in ("slow", "hang"):
            until = time.monotonic() + spec.hold
            if kind == "hang":
                self._hung_until = max(self._hung_until, until)
            if not self._hold(conn, until) and request.action == "Receive":
                # The client has gone: HTTP.sys cancels the Receive before it takes any output, so a
                # Receive sent again gets that output (pypsrp's WSMan.receive counts on it). Any other
                # request goes on, its answer lost: a shell created, a command started.
                raise _Dropped()

    def _fault_kinds(self, request: _Request, conn: _Handler) -> set[str]:
        """The kinds of random fault that can befall this request."""
        kinds = {"slow", "http_503", "hang"}
        if request.action == "Receive":
            kinds |= {"drop", "timeout"}
        if request.action == "Create":
            kinds.add("quota")
        if request.shell_id:
            with self._shells_lock:
                if request.shell_id in self._shells:
                    kinds.add("shell_gone")
        if conn.principal is not None and conn.auth_context is not None:
            kinds.add("http_401")
        return kinds

    def _lose_shell(self, shell_id: str) -> None:
        """The shell ends as if the idle timeout had ended it."""
        with self._shells_lock:
            shell = self._shells.pop(shell_id, None)
            self._cut_shells.discard(shell_id)
            if shell is not None:
                self.counters.count_shell_deleted("fault")
        if shell is not None:
            _close_shell(shell)

    def _hold(self, conn: _Handler, until: float) -> bool:
        """Keeps a request waiting until `until` (or the server stops); whether its client still waits."""
        self._stopping.wait(max(0.0, until - time.monotonic()))
        return self._client_waits(conn)

    def _client_waits(self, conn: _Handler) -> bool:
        """Whether a request held here is still to be handled: the server runs, its client waits."""
        return not self._stopping.is_set() and not _client_gone(conn)

    def _wait_out_hang(self, conn: _Handler) -> bool:
        """A hung host (LabFaults.hang, or a random `hang` under way) keeps every request waiting;
        False when the client went away meanwhile (or the server stopped first)."""
        if self.faults.hang:
            # Held until the service answers again (the fault is cleared) or the server stops; the
            # request then goes on only if its client still waits, as after a random `hang`.
            while self.faults.hang and not self._stopping.wait(HANG_POLL):
                pass
            return self._client_waits(conn)
        if time.monotonic() < self._hung_until:
            return self._hold(conn, self._hung_until)
        return True

    def _get_shell(self, request: _Request) -> _Shell:
        with self._shells_lock:
            shell = self._shells.get(request.shell_id)
        if shell is None:
            raise _unknown_shell_fault()
        return shell

    def _enter_shell(self, shell_id: str) -> _Shell | None:
        """Marks the shell a request names as busy (never idle) until `_leave_shell`."""
        if not shell_id:
            return None
        with self._shells_lock:
            shell = self._shells.get(shell_id)
            if shell is not None:
                shell.busy += 1
                shell.last_active = time.monotonic()
        return shell

    def _leave_shell(self, shell: _Shell | None) -> None:
        if shell is not None:
            with self._shells_lock:
                shell.busy -= 1
                shell.last_active = time.monotonic()

    def _wsman_create(self, request: _Request, conn: _Handler, principal: str) -> str:
        config = self.winrm
        self._check_endpoint(request.resource_uri)
        shell_xml = request.body.find("rsp:Shell", _NS)
        creation = shell_xml.find("pwsh:creationXml", _NS) if shell_xml is not None else None
        if shell_xml is None or creation is None or not (creation.text or "").strip():
            raise _bad_body_fault("A PowerShell shell needs a creationXml.")
        proposed = (shell_xml.get("ShellId") or "").upper()
        # WinRM 2.0 ignores the ShellId the client proposes and names the shell itself.
        shell_id = proposed if proposed and not config.server_assigned_ids else str(uuid.uuid4()).upper()

        def stream_names(tag: str, default: str) -> str:
            node = shell_xml.find(f"rsp:{tag}", _NS) if shell_xml is not None else None
            return (node.text or default).strip() if node is not None else default

        shell = _Shell(
            shell_id=shell_id,
            resource_uri=request.resource_uri,
            owner=principal,
            client_ip=conn.client_address[0],
            input_streams=stream_names("InputStreams", "stdin pr"),
            output_streams=stream_names("OutputStreams", "stdout"),
            pool=_LabRunspacePool(config),
        )
        data = _b64(creation.text or "")
        with shell.lock:
            work = self._feed(shell, data, None)
        self._register_shell(shell)
        self._start_work(work)
        created = (
            f"<x:ResourceCreated><a:Address>{escape(self._endpoint(conn))}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{escape(shell.resource_uri)}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet></a:ReferenceParameters>'
            "</x:ResourceCreated>"
        )
        # WinRM 2.0's CreateResponse is the ResourceCreated alone (pypsrp's 2.1 recording).
        return created if config.server_assigned_ids else created + self._shell_xml(shell)

    def _check_endpoint(self, resource_uri: str) -> None:
        """Refuses a ResourceURI that is no PowerShell session configuration of this host."""
        if not resource_uri.lower().startswith(_POWERSHELL_URI):
            # Windows has other shells (cmd); the lab has none.
            raise _WSManFault(
                INVALID_RESOURCE_URI_CODE,
                "The WS-Management service cannot process the request. The resource URI is not supported.",
                subcode="a:DestinationUnreachable",
                sender=True,
            )
        name = resource_uri[len(_POWERSHELL_URI):].strip("/").lower()
        if name not in self.winrm.endpoints:
            raise _unknown_endpoint_fault(resource_uri)

    def _register_shell(self, shell: _Shell) -> None:
        """Adds a new shell, within its owner's quotas."""
        config = self.winrm
        with self._shells_lock:
            if self._stopping.is_set():
                raise _unknown_shell_fault()
            if shell.shell_id in self._shells:
                raise _WSManFault(
                    PLUGIN_FAILURE_CODE,
                    "An error was encountered inside the plugin. The shell already exists.",
                )
            mine = [s for s in self._shells.values() if s.owner.lower() == shell.owner.lower()]
            limit = config.max_shells_per_user
            if limit and config.enforce_shell_quota and len(mine) >= limit:
                raise _shells_quota_fault(limit)
            operations = config.max_concurrent_operations_per_user
            if operations and _operations(mine) >= operations:
                raise _operations_quota_fault(operations)
            self._shells[shell.shell_id] = shell
            self.counters.count_shell_created()

    def _check_command_quotas(self, shell: _Shell) -> None:
        """Refuses one more command in `shell` over the shell's or its owner's quota."""
        config = self.winrm
        per_shell = config.max_commands_per_shell
        if per_shell and len(shell.pipelines) >= per_shell:
            raise _commands_quota_fault()
        operations = config.max_concurrent_operations_per_user
        if operations:
            with self._shells_lock:
                mine = [s for s in self._shells.values() if s.owner.lower() == shell.owner.lower()]
            if _operations(mine) >= operations:
                raise _operations_quota_fault(operations)

    def _endpoint(self, conn: _Handler) -> str:
        scheme = "https" if self._tls_files else "http"
        return f"{scheme}://{self.address}:{self.port}/wsman"

    def _shell_xml(self, shell: _Shell) -> str:
        elapsed = int(time.monotonic() - shell.created)
        run_time = f"P0DT{elapsed // 3600}H{elapsed // 60 % 60}M{elapsed % 60}S"
        return (
            f'<rsp:Shell xmlns:rsp="{_NS["rsp"]}"><rsp:ShellId>{shell.shell_id}</rsp:ShellId>'
            f"<rsp:ResourceUri>{escape(shell.resource_uri)}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(shell.owner)}</rsp:Owner><rsp:ClientIP>{escape(shell.client_ip)}</rsp:ClientIP>"
            f"<rsp:ProcessId>{os.getpid()}</rsp:ProcessId>"
            f"<rsp:IdleTimeOut>PT{self.winrm.idle_timeout_ms / 1000:.3f}S</rsp:IdleTimeOut>"
            f"<rsp:InputStreams>{escape(shell.input_streams)}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(shell.output_streams)}</rsp:OutputStreams>"
            "<rsp:MaxIdleTimeOut>PT2147483.647S</rsp:MaxIdleTimeOut><rsp:Locale>en-US</rsp:Locale>"
            "<rsp:DataLocale>en-US</rsp:DataLocale><rsp:CompressionMode>NoCompression</rsp:CompressionMode>"
            "<rsp:ProfileLoaded>Yes</rsp:ProfileLoaded><rsp:Encoding>UTF8</rsp:Encoding>"
            "<rsp:BufferMode>Block</rsp:BufferMode><rsp:State>Connected</rsp:State>"
            f"<rsp:ShellRunTime>{run_time}</rsp:ShellRunTime><rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity>"
            "</rsp:Shell>"
        )

    def _wsman_command(self, request: _Request, conn: _Handler, principal: str) -> str:
        shell = self._get_shell(request)
        line = request.body.find("rsp:CommandLine", _NS)
        if line is None:
            raise _bad_body_fault("Command needs a CommandLine.")
        arguments = line.find("rsp:Arguments", _NS)
        data = _b64(arguments.text or "") if arguments is not None else b""
        proposed = (line.get("CommandId") or "").upper()
        pipeline_id = _psrp_pipeline_id(data) or (_command_uuid(proposed) if proposed else None)
        if pipeline_id is None:
            raise _bad_body_fault("A PowerShell command needs a CREATE_PIPELINE message.")
        # WinRM 2.0 answers with a CommandId of its own; the PSRP pipeline keeps the client's id.
        command_id = proposed if proposed and not self.winrm.server_assigned_ids else str(uuid.uuid4()).upper()
        self._check_command_quotas(shell)
        with shell.lock:
            if shell.closed:
                raise _unknown_shell_fault()
            if pipeline_id in shell.pipelines or command_id in shell.commands:
                raise _WSManFault(
                    PLUGIN_FAILURE_CODE,
                    "An error was encountered inside the plugin. The command already exists.",
                )
            # psrpcore routes CREATE_PIPELINE to a pipeline that must already be in the pool's table.
            shell.pipelines[pipeline_id] = _Pipeline(ServerPipeline(shell.pool, pipeline_id), command_id)
            shell.commands[command_id] = pipeline_id
            work = self._feed(shell, data, pipeline_id)
        self._start_work(work)
        return f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId></rsp:CommandResponse>"

    def _wsman_send(self, request: _Request, conn: _Handler, principal: str) -> str:
        shell = self._get_shell(request)
        work: list[_Work] = []
        with shell.lock:
            if shell.closed:
                raise _unknown_shell_fault()
            for stream in request.body.findall("rsp:Send/rsp:Stream", _NS):
                command_id = (stream.get("CommandId") or "").upper()
                pipeline_id = shell.commands.get(command_id) if command_id else None
                if command_id and (pipeline_id is None or pipeline_id not in shell.pipelines):
                    raise _unknown_command_fault()
                work.extend(self._feed(shell, _b64(stream.text or ""), pipeline_id))
        self._start_work(work)
        return "<rsp:SendResponse/>"

    def _wsman_receive(self, request: _Request, conn: _Handler, principal: str) -> str:
        shell = self._get_shell(request)
        desired = request.body.find("rsp:Receive/rsp:DesiredStream", _NS)
        command_id = ((desired.get("CommandId") if desired is not None else None) or "").upper()
        target = self._pipeline_of(shell, command_id) if command_id else None
        # A reply is no bigger than the client asks for, nor than MaxEnvelopeSizekb ([MS-WSMV] 3.1.4.1.7).
        envelope = min(request.max_envelope, self.winrm.max_envelope_kb * 1024)
        budget = max(_FRAGMENT_SIZE, (envelope - _ENVELOPE_OVERHEAD) * 3 // 4)
        wait = self._receive_wait(request)
        if target is None and not shell.open_done and shell.open_timeouts < self.faults.timeout_on_open:
            shell.open_timeouts += 1
            time.sleep(wait)
            raise _timeout_fault()
        deadline = time.monotonic() + wait
        with shell.lock:
            while True:
                taken = self._take_output(shell, target, budget)
                if taken is not None:
                    chunks, done = taken
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timeout_fault()
                shell.cond.wait(remaining)
        attr = f' CommandId="{command_id}"' if command_id else ""
        streams = "".join(
            f'<rsp:Stream Name="stdout"{attr}>{base64.b64encode(c).decode()}</rsp:Stream>' for c in chunks
        )
        state = ""
        if command_id and done:
            state = (
                f'<rsp:CommandState CommandId="{command_id}" State="{_COMMAND_DONE}">'
                "<rsp:ExitCode>0</rsp:ExitCode></rsp:CommandState>"
            )
        elif command_id:
            state = f'<rsp:CommandState CommandId="{command_id}" State="{_COMMAND_RUNNING}"/>'
        return f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"

    def _receive_wait(self, request: _Request) -> float:
        """How long a Receive long-polls before it answers OperationTimeout: the client's
        OperationTimeout, cut to MaxTimeoutms ([MS-WSMV] 3.1.4.1.7), and to the lab's `receive_wait`."""
        operation_timeout = min(request.operation_timeout, self.winrm.max_timeout_ms / 1000)
        return max(0.0, min(operation_timeout, self.receive_wait))

    def _take_output(self, shell: _Shell, target: uuid.UUID | None, budget: int) -> tuple[list[bytes], bool] | None:
        """(chunks up to `budget` bytes, whether the command is done) when there is something to
        send, None to keep waiting. Called with the shell's lock held."""
        if shell.cut:
            raise _Dropped()
        if shell.closed or self._stopping.is_set():
            raise _unknown_shell_fault()
        pipeline = shell.pipelines.get(target) if target is not None else None
        if target is not None and (pipeline is None or pipeline.done_sent):
            # Like Windows once CommandState Done went out; a client that lost that reply
            # gets an error instead of polling forever.
            raise _unknown_command_fault()
        queue = shell.out.get(target)
        finished = pipeline is not None and pipeline.ps.state in _TERMINAL_STATES
        if not queue and not finished:
            return None
        chunks: list[bytes] = []
        size = 0
        while queue and (not chunks or size + len(queue[0]) <= budget):
            chunk = queue.popleft()
            chunks.append(chunk)
            size += len(chunk)
        done = finished and not queue
        if done and pipeline is not None:
            pipeline.done_sent = True
        if target is None:
            _pool_output_taken(shell)
        return chunks, done

    @staticmethod
    def _pipeline_of(shell: _Shell, command_id: str) -> uuid.UUID:
        with shell.lock:
            pipeline_id = shell.commands.get(command_id)
        if pipeline_id is None:
            raise _unknown_command_fault()
        return pipeline_id

    def _wsman_signal(self, request: _Request, conn: _Handler, principal: str) -> str:
        shell = self._get_shell(request)
        signal = request.body.find("rsp:Signal", _NS)
        code_node = signal.find("rsp:Code", _NS) if signal is not None else None
        if signal is None or code_node is None:
            raise _bad_body_fault("Signal needs a Code.")
        code = (code_node.text or "").strip()
        command_id = (signal.get("CommandId") or "").upper()
        with shell.lock:
            pipeline_id = shell.commands.get(command_id) if command_id else None
            pipeline = shell.pipelines.get(pipeline_id) if pipeline_id is not None else None
            if pipeline is None:
                raise _unknown_command_fault()
            if pipeline.ps.state in (PSInvocationState.Running, PSInvocationState.Stopping):
                pipeline.ps.stop()
            if code == _SIGNAL_TERMINATE or code not in _SIGNAL_CTRL_C:
                pipeline.ps.close()
                shell.pipelines.pop(pipeline.ps.pipeline_id, None)
                shell.out.pop(pipeline.ps.pipeline_id, None)
                shell.commands.pop(command_id, None)
            shell.pump()
            shell.cond.notify_all()
        return "<rsp:SignalResponse/>"

    def _wsman_delete(self, request: _Request, conn: _Handler, principal: str) -> str:
        with self._shells_lock:
            shell = self._shells.pop(request.shell_id, None)
            if shell is not None:
                self.counters.count_shell_deleted("delete")
        if shell is None:
            raise _unknown_shell_fault()
        _close_shell(shell)
        return ""

    def _wsman_get(self, request: _Request, conn: _Handler, principal: str) -> str:
        if request.resource_uri.rstrip("/") == _CONFIG_URI:
            return (
                f'<cfg:Config xmlns:cfg="{_NS["cfg"]}">'
                "<cfg:RootSDDL>O:NSG:BAD:P(A;;GA;;;BA)S:P</cfg:RootSDDL>"
                f"<cfg:MaxEnvelopeSizekb>{self.winrm.max_envelope_kb}</cfg:MaxEnvelopeSizekb>"
                f"<cfg:MaxTimeoutms>{self.winrm.max_timeout_ms}</cfg:MaxTimeoutms>"
                "<cfg:MaxBatchItems>32000</cfg:MaxBatchItems><cfg:MaxProviderRequests>4294967295"
                "</cfg:MaxProviderRequests></cfg:Config>"
            )
        if request.resource_uri.startswith((_SHELL_URI, _POWERSHELL_URI)):
            shell = self._get_shell(request)
            return self._shell_xml(shell)
        raise _WSManFault(
            INVALID_RESOURCE_URI_CODE,
            "The WS-Management service cannot process the request. The resource URI is not supported.",
            subcode="a:DestinationUnreachable",
            sender=True,
        )

    # PSRP

    def _feed(self, shell: _Shell, data: bytes, pipeline_id: uuid.UUID | None) -> list[_Work]:
        """Hands PSRP bytes to the pool and reacts to its events. Caller holds `shell.lock`."""
        work: list[_Work] = []
        if data:
            shell.pool.receive_data(_PSRPPayload(data, StreamType.default, pipeline_id))
        try:
            while True:
                event = shell.pool.next_event()
                if event is None:
                    break
                name = type(event).__name__
                if name == "CreatePipelineEvent":
                    pipeline = shell.pipelines.get(event.pipeline_id)
                    if pipeline is not None and not pipeline.started:
                        work.append(self._begin_pipeline(shell, pipeline, event))
                elif name == "GetCommandMetadataEvent":
                    pipeline = shell.pipelines.get(event.pipeline_id)
                    if pipeline is not None and not pipeline.started:
                        pipeline.started = True
                        pipeline.ps._change_state(PSInvocationState.Running, emit=False)
                        pipeline.ps.complete()
                elif name in ("ResetRunspaceStateEvent", "GetAvailableRunspacesEvent"):
                    shell.pool.runspace_availability_response(
                        event.ci, True if name == "ResetRunspaceStateEvent" else shell.pool.max_runspaces
                    )
        except _WSManFault:
            raise
        except Exception as exc:
            log.debug("PSRP data rejected", exc_info=True)
            raise _WSManFault(
                PLUGIN_FAILURE_CODE, f"An error was encountered inside the plugin. {exc}"
            ) from None
        finally:
            shell.pump()
        return work

    def _begin_pipeline(self, shell: _Shell, pipeline: _Pipeline, event: Any) -> _Work:
        pipeline.started = True
        # Windows sends no PIPELINE_STATE for Running (the client sets it itself), so neither do we:
        # a Receive then waits for real output instead of returning a bare state change.
        pipeline.ps._change_state(PSInvocationState.Running, emit=False)
        commands = event.pipeline.commands
        script = ""
        parameters: dict[str, Any] = {}
        if commands:
            first = commands[0]
            script = str(first.command_text)
            for name, value in first.parameters:
                if name is not None:
                    parameters[str(name)] = _to_plain(value)
        return _Work(shell, pipeline, script, parameters)

    def _start_work(self, work: list[_Work]) -> None:
        for item in work:
            threading.Thread(target=self._run, args=(item,), daemon=True, name="lab-pipeline").start()

    def _run(self, work: _Work) -> None:
        try:
            result = self.handler(work.script, work.parameters)
            if not isinstance(result, ScriptResult):
                raise TypeError(f"the script handler returned {type(result).__name__}, not ScriptResult")
        except Exception as exc:
            log.debug("script handler failed", exc_info=True)
            result = ScriptResult(failed=f"{type(exc).__name__}: {exc}")
        shell = work.shell
        ps = work.pipeline.ps
        if result.cut_connection:
            self._cut(shell)
            return
        with shell.lock:
            if shell.closed or ps.state != PSInvocationState.Running:
                return
            try:
                for item in result.output:
                    ps.write_output(_to_ps(item))
                for message in result.errors:
                    ps.write_error(
                        _exception(message, "Microsoft.PowerShell.Commands.WriteErrorException"),
                        ErrorCategoryInfo(Category=ErrorCategory.NotSpecified, Reason="WriteErrorException"),
                        fully_qualified_error_id="Microsoft.PowerShell.Commands.WriteErrorException",
                    )
                if result.failed is not None:
                    _fail(ps, result.failed)
                else:
                    ps.complete()
            except Exception as exc:
                log.debug("could not send a script's result", exc_info=True)
                if ps.state == PSInvocationState.Running:
                    _fail(ps, f"The lab could not serialize the script's output: {exc}")
            shell.pump()
            shell.cond.notify_all()

    def _cut(self, shell: _Shell) -> None:
        """The step moved the network under the management connection: the pipeline never
        completes, and the connection carrying the client's Receive for it - as every connection
        that later names the shell - closes unanswered. Other shells and new sessions work on.

        The connection is closed when it carries the shell's next request rather than at once: a
        client that reconnected in between would see an authentication error, not the drop."""
        # The shell itself stays (it still counts against the quotas) until the idle timeout
        # deletes it, as Windows keeps a shell whose client went away.
        with self._shells_lock:
            self._cut_shells.add(shell.shell_id)
        with shell.lock:
            shell.cut = True
            shell.closed = True
            shell.pool.pipeline_table.clear()
            shell.pipelines.clear()
            shell.commands.clear()
            shell.out.clear()
            shell.cond.notify_all()


def _operations(shells: list[_Shell]) -> int:
    """A user's concurrent operations as the quota counts them: each shell and each command in it."""
    return len(shells) + sum(len(shell.pipelines) for shell in shells)


def _pool_output_taken(shell: _Shell) -> None:
    """After a Receive took pool output: the Opened state `split_open` held back goes out with the
    next Receive; once that has gone too, the pool's opening is over. Caller holds `shell.lock`."""
    pool = shell.pool
    if pool.open_pending:
        pool.release_open()
        shell.pump()
    elif pool.state == RunspacePoolState.Opened and not shell.out.get(None):
        shell.open_done = True


def _close_shell(shell: _Shell) -> None:
    """Ends a shell whatever ended it (Delete, idle timeout, service restart): every command stops."""
    with shell.lock:
        shell.closed = True
        for pipeline in shell.pipelines.values():
            if pipeline.ps.state in (PSInvocationState.Running, PSInvocationState.Stopping):
                pipeline.ps.stop()
        shell.pool.pipeline_table.clear()
        shell.pipelines.clear()
        shell.commands.clear()
        shell.out.clear()
        shell.cond.notify_all()


def _exception(message: str, type_name: str) -> Any:
    exception = NETException(Message=message, HResult=-2146233087)
    exception.PSObject.type_names = [type_name, "System.SystemException", "System.Exception", "System.Object"]
    return exception


def _fail(ps: Any, message: str) -> None:
    record = ErrorRecord(
        Exception=_exception(message, "System.Management.Automation.RuntimeException"),
        CategoryInfo=ErrorCategoryInfo(Category=ErrorCategory.OperationStopped, Reason="RuntimeException"),
        FullyQualifiedErrorId=message,
    )
    # ServerPipeline has no public way to end Failed; its state change carries the terminating error.
    ps._change_state(PSInvocationState.Failed, error=record)


def _command_uuid(command_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(command_id)
    except ValueError:
        raise _unknown_command_fault() from None


def _b64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise _bad_body_fault("A stream is not valid base64.") from None


def _psrp_pipeline_id(data: bytes) -> uuid.UUID | None:
    """The pipeline id (PID) of the PSRP message that a Command's first fragment starts, as the
    server reads it whatever CommandId the WS-Management layer uses ([MS-PSRP] 2.2.4 fragment
    header of 21 bytes, then 2.2.1 message: destination, type, RPID, PID)."""
    if len(data) < 61 or not data[16] & 0x1:
        return None
    pid = uuid.UUID(bytes_le=bytes(data[45:61]))
    return None if pid.int == 0 else pid


def _tls_channel_bindings(certfile: str) -> Any:
    with open(certfile, "rb") as fd:
        cert = x509.load_pem_x509_certificate(fd.read())
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or algorithm.name in ("md5", "sha1"):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(cert.public_bytes(Encoding.DER))
    app_data = b"tls-server-end-point:" + digest.finalize()
    return spnego.channel_bindings.GssChannelBindings(application_data=app_data)


__all__ = ["INJECTED_FAULT_CODE", "OPERATION_TIMEOUT_CODE", "LabServer"]
