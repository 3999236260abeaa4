"""orchestrator.fdlimit: the soft open-files limit is raised to the hard one when a fleet needs
more, and a need above the hard limit is an error saying what to raise. In a child process, whose
limits the test may lower without touching the test run's own."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import resource, sys
from orchestrator.fdlimit import OpenFilesError, ensure_open_files
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))
print(ensure_open_files(100, "x"), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
print(ensure_open_files(400, "x"), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
try:
    ensure_open_files(600, "600 lab hosts")
except OpenFilesError as exc:
    print(exc)
"""


def test_the_soft_limit_rises_to_the_hard_one_only_when_needed_and_beyond_it_is_an_error() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    low, raised, error = done.stdout.splitlines()
    assert low == "256 256"
    assert raised == "512 512"
    assert error.startswith("600 lab hosts need about 600 open files, and this process may open at most 512")
    assert "ulimit -Hn" in error
