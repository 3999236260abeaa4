"""The one door to pypsrp: a Session per host, and the mapping of every client error onto ours.

A `PsrpSession` opens one WSMan connection and one RunspacePool for a host and reuses them for every
script it runs; it belongs to one worker thread (pypsrp's WSMan and RunspacePool are not safe to
share between threads). Scripts travel as text with their values bound as PSRP parameters, never
spliced into the text. Output objects come back as plain JSON-able Python.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import requests
from pypsrp.complex_objects import ComplexObject, GenericComplexObject, PSInvocationState
from pypsrp.exceptions import AuthenticationError, WinRMError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan
from spnego.exceptions import SpnegoError

from orchestrator.errors import (
    AuthError,
    ConnectionLost,
    DsrError,
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
    """What one script produced: its output objects and its non-terminating error records."""

    output: list[Any]
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0


class Session(Protocol):
    """One host's remote PowerShell: open once, run scripts, close."""

    def open(self) -> None: ...

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult: ...

    def close(self) -> None: ...


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
        return Unreachable(f"TLS handshake failed: {exc}")
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return Unreachable(f"connection timed out: {exc}")
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return Timeout(f"no answer within the read timeout: {exc}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if phase == "connect":
            return Unreachable(f"cannot connect: {_short(exc)}")
        return ConnectionLost(f"connection lost: {_short(exc)}")
    if isinstance(exc, requests.exceptions.RequestException):
        return ProtocolError(f"HTTP error: {exc}")
    if isinstance(exc, WSManFaultError):
        reason = " ".join(str(exc.reason or exc).split())
        return RemoteFault(f"WSMan fault {exc.code}: {reason}", code=exc.code)
    if isinstance(exc, WinRMTransportError):
        if exc.code == 401:
            return AuthError(f"authentication failed: HTTP {exc.code}")
        if exc.code in (404, 503):
            # http.sys answers these while the WinRM service is stopped or restarting.
            return Unreachable(f"the WinRM service is not answering (HTTP {exc.code})")
        return ProtocolError(f"unexpected HTTP {exc.code} answer from the WinRM service")
    if isinstance(exc, WinRMError):
        return ProtocolError(f"{type(exc).__name__}: {exc}")
    return ProtocolError(f"{type(exc).__name__}: {exc}")


def _short(exc: BaseException) -> str:
    """requests nests the socket error several levels deep; keep the innermost readable reason."""
    text = str(exc)
    for marker in ("Connection refused", "Connection reset", "Connection aborted", "No route to host",
                   "Name or service not known", "timed out", "RemoteDisconnected"):
        if marker in text:
            return marker
    return " ".join(text.split())[:200]


@contextmanager
def _mapped(phase: str) -> Iterator[None]:
    try:
        yield
    except DsrError:
        raise
    except Exception as exc:  # every client failure leaves this module as one of our classes
        raise map_error(exc, phase=phase) from exc


class PsrpSession:
    """A host's WSMan connection and RunspacePool, opened once and reused for every script."""

    def __init__(self, connection: Connection, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._connection = connection
        self._clock = clock
        self._wsman: WSMan | None = None
        self._pool: RunspacePool | None = None

    def _make_wsman(self) -> WSMan:
        c = self._connection
        cert_validation: bool | str = c.cert_validation
        if c.cert_validation and c.ca_cert:
            cert_validation = c.ca_cert
        extra: dict[str, Any] = {}
        if c.auth == "certificate":
            extra = {"certificate_pem": c.certificate_pem, "certificate_key_pem": c.certificate_key_pem}
        return WSMan(
            c.address,
            port=c.port,
            username=c.user,
            password=c.password,
            ssl=c.protocol == "https",
            auth=c.auth,
            # pypsrp hands this to requests' `verify`, which takes a CA bundle path as well as a bool;
            # its annotation only says bool.
            cert_validation=cert_validation,  # type: ignore[arg-type]
            connection_timeout=c.connection_timeout,
            read_timeout=c.read_timeout,
            operation_timeout=c.operation_timeout,
            encryption=c.message_encryption,
            **extra,
        )

    def open(self) -> None:
        if self._pool is not None:
            return
        with _mapped("connect"):
            wsman = self._make_wsman()
            try:
                pool = RunspacePool(wsman, configuration_name=self._connection.configuration_name)
                pool.open()
            except BaseException:
                _close_wsman(wsman)
                raise
        self._wsman, self._pool = wsman, pool

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        if self._pool is None:
            self.open()
        assert self._pool is not None  # open() either set it or raised
        started = self._clock()
        deadline = started + timeout
        with _mapped("run"):
            ps = PowerShell(self._pool)
            ps.add_script(script)
            if parameters:
                ps.add_parameters(dict(parameters))
            ps.begin_invoke()
            while ps.state == PSInvocationState.RUNNING:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    self._stop(ps)
                    raise Timeout(f"script did not finish within {timeout:g} s")
                # A Receive long-polls for at most this many seconds, so the deadline is checked
                # again at least that often.
                poll = max(1, min(int(remaining), self._connection.operation_timeout))
                ps.poll_invoke(timeout=poll)
            errors = [_error_text(record) for record in ps.streams.error]
            output = [to_plain(item) for item in ps.output]
        if ps.had_errors:
            raise ScriptError("; ".join(errors) or "the script failed without an error record")
        return RunResult(output=output, errors=errors, duration=self._clock() - started)

    def _stop(self, ps: PowerShell) -> None:
        # Best effort: the pipeline is abandoned either way.
        with suppress(Exception):
            ps.stop()

    def close(self) -> None:
        pool, wsman, self._pool, self._wsman = self._pool, self._wsman, None, None
        if pool is not None:
            # Best effort: a remote shell that is not deleted times out on its own.
            with suppress(Exception):
                pool.close()
        if wsman is not None:
            _close_wsman(wsman)


def _close_wsman(wsman: WSMan) -> None:
    """Release the HTTP session and its sockets (a reconnect must not leak them)."""
    with suppress(Exception):
        wsman.close()


def psrp_session(connection: Connection) -> Session:
    """The production SessionFactory."""
    return PsrpSession(connection)
