"""A shell a lost connection kept a session from deleting is logged with its id (the host's idle
timeout ends it); a session closed over a live connection deletes its shell."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ConnectionLost
from orchestrator.inventory import load_inventory
from orchestrator.retry import NO_RETRY
from orchestrator.rolloutlog import Event, RunLog, read_host_log
from orchestrator.runner import HostConnection
from orchestrator.transport import RunResult


@dataclass
class Host:
    """What the fake sessions of one host share: shells that exist on it."""

    shells: set[str] = field(default_factory=set)
    opened: int = 0


@dataclass
class FakeSession:
    host: Host
    lose_on_close: bool = False
    shell: str | None = None

    def open(self) -> None:
        self.host.opened += 1
        self.shell = f"shell-{self.host.opened}"
        self.host.shells.add(self.shell)

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        raise ConnectionLost("connection reset")

    def close(self) -> list[str]:
        if self.shell is None:
            return []
        if self.lose_on_close:
            return [self.shell]  # the Delete could not be sent
        self.host.shells.discard(self.shell)
        return []


@pytest.fixture
def inventory(tmp_path: Path) -> Any:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    web1:\n      ansible_host: 10.0.0.11\n      ansible_password: x\n"
                    "      dsr_vips: [10.0.0.100]\n", encoding="utf-8")
    return load_inventory(path, env={})


def test_a_shell_left_by_a_lost_connection_is_logged(inventory: Any, tmp_path: Path) -> None:
    host = Host()
    sessions = iter([FakeSession(host, lose_on_close=True), FakeSession(host)])

    def factory(_conn: Any) -> FakeSession:
        return next(sessions)

    log = RunLog.create(tmp_path / "runs")
    conn = HostConnection(inventory.hosts[0], session_factory=factory, logger=log.host_logger("web1"),
                          policy=NO_RETRY, sleep=lambda _s: None)
    conn.session()
    conn.close()  # the connection was gone: shell-1 stays on the host
    assert host.shells == {"shell-1"}
    conn.session()
    conn.close()  # a live connection: its shell is deleted
    assert host.shells == {"shell-1"}
    log.close()
    (left,) = [e for e in read_host_log(log.hosts_dir / "web1.jsonl").events if e["event"] == Event.SHELLS_LEFT]
    assert left["shell_ids"] == ["shell-1"]
