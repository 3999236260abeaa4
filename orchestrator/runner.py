"""One host end to end, and many hosts in a bounded worker pool.

A worker owns its host's Session from open to close; nothing about a host escapes its worker as an
exception: every outcome, good or bad, comes back as a `HostFacts` value and is written to the
host's log as it happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import DsrError, ErrorInfo, ProtocolError, Unreachable
from orchestrator.facts import Facts, FactsError, parse_facts
from orchestrator.inventory import Host
from orchestrator.retry import RetryPolicy, call_with_retry
from orchestrator.rolloutlog import RunLog
from orchestrator.templates import Script, render
from orchestrator.transport import Session, SessionFactory

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
    attempts = 0
    script = facts_script()

    def on_failure(attempt: int, exc: BaseException) -> None:
        info = ErrorInfo.of(exc)
        logger.warning("attempt_failed", step="facts", attempt=attempt, error_class=info.error_class,
                       error=info.message, will_retry=policy.should_retry(exc) and attempt < policy.attempts)

    def attempt() -> Any:
        nonlocal attempts
        attempts += 1
        session = session_factory(host.connection)
        try:
            session.open()
            return run_script(session, script, timeout=timeout)
        finally:
            session.close()

    logger.info("facts_start", step="facts", template=script.template_path, sha256=script.sha256)
    try:
        raw = call_with_retry(attempt, policy, sleep=sleep, on_failure=on_failure)
        facts = parse_facts(raw)
    except (DsrError, FactsError) as exc:
        info = ErrorInfo.of(exc)
        outcome = HostFacts(host.name, status_of(info), error=info, attempts=attempts,
                            duration=clock() - started)
    except Exception as exc:  # failures are data: nothing about one host may stop the others
        info = ErrorInfo(error_class="InternalError", message=f"{type(exc).__name__}: {exc}")
        outcome = HostFacts(host.name, "failed", error=info, attempts=attempts, duration=clock() - started)
    else:
        logger.info("facts_taken", step="facts", attempt=attempts, raw=raw)
        outcome = HostFacts(host.name, "ok", facts=facts, attempts=attempts, duration=clock() - started)
    logger.info("host_done", step="facts", status=outcome.status, attempts=outcome.attempts,
                duration=round(outcome.duration, 3),
                error=outcome.error.to_dict() if outcome.error else None)
    return outcome


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

    return _in_pool(work, hosts, forks)


def _in_pool(work: Callable[[Host], HostFacts], hosts: Iterable[Host], forks: int) -> list[HostFacts]:
    hosts = list(hosts)
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(forks, len(hosts))), thread_name_prefix="host") as pool:
        return list(pool.map(work, hosts))
