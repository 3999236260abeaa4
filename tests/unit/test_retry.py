"""Retry decisions by error class and by a host run's fault budget, run through tenacity with a
recording sleep and a clock the tests move."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
import urllib3
from pypsrp.exceptions import WSManFaultError

from orchestrator.errors import AuthError, ConnectionLost, DsrError, RemoteFault, ScriptError, Timeout, Unreachable
from orchestrator.retry import NO_RETRY, FaultBudget, RetryPolicy, call_with_retry, is_silent
from orchestrator.transport import map_error


class Flaky:
    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "done"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _call(fn: Flaky, policy: RetryPolicy, *, silent_limit: int | None = None,
          on_failure: Callable[[int, BaseException, str | None], None] | None = None) -> str:
    return call_with_retry(fn, FaultBudget(policy), sleep=lambda _s: None, silent_limit=silent_limit,
                           on_failure=on_failure)


def silent(message: str = "refused") -> Unreachable:
    return Unreachable(message, silent=True)


def test_failures_are_retried_until_success() -> None:
    slept: list[float] = []
    fn = Flaky([Unreachable("HTTP 503"), ConnectionLost("cut")])
    seen: list[tuple[int, str, str | None]] = []
    result = call_with_retry(fn, FaultBudget(RetryPolicy(base_delay=0.5)), sleep=slept.append,
                             on_failure=lambda n, e, why: seen.append((n, type(e).__name__, why)))
    assert result == "done"
    assert fn.calls == 3
    assert len(slept) == 2 and all(s > 0 for s in slept)
    assert seen == [(1, "Unreachable", None), (2, "ConnectionLost", None)]


@pytest.mark.parametrize("exc", [AuthError("bad password"), ScriptError("threw"), ValueError("bug")])
def test_non_retryable_errors_fail_at_once(exc: Exception) -> None:
    slept: list[float] = []
    fn = Flaky([exc])
    seen: list[str | None] = []
    with pytest.raises(type(exc)):
        call_with_retry(fn, FaultBudget(RetryPolicy()), sleep=slept.append,
                        on_failure=lambda _n, _e, why: seen.append(why))
    assert fn.calls == 1 and slept == []
    assert seen == ["not worth another try"]


def test_a_host_that_answers_with_faults_gets_the_whole_budget() -> None:
    # Far more faults than a silent host is allowed tries: each answered, so each is worth a retry.
    fn = Flaky([RemoteFault(f"f{i}", code=i) for i in range(8)])
    assert _call(fn, RetryPolicy(silent=3, faults=8)) == "done"
    assert fn.calls == 9


def test_the_budget_runs_out_and_the_last_error_is_raised() -> None:
    fn = Flaky([RemoteFault(f"f{i}", code=i) for i in range(10)])
    seen: list[str | None] = []
    with pytest.raises(RemoteFault) as info:
        _call(fn, RetryPolicy(faults=4), on_failure=lambda _n, _e, why: seen.append(why))
    assert info.value.code == 4 and fn.calls == 5
    assert seen[:4] == [None] * 4 and seen[4] == "5 failures, more than the 4 a host run may have"


def test_a_silent_host_is_given_up_after_few_tries_in_a_row() -> None:
    fn = Flaky([silent(), Timeout("no answer within the read timeout", silent=True), silent(), silent()])
    seen: list[str | None] = []
    with pytest.raises(Unreachable):
        _call(fn, RetryPolicy(silent=3, faults=20), on_failure=lambda _n, _e, why: seen.append(why))
    assert fn.calls == 3 and seen[-1] == "no answer 3 times in a row"


def test_an_answer_between_silences_starts_the_count_again() -> None:
    fn = Flaky([silent(), silent(), Unreachable("HTTP 503"), silent(), silent()])
    assert _call(fn, RetryPolicy(silent=3)) == "done"
    assert fn.calls == 6


def test_a_longer_silence_can_be_borne_where_the_host_restarts_a_service() -> None:
    fn = Flaky([silent()] * 5)
    assert _call(fn, RetryPolicy(silent=3), silent_limit=6) == "done"


def test_the_budget_is_shared_by_every_call_of_a_host_run() -> None:
    budget = FaultBudget(RetryPolicy(faults=3))
    assert call_with_retry(Flaky([ConnectionLost("a"), ConnectionLost("b")]), budget, sleep=lambda _s: None) == "done"
    with pytest.raises(ConnectionLost):
        call_with_retry(Flaky([ConnectionLost("c"), ConnectionLost("d")]), budget, sleep=lambda _s: None)
    assert budget.summary() == "ConnectionLost x4"
    # Spent is spent: nothing more is tried in this host run.
    assert budget.spend(ConnectionLost("e")) == budget.given_up is not None


def test_no_try_starts_past_the_deadline() -> None:
    clock = Clock()
    budget = FaultBudget(RetryPolicy(deadline=60.0), clock)
    clock.now = 59.0
    assert budget.spend(ConnectionLost("a")) is None
    clock.now = 61.0
    assert budget.spend(ConnectionLost("b")) == "past the host's deadline (61 s of 60 s)"


def test_no_retry_policy_tries_once() -> None:
    for exc in (silent(), RemoteFault("busy")):
        fn = Flaky([exc])
        with pytest.raises(type(exc)):
            _call(fn, NO_RETRY)
        assert fn.calls == 1


def test_delays_grow_and_are_capped() -> None:
    slept: list[float] = []
    fn = Flaky([Unreachable("x")] * 5)
    call_with_retry(fn, FaultBudget(RetryPolicy(base_delay=1.0, max_delay=3.0)), sleep=slept.append)
    assert slept == sorted(slept) and len(slept) == 5
    assert max(slept) <= 3.0


def test_the_error_class_declares_whether_it_is_retried() -> None:
    class Busy(DsrError):
        retryable = True

    fn = Flaky([Busy("try later")])
    assert _call(fn, RetryPolicy()) == "done"
    assert fn.calls == 2


def test_an_interrupt_is_never_retried() -> None:
    fn = Flaky([ConnectionLost("cut"), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        _call(fn, RetryPolicy())
    assert fn.calls == 2


def test_a_refused_connection_is_silence_and_a_dropped_one_is_not() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        None, "/wsman", urllib3.exceptions.NewConnectionError(None, "Connection refused"))
    dropped = urllib3.exceptions.MaxRetryError(None, "/wsman", urllib3.exceptions.ProtocolError(
        "Connection aborted.", ConnectionResetError(104, "reset")))
    assert is_silent(map_error(requests.exceptions.ConnectionError(refused), phase="connect"))
    assert not is_silent(map_error(requests.exceptions.ConnectionError(dropped), phase="connect"))
    assert not is_silent(map_error(requests.exceptions.ConnectionError("reason as text"), phase="connect"))


@pytest.mark.parametrize(("code", "retried"), [(2150858793, True), (2150858843, True), (2150859173, True),
                                               (2150858811, False), (2150858771, False)])
def test_a_wsman_fault_that_the_same_request_meets_again_is_not_retried(code: int, retried: bool) -> None:
    mapped = map_error(WSManFaultError(code, "web01", "reason", None, None, None), phase="run")
    assert isinstance(mapped, RemoteFault) and mapped.error_class == ("RemoteFault" if retried else "PermanentFault")
    fn = Flaky([mapped])
    if retried:
        assert _call(fn, RetryPolicy()) == "done"
    else:
        with pytest.raises(RemoteFault):
            _call(fn, RetryPolicy())
    assert fn.calls == (2 if retried else 1)
