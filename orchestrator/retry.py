"""Retry decisions by error class, carried out by tenacity with an injected sleep.

Which failures are worth another attempt is declared on the error classes (`retryable`, see
errors.py); how often and how patiently is data (`RetryPolicy`); tenacity does the looping. Tests
pass a sleep that records instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from orchestrator.errors import DsrError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 10.0

    def should_retry(self, exc: BaseException) -> bool:
        # An authentication failure or a script that threw will fail the same way again; a refused
        # connection, a cut connection, a timeout or a WSMan fault often does not. The classes say which.
        return isinstance(exc, DsrError) and exc.retryable


NO_RETRY = RetryPolicy(attempts=1)


def call_with_retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None],
    on_failure: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call `fn` until it succeeds, the policy says stop, or attempts run out; re-raise the last error.

    `on_failure(attempt, exc)` sees every failed attempt (for the log) before the decision is made.
    """

    attempt = 0

    def tracked() -> T:
        # tenacity reports only the failures it will retry; the log wants every one.
        nonlocal attempt
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
            raise

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, policy.attempts)),
        wait=tenacity.wait_exponential(multiplier=policy.base_delay, max=policy.max_delay),
        retry=tenacity.retry_if_exception(policy.should_retry),
        sleep=sleep,
        reraise=True,
    )
    return retrying(tracked)
