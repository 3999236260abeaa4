"""The one door to pypsrp: a Session per host, and the mapping of every client error onto ours.

A `PsrpSession` opens one WSMan connection and one RunspacePool for a host and reuses them for every
script it runs; it belongs to one worker thread (pypsrp's WSMan and RunspacePool are not safe to
share between threads). Each script runs in its own PowerShell pipeline, closed before the next one
starts so the remote shell does not collect finished commands. Scripts travel as text with their
values bound as PSRP parameters, never spliced into the text. Output objects come back as plain
JSON-able Python.

`wsman_kwargs` and `pool_kwargs` are the one mapping from a host's connection settings (the
inventory's `ansible_psrp_*` variables) to pypsrp's keyword arguments.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import requests
import urllib3
from pypsrp.complex_objects import ComplexObject, GenericComplexObject, PSInvocationState, RunspacePoolState
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.shell import SignalCode
from pypsrp.wsman import SelectorSet, WSMan
from spnego.exceptions import SpnegoError

from orchestrator.errors import (
    PERMANENT_FAULT_CODES,
    AuthError,
    ConnectionLost,
    DsrError,
    PermanentFault,
    ProtocolError,
    RemoteFault,
    ScriptError,
    Timeout,
    Unreachable,
)

if TYPE_CHECKING:
    from orchestrator.inventory import Connection

@dataclass(frozen=True)
class RunResult:
    """What one script that finished without throwing produced.

    - `output`: its output objects, as plain Python (see `to_plain`).
    - `errors`: the text of each non-terminating error record the script left on PowerShell's
      error stream (`Write-Error`, a cmdlet error that did not stop it), in order, one line each.
      The script still succeeded; the caller decides whether to log or act on them. A script that
      threw does not return a RunResult: it raises ScriptError, whose message joins every record.
    - `duration`: seconds from sending the script to its end.
    """

    output: list[Any]
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0


class Session(Protocol):
    """One host's remote PowerShell: open once, run scripts, close."""

    def open(self) -> None: ...

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult: ...

    def close(self) -> list[str]:
        """Release the remote shell and the connection; the ids of shells that could not be deleted
        (the connection was gone): the host's idle timeout ends them."""
        ...


SessionFactory = Callable[["Connection"], Session]


def to_plain(value: Any) -> Any:
    """Turn a deserialized PSRP value into JSON-able Python: PSObjects become dicts of their properties."""
    if isinstance(value, GenericComplexObject):
        props: dict[str, Any] = {}
        for source in (value.adapted_properties, value.extended_properties):
            for key, item in source.items():
                props[str(key)] = to_plain(item)
        if not props and value.to_string is not None:
            return str(value.to_string)
        return props
    if isinstance(value, dict):
        return {str(to_plain(k)): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, ComplexObject):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _error_text(record: Any) -> str:
    text = str(record) if record is not None else ""
    if not text or text == "None":
        exception = getattr(record, "exception", None)
        adapted = getattr(exception, "adapted_properties", {}) or {}
        text = str(adapted.get("Message") or exception or "unknown error")
    return " ".join(text.split())


def map_error(exc: BaseException, *, phase: str) -> DsrError:
    """Map a pypsrp / requests / pyspnego exception onto dsrprep's error classes.

    `phase` is "connect" while the pool is being opened and "run" afterwards: a refused or dropped
    connection means the host is unreachable in the first case and that a step was cut in the second.
    """
    if isinstance(exc, DsrError):
        return exc
    if isinstance(exc, AuthenticationError):
        return AuthError(f"authentication failed: {exc}")
    if isinstance(exc, SpnegoError):
        return AuthError(f"authentication failed: {exc}")
    if isinstance(exc, requests.exceptions.SSLError):
        return Unreachable(_tls_message(exc))
    if isinstance(exc, ImportError):
        return AuthError(_missing_extra(exc))
    if type(exc).__module__.split(".")[0] in ("krb5", "gssapi"):  # pyspnego's Kerberos, when installed
        return AuthError(f"Kerberos: {type(exc).__name__}: {exc} (check /etc/krb5.conf and its default realm, a "
                         "ticket from kinit or the password, and that the host's name is the one in its SPN)")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unreachable(f"connection timed out: {exc}", silent=True)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Timeout(f"no answer within the read timeout: {exc}", silent=True)
    # ChunkedEncodingError: the connection closed in the middle of an answer's body (urllib3's
    # IncompleteRead), as a WinRM/HTTP restart does to the answer it was sending: a lost connection.
    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.ChunkedEncodingError):
        if phase == "connect":
            return Unreachable(f"cannot connect: {_short(exc)}", silent=_never_connected(exc))
        return ConnectionLost(f"connection lost: {_short(exc)}")
    if isinstance(exc, requests.exceptions.RequestException):
        return ProtocolError(f"HTTP error: {exc}")
    if isinstance(exc, WSManFaultError):
        reason = " ".join(str(exc.reason or exc).split())
        hint = _FAULT_HINTS.get(exc.code or 0, "")
        kind = PermanentFault if exc.code in PERMANENT_FAULT_CODES else RemoteFault
        return kind(f"WSMan fault {exc.code}: {reason}{hint}", code=exc.code)
    if isinstance(exc, WinRMTransportError):
        return _http_error(exc)
    if isinstance(exc, WinRMError):
        return ProtocolError(f"{type(exc).__name__}: {exc}")
    return ProtocolError(f"{type(exc).__name__}: {exc}")


def _http_error(exc: WinRMTransportError) -> DsrError:
    """An HTTP answer of the WinRM service that is not a WSMan reply."""
    if exc.code == 401:
        return AuthError(f"authentication failed: HTTP {exc.code}")
    if exc.code in (404, 503):
        # http.sys answers these while the WinRM service is stopped or restarting.
        return Unreachable(f"the WinRM service is not answering (HTTP {exc.code})")
    if exc.code == 500 and not exc.response_text:
        # What WinRM answers a message that is not encrypted when AllowUnencrypted is off.
        return ProtocolError("the WinRM service refused the request (HTTP 500, no body): over plain http it "
                             "takes only encrypted messages; keep ansible_psrp_message_encryption at auto or "
                             "always (not never), or use https")
    if exc.code == 413:
        return ProtocolError("the WinRM service refused a request larger than its MaxEnvelopeSizekb (HTTP 413): "
                             "lower ansible_psrp_max_envelope_size, or raise MaxEnvelopeSizekb on the host")
    return ProtocolError(f"unexpected HTTP {exc.code} answer from the WinRM service")


# What to do about the WSMan faults an operator can fix on the host.
_FAULT_HINTS: Mapping[int, str] = {
    2150859173: " (raise WinRM's MaxShellsPerUser on the host: winrm set winrm/config/winrs "
                "@{MaxShellsPerUser=\"10\"}; on WinRM 3.0+ also the Microsoft.PowerShell endpoint's quota)",
    2150859174: " (raise WinRM's MaxConcurrentOperationsPerUser on the host: winrm set winrm/config/service "
                "@{MaxConcurrentOperationsPerUser=\"50\"})",
}


def _tls_message(exc: BaseException) -> str:
    """A failed TLS handshake, naming the cause an operator can act on: an old protocol version, or a
    certificate that is not trusted, does not name the host or has expired."""
    text = str(exc)
    old = any(marker in text for marker in ("PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", "WRONG_VERSION_NUMBER"))
    if old:
        return ("TLS handshake failed: the host speaks an older TLS version than this client accepts (Windows "
                "Server 2003, and 2008 without the TLS 1.1/1.2 update, speak only TLS 1.0): use http with message "
                f"encryption (the default) instead ({_short(exc)})")
    verify = _CERT_VERIFY.search(text)
    if verify:
        reason = verify.group(1).strip()
        for markers, advice in _CERT_ADVICE:
            if any(marker in reason.lower() for marker in markers):
                return f"TLS handshake failed: the host's certificate {advice} ({reason})"
        return f"TLS handshake failed: the host's certificate was refused ({reason})"
    return f"TLS handshake failed: {_short(exc)}"


_CERT_VERIFY = re.compile(r"certificate verify failed: ([^()'\"]+)")
# What the reasons OpenSSL gives for refusing a certificate mean to an operator.
_CERT_ADVICE: tuple[tuple[tuple[str, ...], str], ...] = (
    (("local issuer", "self-signed", "self signed", "untrusted", "unable to get issuer"),
     "is not trusted: name the CA that issued it in ansible_psrp_ca_cert (a PEM file), or add that CA to "
     "this machine's trust store"),
    (("mismatch", "hostname", "ip address"),
     "does not name the address dsrprep connects to: put a name or address the certificate holds in "
     "ansible_host"),
    (("expired", "not yet valid"), "is outside its validity period: renew it on the host"),
)


def _missing_extra(exc: ImportError) -> str:
    """An auth that needs an optional dependency that is not installed."""
    text = str(exc)
    if "gssapi" in text or "krb5" in text:
        return ("Kerberos needs pyspnego's Kerberos support: pip install 'dsrprep[kerberos]' (on Debian or Ubuntu "
                f"first: apt-get install libkrb5-dev krb5-user) ({text})")
    if "credssp" in text.lower():
        return f"CredSSP needs pypsrp's CredSSP support: pip install 'dsrprep[credssp]' ({text})"
    return f"a library the authentication needs is missing: {text}"


def _short(exc: BaseException) -> str:
    """requests nests the socket error several levels deep; keep the innermost readable reason."""
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Connection aborted", "No route to host",
                   "Name or service not known", "timed out", "RemoteDisconnected"):
        if marker in text:
            return marker
    return " ".join(text.split())[:200]


def _never_connected(exc: BaseException) -> bool:
    """No TCP connection was made (refused, no route, unknown name): urllib3 says so with a
    NewConnectionError somewhere in the chain requests wraps it in. A connection the host accepted
    and then closed unanswered is not silence: something there is listening."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, urllib3.exceptions.NewConnectionError):
            return True
        linked = [getattr(item, "reason", None), item.__cause__, item.__context__, *item.args]
        todo += [e for e in linked if isinstance(e, BaseException)]  # a reason may also be a string
    return False


@contextmanager
def _mapped(phase: str, wsman: WSMan | None = None) -> Iterator[None]:
    try:
        yield
    except DsrError:
        raise
    except Exception as exc:  # every client failure leaves this module as one of our classes
        if wsman is not None and _authentication_lost(exc, wsman):
            raise ConnectionLost(
                "the host rejected this session's authentication (HTTP 401); authenticated again, it could "
                "not read a message sealed under the old one (HTTP 400): the session must start anew"
            ) from exc
        raise map_error(exc, phase=phase) from exc


def _authentication_lost(exc: BaseException, wsman: WSMan) -> bool:
    """An HTTP 400 after pypsrp authenticated again in the middle of a session.

    A host that rejects a connection's NTLM context answers 401; pypsrp's HTTPNegotiateAuth then
    authenticates from the start (a new context in `auth.contexts`) and sends the same request
    again, but its body stays sealed by the old context (`transport.encryption`, kept until a
    read timeout resets it), which the host cannot unseal: HTTP 400, and so every request after.
    (pypsrp 0.9.1's attributes; tests/lab/test_random_faults_e2e.py fails if they change.)
    """
    if not isinstance(exc, WinRMTransportError) or exc.code != 400:
        return False
    transport = getattr(wsman, "transport", None)
    encryption = getattr(transport, "encryption", None)
    auth = getattr(getattr(transport, "session", None), "auth", None)
    contexts = getattr(auth, "contexts", None) or {}
    return encryption is not None and any(context is not encryption.context for context in contexts.values())


def wsman_kwargs(conn: Connection) -> dict[str, Any]:
    """pypsrp's `WSMan(**kwargs)` for a host: every transport setting of the inventory, in one place.

    The same mapping as Ansible's psrp connection plugin, so an inventory means here what it means
    there. Pure: it reads the Connection and touches nothing.
    """
    if conn.auth == "basic" and conn.protocol == "http" and not conn.allow_insecure_basic:
        # The inventory refuses this already; a Connection made elsewhere must not slip through.
        raise AuthError("Basic auth over plain http sends the password in clear: use https, or set "
                        "dsr_allow_insecure_basic: true")
    # requests' `verify` takes a CA bundle path as well as a bool; pypsrp passes it through.
    cert_validation: bool | str = conn.ca_cert if conn.cert_validation and conn.ca_cert else conn.cert_validation
    kwargs: dict[str, Any] = {
        "server": conn.address,
        "port": conn.port,
        "username": conn.user,
        "password": conn.password,
        "ssl": conn.protocol == "https",
        "path": conn.path,
        "auth": conn.auth,
        "cert_validation": cert_validation,
        "encryption": conn.message_encryption,
        "connection_timeout": conn.connection_timeout,
        "read_timeout": conn.read_timeout,
        "operation_timeout": conn.operation_timeout,
        "max_envelope_size": conn.max_envelope_size,
        "reconnection_retries": conn.reconnection_retries,
        "reconnection_backoff": float(conn.reconnection_backoff),
        "proxy": conn.proxy,
        "no_proxy": conn.ignore_proxy,
        # pypsrp reads these for negotiate, ntlm and kerberos auth only.
        "negotiate_delegate": conn.negotiate_delegate,
        "negotiate_hostname_override": conn.negotiate_hostname_override,
        "negotiate_send_cbt": conn.negotiate_send_cbt,
        "negotiate_service": conn.negotiate_service,
    }
    if conn.auth == "certificate":
        kwargs["certificate_pem"] = conn.certificate_pem
        kwargs["certificate_key_pem"] = conn.certificate_key_pem
    return kwargs


def pool_kwargs(conn: Connection) -> dict[str, Any]:
    """pypsrp's `RunspacePool(wsman, **kwargs)` for a host: the PowerShell endpoint to open."""
    return {"configuration_name": conn.configuration_name}


# Bytes kept free in every request for WinRM message encryption's framing (measured: 180).
SEALING_MARGIN = 2048
FRAGMENT_HEADER = 21  # bytes of a PSRP fragment's header (MS-PSRP 2.2.4)


class PsrpSession:
    """A host's WSMan connection and RunspacePool, opened once and reused for every script."""

    def __init__(self, connection: Connection, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._connection = connection
        self._clock = clock
        self._wsman: WSMan | None = None
        self._pool: RunspacePool | None = None
        self._left: list[str] = []  # shells of this session that could not be deleted
        # The last pipeline, which ran to its end: closed (a WSMan Terminate signal) when the next
        # one starts, or ended with the shell by its Delete, which ends every command in it
        # (MS-PSRP 3.2.5.3.12); so the last pipeline of a session costs no Signal.
        self._finished: PowerShell | None = None
        # Why the session cannot carry another script: closing a pipeline failed on the way (its
        # answer timed out, its connection went), leaving the WSMan's sealing behind its host.
        self._broken: str | None = None

    def open(self) -> None:
        if self._pool is not None:
            return
        with _mapped("connect"):
            wsman = WSMan(**wsman_kwargs(self._connection))
            _environment_read_once(wsman)
            pool = RunspacePool(wsman, **pool_kwargs(self._connection))
        with _mapped("connect", wsman):
            try:
                _open_pool(pool)
                check_opened(pool)
            except BaseException:
                # The shell may exist on the host already (its Create succeeded, then the open failed):
                # delete it rather than leave it to count against the user's shell quota.
                self._left += self._delete_shell(wsman, pool.shell)
                _close_wsman(wsman)
                raise
            # pypsrp 0.9.1 fills each request to max_envelope_size exactly (and raises 153600 to
            # 512000 once the host says protocol 2.2+); message encryption then adds a few hundred
            # bytes, and Windows answers a request over its MaxEnvelopeSize with HTTP 413. Leave
            # room for the sealing (tests/lab/test_winrm_fidelity.py sends a script of many envelopes).
            # The pool's fragmenter keeps the size it was built with: pypsrp itself updates its
            # private `_fragmenter.max_size` when it raises the size, and so does this (the fragment
            # header's 21 bytes off, as pypsrp's Fragmenter constructor takes them).
            wsman.update_max_payload_size(wsman.max_envelope_size - SEALING_MARGIN)
            pool._fragmenter.max_size = wsman.max_payload_size - FRAGMENT_HEADER
        self._wsman, self._pool = wsman, pool

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        if self._pool is None:
            self.open()
        assert self._pool is not None  # open() either set it or raised
        finished, self._finished = self._finished, None
        if finished is not None:
            self._note_close(_close_pipeline(finished))
        if self._broken is not None:
            raise ConnectionLost(f"the session cannot go on: closing the previous pipeline failed ({self._broken})")
        started = self._clock()
        with _mapped("run", self._wsman):
            ps = PowerShell(self._pool)
            connection_lost = False
            try:
                self._invoke(ps, script, parameters, deadline=started + timeout, timeout=timeout)
                errors = [_error_text(record) for record in ps.streams.error]
                output = [to_plain(item) for item in ps.output]
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
                connection_lost = True
                raise
            finally:
                # Not after a lost connection: that WSMan cannot be used again (its sealing key is
                # stale), and the runner abandons the whole shell for a fresh one.
                if not connection_lost:
                    self._release(ps)
        if ps.had_errors:
            raise ScriptError("; ".join(errors) or "the script failed without an error record")
        return RunResult(output=output, errors=errors, duration=self._clock() - started)

    def _release(self, ps: PowerShell) -> None:
        """Completed, failed or timed out, a pipeline is closed before the next one runs: one the host
        ended waits for the next script or the shell's Delete, one stopped here is closed now."""
        if ps.state in _ENDED_BY_HOST:
            self._finished = ps
        else:
            self._note_close(_close_pipeline(ps))

    def _note_close(self, failure: BaseException | None) -> None:
        """A pipeline close that failed other than with a WSMan fault (which the host answered, the
        session intact) leaves the session unusable: the next script is refused with the reason."""
        if failure is not None and not isinstance(failure, WSManFaultError):
            error = map_error(failure, phase="run")
            self._broken = f"{error.error_class}: {error}"

    def _invoke(
        self, ps: PowerShell, script: str, parameters: Mapping[str, Any], *, deadline: float, timeout: float
    ) -> None:
        """Start the script and poll it to its end, or stop it and raise Timeout at the deadline."""
        ps.add_script(script)
        if parameters:
            ps.add_parameters(dict(parameters))
        ps.begin_invoke()
        while ps.state == PSInvocationState.RUNNING:
            remaining = deadline - self._clock()
            if remaining <= 0:
                self._stop(ps)
                raise Timeout(f"script did not finish within {timeout:g} s", silent=True)
            # A Receive long-polls for at most this many seconds, so the deadline is checked
            # again at least that often.
            poll = max(1, min(int(remaining), self._connection.operation_timeout))
            ps.poll_invoke(timeout=poll)

    def _stop(self, ps: PowerShell) -> None:
        # Best effort: the pipeline is abandoned either way.
        _stop_pipeline(ps)

    def close(self) -> list[str]:
        pool, wsman, self._pool, self._wsman = self._pool, self._wsman, None, None
        self._finished = None  # the Delete of its shell ends it
        if pool is not None and wsman is not None:
            self._left += self._delete_shell(wsman, pool.shell)
        if wsman is not None:
            _close_wsman(wsman)
        left, self._left = self._left, []
        return left

    def _delete_shell(self, wsman: WSMan, shell: Any) -> list[str]:
        """Delete a pool's shell if it was created; [its id] when that failed on this connection and
        on a fresh one (the host is gone, or will not answer for that shell)."""
        if not getattr(shell, "opened", False):
            return []
        shell_id = _shell_id(shell)
        try:
            shell.close()  # a WSMan Delete of the shell (pypsrp WinRS.close)
            return []
        except WSManFaultError as exc:
            if exc.code == UNKNOWN_SHELL_CODE:
                return []  # already gone (a service restart, the idle timeout)
        except Exception:
            pass
        # The connection is gone (a lost connection leaves the WSMan's sealing useless), but the shell
        # lives on under the user's name: a Delete through a connection of its own ends it, so the
        # next session does not make a second shell on the host.
        return [] if _delete_through_fresh_connection(self._connection, shell.resource_uri, shell_id) else [shell_id]


# Pipeline states in which the host has ended a pipeline ([MS-PSRP] 2.2.3.4): its answer is whole.
_ENDED_BY_HOST = frozenset({PSInvocationState.COMPLETED, PSInvocationState.FAILED})


class _Pipeline(Protocol):
    """The part of pypsrp's PowerShell that closing a pipeline uses."""

    state: int

    def stop(self) -> None: ...

    def close(self) -> None: ...


def _close_pipeline(ps: _Pipeline) -> Exception | None:
    """Release a pipeline's remote command (a WSMan Terminate signal), tolerating any failure, which
    it returns.

    A pipeline still running (its poll failed) is stopped first: pypsrp closes only finished ones.
    A pipeline that cannot be closed stays until the shell is deleted, which ends every command.
    """
    if ps.state == PSInvocationState.RUNNING:
        _stop_pipeline(ps)
    try:
        ps.close()
    except Exception as exc:  # the caller decides what the failure means for the session
        return exc
    return None


def _stop_pipeline(ps: Any) -> None:
    """Ctrl+C to a running pipeline, by the CommandId the host knows it by.

    pypsrp 0.9.1's PowerShell.stop() signals the CommandId pypsrp proposed; WinRM 2.0 assigns its
    own (pypsrp keeps it in the private `_command_id`, which its Send, Receive and close use), so the
    signal is sent here the same way close does, and the pipeline then counts as stopped, as
    pypsrp's stop() leaves it (tests/lab/test_winrm_fidelity.py runs it against server-assigned ids).
    """
    with suppress(Exception):
        ps.runspace_pool.shell.signal(SignalCode.PS_CTRL_C, str(ps._command_id or ps.id).upper())
    ps.state = PSInvocationState.STOPPED
    ps.runspace_pool.pipelines.pop(ps.id, None)


# wsman:TimedOut ([MS-WSMV] 3.1.4.1.7): the host had nothing to send within the OperationTimeout.
OPERATION_TIMEOUT_CODE = 2150858793
# The fault for a ShellId that names no shell on the host: a Delete of a shell already gone.
UNKNOWN_SHELL_CODE = 2150858843
# How long the Delete of a shell left behind may take: it is cleanup, not the job.
CLEANUP_OPERATION_TIMEOUT = 5
CLEANUP_CONNECT_TIMEOUT = 5


def _delete_through_fresh_connection(conn: Connection, resource_uri: str, shell_id: str) -> bool:
    """WSMan Delete of `shell_id` over a new HTTP session (its own authentication); True when done."""
    kwargs = wsman_kwargs(conn)
    operation = min(conn.operation_timeout, CLEANUP_OPERATION_TIMEOUT)
    kwargs.update(
        operation_timeout=operation,
        read_timeout=operation + 5,
        connection_timeout=min(conn.connection_timeout, CLEANUP_CONNECT_TIMEOUT),
        reconnection_retries=0,
    )
    selectors = SelectorSet()
    selectors.add_option("ShellId", shell_id)
    wsman = None
    try:
        wsman = WSMan(**kwargs)
        wsman.delete(resource_uri, selector_set=selectors)
    except WSManFaultError as exc:
        return bool(exc.code == UNKNOWN_SHELL_CODE)
    except Exception:
        return False
    finally:
        if wsman is not None:
            _close_wsman(wsman)
    return True


# Receives in a row that may time out while a pool opens (each waits up to the OperationTimeout).
OPEN_TIMEOUTS_TOLERATED = 3


def _open_pool(pool: RunspacePool) -> None:
    """`pool.open()`, going on past the OperationTimeout fault as pypsrp's `poll_invoke` does.

    pypsrp 0.9.1's `RunspacePool.open()` sends the Create, then Receives until the pool leaves
    NEGOTIATION_SENT, and raises any fault on the way, wsman:TimedOut too, although that only says
    the host's PowerShell has not answered yet (a plugin slow to start). Here the Receives go on
    through pypsrp's private `_receive`, the call its own `open()` loops on, until the pool opens or
    more than OPEN_TIMEOUTS_TOLERATED of them time out (test_a_pool_open_can_time_out in
    tests/lab/test_winrm_fidelity.py fails if pypsrp's open changes this behaviour).
    """
    try:
        pool.open()
        return
    except WSManFaultError as exc:
        if exc.code != OPERATION_TIMEOUT_CODE or pool.state != RunspacePoolState.NEGOTIATION_SENT:
            raise
    timeouts = 1
    while pool.state == RunspacePoolState.NEGOTIATION_SENT:
        try:
            pool._receive()
        except WSManFaultError as exc:
            timeouts += 1
            if exc.code != OPERATION_TIMEOUT_CODE or timeouts > OPEN_TIMEOUTS_TOLERATED:
                raise


def check_opened(pool: Any) -> None:
    """ConnectionLost (retried on a fresh session) when `pool` left its opening without the host's
    SESSION_CAPABILITY: its protocol version unknown, pypsrp's next `add_script` fails on it.

    pypsrp 0.9.1 sends a Receive again when its answer does not come within the read timeout
    (`WSMan.receive`, retries_on_read_timeout=5), counting on the host to answer the same data
    again. A host that had already sent the capability in the lost answer sends what comes next,
    the Opened state, and the pool opens without it (seen with a thousand lab hosts on two cores).
    """
    if pool.state != RunspacePoolState.OPENED or not pool.protocol_version:
        raise ConnectionLost(f"the runspace pool left its opening in state {pool.state} without the host's "
                             "session capability (an answer lost after a read timeout): opening a new one")


def _shell_id(shell: Any) -> str:
    """The ShellId the host knows a shell by: pypsrp 0.9.1 keeps the one WinRM 2.0 assigned only in
    the shell's private selector set (its `id` stays the one pypsrp proposed)."""
    for name, value, _attributes in getattr(getattr(shell, "_selector_set", None), "values", []):
        if name == "ShellId":
            return str(value)
    return str(shell.id)


def _environment_read_once(wsman: WSMan) -> None:
    """The environment's proxy and CA settings, read once for the session rather than per request.

    pypsrp 0.9.1 resolves them for the endpoint when it builds its requests session (HTTP_PROXY,
    HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and keeps the result in the session,
    but leaves `trust_env` on, so requests resolves the proxies again on every request, walking the
    whole environment each time (4 % of a rollout's CPU in a profile, docs/performance.md). The
    session is built here as pypsrp builds it before its first request, with the same result, and
    then told not to look again (tests/lab/test_transport_environment.py).
    """
    transport = wsman.transport
    if transport.session is None:
        transport.session = transport._build_session()
    transport.session.trust_env = False


def _close_wsman(wsman: WSMan) -> None:
    """Release the HTTP session and its sockets (a reconnect must not leak them)."""
    with suppress(Exception):
        wsman.close()


def psrp_session(connection: Connection) -> Session:
    """The production SessionFactory."""
    return PsrpSession(connection)
