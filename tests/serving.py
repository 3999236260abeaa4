"""`dsrprep lab serve` in a child process, for the tests that talk to a fleet served by another process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
