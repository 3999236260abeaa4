"""One host end to end, and many hosts in a bounded worker pool.

A worker owns its host's Session from open to close; nothing about a host escapes its worker as an
exception: every outcome, good or bad, comes back as a `HostFacts` value and is written to the
host's log as it happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from orchestrator.errors import DsrError, ErrorInfo, ProtocolError, Unreachable
from orchestrator.facts import Facts, FactsError, parse_facts
from orchestrator.inventory import Host
from orchestrator.plan import Action, Plan, plan, rollback_plan
from orchestrator.retry import RetryPolicy, call_with_retry
from orchestrator.rolloutlog import RunLog
from orchestrator.templates import Script, render
from orchestrator.transport import Session, SessionFactory
from orchestrator.verify import judge_arp, judge_verify, new_conflict_events, verify_params

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

    return in_pool(work, hosts, forks)


def in_pool(work: Callable[[Host], T], hosts: Iterable[Host], forks: int) -> list[T]:
    """`work` for every host, at most `forks` at once, results in the hosts' order."""
    hosts = list(hosts)
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="host") as pool:
        return list(pool.map(work, hosts))


# -- rollout and rollback of one host ---------------------------------------------------------------

STEP_TIMEOUT = 300.0
MAX_RECOVERIES = 3
# After a change the host may need a while to answer again (an HTTP service restart takes WinRM down
# for seconds): reconnecting waits longer than a first connection does.
RECONNECT_POLICY = RetryPolicy(attempts=6, base_delay=1.0, max_delay=10.0)
# A step cut off mid-way may or may not have happened: reconnect and let fresh facts decide.
_RECOVERABLE = frozenset({"ConnectionLost", "Timeout", "RemoteFault"})


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


@dataclass
class _Context:
    host: Host
    conn: HostConnection
    logger: Any
    clock: Callable[[], float]
    peers: Mapping[str, Host]
    steps: list[StepResult]


def _apply(ctx: _Context, facts: Facts, actions: Sequence[Action],
           replan: Callable[[Facts], Plan]) -> Facts:
    """Run `actions` in order; after a cut connection reconnect, re-read facts and re-plan.

    Returns the facts as of the last re-read (or the ones passed in).
    """
    queue = list(actions)
    recoveries = 0
    while queue:
        action = queue.pop(0)
        script = render(action.step, facts.os.family.value, action.params)
        started = ctx.clock()
        ctx.logger.info("step_start", step=action.step, reason=action.reason, attempt=recoveries + 1,
                        template=script.template_path, sha256=script.sha256, params=dict(script.parameters))
        try:
            result = ctx.conn.run(script, timeout=STEP_TIMEOUT)
        except DsrError as exc:
            info = ErrorInfo.of(exc)
            step = StepResult(action.step, action.reason, "failed", recoveries + 1, ctx.clock() - started,
                              error=info)
            ctx.steps.append(step)
            ctx.logger.warning("step_result", **step.to_dict())
            if info.error_class not in _RECOVERABLE or recoveries >= MAX_RECOVERIES:
                raise HostFailed(action.step, info) from exc
            recoveries += 1
            ctx.conn.reconnect()
            _raw, facts = ctx.conn.take_facts(RECONNECT_POLICY)
            fresh = replan(facts)
            if fresh.refusals:
                raise HostFailed(action.step, ErrorInfo("PreflightRefused", "; ".join(fresh.refusals))) from exc
            ctx.logger.info("replanned", step=action.step, actions=[a.to_dict() for a in fresh.actions])
            queue = list(fresh.actions)
            continue
        changed = bool(result.get("changed")) if isinstance(result, Mapping) else True
        step = StepResult(action.step, action.reason, "changed" if changed else "ok", recoveries + 1,
                          ctx.clock() - started, result=result)
        ctx.steps.append(step)
        ctx.logger.info("step_result", **step.to_dict())
        if isinstance(result, Mapping) and result.get("degraded"):
            # Windows chose a fallback (2003 refusing /32): what is left to do follows from the new state.
            _raw, facts = ctx.conn.take_facts()
            queue = [a for a in replan(facts).actions if a.step != "preflight"]
            ctx.logger.info("replanned", step=action.step, actions=[a.to_dict() for a in queue])
    return facts


def _verify(ctx: _Context, before: Facts) -> Facts:
    """Fresh session, facts again (the plan must be empty), then the checks on the host and a peer."""
    desired = ctx.host.desired
    ctx.conn.close()  # proves that a new PSRP session still opens after the change
    _raw, after = ctx.conn.take_facts(RECONNECT_POLICY)
    remaining = plan(after, desired)
    ctx.logger.info("verify_plan", plan=remaining.to_dict())
    if remaining.refusals or remaining.actions:
        reasons = list(remaining.refusals) + [a.reason for a in remaining.actions if a.step != "preflight"]
        raise HostFailed("verify", ErrorInfo("NotCompliant", "still to change after apply: " + "; ".join(reasons)))
    problems = []
    verify = render("verify", after.os.family.value, verify_params(after, desired))
    result = ctx.conn.run(verify, timeout=STEP_TIMEOUT)
    ctx.logger.info("verify_result", step="verify", result=result)
    problems += judge_verify(result if isinstance(result, Mapping) else {}, after, desired)
    for event in new_conflict_events(before.events, after.events):
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
        return [f"verify peer {desired.verify_peer} is not in the selected inventory"]
    macs = [a.mac for a in after.physical_adapters() if a.mac]
    problems = []
    session = ctx.conn.to(peer)
    try:
        _raw, peer_facts = session.take_facts()
        for vip in desired.vips:
            if vip.version != 4:
                continue
            check = render("arp_check", peer_facts.os.family.value, {"Address": vip.address})
            result = session.run(check, timeout=STEP_TIMEOUT)
            text = str(result.get("arp_text", "")) if isinstance(result, Mapping) else ""
            ctx.logger.info("peer_arp", step="verify", peer=peer.name, vip=vip.address, arp_text=text)
            problem = judge_arp(text, vip.address, macs)
            if problem:
                problems.append(f"{problem} (seen from {peer.name})")
    finally:
        session.close()
    return problems


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
) -> HostOutcome:
    """Facts, plan, apply, verify one host. With `dry_run`, stop after the plan: nothing changes."""
    logger = log.host_logger(host.name, address=host.connection.address)
    conn = HostConnection(host, session_factory=session_factory, logger=logger, policy=policy, sleep=sleep)
    ctx = _Context(host, conn, logger, clock, peers or {}, [])
    started = clock()
    planned: tuple[Action, ...] = ()
    warnings: tuple[str, ...] = ()
    family: str | None = None

    def outcome(status: str, **kw: Any) -> HostOutcome:
        result = HostOutcome(host.name, status, planned=planned, steps=tuple(ctx.steps), warnings=warnings,
                             duration=clock() - started, os_family=family, **kw)
        logger.info("host_done", step="rollout", status=status, failed_step=result.failed_step,
                    error=result.error.to_dict() if result.error else None)
        return result

    try:
        raw, before = conn.take_facts()
        family = before.os.family.value
        logger.info("facts_before", step="facts", raw=raw)
        the_plan = plan(before, host.desired)
        planned, warnings = the_plan.actions, the_plan.warnings
        logger.info("plan", step="plan", plan=the_plan.to_dict(), dry_run=dry_run)
        if the_plan.refusals:
            return outcome("failed", failed_step="preflight",
                           error=ErrorInfo("PreflightRefused", "; ".join(the_plan.refusals)))
        if dry_run or not the_plan.actions:
            return outcome("ok")
        _apply(ctx, before, the_plan.actions, lambda f: plan(f, host.desired))
        _verify(ctx, before)
        return outcome("changed")
    except HostFailed as exc:
        return outcome("failed", failed_step=exc.step, error=exc.error)
    except (DsrError, FactsError) as exc:
        info = ErrorInfo.of(exc)
        return outcome(status_of(info), error=info)
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        return outcome("failed", error=internal_error(exc))
    finally:
        conn.close()


def rollback_host(
    host: Host,
    before_raw: Mapping[str, Any],
    *,
    session_factory: SessionFactory,
    log: RunLog,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> HostOutcome:
    """Return one host to the facts recorded before a run, for what dsrprep changed."""
    logger = log.host_logger(host.name, address=host.connection.address)
    conn = HostConnection(host, session_factory=session_factory, logger=logger, policy=policy, sleep=sleep)
    ctx = _Context(host, conn, logger, clock, {}, [])
    started = clock()
    planned: tuple[Action, ...] = ()

    def outcome(status: str, **kw: Any) -> HostOutcome:
        result = HostOutcome(host.name, status, planned=planned, steps=tuple(ctx.steps),
                             duration=clock() - started, **kw)
        logger.info("host_done", step="rollback", status=status, failed_step=result.failed_step,
                    error=result.error.to_dict() if result.error else None)
        return result

    try:
        before = parse_facts(before_raw)
        _raw, now = conn.take_facts()
        undo = rollback_plan(before, now)
        planned = undo.actions
        logger.info("rollback_plan", step="rollback", plan=undo.to_dict())
        if not undo.actions:
            return outcome("ok")
        _apply(ctx, now, undo.actions, lambda f: rollback_plan(before, f))
        conn.close()
        _raw, after = conn.take_facts(RECONNECT_POLICY)
        left = rollback_plan(before, after)
        if left.actions:
            reasons = "; ".join(a.reason for a in left.actions)
            return outcome("failed", failed_step="verify", error=ErrorInfo("NotRestored", reasons))
        return outcome("rolled_back")
    except HostFailed as exc:
        return outcome("failed", failed_step=exc.step, error=exc.error)
    except (DsrError, FactsError) as exc:
        info = ErrorInfo.of(exc)
        return outcome(status_of(info), error=info)
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        return outcome("failed", error=internal_error(exc))
    finally:
        conn.close()


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
    return in_pool(
        lambda host: rollout_host(host, session_factory=session_factory, log=log, policy=policy, peers=peers,
                                  sleep=sleep, dry_run=dry_run),
        hosts, forks)


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
    return in_pool(
        lambda host: rollback_host(host, before[host.name], session_factory=session_factory, log=log,
                                   policy=policy, sleep=sleep),
        [host for host, _raw in work], forks)
