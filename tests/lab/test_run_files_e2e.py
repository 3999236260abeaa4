"""What dsrprep writes about hosts is readable by its owner only, whatever the umask: a real
`dsrprep rollout` and `dsrprep facts --capture` against lab hosts, started under umask 0o000 and
0o022, leave folders 0700 and files 0600 (runs folder, run folder, hosts folder, run.json, host logs,
lock folders and files, captures)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.lab.fleet import LabFleet
from orchestrator.locks import acquire, host_lock_path, lock_dir

pytestmark = pytest.mark.lab


def modes(root: Path) -> dict[str, int]:
    """Every folder and file under `root` (itself included) and its permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def dsrprep(umask: int, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True,
                          timeout=180, check=False, umask=umask)


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_run_folders_are_0700_and_files_0600(tmp_path: Path, umask: int) -> None:
    with LabFleet.build(2, seed=3, profile="2012") as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        runs, captures = tmp_path / "new" / "runs", tmp_path / "captures"
        done = dsrprep(umask, "rollout", str(inventory), "--yes", "--runs-dir", str(runs))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        done = dsrprep(umask, "facts", str(inventory), "--runs-dir", str(runs), "--capture", str(captures))
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    written = modes(runs)
    names = {Path(p).name for p in written}
    assert {"hosts", "run.json", ".locks", "run.lock"} <= names and any(n.endswith(".jsonl") for n in names)
    captured = modes(captures)
    assert any(p.endswith(".json") for p in captured)
    for root, found in ((runs, written), (captures, captured), (runs.parent, {".": modes(runs.parent)["."]})):
        for path, mode in found.items():
            wanted = 0o700 if (root / path).is_dir() else 0o600
            assert mode == wanted, f"{root / path}: {oct(mode)} under umask {oct(umask)}"


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_host_locks_are_0600_while_held(tmp_path: Path, umask: int) -> None:
    before = os.umask(umask)
    try:
        with acquire(tmp_path / "runs", run_id="r1", command="rollout", hosts=["web01"]):
            lock = host_lock_path(tmp_path / "runs", "web01")
            assert stat.S_IMODE(lock.stat().st_mode) == 0o600
            for folder in (tmp_path / "runs", lock_dir(tmp_path / "runs"), lock.parent):
                assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        os.umask(before)
