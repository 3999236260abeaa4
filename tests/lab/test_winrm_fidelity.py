"""The lab's WinRM per OS family, through the real pypsrp client and dsrprep's transport: the PSRP
protocol and envelope size each family speaks, server-assigned ids, quotas, the idle timeout, what
Windows refuses by default (unencrypted HTTP, Basic, unknown endpoints), a service restart, HTTPS
with a generated CA and TLS 1.0-only hosts.

Where dsrprep's transport (or pypsrp) does not yet cope with what Windows does, the test is an
`xfail(strict=True)` naming the client's behaviour: it starts failing once the client is fixed.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pypsrp.complex_objects import RunspacePoolState
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan

from orchestrator.errors import AuthError, ProtocolError, RemoteFault, Timeout, Unreachable
from orchestrator.inventory import Connection, load_inventory
from orchestrator.lab.build import build_fleet
from orchestrator.lab.common import ScriptHandler, ScriptResult
from orchestrator.lab.fleet import LabFleet, LabHost
from orchestrator.lab.profiles import winrm_config
from orchestrator.lab.server import (
    OPERATION_TIMEOUT_CODE,
    QUOTA_SHELLS_CODE,
    UNKNOWN_SHELL_CODE,
    LabServer,
)
from orchestrator.transport import OPEN_TIMEOUTS_TOLERATED, PsrpSession, pool_kwargs, wsman_kwargs
from tests.shells import let_idle_shells_expire

pytestmark = pytest.mark.lab

USER = "labadmin"
PASSWORD = "Lab-P@ssw0rd"
FACTS_HEADER = "# dsrprep-step: facts\n"
INVALID_RESOURCE_URI_CODE = 2150858811


# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Callable[..., dict[str, tuple[LabHost, Connection]]]]:
    """Starts a fleet with one host per family asked for; answers {family: (handle, connection)}."""
    fleets: list[LabFleet] = []

    def start(*families: str, https: bool = False) -> dict[str, tuple[LabHost, Connection]]:
        models = [build_fleet(1, seed=3, profile=family)[0] for family in families]
        for number, model in enumerate(models, start=1):
            model.name = f"WEB{number:02d}"
        fleet = LabFleet(models, base_octet=60, https=https)
        fleets.append(fleet)
        fleet.start()
        path = tmp_path / f"lab{len(fleets)}.yml"
        fleet.write_inventory(path)
        inventory = load_inventory(path)
        return {h.model.os_family: (h, inventory.host(h.name).connection) for h in fleet.hosts}

    try:
        yield start
    finally:
        for fleet in fleets:
            fleet.stop()


@pytest.fixture
def make_server() -> Iterator[Callable[..., LabServer]]:
    servers: list[LabServer] = []

    def make(handler: ScriptHandler, family: str, **kwargs: Any) -> LabServer:
        server = LabServer("127.0.0.70", 0, handler, username=USER, password=PASSWORD,
                           winrm=winrm_config(family), **kwargs)
        servers.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


def client(server: LabServer, **kwargs: Any) -> WSMan:
    options: dict[str, Any] = {"username": USER, "password": PASSWORD, "ssl": False, "auth": "negotiate",
                               "encryption": "auto", "operation_timeout": 5, "read_timeout": 10,
                               "connection_timeout": 5}
    options.update(kwargs)
    return WSMan(server.address, port=server.port, **options)


def wsman_for(conn: Connection, **overrides: Any) -> WSMan:
    return WSMan(**{**wsman_kwargs(conn), **overrides})


def facts(session: PsrpSession, padding: int = 0) -> Any:
    script = FACTS_HEADER + ("#" + "x" * padding + "\n" if padding else "")
    return session.run(script, {}, timeout=20)


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


# --- protocol per family -------------------------------------------------------------------------


def test_powershell_2_hosts_speak_psrp_2_1_and_150_kib_later_ones_2_3(lab: Any) -> None:
    hosts = lab("2008r2", "2016")
    for family, protocol, envelope, ps_version in (("2008r2", "2.1", 153600, "2.0"), ("2016", "2.3", 512000, "5.1")):
        handle, conn = hosts[family]
        wsman = wsman_for(conn)
        with RunspacePool(wsman, **pool_kwargs(conn)) as pool:
            # pypsrp moves to 500 KiB envelopes only when the server says 2.2 or later.
            assert (pool.protocol_version, wsman.max_envelope_size) == (protocol, envelope)
            assert pool.application_private_data is not None
            table = pool.application_private_data.data["PSVersionTable"]
            assert str(table["PSVersion"]) == ps_version and str(table["PSRemotingProtocolVersion"]) == protocol
        assert handle.counters.shells_open == 0


def test_a_pool_opens_in_two_receives_as_windows_does_when_split_open(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]
    handle.winrm.split_open = True
    with RunspacePool(wsman_for(conn)) as pool:
        assert pool.protocol_version == "2.1"
        assert handle.counters.wsman["Receive"] == 2  # as in pypsrp's 2.1 and 2.3 recordings
        assert PowerShell(pool).add_script(FACTS_HEADER).invoke()


def test_winrm_2_names_shells_and_commands_itself_and_pypsrp_follows(make_server: Any) -> None:
    release = threading.Event()

    def slow(script: str, parameters: dict[str, Any]) -> ScriptResult:
        release.wait(5)
        return ScriptResult(output=[script])

    for family, assigned in (("2008r2", True), ("2016", False)):
        release.clear()
        server = make_server(slow, family)
        with RunspacePool(client(server)) as pool:
            (shell_id,) = server.shells()
            assert (shell_id != pool.id) is assigned  # pool.id is the ShellId pypsrp proposed
            ps = PowerShell(pool)
            ps.add_script("running")
            ps.begin_invoke()
            (command_id,) = server.shells()[shell_id]
            assert (command_id != ps.id) is assigned  # ps.id is the CommandId pypsrp proposed
            release.set()
            ps.end_invoke()  # every Receive named the server's ids: the output comes back
            assert ps.output == ["running"]
            ps.close()  # Terminate with the server's CommandId
            assert server.shells() == {shell_id: []}
        server.stop()


def test_pypsrp_stop_names_its_own_command_id_which_winrm_2_does_not_know(make_server: Any) -> None:
    """pypsrp's PowerShell.stop() signals Ctrl+C with the CommandId it proposed (`ps.id`), not the
    one the server answered: WinRM 2.0 answers that no such command exists."""
    release = threading.Event()

    def hang(script: str, parameters: dict[str, Any]) -> ScriptResult:
        release.wait(5)
        return ScriptResult(output=[script])

    server = make_server(hang, "2008r2")
    try:
        with RunspacePool(client(server)) as pool:
            ps = PowerShell(pool)
            ps.add_script("hang")
            ps.begin_invoke()
            with pytest.raises(WSManFaultError) as caught:
                ps.stop()
            assert caught.value.code == UNKNOWN_SHELL_CODE
    finally:
        release.set()


# --- MaxEnvelopeSize -----------------------------------------------------------------------------


def test_a_request_over_150_kib_is_refused_with_http_413_on_2008(lab: Any) -> None:
    handle, conn = lab("2008")["2008"]
    # A client that assumes the 500 KiB of WinRM 3.0 (max_envelope_size 512000) sends 200 KB at once.
    big = dataclasses.replace(conn, max_envelope_size=512000)
    session = PsrpSession(big)
    session.open()
    try:
        with pytest.raises(ProtocolError, match="413") as caught:
            facts(session, padding=200_000)
        cause = caught.value.__cause__
        assert isinstance(cause, WinRMTransportError) and cause.code == 413 and cause.response_text == ""
        assert handle.counters.steps["facts"] == 0  # the command never started
    finally:
        session.close()
    # The same script in pypsrp's 150 KiB fragments, less the sealing's own bytes, goes through.
    fits = wsman_for(conn, max_envelope_size=150 * 1024 - 1024)
    with RunspacePool(fits) as pool:
        ps = PowerShell(pool)
        ps.add_script(FACTS_HEADER + "#" + "x" * 200_000)
        ps.invoke()
        assert not ps.had_errors and ps.output


def test_pypsrp_default_fragments_plus_message_encryption_exceed_150_kib(lab: Any) -> None:
    """pypsrp fills 153600-byte envelopes; sealed, each HTTP body is a little over 150 KiB, which
    is what WinRM's limit counts (ansible.windows issue 391: HTTP 413 at MaxEnvelopeSizekb 500)."""
    handle, conn = lab("2008")["2008"]
    pool = RunspacePool(wsman_for(conn))
    pool.open()
    ps = PowerShell(pool)
    ps.add_script(FACTS_HEADER + "#" + "x" * 150_000)
    with pytest.raises(WinRMTransportError) as caught:
        ps.invoke()
    assert caught.value.code == 413
    # The refused message was never unsealed: the connection's NTLM sequence is out of step, and the
    # next sealed message on it cannot be read (HTTP 400). Only a new session goes on.
    with pytest.raises(WinRMTransportError) as after:
        pool.close()
    assert after.value.code == 400
    let_idle_shells_expire(handle, left=1)


def test_transport_runs_a_script_larger_than_one_envelope_on_2008(lab: Any) -> None:
    _handle, conn = lab("2008")["2008"]
    session = PsrpSession(conn)
    try:
        assert facts(session, padding=150_000).output
    finally:
        session.close()


# --- quotas --------------------------------------------------------------------------------------


def test_a_sixth_shell_on_2008_is_refused_with_quota_limit(lab: Any) -> None:
    handle, conn = lab("2008")["2008"]
    pools = [RunspacePool(wsman_for(conn)) for _ in range(5)]
    for pool in pools:
        pool.open()
    try:
        session = PsrpSession(conn)
        with pytest.raises(RemoteFault) as caught:
            session.open()
        assert caught.value.code == QUOTA_SHELLS_CODE
        assert "allowed a maximum number of 5 concurrent shells, which has been exceeded" in str(caught.value)
        assert "raise WinRM's MaxShellsPerUser on the host" in str(caught.value)  # what to do about it
        pools.pop().close()
        session.open()  # one shell fewer: there is room again
        session.close()
    finally:
        for pool in pools:
            pool.close()
    assert handle.counters.shells_created == 6 and handle.counters.shells_open == 0


def test_2016_allows_25_shells_per_user(lab: Any) -> None:
    handle, conn = lab("2016")["2016"]
    assert handle.winrm.max_shells_per_user == 25
    handle.winrm.max_shells_per_user = 2  # the same quota, smaller, to keep the test short
    first, second = RunspacePool(wsman_for(conn)), RunspacePool(wsman_for(conn))
    first.open()
    second.open()
    with pytest.raises(WSManFaultError) as caught:
        RunspacePool(wsman_for(conn)).open()
    assert caught.value.code == QUOTA_SHELLS_CODE
    assert "maximum number of 2 concurrent shells" in str(caught.value.reason)
    first.close()
    second.close()


# --- idle timeout --------------------------------------------------------------------------------


def test_an_abandoned_shell_is_deleted_after_the_idle_timeout(lab: Any) -> None:
    handle, conn = lab("2008r2", "2016")["2008r2"]
    assert handle.winrm.idle_timeout_ms == 180_000  # WinRM 2.0's default; 7200000 from WinRM 3.0
    handle.winrm.idle_timeout_ms = 300
    abandoned = RunspacePool(wsman_for(conn))
    abandoned.open()
    assert handle.counters.shells_open == 1
    assert wait_for(lambda: handle.counters.shell_deletes["idle"] == 1)
    assert handle.counters.shells_open == 0 and handle.server is not None and handle.server.shells() == {}
    with pytest.raises(WSManFaultError) as caught:
        PowerShell(abandoned).add_script(FACTS_HEADER).invoke()
    assert caught.value.code == UNKNOWN_SHELL_CODE


def test_a_shell_in_use_is_not_idle(lab: Any) -> None:
    handle, conn = lab("2016")["2016"]
    handle.winrm.idle_timeout_ms = 400
    session = PsrpSession(conn)
    session.open()
    try:
        for _ in range(4):
            time.sleep(0.15)
            assert facts(session).output
        assert handle.counters.shell_deletes["idle"] == 0
    finally:
        session.close()
    assert handle.counters.shells_open == 0


# --- what Windows refuses by default -------------------------------------------------------------


def test_unencrypted_messages_over_http_are_refused(lab: Any) -> None:
    handle, conn = lab("2016")["2016"]
    with pytest.raises(WinRMTransportError) as caught:
        RunspacePool(wsman_for(conn, auth="ntlm", encryption="never")).open()
    assert caught.value.code == 500 and caught.value.response_text == ""
    session = PsrpSession(dataclasses.replace(conn, message_encryption="never"))
    with pytest.raises(ProtocolError, match="HTTP 500") as refused:
        session.open()
    assert "keep ansible_psrp_message_encryption at auto or always" in str(refused.value)
    handle.winrm.allow_unencrypted = True
    with RunspacePool(wsman_for(conn, auth="ntlm", encryption="never")) as pool:
        assert pool.protocol_version == "2.3"
    assert handle.counters.shells_open == 0


def test_basic_is_refused_unless_enabled_and_always_for_domain_accounts(lab: Any) -> None:
    handle, conn = lab("2012r2")["2012r2"]
    basic = {"auth": "basic", "encryption": "never"}
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman_for(conn, **basic)).open()
    handle.winrm.basic = True
    # Basic cannot encrypt: over plain HTTP it also needs AllowUnencrypted.
    with pytest.raises(WinRMTransportError) as caught:
        RunspacePool(wsman_for(conn, **basic)).open()
    assert caught.value.code == 500
    handle.winrm.allow_unencrypted = True
    for user in (USER, f"{handle.model.name}\\{USER}", f".\\{USER}"):
        with RunspacePool(wsman_for(conn, username=user, **basic)) as pool:
            assert pool.protocol_version == "2.3"
    for user in (f"CORP\\{USER}", f"{USER}@corp.example.com"):
        with pytest.raises(AuthenticationError):
            RunspacePool(wsman_for(conn, username=user, **basic)).open()


def test_an_unknown_configuration_name_is_refused(lab: Any) -> None:
    hosts = lab("2008r2", "2016")
    for _handle, conn in hosts.values():
        with pytest.raises(WSManFaultError) as caught:
            RunspacePool(wsman_for(conn), configuration_name="Microsoft.Exchange").open()
        assert caught.value.code == INVALID_RESOURCE_URI_CODE
        assert caught.value.reason == (
            "The WS-Management service cannot process the request. The resource URI "
            "(http://schemas.microsoft.com/powershell/Microsoft.Exchange) was not found in the WS-Management "
            "catalog. The catalog contains the metadata that describes resources, or logical endpoints."
        )
        with RunspacePool(wsman_for(conn), configuration_name="Microsoft.PowerShell32") as pool:
            assert pool.protocol_version
    # Workflows came with PowerShell 3.0.
    session = PsrpSession(dataclasses.replace(hosts["2008r2"][1], configuration_name="Microsoft.PowerShell.Workflow"))
    with pytest.raises(RemoteFault) as refused:
        session.open()
    assert refused.value.code == INVALID_RESOURCE_URI_CODE
    with RunspacePool(wsman_for(hosts["2016"][1]), configuration_name="microsoft.powershell.workflow"):
        pass


def test_wrong_credentials_are_refused_after_the_ntlm_handshake(lab: Any) -> None:
    handle, conn = lab("2008")["2008"]
    session = PsrpSession(dataclasses.replace(conn, password="not-the-password"))
    with pytest.raises(AuthError):
        session.open()
    assert handle.counters.auth_failures == 1 and handle.counters.shells_created == 0


# --- service restart -----------------------------------------------------------------------------


def test_a_winrm_restart_drops_every_connection_and_shell(lab: Any) -> None:
    handle, conn = lab("2016")["2016"]
    pool = RunspacePool(wsman_for(conn))
    pool.open()
    idle = RunspacePool(wsman_for(conn))
    idle.open()
    assert handle.counters.shells_open == 2
    now = time.monotonic()
    handle.faults.down_from, handle.faults.down_until = now + 0.05, now + 0.3
    assert wait_for(lambda: handle.counters.shell_deletes["restart"] == 2)
    time.sleep(0.3)  # the service is back
    # The pool's connection is gone; on a new one its sealed messages mean nothing to the host.
    with pytest.raises((requests.exceptions.ConnectionError, WinRMTransportError)):
        PowerShell(pool).add_script(FACTS_HEADER).invoke()
    assert handle.counters.shells_open == 0
    session = PsrpSession(conn)
    assert facts(session).output
    session.close()
    assert handle.counters.shells_open == 0


# --- pool open timing out ------------------------------------------------------------------------


def test_a_pool_open_can_time_out(lab: Any) -> None:
    handle, conn = lab("2016")["2016"]
    handle.faults.timeout_on_open = 1
    pool = RunspacePool(wsman_for(conn))
    with pytest.raises(WSManFaultError) as caught:
        pool.open()  # pypsrp 0.9.1 does not retry an OperationTimeout while opening
    assert caught.value.code == OPERATION_TIMEOUT_CODE
    assert handle.counters.shells_open == 1
    # What transport._open_pool relies on: the pool is still negotiating, and pypsrp's own private
    # Receive call takes the opening on from there.
    assert pool.state == RunspacePoolState.NEGOTIATION_SENT
    while pool.state == RunspacePoolState.NEGOTIATION_SENT:
        pool._receive()
    assert pool.state == RunspacePoolState.OPENED
    pool.close()  # the shell exists: Delete removes it
    assert handle.counters.shells_open == 0


def test_transport_receives_again_while_a_pool_open_times_out(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]
    handle.faults.timeout_on_open = OPEN_TIMEOUTS_TOLERATED
    session = PsrpSession(conn)
    session.open()
    assert facts(session).output
    session.close()
    assert handle.counters.shells_created == 1 and handle.counters.shells_open == 0


def test_transport_deletes_the_shell_of_a_pool_that_failed_to_open(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]
    handle.faults.timeout_on_open = OPEN_TIMEOUTS_TOLERATED + 1
    with pytest.raises(RemoteFault):
        PsrpSession(conn).open()
    assert handle.counters.shells_open == 0


def test_transport_releases_a_timed_out_command_on_winrm_2(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]
    release = threading.Event()
    server = handle.server
    assert server is not None
    original = server.handler

    def slow(script: str, parameters: dict[str, Any]) -> ScriptResult:
        release.wait(5)
        result: ScriptResult = original(script, parameters)
        return result

    server.handler = slow
    session = PsrpSession(dataclasses.replace(conn, operation_timeout=1))
    try:
        session.open()
        with pytest.raises(Timeout):
            session.run(FACTS_HEADER, {}, timeout=1)
        release.set()
        assert list(server.shells().values()) == [[]]
    finally:
        release.set()
        session.close()


@pytest.mark.parametrize("family", ["2016", "2008r2"])
def test_transport_deletes_a_shell_through_a_fresh_connection_when_its_own_is_lost(lab: Any, family: str) -> None:
    handle, conn = lab(family)[family]
    session = PsrpSession(conn)
    assert facts(session).output
    handle.faults.drop_on_request = sum(handle.counters.wsman.values()) + 1  # the Delete
    assert session.close() == []
    assert handle.counters.wsman["Delete"] == 2 and handle.counters.shell_deletes["delete"] == 1


@pytest.mark.parametrize("family", ["2016", "2008r2"])
def test_transport_reports_the_id_of_a_shell_it_could_not_delete(lab: Any, family: str) -> None:
    handle, conn = lab(family)[family]
    session = PsrpSession(conn)
    assert facts(session).output
    sent = sum(handle.counters.wsman.values())
    handle.faults.drop_on_request = sent + 1  # the Delete on the session's connection
    handle.faults.fault_on_request = sent + 2  # the Delete on a fresh one
    left = session.close()
    assert handle.server is not None and left == list(handle.server.shells()) and len(left) == 1
    let_idle_shells_expire(handle, left=1)


def test_a_receive_waits_no_longer_than_max_timeout_ms(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]
    server = handle.server
    assert server is not None
    original = server.handler

    def slow(script: str, parameters: dict[str, Any]) -> ScriptResult:
        time.sleep(1.2)
        result: ScriptResult = original(script, parameters)
        return result

    server.handler = slow
    server.receive_wait = 30.0
    handle.winrm.max_timeout_ms = 300  # the client asks for 20 s (OperationTimeout); the host cuts it
    session = PsrpSession(conn)
    try:
        session.open()
        before = handle.counters.wsman["Receive"]
        assert facts(session).output
        assert handle.counters.wsman["Receive"] - before >= 4  # one a 0.3 s wait, not one a 20 s wait
    finally:
        session.close()


# --- everyday sessions leave nothing behind ------------------------------------------------------


def test_a_transport_session_deletes_its_shell_on_every_family(lab: Any) -> None:
    hosts = lab("2003", "2008", "2008r2", "2012", "2016", "2022")
    for handle, conn in hosts.values():
        session = PsrpSession(conn)
        for _ in range(2):
            assert facts(session).output
        session.close()
        assert handle.counters.shells_created == 1 and handle.counters.shells_open == 0, handle.model.os_family


def test_a_session_closes_each_pipeline_when_the_next_starts_and_the_last_with_its_shell(lab: Any) -> None:
    handle, conn = lab("2008r2")["2008r2"]  # WinRM 2.0: 15 operations per user, a shell and its commands
    server = handle.server
    assert server is not None
    session = PsrpSession(conn)
    runs = handle.winrm.max_concurrent_operations_per_user + 5
    for _ in range(runs):
        assert facts(session).output
    # Only the last pipeline is still the host's: each earlier one was closed when the next started.
    assert [len(commands) for commands in server.shells().values()] == [1]
    session.close()
    assert handle.counters.wsman["Signal"] == runs - 1  # the shell's Delete ends the last
    assert handle.counters.wsman["Delete"] == 1 and handle.counters.shells_open == 0


# --- HTTPS ---------------------------------------------------------------------------------------


def test_https_with_the_fleet_ca_and_tls_1_0_only_2003(lab: Any) -> None:
    hosts = lab("2016", "2003", https=True)
    handle, conn = hosts["2016"]
    assert (conn.protocol, conn.cert_validation) == ("https", True) and conn.ca_cert
    assert handle.url.startswith("https://")
    session = PsrpSession(conn)
    assert facts(session).output  # certificate validated against the fleet's CA, channel binding sent
    session.close()
    assert handle.counters.shells_open == 0

    old, old_conn = hosts["2003"]
    assert old.winrm.tls_maximum == "1.0"
    with pytest.raises(Unreachable, match="TLS handshake failed") as refused:
        PsrpSession(old_conn).open()  # a modern client context needs TLS 1.2 at least
    assert "speak only TLS 1.0" in str(refused.value) and "use http with message encryption" in str(refused.value)
    # A client that still speaks TLS 1.0 (at OpenSSL security level 0) gets through.
    context = ssl.create_default_context(cafile=old_conn.ca_cert)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection((old.address, old.port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=old.address) as tls:
        assert tls.version() == "TLSv1"
