"""One host end to end (facts, plan, apply, verify, rollback), and many hosts in a bounded worker pool.

A worker owns its host's Session from open to close; nothing about a host escapes its worker as an
exception: every command ends, good or bad, in one `HostResult` (orchestrator/results.py), and every
event is written to the host's log as it happens. An unexpected exception is a bug: its traceback
goes to the host's log, its one-line message to the result.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrator import identity
from orchestrator.choices import DEFAULT_FORKS
from orchestrator.desired import Desired
from orchestrator.errors import (
    DsrError,
    ErrorInfo,
    InternalError,
    Interrupted,
    NoBeforeState,
    NotCompliant,
    NotConverging,
    NotRestored,
    NotSameMachine,
    PreflightRefused,
    ProtocolError,
    Unreachable,
    VerifyFailed,
)
from orchestrator.facts import Facts, parse_facts
from orchestrator.interrupts import STOP
from orchestrator.inventory import Host
from orchestrator.plan import Action, Plan, plan, rollback_plan
from orchestrator.results import Command, FleetResult, HostResult, HostStatus, PlanStatus, Status, StepResult
from orchestrator.retry import FaultBudget, RetryPolicy, call_with_retry
from orchestrator.rolloutlog import Event, RunLog
from orchestrator.steps import arp_check, preflight, verify
from orchestrator.steps import parse_output as parse_step_output
from orchestrator.templates import Script, render

if TYPE_CHECKING:  # transport imports pypsrp; these names are only annotations here
    from orchestrator.transport import Session, SessionFactory

T = TypeVar("T")

FACTS_TIMEOUT = 120.0
STEP_TIMEOUT = 300.0
MAX_REPLANS = 3  # re-plans no failure caused (the state moved) before a host is NotConverging
# After a change the host may need a while to answer again (an HTTP service restart takes WinRM down
# for seconds): reconnecting bears more silent tries in a row than a first connection does.
RECONNECT_SILENCE = 8
# How old a host's preflight facts may be for its wave to plan on them rather than read them again.
# Steps check before they change and verification reads the facts afresh, so an older plan can at
# worst leave a change that verification then reports.
PREFLIGHT_FACTS_FRESH = 120.0


def status_of(exc: BaseException) -> Status:
    """The status of a host that ended on `exc` before anything changed."""
    return Status.UNREACHABLE if isinstance(exc, Unreachable) else Status.FAILED


def facts_script() -> Script:
    # The facts script is the same for every OS family: it is what tells the family.
    return render("facts", "default", {})


@dataclass(frozen=True)
class Answer:
    """The one object a script emitted, and the non-terminating error records it left."""

    value: Any
    script_errors: tuple[str, ...] = ()

    def log_fields(self) -> dict[str, Any]:
        """`script_errors=[...]` for the log line of the script that left them (nothing when none)."""
        return {"script_errors": list(self.script_errors)} if self.script_errors else {}


def run_script(session: Session, script: Script, *, timeout: float) -> Answer:
    """Run a script that must emit exactly one object, and return that object."""
    result = session.run(script.text, script.parameters, timeout=timeout)
    if len(result.output) != 1:
        raise ProtocolError(f"{script.template_path} returned {len(result.output)} objects, expected 1")
    return Answer(result.output[0], tuple(result.errors))


@dataclass(frozen=True)
class TakenFacts:
    raw: Any
    facts: Facts
    script_errors: tuple[str, ...] = ()


class HostConnection:
    """One host's session as a worker sees it: opened on demand, reopened fresh after a loss.

    Every failed attempt is logged; connecting and taking facts are retried while the host run's
    fault budget lasts (retry.py).
    """

    def __init__(self, host: Host, *, session_factory: SessionFactory, logger: Any, policy: RetryPolicy,
                 sleep: Callable[[float], None], timeout: float = FACTS_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self._factory = session_factory
        self._logger = logger
        self._policy = policy
        self._sleep = sleep
        self._timeout = timeout
        self._clock = clock
        self._session: Session | None = None
        self.budget = FaultBudget(policy, clock)
        self.attempts = 0

    def session(self) -> Session:
        if self._session is None:
            session = self._factory(self.host.connection)
            try:
                session.open()
            except BaseException:
                self._forget(session.close() or [])
                raise
            self._session = session
        return self._session

    def to(self, other: Host) -> HostConnection:
        """A connection to another host with the same factory, policy and log (a verify peer)."""
        return HostConnection(other, session_factory=self._factory, logger=self._logger, policy=self._policy,
                              sleep=self._sleep, timeout=self._timeout, clock=self._clock)

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._forget(session.close() or [])

    def _forget(self, shell_ids: list[str]) -> None:
        """Shells a closed session could not delete, on its own connection nor on a fresh one (the
        host is gone, or a network change cut the shell off), are logged; the host's idle timeout
        ends them."""
        if shell_ids:
            self._logger.warning(Event.SHELLS_LEFT, step="connect", shell_ids=list(shell_ids))

    def failed(self, step: str, attempt: int, exc: BaseException, given_up: str | None) -> None:
        """Log a failed attempt and drop the session (after a failure its WSMan cannot be reused)."""
        info = ErrorInfo.of(exc)
        extra = {"given_up": given_up, "failures": self.budget.summary()} if given_up else {}
        self._logger.warning(Event.ATTEMPT_FAILED, step=step, attempt=attempt, error_class=info.error_class,
                             error=info.message, will_retry=given_up is None, **extra)
        self.close()

    def take_facts(self, *, silent_limit: int | None = None) -> TakenFacts:
        """The host's raw facts object and its parsed form (connecting first if needed)."""
        script = facts_script()

        def attempt() -> Answer:
            self.attempts += 1
            return run_script(self.session(), script, timeout=self._timeout)

        answer = call_with_retry(attempt, self.budget, sleep=self._sleep, silent_limit=silent_limit,
                                 on_failure=lambda n, exc, given_up: self.failed("facts", n, exc, given_up))
        return TakenFacts(answer.value, parse_facts(answer.value), answer.script_errors)

    def run(self, script: Script, *, timeout: float) -> Answer:
        """Run one step's script once on the current session."""
        answer = run_script(self.session(), script, timeout=timeout)
        self.budget.answered()
        return answer


# -- one host, any command ----------------------------------------------------------------------------


class HostFailed(Exception):
    """Ends a host's run with status failed at a given step (control flow inside this module).
    `note` is added to the cause's message."""

    def __init__(self, step: str, cause: BaseException, *, note: str = "") -> None:
        super().__init__(str(cause))
        self.step = step
        info = ErrorInfo.of(cause)
        self.error = ErrorInfo(info.error_class, info.message + note)


@dataclass(frozen=True)
class KnownFacts:
    """Facts a host's preflight took, and when (by the run's clock)."""

    taken: TakenFacts
    at: float


# The preflight's facts by host name, for the waves of the same run (one process: a resumed run reads
# them again). Each host's entry is written and read by one worker at a time.
FactsMemo = dict[str, KnownFacts]


@dataclass
class _Context:
    """A host run's working set, and what it learns as it goes, for its result whatever way it ends."""

    host: Host
    conn: HostConnection
    logger: Any
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    peers: Mapping[str, Host]
    cancel: threading.Event
    memo: FactsMemo | None = None
    steps: list[StepResult] = field(default_factory=list)
    planned: tuple[Action, ...] = ()
    warnings: tuple[str, ...] = ()
    family: str | None = None
    facts: Facts | None = None

    @property
    def changed_something(self) -> bool:
        return any(s.status == Status.CHANGED for s in self.steps)


@dataclass(frozen=True)
class _Env:
    """What every host run of a fleet shares."""

    session_factory: SessionFactory
    log: RunLog
    policy: RetryPolicy
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    peers: Mapping[str, Host] = field(default_factory=dict)
    cancel: threading.Event | None = None
    timeout: float = FACTS_TIMEOUT
    memo: FactsMemo | None = None


def _run_host(host: Host, command: Command, body: Callable[[_Context], HostStatus], env: _Env) -> HostResult:
    """Run `body` for one host and turn however it ends into exactly one HostResult."""
    logger = env.log.host_logger(host.name, address=host.connection.address)
    conn = HostConnection(host, session_factory=env.session_factory, logger=logger, policy=env.policy,
                          sleep=env.sleep, timeout=env.timeout, clock=env.clock)
    ctx = _Context(host, conn, logger, env.clock, env.sleep, env.peers, env.cancel or threading.Event(), env.memo)
    started = env.clock()
    with suppress(Exception):  # a log that cannot be written must not keep the host from its result
        logger.info(Event.HOST_START, step=command)

    def result(status: HostStatus, **kw: Any) -> HostResult:
        return HostResult(host.name, command, status, facts=ctx.facts, planned=ctx.planned, steps=tuple(ctx.steps),
                          warnings=ctx.warnings, attempts=conn.attempts, duration=env.clock() - started,
                          os_family=ctx.family, **kw)

    try:
        done = result(body(ctx))
    except HostFailed as exc:
        done = result(Status.FAILED, failed_step=exc.step, error=exc.error)
    except Interrupted as exc:
        done = result(Status.INTERRUPTED, error=ErrorInfo.of(exc))
    except DsrError as exc:
        if ctx.changed_something:
            # The host was changed and then stopped answering: that is a failure of the change.
            done = result(Status.FAILED, failed_step=ctx.steps[-1].step, error=ErrorInfo.of(exc))
        else:
            done = result(status_of(exc), error=ErrorInfo.of(exc))
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        with suppress(Exception):  # the traceback for whoever fixes the bug; the result says it in one line
            logger.error(Event.INTERNAL_ERROR, step=command, exc_info=exc)
        done = result(Status.FAILED, error=ErrorInfo.of(InternalError.wrapping(exc)))
    finally:
        with suppress(Exception):
            conn.close()
    with suppress(Exception):  # a log that cannot be written must not take the result with it
        logger.info(Event.HOST_DONE, step=command, status=done.status, failed_step=done.failed_step,
                    attempts=done.attempts, duration=round(done.duration, 3),
                    error=done.error.to_dict() if done.error else None)
    return done


# -- facts ----------------------------------------------------------------------------------------------


def _facts_body(ctx: _Context) -> HostStatus:
    script = facts_script()
    ctx.logger.info(Event.FACTS_START, step="facts", template=script.template_path, sha256=script.sha256)
    taken = ctx.conn.take_facts()
    ctx.logger.info(Event.FACTS_TAKEN, step="facts", attempt=ctx.conn.attempts, raw=taken.raw,
                    **Answer(taken.raw, taken.script_errors).log_fields())
    ctx.facts, ctx.family = taken.facts, taken.facts.os.family
    return Status.OK


def gather_host_facts(
    host: Host,
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    timeout: float = FACTS_TIMEOUT,
) -> HostResult:
    """Connect to one host, take its facts, close; every attempt and the result go to its log."""
    return _run_host(host, Command.FACTS, _facts_body,
                     _Env(session_factory, log, policy, sleep=sleep, clock=clock, timeout=timeout))


# -- the worker pool ------------------------------------------------------------------------------------


class PoolInterrupted(Exception):
    """Ctrl-C during `in_pool`: the outcomes as far as they got, every host accounted for.

    `abandoned`: a second request to stop came before the hosts in flight finished their steps;
    their threads still run, and only leaving the process (os._exit) stops them. `in_flight` are
    the indexes of those hosts.
    """

    def __init__(self, outcomes: list[Any], *, abandoned: bool = False, in_flight: Sequence[int] = ()) -> None:
        super().__init__("the run was interrupted")
        self.outcomes = outcomes
        self.abandoned = abandoned
        self.in_flight = tuple(in_flight)


class FleetInterrupted(Exception):
    """Ctrl-C during a fleet run: every host's result as far as it got (see PoolInterrupted)."""

    def __init__(self, result: FleetResult, *, abandoned: bool = False) -> None:
        super().__init__("the run was interrupted")
        self.result = result
        self.abandoned = abandoned


def in_pool(work: Callable[[Host], T], hosts: Iterable[Host], forks: int, *,
            interrupted: Callable[[Host], T], cancel: threading.Event | None = None,
            leave: threading.Event | None = None) -> list[T]:
    """`work` for every host, at most `forks` at once, results in the hosts' order.

    On Ctrl-C (or SIGTERM, SIGHUP: orchestrator/interrupts.py), hosts not started yet are given
    `interrupted(host)`, running ones are asked (through `cancel`) to stop at their next step
    boundary and are waited for; then PoolInterrupted carries every outcome. A second request to
    stop while waiting (`leave` is set: by default the process's, `interrupts.STOP.leave`; or a
    second KeyboardInterrupt) stops waiting: the hosts still in flight are `interrupted` too, and
    PoolInterrupted says they were abandoned.
    """
    hosts = list(hosts)
    if not hosts:
        return []
    pool = ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="host")
    futures: list[Future[T]] = []
    abandoned = False
    try:
        for host in hosts:  # inside the try: a Ctrl-C while submitting still accounts for every host
            futures.append(pool.submit(work, host))
        return [future.result() for future in futures]
    except KeyboardInterrupt:
        if cancel is not None:
            cancel.set()
        for future in futures:
            future.cancel()
        abandoned = not _wait_unless_interrupted(futures, STOP.leave if leave is None else leave)
        ended = [i < len(futures) and futures[i].done() and not futures[i].cancelled()
                 and futures[i].exception() is None for i in range(len(hosts))]
        raise PoolInterrupted(
            [futures[i].result() if ended[i] else interrupted(host) for i, host in enumerate(hosts)],
            abandoned=abandoned,
            in_flight=[i for i, future in enumerate(futures) if abandoned and not future.done()],
        ) from None
    finally:
        pool.shutdown(wait=not abandoned, cancel_futures=True)


def _wait_unless_interrupted(futures: Sequence[Future[Any]], leave: threading.Event) -> bool:
    """Wait for `futures` to finish; False when a second request to stop came first."""
    try:
        while not all(f.done() for f in futures):
            if leave.is_set():
                return False
            wait(futures, timeout=0.2)
    except KeyboardInterrupt:
        return False
    return True


def _fleet(command: Command, work: Callable[[Host, threading.Event], HostResult], hosts: Sequence[Host],
           forks: int, log: RunLog) -> FleetResult:
    """`work` on every host through the pool, as one FleetResult (or FleetInterrupted carrying one).

    When the run leaves hosts in flight behind, each of their logs gets its last line now (their
    terminal status, `interrupted`), and nothing their threads write after it."""
    cancel = threading.Event()

    def not_started(host: Host) -> HostResult:
        return HostResult(host.name, command, Status.INTERRUPTED,
                          error=ErrorInfo.of(Interrupted("not started: the run was interrupted")))

    try:
        results = in_pool(lambda host: work(host, cancel), hosts, forks, interrupted=not_started, cancel=cancel)
    except PoolInterrupted as exc:
        if exc.in_flight:
            error = ErrorInfo.of(Interrupted("the run left while this host was in flight: the result of its "
                                             "last step is not known (resume reads the facts again)"))
            log.abandon([hosts[i].name for i in exc.in_flight], step=command, status=Status.INTERRUPTED,
                        error=error.to_dict())
        raise FleetInterrupted(FleetResult(command, tuple(exc.outcomes)), abandoned=exc.abandoned) from None
    return FleetResult(command, tuple(results))


def gather_fleet_facts(
    hosts: Sequence[Host],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    forks: int = DEFAULT_FORKS,
    sleep: Callable[[float], None] = time.sleep,
) -> FleetResult:
    """Facts of every host, in inventory order, gathered by at most `forks` workers at once."""
    env = _Env(session_factory, log, policy, sleep=sleep)
    return _fleet(Command.FACTS, lambda host, cancel: _run_host(host, Command.FACTS, _facts_body, env), hosts,
                  forks, log)


# -- apply and verify -----------------------------------------------------------------------------------


class _Apply:
    """Runs actions in order; when the host's state may have moved under us, re-reads facts and re-plans.

    That is after a lost connection or a timeout (the step may or may not have happened), after a
    fallback the host chose (`StepOutput.state_moved()`) and after a service restart the step
    scheduled (`StepOutput.restart_wait()`).

    Two budgets bound it: steps cut off by failures (lost connections, timeouts, WSMan faults)
    spend the host run's fault budget (retry.py), and when it is spent the host ends with the last
    of those failures; re-plans that no failure caused (the state moved) more than MAX_REPLANS times
    end it as NotConverging. A host that loses its connection once in each of several steps still
    gets through.
    """

    def __init__(self, ctx: _Context, facts: Facts, replan: Callable[[Facts], Plan]) -> None:
        self.ctx = ctx
        self.facts = facts  # as of the last re-read
        self.replan = replan
        self.recoveries = 0
        self.sequence = 0
        self.replans = 0  # re-plans because the state moved, no failure involved
        self.cut_off: Counter[str] = Counter()  # per step: the failures that cut it off
        self.last_cause: BaseException | None = None
        # The facts of the last re-plan when it left nothing to do (so that no action ran after it):
        # read in a session opened after the last change, they are what verification would read.
        self.settled: Facts | None = None

    def run(self, actions: Sequence[Action]) -> Facts:
        queue = list(actions)
        while queue:
            if self.ctx.cancel.is_set():
                raise Interrupted("the run was interrupted between two steps")
            action, rest = queue[0], queue[1:]
            queue = self._one(action, rest)
        return self.facts

    def _one(self, action: Action, rest: list[Action]) -> list[Action]:
        """Run one action; returns the actions left to run after it."""
        ctx = self.ctx
        self.sequence += 1
        script = render(action.step, self.facts.os.family, action.params)
        started = ctx.clock()
        ctx.logger.info(Event.STEP_START, step=action.step, action=self.sequence, attempt=self.recoveries + 1,
                        reason=action.reason, template=script.template_path, sha256=script.sha256,
                        params=dict(script.parameters))
        try:
            answer = ctx.conn.run(script, timeout=STEP_TIMEOUT)
        except DsrError as exc:
            self._record(StepResult(action.step, action.reason, Status.FAILED, self.recoveries + 1,
                                    ctx.clock() - started, error=ErrorInfo.of(exc)))
            if not exc.recoverable:
                raise HostFailed(action.step, exc) from exc
            return self._refresh(action.step, exc)
        try:
            output = parse_step_output(action.step, answer.value)
        except DsrError as exc:
            # The step ran, but its answer is not what its template returns: keep what came back.
            self._record(StepResult(action.step, action.reason, Status.FAILED, self.recoveries + 1,
                                    ctx.clock() - started, result=answer.value, error=ErrorInfo.of(exc),
                                    script_errors=answer.script_errors))
            raise HostFailed(action.step, exc) from exc
        self._record(StepResult(action.step, action.reason, Status.CHANGED if output.changed else Status.OK,
                                self.recoveries + 1, ctx.clock() - started, result=answer.value,
                                script_errors=answer.script_errors))
        wait = output.restart_wait()
        if wait is not None:
            # The step restarts a service WinRM depends on, a few seconds after answering: delete the
            # shell while the service still answers, wait for the restart to begin, then reconnect
            # patiently and let fresh facts decide what is left.
            ctx.conn.close()
            ctx.sleep(wait)
            return self._refresh(action.step, expected=True)
        if output.state_moved():
            # Windows chose a fallback (2003 refusing /32): what is left follows from the new state.
            return self._refresh(action.step)
        return rest

    def _record(self, step: StepResult) -> None:
        self.ctx.steps.append(step)
        level = self.ctx.logger.warning if step.status == Status.FAILED else self.ctx.logger.info
        level(Event.STEP_RESULT, action=self.sequence, **step.to_dict())

    def _count(self, step: str, cause: BaseException | None, expected: bool) -> None:
        """Counts a recovery against its budget; HostFailed when that is spent. The reason names the
        real trouble: a host whose fault budget a cut-off step spent fails with the failure that cut
        it (and the failures of the run so far, by class), never as a state that kept moving."""
        self.recoveries += 0 if expected else 1
        if cause is not None:
            self.last_cause = cause
            self.cut_off[step] += 1
            budget = self.ctx.conn.budget
            given_up = budget.spend(cause)
            if given_up:
                raise HostFailed(step, cause, note=f" ({step} cut off {self.cut_off[step]} times; given up: "
                                                    f"{given_up}; failures so far: {budget.summary()})")
        elif not expected:
            self.replans += 1
            if self.replans > MAX_REPLANS:
                last = f"; the last failure: {ErrorInfo.of(self.last_cause).message}" if self.last_cause else ""
                raise HostFailed(step, NotConverging(f"state still moving after {MAX_REPLANS} re-plans{last}"))

    def _refresh(self, step: str, cause: BaseException | None = None, *, expected: bool = False) -> list[Action]:
        """Fresh session, fresh facts, fresh plan: the actions still to run.

        `expected`: the step announced it (a service restart), so it does not count as a recovery.
        """
        self._count(step, cause, expected)
        self.ctx.conn.close()  # after a lost connection its WSMan cannot be reused
        self.facts = self.ctx.conn.take_facts(silent_limit=RECONNECT_SILENCE).facts
        fresh = self.replan(self.facts)
        if fresh.refusals:
            raise HostFailed(step, PreflightRefused("; ".join(fresh.refusals))) from cause
        remaining = [a for a in fresh.actions if a.step != preflight.NAME]
        self.ctx.logger.info(Event.REPLANNED, step=step, actions=[a.to_dict() for a in remaining])
        self.settled = None if remaining else self.facts
        return remaining


def _facts_after(ctx: _Context, settled: Facts | None) -> Facts:
    """The host's facts as a session opened after the last change reads them: a re-plan's that found
    nothing left (`settled`), or a new session's, which proves one still opens after the change."""
    if settled is not None:
        return settled
    ctx.conn.close()
    return ctx.conn.take_facts(silent_limit=RECONNECT_SILENCE).facts


def _verify(ctx: _Context, before: Facts, settled: Facts | None) -> Facts:
    """Fresh session, facts again (the plan must be empty), then the checks on the host and a peer.
    `settled`: facts a re-plan read in a session opened after the last change (`_Apply.settled`);
    the first attempt verifies in that session, on those facts.

    Verification changes nothing, so a connection lost in the middle of it is simply tried again,
    while the host run's fault budget lasts.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return _verify_once(ctx, before, settled if attempt == 1 else None)
        except DsrError as exc:
            given_up = ctx.conn.budget.spend(exc) if exc.recoverable else "not worth another try"
            ctx.conn.failed("verify", attempt, exc, given_up)
            if given_up:
                raise HostFailed("verify", exc) from exc


def _verify_once(ctx: _Context, before: Facts, settled: Facts | None) -> Facts:
    desired = ctx.host.desired
    after = _facts_after(ctx, settled)
    remaining = plan(after, desired)
    ctx.logger.info(Event.VERIFY_PLAN, step="verify", plan=remaining.to_dict())
    if remaining.refusals or remaining.actions:
        reasons = list(remaining.refusals) + [a.reason for a in remaining.actions if a.step != preflight.NAME]
        raise HostFailed("verify", NotCompliant("still to change after apply: " + "; ".join(reasons)))
    problems = []
    script = render("verify", after.os.family, verify.params(after, desired))
    answer = ctx.conn.run(script, timeout=STEP_TIMEOUT)
    ctx.logger.info(Event.VERIFY_RESULT, step="verify", result=answer.value, **answer.log_fields())
    problems += verify.judge(verify.parse(answer.value), after, desired)
    for event in verify.new_conflict_events(verify.events(before), verify.events(after)):
        problems.append(f"new Tcpip {event.event_id} event at {event.time}: {event.message}")
    if desired.verify_peer:
        problems += _peer_arp(ctx, after)
    if problems:
        raise HostFailed("verify", VerifyFailed("; ".join(problems)))
    return after


# One peer check at a time per peer host in this process: many hosts naming the same verify peer
# must not open a shell each there at once (WinRM 2.0 allows a user 5).
_peer_locks: dict[str, threading.Lock] = {}
_peer_locks_guard = threading.Lock()


def _peer_lock(peer: Host) -> threading.Lock:
    with _peer_locks_guard:
        return _peer_locks.setdefault(peer.connection.url, threading.Lock())


def _peer_arp(ctx: _Context, after: Facts) -> list[str]:
    desired = ctx.host.desired
    peer = ctx.peers.get(desired.verify_peer or "")
    if peer is None:
        return [f"verify peer {desired.verify_peer} is not in the inventory"]
    with _peer_lock(peer):
        return _ask_peer(ctx, peer, after)


def _ask_peer(ctx: _Context, peer: Host, after: Facts) -> list[str]:
    desired = ctx.host.desired
    macs = [a.mac for a in after.physical_adapters() if a.mac]
    problems = []
    session = ctx.conn.to(peer)
    try:
        try:
            peer_facts = session.take_facts().facts
        except DsrError as exc:
            # The peer's trouble is not this host's: the check could not be made.
            info = ErrorInfo.of(exc)
            return [f"verify peer {peer.name} could not be asked ({info.error_class}: {info.message})"]
        for vip in desired.vips:
            if vip.version != 4:
                continue
            check = render("arp_check", peer_facts.os.family, {"Address": vip.address})
            answer = session.run(check, timeout=STEP_TIMEOUT)
            try:
                text = arp_check.parse(answer.value).arp_text
            except DsrError as exc:  # the peer's answer, not this host's state
                return [f"verify peer {peer.name} answered the ARP check unreadably ({exc})"]
            ctx.logger.info(Event.PEER_ARP, step="verify", peer=peer.name, vip=vip.address, arp_text=text,
                            **answer.log_fields())
            problem = arp_check.judge(text, vip.address, macs)
            if problem:
                problems.append(f"{problem} (seen from {peer.name})")
    finally:
        session.close()
    return problems


# -- rollout and rollback -------------------------------------------------------------------------------


def _facts_before(ctx: _Context, dry_run: bool) -> tuple[TakenFacts, float | None]:
    """The facts a rollout plans on, and their age when the preflight took them: a wave plans on its
    host's preflight facts while they are fresh, sparing a round trip of the largest answer; a
    preflight (a dry run) leaves its facts for the wave."""
    known = ctx.memo.pop(ctx.host.name, None) if ctx.memo is not None else None
    if not dry_run and known is not None and ctx.clock() - known.at <= PREFLIGHT_FACTS_FRESH:
        return known.taken, ctx.clock() - known.at
    taken = ctx.conn.take_facts()
    if dry_run and ctx.memo is not None:
        ctx.memo[ctx.host.name] = KnownFacts(taken, ctx.clock())
    return taken, None


def _rollout_body(dry_run: bool) -> Callable[[_Context], HostStatus]:
    def body(ctx: _Context) -> HostStatus:
        desired = ctx.host.desired
        taken, age = _facts_before(ctx, dry_run)
        before = taken.facts
        ctx.family = before.os.family
        reused = {} if age is None else {"preflight_age": round(age, 3)}
        ctx.logger.info(Event.FACTS_BEFORE, step="facts", raw=taken.raw, **reused,
                        **Answer(taken.raw, taken.script_errors).log_fields())
        the_plan = plan(before, desired)
        ctx.planned, ctx.warnings = the_plan.actions, the_plan.warnings
        # The desired state goes with the plan: a rollback undoes what this run acted on, whatever
        # the inventory says by then.
        ctx.logger.info(Event.PLAN, step="plan", plan=the_plan.to_dict(), dry_run=dry_run,
                        desired=desired.to_dict())
        if the_plan.refusals:
            raise HostFailed(preflight.NAME, PreflightRefused("; ".join(the_plan.refusals)))
        if dry_run:
            return PlanStatus.CHANGES if the_plan.actions else PlanStatus.COMPLIANT
        if not the_plan.actions:
            return Status.OK
        applied = _Apply(ctx, before, lambda f: plan(f, desired))
        applied.run(the_plan.actions)
        _verify(ctx, before, applied.settled)
        return Status.CHANGED

    return body


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
    memo: FactsMemo | None = None,
) -> HostResult:
    """Facts, plan, apply, verify one host. With `dry_run`, stop after the plan: nothing changes, and
    the result's status is a PlanStatus (compliant / changes) when the host could be read. `memo`:
    a dry run leaves the host's facts there, a rollout plans on them while they are fresh."""
    env = _Env(session_factory, log, policy, sleep=sleep, clock=clock, peers=peers or {}, cancel=cancel,
               memo=memo)
    return _run_host(host, Command.PLAN if dry_run else Command.ROLLOUT, _rollout_body(dry_run), env)


@dataclass(frozen=True)
class RollbackTarget:
    """One host to roll back: how to reach it, and what the rollout recorded about it."""

    host: Host  # connection settings (from the current inventory)
    before: Facts  # the facts the rollout took before changing anything
    desired: Desired  # the desired state the rollout acted on


@dataclass(frozen=True)
class RollbackRefusal:
    """A host of the run that cannot be rolled back, and why: it ends failed, never contacted."""

    host: Host
    reason: str


def undo_plan(target: RollbackTarget, now: Facts) -> Plan:
    """What takes the host back to its recorded facts; only refusals when it is not proved to be the
    machine they were recorded on."""
    other = identity.differences(target.before, now, target.desired.nic)
    if other:
        return Plan(refusals=("not the machine the rollout recorded: " + "; ".join(other),))
    return rollback_plan(target.before, now, target.desired)


def _rollback_body(target: RollbackTarget | RollbackRefusal) -> Callable[[_Context], HostStatus]:
    def body(ctx: _Context) -> HostStatus:
        if isinstance(target, RollbackRefusal):
            raise HostFailed("rollback", NoBeforeState(target.reason))
        now = ctx.conn.take_facts().facts
        ctx.family = now.os.family
        undo = undo_plan(target, now)
        ctx.planned = undo.actions
        ctx.logger.info(Event.ROLLBACK_PLAN, step="rollback", plan=undo.to_dict(), desired=target.desired.to_dict())
        if undo.refusals:
            raise HostFailed("identity", NotSameMachine("; ".join(undo.refusals)))
        if not undo.actions:
            return Status.OK
        applied = _Apply(ctx, now, lambda f: undo_plan(target, f))
        applied.run(undo.actions)
        after = _facts_after(ctx, applied.settled)
        left = undo_plan(target, after)
        if left.refusals or left.actions:
            raise HostFailed("verify", NotRestored("; ".join([*left.refusals, *(a.reason for a in left.actions)])))
        return Status.ROLLED_BACK

    return body


def rollback_host(
    target: RollbackTarget | RollbackRefusal,
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    cancel: threading.Event | None = None,
) -> HostResult:
    """Return one host to the facts recorded before a rollout, for what dsrprep manages, once its facts
    prove it is the machine they were recorded on; a refusal ends failed without contacting it."""
    env = _Env(session_factory, log, policy, sleep=sleep, clock=clock, cancel=cancel)
    return _run_host(target.host, Command.ROLLBACK, _rollback_body(target), env)


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
    memo: FactsMemo | None = None,
) -> FleetResult:
    """Roll out (or, with dry_run, only plan) every host, at most `forks` at once, in the hosts' order."""
    return _fleet(
        Command.PLAN if dry_run else Command.ROLLOUT,
        lambda host, cancel: rollout_host(host, session_factory=session_factory, log=log, policy=policy,
                                          peers=peers, sleep=sleep, dry_run=dry_run, cancel=cancel, memo=memo),
        hosts, forks, log)


def rollback_fleet(
    targets: Sequence[RollbackTarget | RollbackRefusal],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    forks: int = DEFAULT_FORKS,
    sleep: Callable[[float], None] = time.sleep,
) -> FleetResult:
    """Roll back every target, at most `forks` at once, in the targets' order."""
    by_name = {t.host.name: t for t in targets}
    return _fleet(
        Command.ROLLBACK,
        lambda host, cancel: rollback_host(by_name[host.name], session_factory=session_factory, log=log,
                                           policy=policy, sleep=sleep, cancel=cancel),
        [t.host for t in targets], forks, log)
