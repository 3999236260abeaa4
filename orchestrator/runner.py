"""One host end to end, and many hosts in a bounded worker pool.

A worker owns its host's Session from open to close; nothing about a host escapes its worker as an
exception: every outcome, good or bad, comes back as a `HostFacts` value and is written to the
host's log as it happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import DsrError, ErrorInfo, ProtocolError, Unreachable
from orchestrator.facts import Facts, FactsError, parse_facts
from orchestrator.inventory import Host
from orchestrator.plan import Action, Plan, plan, rollback_plan
from orchestrator.retry import RetryPolicy, call_with_retry
from orchestrator.rolloutlog import RunLog
from orchestrator.steps import arp_check, verify
from orchestrator.steps import parse_output as parse_step_output
from orchestrator.templates import Script, render
from orchestrator.transport import Session, SessionFactory

T = TypeVar("T")

DEFAULT_FORKS = 32
FACTS_TIMEOUT = 120.0


@dataclass(frozen=True)
class HostFacts:
    """The facts of one host, or why there are none."""

    host: str
    status: str  # "ok" | "failed" | "unreachable"
    facts: Facts | None = None
    error: ErrorInfo | None = None
    attempts: int = 1
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status, "attempts": self.attempts,
                                "duration": round(self.duration, 3)}
        if self.facts is not None:
            data["facts"] = self.facts.to_dict()
        if self.error is not None:
            data["error"] = self.error.to_dict()
        return data


def status_of(error: ErrorInfo) -> str:
    return "unreachable" if error.error_class == Unreachable.error_class else "failed"


def facts_script() -> Script:
    # The facts script is the same for every OS family: it is what tells the family.
    return render("facts", "default", {})


def run_script(session: Session, script: Script, *, timeout: float) -> Any:
    """Run a script that must emit exactly one object, and return that object."""
    result = session.run(script.text, script.parameters, timeout=timeout)
    if len(result.output) != 1:
        raise ProtocolError(f"{script.template_path} returned {len(result.output)} objects, expected 1")
    return result.output[0]


class HostConnection:
    """One host's session as a worker sees it: opened on demand, reopened fresh after a loss.

    Every failed attempt is logged; connecting and taking facts are retried by the policy.
    """

    def __init__(self, host: Host, *, session_factory: SessionFactory, logger: Any, policy: RetryPolicy,
                 sleep: Callable[[float], None], timeout: float = FACTS_TIMEOUT) -> None:
        self.host = host
        self._factory = session_factory
        self._logger = logger
        self._policy = policy
        self._sleep = sleep
        self._timeout = timeout
        self._session: Session | None = None
        self.attempts = 0

    def session(self) -> Session:
        if self._session is None:
            session = self._factory(self.host.connection)
            try:
                session.open()
            except BaseException:
                session.close()
                raise
            self._session = session
        return self._session

    def to(self, other: Host) -> HostConnection:
        """A connection to another host with the same factory, policy and log (a verify peer)."""
        return HostConnection(other, session_factory=self._factory, logger=self._logger, policy=self._policy,
                              sleep=self._sleep, timeout=self._timeout)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def reconnect(self) -> None:
        """Abandon the current session: after a lost connection its WSMan cannot be reused."""
        self.close()

    def _on_failure(self, step: str) -> Callable[[int, BaseException], None]:
        def record(attempt: int, exc: BaseException) -> None:
            info = ErrorInfo.of(exc)
            self._logger.warning("attempt_failed", step=step, attempt=attempt, error_class=info.error_class,
                                 error=info.message,
                                 will_retry=self._policy.should_retry(exc) and attempt < self._policy.attempts)
            self.close()
        return record

    def take_facts(self, policy: RetryPolicy | None = None) -> tuple[Any, Facts]:
        """The host's raw facts object and its parsed form (connecting first if needed)."""
        script = facts_script()

        def attempt() -> Any:
            self.attempts += 1
            return run_script(self.session(), script, timeout=self._timeout)

        raw = call_with_retry(attempt, policy or self._policy, sleep=self._sleep,
                              on_failure=self._on_failure("facts"))
        return raw, parse_facts(raw)

    def run(self, script: Script, *, timeout: float) -> Any:
        """Run one step's script once on the current session."""
        return run_script(self.session(), script, timeout=timeout)


def gather_host_facts(
    host: Host,
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = FACTS_TIMEOUT,
) -> HostFacts:
    """Connect to one host, take its facts, close; every attempt and the result go to its log."""
    logger = log.host_logger(host.name, address=host.connection.address)
    started = clock()
    conn = HostConnection(host, session_factory=session_factory, logger=logger, policy=policy, sleep=sleep,
                          timeout=timeout)
    script = facts_script()
    logger.info("facts_start", step="facts", template=script.template_path, sha256=script.sha256)
    try:
        raw, facts = conn.take_facts()
    except (DsrError, FactsError) as exc:
        info = ErrorInfo.of(exc)
        outcome = HostFacts(host.name, status_of(info), error=info, attempts=conn.attempts,
                            duration=clock() - started)
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        info = internal_error(exc)
        outcome = HostFacts(host.name, "failed", error=info, attempts=conn.attempts, duration=clock() - started)
    else:
        logger.info("facts_taken", step="facts", attempt=conn.attempts, raw=raw)
        outcome = HostFacts(host.name, "ok", facts=facts, attempts=conn.attempts, duration=clock() - started)
    finally:
        conn.close()
    logger.info("host_done", step="facts", status=outcome.status, attempts=outcome.attempts,
                duration=round(outcome.duration, 3),
                error=outcome.error.to_dict() if outcome.error else None)
    return outcome


def internal_error(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(error_class="InternalError", message=f"{type(exc).__name__}: {exc}")


def gather_fleet_facts(
    hosts: Sequence[Host],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    forks: int = DEFAULT_FORKS,
    sleep: Callable[[float], None] = time.sleep,
    on_done: Callable[[HostFacts], None] | None = None,
) -> list[HostFacts]:
    """Facts of every host, in inventory order, gathered by at most `forks` workers at once."""

    def work(host: Host) -> HostFacts:
        outcome = gather_host_facts(host, session_factory=session_factory, log=log, policy=policy,
                                    sleep=sleep)
        if on_done is not None:
            on_done(outcome)
        return outcome

    return in_pool(work, hosts, forks, interrupted=lambda host: HostFacts(
        host.name, "interrupted", error=ErrorInfo("Interrupted", "not started: the run was interrupted")))


class FleetInterrupted(Exception):
    """Ctrl-C during a fleet run: the outcomes as far as they got, every host accounted for."""

    def __init__(self, outcomes: list[Any]) -> None:
        super().__init__("interrupted")
        self.outcomes = outcomes


def in_pool(work: Callable[[Host], T], hosts: Iterable[Host], forks: int, *,
            interrupted: Callable[[Host], T], cancel: threading.Event | None = None) -> list[T]:
    """`work` for every host, at most `forks` at once, results in the hosts' order.

    On Ctrl-C, hosts not started yet are given `interrupted(host)`, running ones are asked (through
    `cancel`) to stop at their next step boundary and are waited for; then FleetInterrupted carries
    every outcome.
    """
    hosts = list(hosts)
    if not hosts:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="host")
    futures = [pool.submit(work, host) for host in hosts]
    try:
        return [future.result() for future in futures]
    except KeyboardInterrupt:
        if cancel is not None:
            cancel.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
        raise FleetInterrupted([
            future.result() if future.done() and not future.cancelled() and future.exception() is None
            else interrupted(host)
            for host, future in zip(hosts, futures, strict=True)
        ]) from None
    finally:
        pool.shutdown(wait=True)


# -- rollout and rollback of one host ---------------------------------------------------------------

STEP_TIMEOUT = 300.0
MAX_RECOVERIES = 3
# After a change the host may need a while to answer again (an HTTP service restart takes WinRM down
# for seconds): reconnecting waits longer than a first connection does.
RECONNECT_POLICY = RetryPolicy(attempts=6, base_delay=1.0, max_delay=10.0)
# A step cut off mid-way may or may not have happened: reconnect and let fresh facts decide. A host
# that stops answering right after a network change is the same story.
_RECOVERABLE = frozenset({"ConnectionLost", "Timeout", "RemoteFault", "Unreachable"})


@dataclass(frozen=True)
class StepResult:
    step: str
    reason: str
    status: str  # "changed" | "ok" | "failed" | "interrupted"
    attempt: int
    duration: float
    result: Any = None
    error: ErrorInfo | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"step": self.step, "reason": self.reason, "status": self.status,
                                "attempt": self.attempt, "duration": round(self.duration, 3)}
        if self.result is not None:
            data["result"] = self.result
        if self.error is not None:
            data["error"] = self.error.to_dict()
        return data


@dataclass(frozen=True)
class HostOutcome:
    """A host's terminal status for a rollout or a rollback, and how it got there."""

    host: str
    status: str  # ok | changed | failed | unreachable | rolled_back
    planned: tuple[Action, ...] = ()
    steps: tuple[StepResult, ...] = ()
    error: ErrorInfo | None = None
    failed_step: str | None = None
    warnings: tuple[str, ...] = ()
    duration: float = 0.0
    os_family: str | None = None  # as the facts taken before any change said

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "status": self.status,
            "os_family": self.os_family,
            "actions": [{"step": a.step, "reason": a.reason} for a in self.planned],
            "steps": [s.to_dict() for s in self.steps],
            "warnings": list(self.warnings),
            "duration": round(self.duration, 3),
        }
        if self.error is not None:
            data["error"] = self.error.to_dict()
        if self.failed_step is not None:
            data["failed_step"] = self.failed_step
        return data


class HostFailed(Exception):
    """Ends a host's run with status failed at a given step (internal to this module)."""

    def __init__(self, step: str, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.step = step
        self.error = error


class HostInterrupted(Exception):
    """The run was cancelled (Ctrl-C) between two steps of this host."""


@dataclass
class _Context:
    host: Host
    conn: HostConnection
    logger: Any
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    peers: Mapping[str, Host]
    steps: list[StepResult]
    cancel: threading.Event

    @property
    def changed_something(self) -> bool:
        return any(s.status == "changed" for s in self.steps)


def _apply(ctx: _Context, facts: Facts, actions: Sequence[Action],
           replan: Callable[[Facts], Plan]) -> Facts:
    """Run `actions` in order; when the host's state may have moved under us, re-read facts and re-plan.

    That is after a lost connection or a timeout (the step may or may not have happened), after a
    fallback the host chose (a `degraded` result) and after a service restart the step scheduled.
    Returns the facts as of the last re-read (or the ones passed in).
    """
    queue = list(actions)
    replans = 0
    sequence = 0

    def refresh(step: str, cause: BaseException | None = None, *, expected: bool = False) -> list[Action]:
        # `expected`: the step announced it (a service restart), so it does not count as a recovery.
        nonlocal facts, replans
        replans += 0 if expected else 1
        if replans > MAX_RECOVERIES:
            raise HostFailed(step, ErrorInfo("NotConverging", f"state still moving after {MAX_RECOVERIES} re-plans"))
        ctx.conn.reconnect()
        _raw, facts = ctx.conn.take_facts(RECONNECT_POLICY)
        fresh = replan(facts)
        if fresh.refusals:
            raise HostFailed(step, ErrorInfo("PreflightRefused", "; ".join(fresh.refusals))) from cause
        remaining = [a for a in fresh.actions if a.step != "preflight"]
        ctx.logger.info("replanned", step=step, actions=[a.to_dict() for a in remaining])
        return remaining

    while queue:
        if ctx.cancel.is_set():
            raise HostInterrupted()
        action = queue.pop(0)
        sequence += 1
        script = render(action.step, facts.os.family, action.params)
        started = ctx.clock()
        ctx.logger.info("step_start", step=action.step, action=sequence, attempt=replans + 1,
                        reason=action.reason, template=script.template_path, sha256=script.sha256,
                        params=dict(script.parameters))
        try:
            result = ctx.conn.run(script, timeout=STEP_TIMEOUT)
        except DsrError as exc:
            info = ErrorInfo.of(exc)
            step = StepResult(action.step, action.reason, "failed", replans + 1, ctx.clock() - started, error=info)
            ctx.steps.append(step)
            ctx.logger.warning("step_result", action=sequence, **step.to_dict())
            if info.error_class not in _RECOVERABLE:
                raise HostFailed(action.step, info) from exc
            queue = refresh(action.step, exc)
            continue
        output = parse_step_output(action.step, result)
        step = StepResult(action.step, action.reason, "changed" if output.changed else "ok", replans + 1,
                          ctx.clock() - started, result=result)
        ctx.steps.append(step)
        ctx.logger.info("step_result", action=sequence, **step.to_dict())
        wait = output.restart_wait()
        if wait is not None:
            # The step restarts a service WinRM depends on, a few seconds after answering: wait for
            # the restart to begin, then reconnect patiently and let fresh facts decide what is left.
            ctx.sleep(wait)
            queue = refresh(action.step, expected=True)
        elif output.state_moved():
            # Windows chose a fallback (2003 refusing /32): what is left follows from the new state.
            queue = refresh(action.step)
    return facts


def _verify(ctx: _Context, before: Facts) -> Facts:
    """Fresh session, facts again (the plan must be empty), then the checks on the host and a peer.

    Verification changes nothing, so a connection lost in the middle of it is simply tried again.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return _verify_once(ctx, before)
        except DsrError as exc:
            info = ErrorInfo.of(exc)
            if info.error_class not in _RECOVERABLE or attempt > MAX_RECOVERIES:
                raise HostFailed("verify", info) from exc
            ctx.logger.warning("attempt_failed", step="verify", attempt=attempt, error_class=info.error_class,
                               error=info.message, will_retry=True)
            ctx.conn.reconnect()


def _verify_once(ctx: _Context, before: Facts) -> Facts:
    desired = ctx.host.desired
    ctx.conn.close()  # proves that a new PSRP session still opens after the change
    _raw, after = ctx.conn.take_facts(RECONNECT_POLICY)
    remaining = plan(after, desired)
    ctx.logger.info("verify_plan", step="verify", plan=remaining.to_dict())
    if remaining.refusals or remaining.actions:
        reasons = list(remaining.refusals) + [a.reason for a in remaining.actions if a.step != "preflight"]
        raise HostFailed("verify", ErrorInfo("NotCompliant", "still to change after apply: " + "; ".join(reasons)))
    problems = []
    script = render("verify", after.os.family, verify.params(after, desired))
    result = ctx.conn.run(script, timeout=STEP_TIMEOUT)
    ctx.logger.info("verify_result", step="verify", result=result)
    problems += verify.judge(verify.parse(result), after, desired)
    for event in verify.new_conflict_events(verify.events(before), verify.events(after)):
        problems.append(f"new Tcpip {event.event_id} event at {event.time}: {event.message}")
    if desired.verify_peer:
        problems += _peer_arp(ctx, after)
    if problems:
        raise HostFailed("verify", ErrorInfo("VerifyFailed", "; ".join(problems)))
    return after


def _peer_arp(ctx: _Context, after: Facts) -> list[str]:
    desired = ctx.host.desired
    peer = ctx.peers.get(desired.verify_peer or "")
    if peer is None:
        return [f"verify peer {desired.verify_peer} is not in the inventory"]
    macs = [a.mac for a in after.physical_adapters() if a.mac]
    problems = []
    session = ctx.conn.to(peer)
    try:
        try:
            _raw, peer_facts = session.take_facts()
        except (DsrError, FactsError) as exc:
            # The peer's trouble is not this host's: the check could not be made.
            info = ErrorInfo.of(exc)
            return [f"verify peer {peer.name} could not be asked ({info.error_class}: {info.message})"]
        for vip in desired.vips:
            if vip.version != 4:
                continue
            check = render("arp_check", peer_facts.os.family, {"Address": vip.address})
            text = arp_check.parse(session.run(check, timeout=STEP_TIMEOUT)).arp_text
            ctx.logger.info("peer_arp", step="verify", peer=peer.name, vip=vip.address, arp_text=text)
            problem = arp_check.judge(text, vip.address, macs)
            if problem:
                problems.append(f"{problem} (seen from {peer.name})")
    finally:
        session.close()
    return problems


@dataclass
class _Record:
    """What a host run learns as it goes, for its outcome whatever way it ends."""

    planned: tuple[Action, ...] = ()
    warnings: tuple[str, ...] = ()
    family: str | None = None


def _run_host(
    host: Host,
    kind: str,
    body: Callable[[_Context, _Record], str],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    peers: Mapping[str, Host],
    cancel: threading.Event | None,
) -> HostOutcome:
    """Run `body` for one host and turn however it ends into exactly one terminal outcome."""
    logger = log.host_logger(host.name, address=host.connection.address)
    conn = HostConnection(host, session_factory=session_factory, logger=logger, policy=policy, sleep=sleep)
    ctx = _Context(host, conn, logger, clock, sleep, peers, [], cancel or threading.Event())
    record = _Record()
    started = clock()

    def outcome(status: str, **kw: Any) -> HostOutcome:
        return HostOutcome(host.name, status, planned=record.planned, steps=tuple(ctx.steps),
                           warnings=record.warnings, duration=clock() - started, os_family=record.family, **kw)

    try:
        result = outcome(body(ctx, record))
    except HostFailed as exc:
        result = outcome("failed", failed_step=exc.step, error=exc.error)
    except HostInterrupted:
        result = outcome("interrupted", error=ErrorInfo("Interrupted", "the run was interrupted between two steps"))
    except (DsrError, FactsError) as exc:
        info = ErrorInfo.of(exc)
        if ctx.changed_something:
            # The host was changed and then stopped answering: that is a failure of the change.
            result = outcome("failed", failed_step=ctx.steps[-1].step, error=info)
        else:
            result = outcome(status_of(info), error=info)
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        result = outcome("failed", error=internal_error(exc))
    finally:
        with suppress(Exception):
            conn.close()
    with suppress(Exception):  # a log that cannot be written must not take the outcome with it
        logger.info("host_done", step=kind, status=result.status, failed_step=result.failed_step,
                    error=result.error.to_dict() if result.error else None)
    return result


def rollout_host(
    host: Host,
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    peers: Mapping[str, Host] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> HostOutcome:
    """Facts, plan, apply, verify one host. With `dry_run`, stop after the plan: nothing changes."""

    def body(ctx: _Context, record: _Record) -> str:
        raw, before = ctx.conn.take_facts()
        record.family = before.os.family
        ctx.logger.info("facts_before", step="facts", raw=raw)
        the_plan = plan(before, host.desired)
        record.planned, record.warnings = the_plan.actions, the_plan.warnings
        ctx.logger.info("plan", step="plan", plan=the_plan.to_dict(), dry_run=dry_run)
        if the_plan.refusals:
            raise HostFailed("preflight", ErrorInfo("PreflightRefused", "; ".join(the_plan.refusals)))
        if dry_run or not the_plan.actions:
            return "ok"
        _apply(ctx, before, the_plan.actions, lambda f: plan(f, host.desired))
        _verify(ctx, before)
        return "changed"

    return _run_host(host, "rollout", body, session_factory=session_factory, log=log, policy=policy,
                     sleep=sleep, clock=clock, peers=peers or {}, cancel=cancel)


def rollback_host(
    host: Host,
    before_raw: Mapping[str, Any],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    cancel: threading.Event | None = None,
) -> HostOutcome:
    """Return one host to the facts recorded before a run, for what dsrprep changed."""

    def body(ctx: _Context, record: _Record) -> str:
        before = parse_facts(before_raw)
        _raw, now = ctx.conn.take_facts()
        record.family = now.os.family
        undo = rollback_plan(before, now, host.desired)
        record.planned = undo.actions
        ctx.logger.info("rollback_plan", step="rollback", plan=undo.to_dict())
        if not undo.actions:
            return "ok"
        _apply(ctx, now, undo.actions, lambda f: rollback_plan(before, f, host.desired))
        ctx.conn.close()
        _raw, after = ctx.conn.take_facts(RECONNECT_POLICY)
        left = rollback_plan(before, after, host.desired)
        if left.actions:
            raise HostFailed("verify", ErrorInfo("NotRestored", "; ".join(a.reason for a in left.actions)))
        return "rolled_back"

    return _run_host(host, "rollback", body, session_factory=session_factory, log=log, policy=policy,
                     sleep=sleep, clock=clock, peers={}, cancel=cancel)


def _not_started(host: Host) -> HostOutcome:
    return HostOutcome(host.name, "interrupted", error=ErrorInfo("Interrupted", "not started: the run was interrupted"))


def rollout_fleet(
    hosts: Sequence[Host],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    peers: Mapping[str, Host],
    forks: int = DEFAULT_FORKS,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> list[HostOutcome]:
    """Roll out (or, with dry_run, only plan) every host, at most `forks` at once, in the hosts' order."""
    cancel = threading.Event()
    return in_pool(
        lambda host: rollout_host(host, session_factory=session_factory, log=log, policy=policy, peers=peers,
                                  sleep=sleep, dry_run=dry_run, cancel=cancel),
        hosts, forks, interrupted=_not_started, cancel=cancel)


def rollback_fleet(
    work: Sequence[tuple[Host, Mapping[str, Any]]],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    forks: int = DEFAULT_FORKS,
    sleep: Callable[[float], None] = time.sleep,
) -> list[HostOutcome]:
    """Roll back every (host, facts recorded before the run) pair."""
    before = {host.name: raw for host, raw in work}
    cancel = threading.Event()
    return in_pool(
        lambda host: rollback_host(host, before[host.name], session_factory=session_factory, log=log,
                                   policy=policy, sleep=sleep, cancel=cancel),
        [host for host, _raw in work], forks, interrupted=_not_started, cancel=cancel)
