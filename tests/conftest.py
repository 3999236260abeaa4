"""The shell audit every test that starts a lab host goes through, and hypothesis without deadlines.

Each lab server counts the shells (runspace pools) created on it and the shells deleted, whatever
deleted them: the client's Delete, the idle timeout or a service restart. At the end of every test,
every lab server the test used must show created minus deleted equal to zero: dsrprep deletes each
shell it opens, or, when the connection is gone, leaves it to the host's idle timeout. A test that
loses connections on purpose lets that timeout pass (tests/shells.py) while its hosts run; the audit
waits for a short one itself. A test of the lab that stops a host holding a shell on purpose says so
with `@pytest.mark.shells_left`.

hypothesis's per-example deadline is a timed assertion: on a shared, loaded machine an example that
takes 200 ms fails a test for nothing it checks. Every property test runs without one.

The machine's own Kerberos configuration does not steer the tests: with pyspnego's Kerberos extra
installed, negotiate auth first asks the default realm's KDCs for a ticket (Debian's krb5-config
names ATHENA.MIT.EDU: half a second per session here, longer where DNS answers slowly), so every test
runs with an empty krb5.conf unless it makes a realm of its own (tests/kdc.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from orchestrator.lab.server import LabServer, watching_starts
from tests.shells import EXPIRY_WAIT, wait_for_expiry

settings.register_profile("dsrprep", deadline=None)
settings.load_profile("dsrprep")

_started: list[LabServer] = []


@pytest.fixture(scope="session", autouse=True)
def _no_machine_kerberos_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    empty = tmp_path_factory.mktemp("krb5") / "krb5.conf"
    empty.write_text("", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KRB5_CONFIG", str(empty))
        yield


@pytest.fixture(scope="session", autouse=True)
def _watch_lab_servers() -> Iterator[None]:
    with watching_starts(_started.append):
        yield


def _left_open(server: LabServer) -> int:
    if server.running and server.winrm.idle_timeout_ms / 1000 < EXPIRY_WAIT:
        return wait_for_expiry(server)
    return server.counters.shells_open


@pytest.fixture(autouse=True)
def lab_shells_deleted(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test when a lab server it used still holds a shell at its end."""
    first = len(_started)
    yield
    if request.node.get_closest_marker("shells_left"):
        return
    used = _started[first:] + [s for s in _started[:first] if s.running]
    leaks = []
    for server in dict.fromkeys(used):
        left = _left_open(server)
        if left:
            c = server.counters
            leaks.append(
                f"{server.hostname} ({server.address}): {left} shell(s) left; created {c.shells_created}, "
                f"deleted {c.shells_deleted} {dict(c.shell_deletes)}"
            )
    if leaks:
        pytest.fail("lab shells not deleted:\n  " + "\n  ".join(leaks), pytrace=False)
