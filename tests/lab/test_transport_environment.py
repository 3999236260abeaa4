"""The environment's proxy settings, through the real pypsrp client: they apply to a session as
requests applies them (a proxy for the scheme, NO_PROXY to go around it), and they are read when the
session opens, not again for each of its requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import DsrError
from orchestrator.inventory import Connection
from orchestrator.lab.fleet import LabHost
from orchestrator.transport import PsrpSession
from tests.serving import one_host

pytestmark = pytest.mark.lab

FACTS = "# dsrprep-step: facts\n"
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                   "no_proxy", "NO_PROXY")


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LabHost, Connection]]:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with one_host("2016", seed=2, inventory=tmp_path / "lab.yml") as served:
        yield served


def _dead_proxy() -> str:
    """A proxy address nothing listens on: a request sent through it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_a_proxy_named_by_the_environment_carries_the_session(host: tuple[LabHost, Connection],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    handle, conn = host
    monkeypatch.setenv("http_proxy", _dead_proxy())
    session = PsrpSession(conn)
    with pytest.raises(DsrError):
        session.open()
    session.close()
    assert handle.counters.http_requests == 0  # every request went to the proxy


def test_no_proxy_goes_around_it(host: tuple[LabHost, Connection], monkeypatch: pytest.MonkeyPatch) -> None:
    handle, conn = host
    monkeypatch.setenv("http_proxy", _dead_proxy())
    monkeypatch.setenv("no_proxy", "127.0.0.0/8")
    session = PsrpSession(conn)
    try:
        assert session.run(FACTS, {}, timeout=20).output
    finally:
        session.close()
    assert handle.counters.http_requests > 0


def test_the_environment_is_read_when_the_session_opens(host: tuple[LabHost, Connection],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    handle, conn = host
    session = PsrpSession(conn)
    try:
        session.open()
        monkeypatch.setenv("http_proxy", _dead_proxy())  # too late for this session
        assert session.run(FACTS, {}, timeout=20).output
        assert session.run(FACTS, {}, timeout=20).output
    finally:
        session.close()
    assert handle.counters.shells_open == 0
