"""Retry decisions by error class, run through tenacity with a recording sleep."""

from __future__ import annotations

import pytest

from orchestrator.errors import AuthError, ConnectionLost, DsrError, RemoteFault, ScriptError, Unreachable
from orchestrator.retry import NO_RETRY, RetryPolicy, call_with_retry


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


def test_unreachable_is_retried_until_success() -> None:
    slept: list[float] = []
    fn = Flaky([Unreachable("refused"), ConnectionLost("cut")])
    seen: list[tuple[int, str]] = []
    result = call_with_retry(fn, RetryPolicy(attempts=3, base_delay=0.5), sleep=slept.append,
                             on_failure=lambda n, e: seen.append((n, type(e).__name__)))
    assert result == "done"
    assert fn.calls == 3
    assert len(slept) == 2 and all(s > 0 for s in slept)
    assert seen == [(1, "Unreachable"), (2, "ConnectionLost")]


@pytest.mark.parametrize("exc", [AuthError("bad password"), ScriptError("threw"), ValueError("bug")])
def test_non_retryable_errors_fail_at_once(exc: Exception) -> None:
    slept: list[float] = []
    fn = Flaky([exc])
    with pytest.raises(type(exc)):
        call_with_retry(fn, RetryPolicy(attempts=5), sleep=slept.append)
    assert fn.calls == 1
    assert slept == []


def test_attempts_run_out_and_last_error_is_raised() -> None:
    fn = Flaky([RemoteFault("f1", code=1), RemoteFault("f2", code=2), RemoteFault("f3", code=3)])
    with pytest.raises(RemoteFault) as info:
        call_with_retry(fn, RetryPolicy(attempts=3), sleep=lambda _s: None)
    assert info.value.code == 3
    assert fn.calls == 3


def test_no_retry_policy_tries_once() -> None:
    fn = Flaky([Unreachable("refused")])
    with pytest.raises(Unreachable):
        call_with_retry(fn, NO_RETRY, sleep=lambda _s: None)
    assert fn.calls == 1


def test_delays_grow_and_are_capped() -> None:
    slept: list[float] = []
    fn = Flaky([Unreachable("x")] * 5)
    call_with_retry(fn, RetryPolicy(attempts=6, base_delay=1.0, max_delay=3.0), sleep=slept.append)
    assert slept == sorted(slept)
    assert max(slept) <= 3.0


def test_every_failed_attempt_is_reported_even_when_not_retried() -> None:
    seen: list[tuple[int, str]] = []
    fn = Flaky([AuthError("denied")])
    with pytest.raises(AuthError):
        call_with_retry(fn, RetryPolicy(attempts=3), sleep=lambda _s: None,
                        on_failure=lambda n, e: seen.append((n, type(e).__name__)))
    assert seen == [(1, "AuthError")]


def test_the_error_class_declares_whether_it_is_retried() -> None:
    class Busy(DsrError):
        retryable = True

    fn = Flaky([Busy("try later")])
    assert call_with_retry(fn, RetryPolicy(attempts=2), sleep=lambda _s: None) == "done"
    assert fn.calls == 2
