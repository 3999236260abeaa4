"""The README's first quick-start command: `dsrprep demo` shows the waves, rolls out canary first and
then in waves with a gate after each, shows that a second rollout changes nothing, and exits 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.rolloutlog import read_host_log, read_run

pytestmark = pytest.mark.lab


def test_demo_runs_a_canary_then_fleet_rollout_and_an_idempotent_second_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--hosts", "7", "--seed", "7", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "1. rollout --check" in text and "2. rollout" in text and "3. rollout again" in text
    assert "gate after canary: go on" in text and "gate after wave 1: go on" in text
    assert text.strip().endswith("lab fleet stopped.")
    runs = sorted((r for r in tmp_path.iterdir() if not r.name.startswith(".")), key=lambda r: read_run(r)["started"])
    records = [read_run(r) for r in runs]
    assert [r["command"] for r in records] == ["rollout", "rollout", "rollout"]
    assert [r["options"]["check"] for r in records] == [True, False, False]
    assert records[0]["summary"] == {"changes": 7}
    assert [w["name"] for w in records[1]["waves"]][:2] == ["canary", "wave 1"]
    assert records[1]["waves"] == records[0]["waves"]  # the same placement, decided the same way
    assert records[1]["ending"] == "finished" and set(records[1]["summary"]) <= {"changed", "ok"}
    assert all(g["go_on"] for g in records[1]["gates"])
    assert records[2]["summary"] == {"ok": 7} and records[2]["waves"] == []
    # Every line of a host's log says which wave it belongs to.
    wave_of = {h: w["name"] for w in records[1]["waves"] for h in w["hosts"]}
    for host, wave in wave_of.items():
        lines = read_host_log(runs[1] / "hosts" / f"{host}.jsonl").events
        assert {e["wave"] for e in lines} == {"preflight", wave}
