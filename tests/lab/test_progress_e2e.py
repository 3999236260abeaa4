"""What a rollout prints off a terminal (a CI log), through real pypsrp against the lab: one plain line
per host event, the results table in wave order, and a summary with failures first; `--quiet` prints
only the summary; `--json` keeps stdout one JSON document and puts the lines on stderr."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet
from orchestrator.rolloutlog import read_run

pytestmark = pytest.mark.lab

LINE = re.compile(r"^(\d\d:\d\d:\d\d) (\S+): (.+)$")
STEP_STARTED = re.compile(r"step (\S+) started(?: \(attempt \d+\))?")
STEP_ENDED = re.compile(r"step (\S+) (?:ok|changed|failed) in \d+\.\d s(?:: .+)?")
BAD_CREDS = "web02"
UNREACHABLE = "web04"


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    fleet = LabFleet.build(5, seed=5, profile="mixed")
    for handle in fleet:
        if handle.model.os_family == "2008":
            handle.model.hotfixes.add("KB975808")
    fleet.host(BAD_CREDS).model.password = "Not-The-Inventory-Password1"
    fleet.host(UNREACHABLE).model.faults.unreachable = True
    with fleet:
        yield fleet


def progress_lines(text: str) -> dict[str, list[str]]:
    """Each host's progress lines, in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            found.setdefault(match.group(2), []).append(match.group(3))
    return found


def test_a_rollout_off_a_terminal_prints_one_line_per_host_event_and_a_summary(fleet: LabFleet,
                                                                               tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    fleet.write_inventory(inventory)
    done = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--waves", "100%", "--max-failures", "1",
                                    "--max-unreachable", "1", "--runs-dir", str(tmp_path / "runs")])
    assert done.exit_code == 1, done.output
    text = done.stdout
    assert "\x1b[" not in text
    run_dir = next(p for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    outcomes = read_run(run_dir)["outcomes"]
    assert outcomes[BAD_CREDS] == "failed" and outcomes[UNREACHABLE] == "unreachable"
    lines = progress_lines(text)
    assert set(lines) == {h.name for h in fleet}
    for host, said in lines.items():
        assert said[0] == "started plan (preflight)", (host, said)
        assert said[-1].split()[:2] == ["done", outcomes[host]], (host, said)
        started = [m.group(1) for s in said if (m := STEP_STARTED.fullmatch(s))]
        ended = [m.group(1) for s in said if (m := STEP_ENDED.fullmatch(s))]
        assert len(started) + len(ended) == sum(s.startswith("step ") for s in said), (host, said)
        assert started == ended, (host, "\n".join(said))  # every step that starts is seen to end, in order
        if outcomes[host] == "changed":
            assert any(s.startswith("started rollout (") for s in said)
            assert "step loopback started" in said and any(s.startswith("step loopback changed in ") for s in said)
    assert any("attempt 1 failed, retrying: Unreachable" in s for s in lines[UNREACHABLE])

    # The table lists the hosts wave by wave (one wave here), then the ones no wave held, by name.
    rows = [line.split("│")[1:3] for line in text.splitlines() if line.startswith("│") and "web" in line]
    order = [host.strip() for _, host in rows if host.strip()]
    changed = sorted(h for h, s in outcomes.items() if s == "changed")
    assert order == [*changed, BAD_CREDS, UNREACHABLE]

    # The summary comes last: counts troubles first, each failed / unreachable host with its step and
    # reason, the times, the run folder.
    tail = text[text.index("rollout finished:"):].splitlines()
    assert tail[0] == f"rollout finished: failed 1, unreachable 1, changed {len(changed)} (5 hosts)"
    assert re.fullmatch(rf"\s+failed\s+{BAD_CREDS}\s+at facts: AuthError: .+", tail[1]), tail[1]
    assert re.fullmatch(rf"\s+unreachable\s+{UNREACHABLE}\s+at connect: Unreachable: .+", tail[2]), tail[2]
    assert re.fullmatch(r"time: \d+\.\d s; slowest host web\d\d \(\d+\.\d s\)", tail[3]), tail[3]
    assert tail[4] == f"run folder: {run_dir}"


def test_quiet_prints_only_the_summary_and_json_keeps_stdout_one_document(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    fleet.write_inventory(inventory)
    runs = str(tmp_path / "runs")
    healthy = ",".join(h.name for h in fleet if h.name not in (BAD_CREDS, UNREACHABLE))
    quiet = CliRunner().invoke(app, ["plan", str(inventory), "--limit", healthy, "--quiet", "--runs-dir", runs])
    assert quiet.exit_code == 0, quiet.output
    printed = quiet.stdout.splitlines()
    assert [line.split(":")[0] for line in printed] == ["plan", "time", "run folder"], printed
    assert not progress_lines(quiet.output)

    as_json = CliRunner().invoke(app, ["facts", str(inventory), "--limit", healthy, "--json", "--runs-dir", runs])
    assert as_json.exit_code == 0, as_json.output
    doc = json.loads(as_json.stdout)
    assert set(doc["hosts"]) == set(healthy.split(","))
    said = progress_lines(as_json.stderr)
    assert set(said) == set(healthy.split(","))
    assert all(s[0] == "started facts" and s[-1].startswith("done ok in ") for s in said.values())
