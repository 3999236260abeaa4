"""Every client exception leaves transport.py as one of dsrprep's error classes."""

from __future__ import annotations

import pytest
import requests
from pypsrp.complex_objects import GenericComplexObject
from pypsrp.exceptions import AuthenticationError, InvalidPSRPOperation, WinRMTransportError, WSManFaultError
from spnego.exceptions import InvalidCredentialError

from orchestrator.errors import (
    AuthError,
    ConnectionLost,
    ProtocolError,
    RemoteFault,
    ScriptError,
    Timeout,
    Unreachable,
)
from orchestrator.transport import map_error, to_plain


@pytest.mark.parametrize(
    ("exc", "phase", "expected"),
    [
        (AuthenticationError("401"), "connect", AuthError),
        (InvalidCredentialError(context_msg="no creds"), "connect", AuthError),
        (requests.exceptions.ConnectionError("Connection refused"), "connect", Unreachable),
        (requests.exceptions.ConnectionError("Connection reset by peer"), "run", ConnectionLost),
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
