"""orchestrator.fdlimit: the soft open-files limit is raised to the hard one when a fleet needs
more, and a need above the hard limit is an error saying what to raise. In a child process, whose
limits the test may lower without touching the test run's own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


RUN_OVER_THE_LIMIT = """
import resource, sys
from typer.testing import CliRunner
from orchestrator.cli import app
resource.setrlimit(resource.RLIMIT_NOFILE, (100, 200))
result = CliRunner().invoke(app, sys.argv[1:], env={"DSRPREP_PASSWORD": "x"})
print(result.exit_code)
print(result.output)
"""


def test_a_run_the_hard_limit_cannot_hold_is_exit_2_before_any_host_is_reached(tmp_path: Path) -> None:
    # 150 hosts' log files and 2 x 32 connections: more than the hard limit of 200. The addresses are
    # TEST-NET ones: the run must stop before it tries them, and leave no run folder of hosts behind.
    hosts = "".join(f"    web{i:03d}:\n      ansible_host: 192.0.2.{i}\n" for i in range(1, 151))
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  vars:\n    ansible_user: admin\n    dsr_vips: [192.0.2.250]\n  hosts:\n" + hosts)
    runs = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", RUN_OVER_THE_LIMIT, "facts", str(inventory), "--runs-dir", str(runs)],
                          capture_output=True, text=True, check=True, timeout=60)
    code, *output = done.stdout.splitlines()
    assert code == "2", done.stdout
    assert "150 hosts with --forks 32 need about 278 open files" in " ".join(output)
    assert "Traceback" not in done.stdout
    assert not list(runs.glob("*/hosts/*"))
