"""transport.py: every client exception leaves it as one of dsrprep's error classes, every connection
setting reaches the pypsrp keyword it means, and every pipeline is closed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import yaml
from pypsrp.complex_objects import GenericComplexObject, PSInvocationState, RunspacePoolState
from pypsrp.exceptions import AuthenticationError, InvalidPSRPOperation, WinRMTransportError, WSManFaultError
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan
from spnego.exceptions import InvalidCredentialError

from orchestrator import inventory as inventory_module
from orchestrator.errors import (
    AuthError,
    ConnectionLost,
    ProtocolError,
    RemoteFault,
    ScriptError,
    Timeout,
    Unreachable,
)
from orchestrator.inventory import Connection, load_inventory
from orchestrator.transport import (
    RunResult,
    _close_pipeline,
    check_opened,
    map_error,
    pool_kwargs,
    to_plain,
    wsman_kwargs,
)


@pytest.mark.parametrize(
    ("exc", "phase", "expected"),
    [
        (AuthenticationError("401"), "connect", AuthError),
        (InvalidCredentialError(context_msg="no creds"), "connect", AuthError),
        (requests.exceptions.ConnectionError("Connection refused"), "connect", Unreachable),
        (requests.exceptions.ConnectionError("Connection reset by peer"), "run", ConnectionLost),
        # An answer's body cut short (a WinRM restart while it was being sent): a lost connection.
        (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead(0 bytes read, 1169 more "
                                                  "expected)"), "run", ConnectionLost),
        (requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"), "connect", Unreachable),
        (requests.exceptions.ConnectTimeout("timed out"), "run", Unreachable),
        (requests.exceptions.ReadTimeout("read timed out"), "run", Timeout),
        (requests.exceptions.SSLError("certificate verify failed"), "connect", Unreachable),
        (WinRMTransportError("http", 401, "denied"), "connect", AuthError),
        (WinRMTransportError("http", 500, "<html>"), "run", ProtocolError),
        (InvalidPSRPOperation("bad state"), "run", ProtocolError),
        (ValueError("surprise"), "run", ProtocolError),
    ],
)
def test_client_errors_map_to_our_classes(exc: Exception, phase: str, expected: type) -> None:
    assert isinstance(map_error(exc, phase=phase), expected)


def test_wsman_fault_keeps_its_code() -> None:
    fault = WSManFaultError(2150858843, "WIN-1", "The service is busy", None, None, None)
    mapped = map_error(fault, phase="run")
    assert isinstance(mapped, RemoteFault)
    assert mapped.code == 2150858843
    assert "2150858843" in str(mapped)


def test_our_errors_pass_through() -> None:
    original = ScriptError("threw")
    assert map_error(original, phase="run") is original


def test_psobjects_become_plain_dicts_recursively() -> None:
    inner = GenericComplexObject()
    inner.extended_properties = {"Name": "Local Area Connection", "Index": 7}
    outer = GenericComplexObject()
    outer.extended_properties = {"adapters": [inner], "flags": {"a": True}, "none": None}
    assert to_plain(outer) == {
        "adapters": [{"Name": "Local Area Connection", "Index": 7}],
        "flags": {"a": True},
        "none": None,
    }


@pytest.mark.parametrize("code", [404, 503])
def test_winrm_service_down_is_unreachable(code: int) -> None:
    assert isinstance(map_error(WinRMTransportError("http", code, "down"), phase="run"), Unreachable)


# --- connection settings -> pypsrp keyword arguments ----------------------------------------------

BASE_VARS = {"ansible_host": "10.0.0.11", "dsr_vips": ["10.0.0.100"]}
CERT_AUTH = {"ansible_psrp_protocol": "https", "ansible_psrp_auth": "certificate"}

# (variables of one host; "wsman" or "pool"; keyword; the value pypsrp gets). The first variable of a
# row is the one it is about; the others only make the row valid.
MAPPING: list[tuple[dict[str, object], str, str, object]] = [
    ({"ansible_host": "10.0.0.12"}, "wsman", "server", "10.0.0.12"),
    ({"ansible_winrm_host": "10.0.0.13"}, "wsman", "server", "10.0.0.13"),
    ({"ansible_psrp_host": "10.0.0.14"}, "wsman", "server", "10.0.0.14"),
    ({"ansible_port": 15985}, "wsman", "port", 15985),
    ({"ansible_winrm_port": 15986}, "wsman", "port", 15986),
    ({"ansible_psrp_port": 15987}, "wsman", "port", 15987),
    ({"ansible_user": "CORP\\svc"}, "wsman", "username", "CORP\\svc"),
    ({"ansible_winrm_user": "svc-winrm"}, "wsman", "username", "svc-winrm"),
    ({"ansible_psrp_user": "svc-psrp"}, "wsman", "username", "svc-psrp"),
    ({"ansible_password": "pw-1"}, "wsman", "password", "pw-1"),
    ({"ansible_winrm_pass": "pw-2"}, "wsman", "password", "pw-2"),
    ({"ansible_winrm_password": "pw-3"}, "wsman", "password", "pw-3"),
    ({"ansible_psrp_pass": "pw-4"}, "wsman", "password", "pw-4"),
    ({"ansible_psrp_password": "pw-5"}, "wsman", "password", "pw-5"),
    ({"ansible_psrp_auth": "kerberos"}, "wsman", "auth", "kerberos"),
    ({"ansible_winrm_transport": "ntlm"}, "wsman", "auth", "ntlm"),
    ({"ansible_psrp_protocol": "https"}, "wsman", "ssl", True),
    ({"ansible_winrm_scheme": "http"}, "wsman", "ssl", False),
    ({"ansible_psrp_cert_validation": "ignore"}, "wsman", "cert_validation", False),
    ({"ansible_winrm_server_cert_validation": "validate"}, "wsman", "cert_validation", True),
    ({"ansible_psrp_ca_cert": "/etc/ca.pem"}, "wsman", "cert_validation", "/etc/ca.pem"),
    ({"ansible_psrp_cert_trust_path": "/etc/trust.pem"}, "wsman", "cert_validation", "/etc/trust.pem"),
    ({"ansible_winrm_ca_trust_path": "/etc/winrm.pem"}, "wsman", "cert_validation", "/etc/winrm.pem"),
    ({"ansible_psrp_certificate_pem": "/c.pem", "ansible_winrm_cert_key_pem": "/k", **CERT_AUTH},
     "wsman", "certificate_pem", "/c.pem"),
    ({"ansible_winrm_cert_pem": "/w.pem", "ansible_winrm_cert_key_pem": "/k", **CERT_AUTH},
     "wsman", "certificate_pem", "/w.pem"),
    ({"ansible_psrp_certificate_key_pem": "/c.key", "ansible_winrm_cert_pem": "/p", **CERT_AUTH},
     "wsman", "certificate_key_pem", "/c.key"),
    ({"ansible_winrm_cert_key_pem": "/w.key", "ansible_winrm_cert_pem": "/p", **CERT_AUTH},
     "wsman", "certificate_key_pem", "/w.key"),
    ({"ansible_psrp_message_encryption": "always"}, "wsman", "encryption", "always"),
    ({"ansible_winrm_message_encryption": "never", "ansible_psrp_protocol": "https"}, "wsman", "encryption", "never"),
    ({"ansible_psrp_connection_timeout": 7}, "wsman", "connection_timeout", 7),
    ({"ansible_winrm_connection_timeout": 8}, "wsman", "connection_timeout", 8),
    ({"ansible_psrp_read_timeout": 70}, "wsman", "read_timeout", 70),
    ({"ansible_winrm_read_timeout_sec": 71}, "wsman", "read_timeout", 71),
    ({"ansible_psrp_operation_timeout": 25}, "wsman", "operation_timeout", 25),
    ({"ansible_winrm_operation_timeout_sec": 26}, "wsman", "operation_timeout", 26),
    ({"ansible_psrp_path": "/custom/wsman/"}, "wsman", "path", "custom/wsman"),
    ({"ansible_winrm_path": "/wsman-alt"}, "wsman", "path", "wsman-alt"),
    ({"ansible_psrp_max_envelope_size": 512000}, "wsman", "max_envelope_size", 512000),
    ({"ansible_psrp_reconnection_retries": 3}, "wsman", "reconnection_retries", 3),
    ({"ansible_psrp_reconnection_backoff": 0.5}, "wsman", "reconnection_backoff", 0.5),
    ({"ansible_psrp_connection_backoff": 4}, "wsman", "reconnection_backoff", 4.0),
    ({"ansible_psrp_proxy": "http://proxy.corp:3128"}, "wsman", "proxy", "http://proxy.corp:3128"),
    ({"ansible_psrp_ignore_proxy": True}, "wsman", "no_proxy", True),
    ({"ansible_psrp_negotiate_delegate": "yes"}, "wsman", "negotiate_delegate", True),
    ({"ansible_winrm_kerberos_delegation": True}, "wsman", "negotiate_delegate", True),
    ({"ansible_psrp_negotiate_hostname_override": "web01.corp"}, "wsman", "negotiate_hostname_override",
     "web01.corp"),
    ({"ansible_winrm_kerberos_hostname_override": "web01.ad"}, "wsman", "negotiate_hostname_override",
     "web01.ad"),
    ({"ansible_psrp_negotiate_send_cbt": False}, "wsman", "negotiate_send_cbt", False),
    ({"ansible_winrm_send_cbt": "no"}, "wsman", "negotiate_send_cbt", False),
    ({"ansible_psrp_negotiate_service": "HTTP"}, "wsman", "negotiate_service", "HTTP"),
    ({"ansible_psrp_configuration_name": "DsrPrep"}, "pool", "configuration_name", "DsrPrep"),
]


def _connection(tmp_path: Path, host_vars: dict[str, object]) -> Connection:
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"web01": {**BASE_VARS, **host_vars}}}}), encoding="utf-8")
    return load_inventory(path).host("web01").connection


@pytest.mark.parametrize(("host_vars", "target", "keyword", "expected"), MAPPING,
                         ids=[next(iter(row[0])) for row in MAPPING])
def test_every_option_reaches_its_pypsrp_keyword(
    tmp_path: Path, host_vars: dict[str, object], target: str, keyword: str, expected: object
) -> None:
    conn = _connection(tmp_path, host_vars)
    kwargs = wsman_kwargs(conn) if target == "wsman" else pool_kwargs(conn)
    assert kwargs[keyword] == expected
    assert type(kwargs[keyword]) is type(expected)


def test_the_mapping_table_covers_every_connection_variable() -> None:
    covered = {next(iter(row[0])) for row in MAPPING}
    known = {name for names in inventory_module._SETTING_VARS.values() for name in names}
    assert known - covered == {"ansible_connection"}  # chooses the plugin; pypsrp has no such keyword


def test_defaults_map_to_pypsrps_defaults_and_ansibles(tmp_path: Path) -> None:
    conn = _connection(tmp_path, {})
    assert wsman_kwargs(conn) == {
        "server": "10.0.0.11",
        "port": 5985,
        "username": None,
        "password": None,
        "ssl": False,
        "path": "wsman",
        "auth": "negotiate",
        "cert_validation": True,
        "encryption": "auto",
        "connection_timeout": 30,
        "read_timeout": 30,
        "operation_timeout": 20,
        "max_envelope_size": 153600,
        "reconnection_retries": 0,
        "reconnection_backoff": 2.0,
        "proxy": None,
        "no_proxy": False,
        "negotiate_delegate": False,
        "negotiate_hostname_override": None,
        "negotiate_send_cbt": True,
        "negotiate_service": "WSMAN",
    }
    assert pool_kwargs(conn) == {"configuration_name": "Microsoft.PowerShell"}


def test_certificate_files_are_passed_only_with_certificate_auth(tmp_path: Path) -> None:
    conn = _connection(tmp_path, {"ansible_psrp_certificate_pem": "/c.pem", "ansible_psrp_certificate_key_pem": "/k"})
    assert "certificate_pem" not in wsman_kwargs(conn) and "certificate_key_pem" not in wsman_kwargs(conn)


def test_pypsrp_accepts_every_keyword(tmp_path: Path) -> None:
    # Building WSMan and RunspacePool sends nothing: this only checks that pypsrp takes each keyword
    # where it belongs, so a renamed parameter fails here and not on a customer's server.
    every = {
        "ansible_psrp_path": "/custom", "ansible_psrp_max_envelope_size": 512000,
        "ansible_psrp_reconnection_retries": 2, "ansible_psrp_reconnection_backoff": 1.5,
        "ansible_psrp_proxy": "http://proxy.corp:3128", "ansible_psrp_ignore_proxy": True,
        "ansible_psrp_negotiate_delegate": True, "ansible_psrp_negotiate_hostname_override": "web01.corp",
        "ansible_psrp_negotiate_send_cbt": False, "ansible_psrp_negotiate_service": "HTTP",
        "ansible_psrp_configuration_name": "DsrPrep",
    }
    conn = _connection(tmp_path, every)
    wsman = WSMan(**wsman_kwargs(conn))
    transport = wsman.transport
    assert transport.endpoint == "http://10.0.0.11:5985/custom" == conn.url
    assert wsman.max_envelope_size == 512000
    assert (transport.reconnection_retries, transport.reconnection_backoff) == (2, 1.5)
    assert (transport.proxy, transport.no_proxy) == ("http://proxy.corp:3128", True)
    negotiate = (transport.negotiate_delegate, transport.negotiate_hostname_override,
                 transport.negotiate_send_cbt, transport.negotiate_service)
    assert negotiate == (True, "web01.corp", False, "HTTP")
    pool = RunspacePool(wsman, **pool_kwargs(conn))
    assert pool.shell.resource_uri == "http://schemas.microsoft.com/powershell/DsrPrep"


# --- closing pipelines ------------------------------------------------------------------------------


class FakePipeline:
    """Records what the transport does to a pipeline (pypsrp's PowerShell shape: the pool's shell
    takes the Ctrl+C signal); optionally fails like a lost connection. The host assigned the
    CommandId (WinRM 2.0): the signal must name it, not the id the client proposed."""

    def __init__(self, state: int, *, stop_fails: bool = False, close_fails: bool = False) -> None:
        self.state = state
        self.id = "PROPOSED-ID"
        self._command_id = "server-id"
        self.calls: list[str] = []
        self.signalled: list[str] = []
        self._stop_fails = stop_fails
        self._close_fails = close_fails
        self.runspace_pool = SimpleNamespace(shell=SimpleNamespace(signal=self._signal), pipelines={self.id: self})

    def _signal(self, code: str, command_id: str) -> None:
        self.calls.append("stop")
        self.signalled.append(command_id)
        if self._stop_fails:
            raise requests.exceptions.ConnectionError("Connection reset by peer")

    def close(self) -> None:
        self.calls.append("close")
        if self._close_fails:
            raise WSManFaultError(2150858843, "WIN-1", "The request is not valid", None, None, None)


@pytest.mark.parametrize(
    ("state", "calls"),
    [
        (PSInvocationState.COMPLETED, ["close"]),
        (PSInvocationState.FAILED, ["close"]),
        (PSInvocationState.STOPPED, ["close"]),  # stopped at its deadline
        (PSInvocationState.RUNNING, ["stop", "close"]),  # a poll failed mid-run
    ],
)
def test_every_pipeline_is_closed(state: int, calls: list[str]) -> None:
    pipeline = FakePipeline(state)
    _close_pipeline(pipeline)
    assert pipeline.calls == calls
    assert pipeline.signalled == (["SERVER-ID"] if "stop" in calls else [])


def test_a_failure_to_close_is_tolerated_and_returned() -> None:
    pipeline = FakePipeline(PSInvocationState.RUNNING, stop_fails=True, close_fails=True)
    failure = _close_pipeline(pipeline)  # raises nothing: the caller judges what it means
    assert pipeline.calls == ["stop", "close"]
    assert isinstance(failure, WSManFaultError) and failure.code == 2150858843
    assert _close_pipeline(FakePipeline(PSInvocationState.COMPLETED)) is None


def test_run_result_carries_non_terminating_errors() -> None:
    result = RunResult(output=[{"ok": True}], errors=["Write-Error: disk almost full"])
    assert result.errors == ["Write-Error: disk almost full"]
    assert RunResult(output=[]).errors == []


def test_a_pool_opened_without_the_hosts_capability_is_a_lost_connection_retried_on_a_fresh_session() -> None:
    # What pypsrp leaves after resending an opening Receive whose answer (the capability) was lost.
    opened = SimpleNamespace(state=RunspacePoolState.OPENED, protocol_version="2.3")
    check_opened(opened)
    for pool in (SimpleNamespace(state=RunspacePoolState.OPENED, protocol_version=None),
                 SimpleNamespace(state=RunspacePoolState.BROKEN, protocol_version="2.1")):
        with pytest.raises(ConnectionLost, match="without the host's session capability") as caught:
            check_opened(pool)
        assert caught.value.retryable
