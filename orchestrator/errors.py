"""The error classes every layer speaks, in one hierarchy, and `ErrorInfo`: a failure as data.

Each class declares what the runner may do about it, once, as class attributes:

- `retryable`: the same call may succeed if made again (connecting, taking facts). Read by
  `RetryPolicy.should_retry`; nothing else lists retryable errors.
- `recoverable`: when it cuts a step off, the step may or may not have happened: the runner opens a
  fresh session, re-reads the facts and re-plans instead of failing the host.

A transport failure also says whether the host gave any answer at all (`silent`: nothing to connect
to, nothing read before a timeout): retry.py's budget gives a silent host fewer tries.

```
DsrError
├── TransportError       talking to the host failed (transport.py maps every client error here)
│   ├── AuthError          the credentials were refused                    never retried
│   ├── Unreachable        no connection could be made                     retryable, recoverable
│   ├── ConnectionLost     the connection broke mid-step                   retryable, recoverable
│   ├── Timeout            a script missed its deadline                    retryable, recoverable
│   ├── RemoteFault        WS-Management answered with a fault             retryable, recoverable
│   │   └── PermanentFault   one that answers the same again (a bad URI)   never retried
│   └── ProtocolError      an answer the client cannot understand
├── ScriptError          the PowerShell script threw
├── StateError           the host's state forbids the change, or did not end where it should
│   ├── PreflightRefused   the plan refused to touch the host
│   ├── NotConverging      re-planning after recoveries never settled
│   ├── NotCompliant       the plan after applying is not empty
│   ├── VerifyFailed       the live checks after the change failed
│   ├── NotRestored        the rollback left something of the rollout behind
│   ├── NotSameMachine     a rollback found another machine than the recorded one (nothing changed)
│   └── NoBeforeState      a rollback has no intact record of what to return to (nothing changed)
├── Interrupted          the run was stopped (Ctrl-C) before this host finished
├── InternalError        an unexpected exception inside dsrprep (a bug; its traceback is in the log)
└── defined beside the data they judge: FactsError (facts.py), InventoryError (inventory.py),
    TemplateError (templates.py), UnknownFamily (oscaps.py), UnknownStep (steps/__init__.py)
```

A failure crosses module boundaries as data (`ErrorInfo`); these exceptions exist so each layer
can raise something typed that the runner turns into that data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


class DsrError(Exception):
    """Base of every error dsrprep raises on purpose.

    `error_class` is the name the log, the report and the JSON output show; a subclass that does not
    set it is shown by its class name.
    """

    error_class: ClassVar[str] = "Error"
    retryable: ClassVar[bool] = False
    recoverable: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "error_class" not in cls.__dict__:
            cls.error_class = cls.__name__


class TransportError(DsrError):
    """Talking to the host failed: the transport maps every pypsrp / requests failure to a subclass."""

    def __init__(self, message: str = "", *, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent  # the host gave no answer at all (see retry.FaultBudget)


class AuthError(TransportError):
    """The host refused the credentials. Never retried: the same credentials fail the same way."""

    error_class = "AuthError"


class Unreachable(TransportError):
    """No connection could be made (refused, no route, DNS, TLS handshake, WinRM restarting)."""

    error_class = "Unreachable"
    retryable = True
    recoverable = True  # after a network change the host may need a moment to answer again


class ConnectionLost(TransportError):
    """The connection broke in the middle of a step. Recovery needs a fresh WSMan and pool."""

    error_class = "ConnectionLost"
    retryable = True
    recoverable = True


class Timeout(TransportError):
    """A script did not finish before its deadline."""

    error_class = "Timeout"
    retryable = True
    recoverable = True


class RemoteFault(TransportError):
    """The WS-Management service answered with a SOAP fault."""

    error_class = "RemoteFault"
    retryable = True
    recoverable = True

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# WSMan faults that the same request meets again, whatever the host's load: the request itself is
# wrong for this host ([MS-WSMV] 2.2.4.16; the codes are Windows' ERROR_WSMAN_* values).
PERMANENT_FAULT_CODES = frozenset({
    2150858771,  # ERROR_WSMAN_ACTION_NOT_SUPPORTED
    2150858791,  # ERROR_WSMAN_INVALID_SOAP_BODY
    2150858811,  # ERROR_WSMAN_INVALID_RESOURCE_URI: an endpoint (configuration_name) the host does not have
})


class PermanentFault(RemoteFault):
    """A WSMan fault the same request meets again (PERMANENT_FAULT_CODES): not worth another try."""

    retryable = False
    recoverable = False


class ProtocolError(TransportError):
    """The remote end answered something the client could not understand."""

    error_class = "ProtocolError"


class ScriptError(DsrError):
    """The PowerShell script threw: not retried, it would throw again."""

    error_class = "ScriptError"


class StateError(DsrError):
    """The host's state forbids the change, or did not end where it should (decided by the runner)."""


class PreflightRefused(StateError):
    """The plan found reasons that forbid touching the host at all."""


class NotConverging(StateError):
    """The host's state kept moving: re-planning after recoveries never settled."""


class NotCompliant(StateError):
    """After applying, the plan against fresh facts is still not empty."""


class VerifyFailed(StateError):
    """The live checks after the change (routes, ports, events, a peer's ARP) found problems."""


class NotRestored(StateError):
    """After a rollback, the rollback plan against fresh facts is still not empty."""


class NotSameMachine(StateError):
    """The host answering is not proved to be the machine whose facts the rollout recorded."""


class NoBeforeState(StateError):
    """The run's log holds no intact facts from before the rollout, or no desired state, for a host."""


class Interrupted(DsrError):
    """The run was interrupted (Ctrl-C) before this host finished."""


class InternalError(DsrError):
    """An unexpected exception inside dsrprep: a bug. The host's log keeps the traceback."""

    @classmethod
    def wrapping(cls, exc: BaseException) -> InternalError:
        return cls(f"{type(exc).__name__}: {exc}")


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
