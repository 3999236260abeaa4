"""Lab fleets for the tests that talk to one: `dsrprep lab serve` in a child process, or one host
served in this process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator.inventory import Connection, load_inventory
from orchestrator.lab.fleet import LabFleet, LabHost


@contextmanager
def lab_serve(*args: str, inventory: Path) -> Iterator[subprocess.Popen[str]]:
    """`dsrprep lab serve ARGS --inventory-out INVENTORY`, once its inventory is written; killed at the
    end if the test did not stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "lab", "serve", *args, "--inventory-out", str(inventory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not inventory.exists():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the fleet did not write its inventory"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@contextmanager
def one_host(profile: str, *, seed: int, inventory: Path) -> Iterator[tuple[LabHost, Connection]]:
    """A one-host fleet of `profile` served in this process, and the connection its inventory (written
    to `inventory`) gives; stopped at the end."""
    fleet = LabFleet.build(1, seed=seed, profile=profile)
    fleet.start()
    try:
        fleet.write_inventory(inventory)
        (handle,) = fleet.hosts
        yield handle, load_inventory(inventory).host(handle.name).connection
    finally:
        fleet.stop()
