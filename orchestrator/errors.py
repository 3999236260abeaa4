"""The error classes every layer speaks: transport maps pypsrp/requests failures onto these once.

A failure crosses module boundaries as data (`ErrorInfo`); these exceptions exist so the transport
can raise something typed that the runner turns into that data.
"""

from __future__ import annotations

from dataclasses import dataclass


class DsrError(Exception):
    """Base of every error dsrprep raises on purpose."""

    error_class = "Error"


class AuthError(DsrError):
    """The host refused the credentials. Never retried."""

    error_class = "AuthError"


class Unreachable(DsrError):
    """No connection could be made (refused, no route, DNS, TLS handshake). Retried."""

    error_class = "Unreachable"


class ConnectionLost(DsrError):
    """The connection broke in the middle of a step. Recovery needs a fresh WSMan and pool."""

    error_class = "ConnectionLost"


class Timeout(DsrError):
    """A script did not finish before its deadline."""

    error_class = "Timeout"


class RemoteFault(DsrError):
    """The WS-Management service answered with a SOAP fault."""

    error_class = "RemoteFault"

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class ScriptError(DsrError):
    """The PowerShell script threw or wrote to its error stream."""

    error_class = "ScriptError"


class ProtocolError(DsrError):
    """The remote end answered something the client could not understand."""

    error_class = "ProtocolError"


@dataclass(frozen=True)
class ErrorInfo:
    """A failure as data: what the log, the report and the JSON output carry."""

    error_class: str
    message: str

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        name = exc.error_class if isinstance(exc, DsrError) else type(exc).__name__
        text = " ".join(str(exc).split()) or type(exc).__name__
        return cls(error_class=name, message=text)

    def to_dict(self) -> dict[str, str]:
        return {"class": self.error_class, "message": self.message}
