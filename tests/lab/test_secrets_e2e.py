"""A password never leaves dsrprep: whatever its source (the inventory, an env: reference, a
lookup('env'), DSRPREP_PASSWORD, --ask-pass, a URL in ansible_host), it is in no byte of stdout, of
stderr (with --verbose, which shows the transport's own debug log) or of any file under the runs
folder, nor when the host refuses it (401). Each case is a real dsrprep process against lab hosts."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LAB_USER, LabFleet

pytestmark = pytest.mark.lab

SECRET = "Zq7!dsr#Pw-4wK"  # distinctive, and different once URL-quoted


def forms(secret: str) -> list[bytes]:
    """Every way the password could be written out: as is, URL-quoted, UTF-16 (NTLM's encoding),
    and inside a Basic authorization header."""
    return [secret.encode(), urllib.parse.quote(secret, safe="").encode(), secret.encode("utf-16-le"),
            base64.b64encode(f"{LAB_USER}:{secret}".encode())]


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    with LabFleet(build_fleet(2, seed=11, profile="2016", password=SECRET), password=SECRET) as running:
        yield running


def inventory(fleet: LabFleet, path: Path, password: str | None, *, url: bool = False) -> Path:
    data: dict[str, Any] = fleet.inventory()
    variables = data["all"]["vars"]
    if password is None:
        del variables["ansible_password"]
    else:
        variables["ansible_password"] = password
    if url:
        quoted = urllib.parse.quote(SECRET, safe="")
        for group in data["all"]["children"].values():
            for entry in group["hosts"].values():
                entry["ansible_host"] = f"http://{LAB_USER}:{quoted}@{entry['ansible_host']}:{entry['ansible_port']}/wsman"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def dsrprep(*args: str, env: dict[str, str] | None = None,
            stdin: str | None = None) -> subprocess.CompletedProcess[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DSRPREP_")}
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], input=stdin.encode() if stdin else None,
                          capture_output=True, timeout=180, check=False, env={**environ, **(env or {})},
                          start_new_session=True)  # no terminal: --ask-pass reads stdin


def leaks(done: subprocess.CompletedProcess[bytes], runs: Path, secret: str) -> list[str]:
    found = [f"{name}: {form!r}" for name, data in (("stdout", done.stdout), ("stderr", done.stderr))
             for form in forms(secret) if form in data]
    for path in sorted(runs.rglob("*")) if runs.exists() else []:
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {form!r}" for form in forms(secret) if form in data]
    return found


CASES = {
    # case: (inventory password, environment, --ask-pass input, the password in an ansible_host URL)
    "inventory": (SECRET, {}, None, False),
    "env-reference": ("env:WEB_PASSWORD", {"WEB_PASSWORD": SECRET}, None, False),
    "env-lookup": ("{{ lookup('env', 'WEB_PASSWORD') }}", {"WEB_PASSWORD": SECRET}, None, False),
    "DSRPREP_PASSWORD": (None, {"DSRPREP_PASSWORD": SECRET}, None, False),
    "ask-pass": (None, {}, SECRET + "\n", False),
    "ansible_host-url": (None, {}, None, True),  # refused (exit 2): ansible_host names a host only
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_password_is_in_no_output_and_no_file(fleet: LabFleet, tmp_path: Path, case: str) -> None:
    password, env, typed, url = CASES[case]
    path = inventory(fleet, tmp_path / "lab.yml", password, url=url)
    runs = tmp_path / "runs"
    ask = ["--ask-pass"] if typed else []
    for args in (["inventory", "check", str(path)], ["inventory", "check", "--json", str(path)],
                 ["--verbose", "rollout", str(path), "--yes", "--runs-dir", str(runs), *ask],
                 ["--verbose", "facts", str(path), "--json", "--runs-dir", str(runs), *ask]):
        done = dsrprep(*args, env=env, stdin=typed)
        assert done.returncode == (2 if url else 0), done.stderr[-3000:]
        assert leaks(done, runs, SECRET) == [], args
        if args[0] == "--verbose" and not url:
            assert b"pypsrp" in done.stderr and LAB_USER.encode() in done.stderr  # the debug log was shown
    if url:
        assert b"ansible_host" in done.stderr and b"is a URL" in done.stderr and not runs.exists()
    else:
        assert [p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_a_refused_password_is_in_no_output_and_no_file(fleet: LabFleet, tmp_path: Path) -> None:
    wrong = "Wr0ng!dsr#Pw-9xQ"
    path = inventory(fleet, tmp_path / "lab.yml", wrong)
    runs = tmp_path / "runs"
    done = dsrprep("--verbose", "rollout", str(path), "--yes", "--json", "--runs-dir", str(runs))
    assert done.returncode == 3, done.stderr[-3000:]  # the preflight gate: every host refused us
    result = json.loads(done.stdout)
    assert {h["status"] for h in result["hosts"].values()} == {"failed"}
    assert {h["error"]["class"] for h in result["hosts"].values()} == {"AuthError"}
    assert all(h.counters.auth_failures for h in fleet.hosts)
    assert leaks(done, runs, wrong) == []
