"""The lab's seeded, rate-based faults (LabFaults.random), each kind seen through real pypsrp and
dsrprep's transport: what the client gets, and what the host is left holding."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConnectionLost, DsrError, RemoteFault, Timeout, Unreachable
from orchestrator.inventory import Connection
from orchestrator.lab.common import RandomFaults
from orchestrator.lab.fleet import LabHost
from orchestrator.lab.server import OPERATION_TIMEOUT_CODE, QUOTA_SHELLS_CODE, UNKNOWN_SHELL_CODE
from orchestrator.transport import PsrpSession
from tests.serving import one_host
from tests.shells import let_idle_shells_expire, wait_until_quiet

pytestmark = pytest.mark.lab

READ_TIMEOUT = 2
# Past what the client waits: its read timeout, and for a Receive pypsrp's OperationTimeout (1 s)
# + 2 s, with two seconds to spare for a busy machine.
HOLD = 5.0
FACTS = "# dsrprep-step: facts\nparam()\n"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Callable[[str], tuple[LabHost, Connection]]]:
    """A one-host fleet of a family, and a connection to it with short timeouts."""
    numbers = itertools.count(1)
    with ExitStack() as fleets:

        def start(profile: str) -> tuple[LabHost, Connection]:
            inventory = tmp_path / f"lab{next(numbers)}.yml"
            handle, conn = fleets.enter_context(one_host(profile, seed=9, inventory=inventory))
            return handle, dataclasses.replace(conn, operation_timeout=1, read_timeout=READ_TIMEOUT,
                                               reconnection_backoff=0.1)

        yield start


@contextmanager
def _opened(conn: Connection) -> Iterator[PsrpSession]:
    """An open session, closed at the end (its shell deleted, through a fresh connection if need be)."""
    session = PsrpSession(conn)
    try:
        session.open()
        yield session
    finally:
        session.close()


def _open(conn: Connection) -> DsrError:
    session = PsrpSession(conn)
    try:
        session.open()
    except DsrError as exc:
        return exc
    finally:
        session.close()
    raise AssertionError("the session opened")


def _wait_for_shells(handle: LabHost, created: int) -> None:
    """Requests a client gave up on go on in the lab: wait until they have created their shells."""
    deadline = time.monotonic() + 10 * HOLD
    while handle.counters.shells_created < created and time.monotonic() < deadline:
        time.sleep(0.05)


# kind -> (the error opening a session gets, text in its message, the WSMan fault code if any)
OPENING: dict[str, tuple[type[DsrError], str, int | None]] = {
    "drop": (Unreachable, "cannot connect", None),
    "timeout": (RemoteFault, "OperationTimeout", OPERATION_TIMEOUT_CODE),
    "shell_gone": (RemoteFault, "invalid selectors", UNKNOWN_SHELL_CODE),
    "quota": (RemoteFault, "MaxShellsPerUser", QUOTA_SHELLS_CODE),
    "http_503": (Unreachable, "HTTP 503", None),
    "http_401": (ConnectionLost, "rejected this session's authentication (HTTP 401)", None),
    "slow": (Timeout, "read timeout", None),
    "hang": (Timeout, "read timeout", None),
}


@pytest.mark.parametrize("kind", sorted(OPENING))
def test_each_kind_fails_a_session_open_as_windows_would(host: Any, kind: str) -> None:
    handle, conn = host("2008r2")
    handle.faults.random = RandomFaults(1.0, seed=1, kinds={kind}, hold=HOLD)
    error = _open(conn)
    expected, text, code = OPENING[kind]
    assert type(error) is expected and text in str(error), repr(error)
    assert getattr(error, "code", None) == code
    assert handle.faults.random.injected[kind] >= 1
    assert set(handle.faults.random.injected) == {kind}
    if kind in ("slow", "hang"):
        # The Create the client gave up on went on in the host: a shell nobody knows the id of,
        # which only the idle timeout ends.
        _wait_for_shells(handle, 1)
        handle.faults.random = None
        let_idle_shells_expire(handle, left=1)


def test_a_hung_host_accepts_and_never_answers(host: Any) -> None:
    handle, conn = host("2016")
    handle.faults.hang = True
    error = _open(conn)
    assert isinstance(error, Timeout) and "read timeout" in str(error)
    assert handle.counters.http_requests >= 1 and sum(handle.counters.wsman.values()) == 0


def test_a_hang_that_ends_lets_go_of_what_it_held(host: Any) -> None:
    handle, conn = host("2016")
    handle.faults.hang = True
    assert isinstance(_open(conn), Timeout)
    assert handle.counters.in_flight >= 1  # the requests of a client that gave up, still held
    handle.faults.hang = False
    # Their clients went away: they end unanswered, nothing done for them; the host answers again.
    assert wait_until_quiet(handle, within=2.0) == 0
    assert sum(handle.counters.wsman.values()) == 0 and handle.counters.shells_created == 0
    with _opened(conn) as session:
        assert session.run(FACTS, {}, timeout=60).output


@pytest.mark.parametrize("kind", ["slow", "timeout", "hang"])
def test_receives_that_time_out_lose_no_output(host: Any, kind: str) -> None:
    handle, conn = host("2012r2")
    with _opened(conn) as session:
        expected = session.run(FACTS, {}, timeout=60).output
        handle.faults.random = RandomFaults(0.5, seed=1, kinds={kind}, hold=HOLD, actions={"Receive"})
        # pypsrp sends a Receive that timed out again ("will return the same data"); an
        # OperationTimeout it Receives again: either way the output comes whole.
        assert session.run(FACTS, {}, timeout=60).output == expected
    assert handle.faults.random.injected[kind] >= 1
    assert handle.counters.shells_open == 0


def test_a_shell_gone_mid_session_is_a_fault_naming_the_shell(host: Any) -> None:
    handle, conn = host("2019")
    with _opened(conn) as session:  # closing it finds the shell gone already: nothing left
        handle.faults.random = RandomFaults(1.0, seed=2, kinds={"shell_gone"})
        with pytest.raises(RemoteFault) as caught:
            session.run(FACTS, {}, timeout=60)
        assert caught.value.code == UNKNOWN_SHELL_CODE
    assert handle.counters.shell_deletes["fault"] == 1 and handle.counters.shells_open == 0


def test_a_401_mid_session_needs_a_new_session(host: Any) -> None:
    handle, conn = host("2022")
    with _opened(conn) as session:  # its own connection cannot carry the Delete; a fresh one does
        handle.faults.random = RandomFaults(1.0, seed=4, kinds={"http_401"})
        with pytest.raises(ConnectionLost, match="authenticated again"):
            session.run(FACTS, {}, timeout=60)
        handle.faults.random = None
    with _opened(conn) as fresh:
        assert fresh.run(FACTS, {}, timeout=60).output
    assert handle.counters.shells_open == 0 and handle.counters.shells_created == 2


@pytest.mark.parametrize("kind", ["slow", "http_503", "drop"])
def test_a_pipeline_close_that_fails_ends_the_session(host: Any, kind: str) -> None:
    handle, conn = host("2008")
    with _opened(conn) as session:  # closed through a fresh connection
        assert session.run(FACTS, {}, timeout=60).output
        # The Signal that closes that pipeline goes when the next script starts, and meets the fault
        # (a drop strikes Receives only: there it meets none, and the session goes on).
        handle.faults.random = RandomFaults(1.0, seed=7, kinds={kind}, hold=HOLD, actions={"Signal"})
        if kind == "drop":
            assert session.run(FACTS, {}, timeout=60).output
        else:
            with pytest.raises(ConnectionLost, match="closing the previous pipeline failed") as caught:
                session.run(FACTS, {}, timeout=60)
            assert ("Timeout: no answer within the read timeout" if kind == "slow" else "HTTP 503") in str(caught.value)
        handle.faults.random = None
    assert handle.counters.shells_open == 0


def test_a_503_is_httpsys_own_page(host: Any) -> None:
    from pypsrp.exceptions import WinRMTransportError
    from pypsrp.powershell import RunspacePool
    from pypsrp.wsman import WSMan

    from orchestrator.transport import wsman_kwargs

    handle, conn = host("2016")
    handle.faults.random = RandomFaults(1.0, seed=5, kinds={"http_503"})
    wsman = WSMan(**wsman_kwargs(conn))
    try:
        with pytest.raises(WinRMTransportError) as caught:
            RunspacePool(wsman).open()
    finally:
        wsman.close()
    assert caught.value.code == 503
    assert "HTTP Error 503. The service is unavailable." in caught.value.response_text
    assert handle.counters.shells_created == 0  # it never reached WinRM


def test_random_cuts_strike_network_steps_after_their_change(host: Any, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from orchestrator.cli import app

    handle, _conn = host("2016")
    handle.faults.random = RandomFaults(1.0, seed=6, kinds={"cut"})
    inventory = tmp_path / "lab1.yml"
    result = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--json",
                                      "--runs-dir", str(tmp_path / "runs")])
    doc = json.loads(result.stdout)
    entry = doc["hosts"][handle.name]
    assert result.exit_code == 0 and entry["status"] == "changed", entry
    cut = [s["step"] for s in entry["steps"] if s["status"] == "failed"]
    # Every network step that changed something lost its connection once, the change made: fresh
    # facts left each out of the next plan.
    assert cut and set(cut) <= {"loopback", "loopback_config", "skip_as_source", "http_listen"}
    assert len(cut) == len(set(cut)) == handle.faults.random.injected["cut"]
    assert all(handle.counters.steps[step] == 1 for step in cut)
    handle.faults.random = None
    let_idle_shells_expire(handle, left=len(cut))
