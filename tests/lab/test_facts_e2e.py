"""`dsrprep facts` end to end: the CLI, real pypsrp, NTLM with message encryption, a 20-host lab fleet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator import oscaps
from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import read_host_log, read_run

pytestmark = pytest.mark.lab

BAD_CREDS = "web03"
UNREACHABLE = "web05"


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    fleet = LabFleet.build(20, seed=20, profile="mixed")
    fleet.host(BAD_CREDS).model.password = "Not-The-Inventory-Password1"
    fleet.host(UNREACHABLE).model.faults.unreachable = True
    with fleet:
        yield fleet


@pytest.fixture(scope="module")
def result(fleet: LabFleet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("facts")
    inventory = tmp / "lab.yml"
    fleet.write_inventory(inventory)
    runs = tmp / "runs"
    invoked = CliRunner().invoke(app, ["facts", str(inventory), "--json", "--runs-dir", str(runs)])
    assert invoked.exit_code == 1, invoked.output
    doc: dict[str, Any] = json.loads(invoked.stdout)
    doc["_runs"] = runs
    return doc


def test_fleet_has_every_os_family(fleet: LabFleet) -> None:
    assert {h.model.os_family for h in fleet} == set(oscaps.families())


def test_every_healthy_host_reports_its_own_facts(fleet: LabFleet, result: dict[str, Any]) -> None:
    hosts = result["hosts"]
    assert set(hosts) == {h.name for h in fleet}
    for handle in fleet:
        if handle.name in (BAD_CREDS, UNREACHABLE):
            continue
        entry = hosts[handle.name]
        model = handle.model
        assert entry["status"] == "ok", (handle.name, entry)
        facts = entry["facts"]
        assert facts["computer_name"] == model.name
        assert facts["os"]["family"] == model.os_family
        assert facts["os"]["version"] == model.version
        assert facts["powershell_version"] == model.powershell_version
        assert facts["elevated"] is model.elevated
        by_pnp = {a["pnp_device_id"]: a for a in facts["adapters"]}
        assert set(by_pnp) == {n.pnp_device_id for n in model.nics}
        for nic in model.nics:
            got = by_pnp[nic.pnp_device_id]
            assert got["is_loopback"] is (nic.service_name == "msloop")
            assert [a["address"] for a in got["addresses"]] == [a for a, _ in nic.addresses]
            assert got["interface_index"] == nic.interface_index
            if model.os_family != "2003":
                weak = facts["weak_host_v4"][str(nic.interface_index)]
                assert weak == {"send": nic.weak_host_send, "receive": nic.weak_host_receive}
        assert facts["iis"]["version"] == model.iis_version
        assert [s["name"] for s in facts["iis"]["sites"]] == [s.name for s in model.sites]


def test_wrong_credentials_is_an_authentication_failure(fleet: LabFleet, result: dict[str, Any]) -> None:
    entry = result["hosts"][BAD_CREDS]
    assert entry["status"] == "failed"
    assert entry["error"]["class"] == "AuthError"
    assert entry["attempts"] == 1  # never retried
    assert fleet.host(BAD_CREDS).counters.auth_failures >= 1


def test_unreachable_host_is_unreachable_after_retries(result: dict[str, Any]) -> None:
    entry = result["hosts"][UNREACHABLE]
    assert entry["status"] == "unreachable"
    assert entry["error"]["class"] == "Unreachable"
    assert entry["attempts"] == RetryPolicy().silent  # refused every time: given up after that many in a row


def test_summary_and_run_log(fleet: LabFleet, result: dict[str, Any]) -> None:
    assert result["summary"] == {"ok": 18, "failed": 1, "unreachable": 1}
    run_dir = Path(result["run_dir"])
    assert run_dir.parent == result["_runs"]
    run = read_run(run_dir)
    assert run["run_id"] == result["run_id"] and run["state"] == "finished"
    for handle in fleet:
        log = read_host_log(run_dir / "hosts" / f"{handle.name}.jsonl")
        assert log.torn_lines == 0
        events = [e["event"] for e in log.events]
        assert events[:2] == ["host_start", "facts_start"] and events[-1] == "host_done"
        assert all(e["run_id"] == result["run_id"] and e["host"] == handle.name for e in log.events)
    text = "".join(p.read_text() for p in (run_dir / "hosts").iterdir())
    assert fleet.password not in text


def test_each_host_used_one_pool_for_its_facts(fleet: LabFleet, result: dict[str, Any]) -> None:
    for handle in fleet:
        if handle.name in (BAD_CREDS, UNREACHABLE):
            continue
        assert handle.counters.wsman["Create"] == 1
        assert handle.counters.steps["facts"] == 1
        assert handle.counters.wsman["Delete"] == 1


def test_table_output_and_limit(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    fleet.write_inventory(inventory)
    limit = f"win2003:!{BAD_CREDS}:!{UNREACHABLE}"
    invoked = CliRunner().invoke(app, ["facts", str(inventory), "--limit", limit, "--runs-dir",
                                       str(tmp_path / "runs")])
    assert invoked.exit_code == 0, invoked.output
    names_2003 = [h.name for h in fleet if h.model.os_family == "2003" and h.name not in (BAD_CREDS, UNREACHABLE)]
    assert names_2003
    for name in names_2003:
        assert name in invoked.stdout
    assert "weak (2003)" in invoked.stdout
    others = [h.name for h in fleet if h.name not in names_2003]
    assert not any(f" {name} " in invoked.stdout for name in others)
