"""`dsrprep check` end to end against the lab: a rolled-out fleet is compliant in every format; a VIP
binding removed behind dsrprep's back is drift in every format; a host that stops answering cannot be
checked. The check changes nothing on any host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner, Result

from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet
from tests.clijson import cli

pytestmark = pytest.mark.lab


def run_check(inventory: Path, runs: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["check", str(inventory), "--runs-dir", str(runs), *args])


def every_format(inventory: Path, runs: Path, textfile: Path) -> dict[str, tuple[int, str]]:
    """Each format's exit code and output (prometheus: the file --output wrote)."""
    outputs = {fmt: run_check(inventory, runs, "--format", fmt) for fmt in ("table", "json", "nagios")}
    written = run_check(inventory, runs, "--format", "prometheus", "--output", str(textfile))
    assert written.stdout == "", written.output
    return {**{fmt: (r.exit_code, r.stdout) for fmt, r in outputs.items()},
            "prometheus": (written.exit_code, textfile.read_text())}


def metrics(text: str) -> dict[str, dict[str, float]]:
    """metric -> {host (or state, or ""): value}."""
    found: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.labels.get("host") or sample.labels.get("state") or ""
            found.setdefault(sample.name, {})[key] = sample.value
    return found


def applied(fleet: LabFleet) -> dict[str, dict[str, int]]:
    """Per host, the templates other than reading ones it ran."""
    return {h.name: {k: v for k, v in h.counters.steps.items() if k not in ("facts", "preflight")} for h in fleet}


def test_check_sees_a_removed_binding_and_a_silent_host(tmp_path: Path) -> None:
    with LabFleet.build(3, seed=4, profile="2016") as fleet:
        inventory, runs, textfile = tmp_path / "lab.yml", tmp_path / "runs", tmp_path / "dsrprep.prom"
        victim, silent = fleet.hosts[1], fleet.hosts[2]
        # A site bound to the real IP (not All Unassigned): the rollout binds the VIP too.
        victim.model.sites[0].bindings = [("http", f"{victim.model.rip}:80:")]
        fleet.write_inventory(inventory)
        names = sorted(h.name for h in fleet)
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(runs))
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        sent = applied(fleet)

        seen = every_format(inventory, runs, textfile)
        assert {fmt: code for fmt, (code, _) in seen.items()} == {"table": 0, "json": 0, "nagios": 0, "prometheus": 0}
        assert json.loads(seen["json"][1])["counts"] == {"compliant": 3, "drifted": 0, "unchecked": 0}
        assert seen["nagios"][1].startswith("DSRPREP OK - 3 hosts compliant | compliant=3;;;0;3 drifted=0")
        assert metrics(seen["prometheus"][1])["dsrprep_host_compliant"] == dict.fromkeys(names, 1)
        assert seen["table"][1].count("compliant") >= 3

        assert victim.model.remove_bindings(fleet.vip) == 1
        seen = every_format(inventory, runs, textfile)
        assert {fmt: code for fmt, (code, _) in seen.items()} == {"table": 5, "json": 5, "nagios": 2, "prometheus": 5}
        doc = json.loads(seen["json"][1])
        assert doc["counts"] == {"compliant": 2, "drifted": 1, "unchecked": 0} and doc["exit_code"] == 5
        assert doc["hosts"][victim.name]["state"] == "drifted"
        assert [p["step"] for p in doc["hosts"][victim.name]["pending"]] == ["iis_binding"]
        assert seen["nagios"][1].startswith(f"DSRPREP CRITICAL - 1 of 3 hosts drifted: {victim.name} (iis_binding)")
        found = metrics(seen["prometheus"][1])
        assert found["dsrprep_host_compliant"] == {n: 0 if n == victim.name else 1 for n in names}
        assert found["dsrprep_host_actions_pending"] == {n: 1 if n == victim.name else 0 for n in names}
        assert found["dsrprep_check_hosts"] == {"compliant": 2, "drifted": 1, "unchecked": 0}
        table = next(line for line in seen["table"][1].splitlines() if victim.name in line)
        assert "drifted" in table and "iis_binding" in table
        assert applied(fleet) == sent, "check ran a step that changes a host"

        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(runs))
        assert code == 0 and doc["hosts"][victim.name]["status"] == "changed"
        assert silent.server is not None
        silent.server.stop()  # the host stops answering: its connections are refused
        seen = every_format(inventory, runs, textfile)
        assert {fmt: code for fmt, (code, _) in seen.items()} == {"table": 6, "json": 6, "nagios": 1, "prometheus": 6}
        doc = json.loads(seen["json"][1])
        assert doc["hosts"][silent.name]["state"] == "unchecked"
        assert "Unreachable" in doc["hosts"][silent.name]["reason"]
        assert seen["nagios"][1].startswith(
            f"DSRPREP WARNING - 1 of 3 hosts cannot be checked: {silent.name} (Unreachable); 2 hosts compliant")
        found = metrics(seen["prometheus"][1])
        assert found["dsrprep_host_checked"] == {n: 0 if n == silent.name else 1 for n in names}
        assert silent.name not in found["dsrprep_host_actions_pending"]
        checks = [json.loads((r / "run.json").read_text()) for r in runs.glob("2*")]
        assert sum(c["command"] == "check" for c in checks) == 12
