"""Retry decisions by error class and by a per-host budget, carried out by tenacity with an injected sleep.

Which failures are worth another attempt is declared on the error classes (`retryable`, see
errors.py); how often and how patiently is data (`RetryPolicy`); what one host run has spent is a
`FaultBudget`; tenacity does the looping. Tests pass a sleep that records and a clock they move.

A host that answers with faults (a dropped connection, a WSMan fault, HTTP 503) is worth many more
tries than one that gives no answer at all: the first is busy or flaky, the second is down, and
every try at a silent host costs a whole connect or read timeout. So the budget counts the two
apart: `faults` failures per host run in all, but only `silent` silent failures in a row; and no
try starts past the host's `deadline`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from orchestrator.errors import DsrError, ErrorInfo

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    silent: int = 5  # failures in a row without any answer from the host (refused, nothing read)
    faults: int = 30  # failed tries per host run, all causes together
    deadline: float = 1200.0  # seconds from the host run's start; no try starts after it
    base_delay: float = 1.0
    max_delay: float = 10.0

    def should_retry(self, exc: BaseException) -> bool:
        # An authentication failure or a script that threw will fail the same way again; a refused
        # connection, a cut connection, a timeout or a WSMan fault often does not. The classes say which.
        return isinstance(exc, DsrError) and exc.retryable


NO_RETRY = RetryPolicy(silent=1, faults=0)


def is_silent(exc: BaseException) -> bool:
    """The host gave no answer at all: nothing to connect to, or nothing read before a timeout."""
    return bool(getattr(exc, "silent", False))


@dataclass
class FaultBudget:
    """What one host run may still spend on failures, and what it has spent (by error class)."""

    policy: RetryPolicy
    clock: Callable[[], float] = time.monotonic
    started: float = field(default=0.0)
    spent: Counter[str] = field(default_factory=Counter)
    silent_in_row: int = 0
    given_up: str | None = None  # once spent, spent for good: the host run ends

    def __post_init__(self) -> None:
        self.started = self.clock()

    def spend(self, exc: BaseException, *, silent_limit: int | None = None) -> str | None:
        """Count a failure; None when another try may follow, else why not (for the log and the message).
        `silent_limit` overrides the policy's (a host restarting a service is given longer)."""
        if not self.policy.should_retry(exc):
            return "not worth another try"
        if self.given_up is None:
            self.spent[ErrorInfo.of(exc).error_class] += 1
            self.silent_in_row = self.silent_in_row + 1 if is_silent(exc) else 0
            self.given_up = self._verdict(self.policy.silent if silent_limit is None else silent_limit)
        return self.given_up

    def _verdict(self, silent_limit: int) -> str | None:
        if self.silent_in_row >= silent_limit:
            return f"no answer {self.silent_in_row} times in a row"
        if self.total > self.policy.faults:
            return f"{self.total} failures, more than the {self.policy.faults} a host run may have"
        elapsed = self.clock() - self.started
        if elapsed >= self.policy.deadline:
            return f"past the host's deadline ({elapsed:.0f} s of {self.policy.deadline:.0f} s)"
        return None

    def answered(self) -> None:
        """The host answered: silence starts counting from zero again."""
        self.silent_in_row = 0

    @property
    def total(self) -> int:
        return sum(self.spent.values())

    def summary(self) -> str:
        """`ConnectionLost x3, RemoteFault x1`: the failures spent so far."""
        return ", ".join(f"{name} x{count}" for name, count in sorted(self.spent.items()))


def call_with_retry(
    fn: Callable[[], T],
    budget: FaultBudget,
    *,
    sleep: Callable[[float], None],
    silent_limit: int | None = None,
    on_failure: Callable[[int, BaseException, str | None], None] | None = None,
) -> T:
    """Call `fn` until it succeeds or the budget says stop; re-raise the last error.

    `on_failure(attempt, exc, given_up)` sees every failed attempt (for the log) once the decision
    is made: `given_up` is None when another attempt follows, else why none does.
    """

    attempt = 0
    verdict: str | None = None

    def tracked() -> T:
        # tenacity reports only the failures it will retry; the log wants every one.
        nonlocal attempt, verdict
        attempt += 1
        try:
            value = fn()
        except Exception as exc:
            verdict = budget.spend(exc, silent_limit=silent_limit)
            if on_failure is not None:
                on_failure(attempt, exc, verdict)
            raise
        budget.answered()
        return value

    import tenacity  # here, not at the top: `--help` and the offline commands do without its import

    policy = budget.policy
    retrying = tenacity.Retrying(
        stop=tenacity.stop_never,
        wait=tenacity.wait_exponential(multiplier=policy.base_delay, max=policy.max_delay),
        # Only failures the budget judged: never a KeyboardInterrupt or SystemExit passing through.
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, Exception) and verdict is None),
        sleep=sleep,
        reraise=True,
    )
    return retrying(tracked)
