"""Captures served as lab hosts (`lab serve --from-capture`): facts and plan through real pypsrp give
what the captures say, a rollout of the 2008 R2 and 2016 captures goes through and leaves them
compliant, and capturing a served capture again gives the capture back."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.capture import read_capture
from orchestrator.cli import app
from orchestrator.facts import parse_facts
from orchestrator.inventory import load_inventory
from orchestrator.lab.fleet import CaptureFleet
from orchestrator.plan import plan
from tests.serving import lab_serve

pytestmark = pytest.mark.lab

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CaptureFleet, Path]]:
    fleet = CaptureFleet.from_dir(CAPTURES)
    inventory = tmp_path_factory.mktemp("captures") / "lab.yml"
    with fleet:
        fleet.write_inventory(inventory)
        yield fleet, inventory


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def served_facts(fleet: CaptureFleet, name: str) -> dict[str, Any]:
    """The captured facts, with the machine identity the lab host has when the capture holds none
    (captured before the facts had it)."""
    model = fleet.host(name).model
    return {"machine": {"uuid": model.machine_uuid, "os_serial": model.os_serial}, **fleet.captures[name].facts}


def test_facts_of_a_served_capture_are_the_captured_facts(served: tuple[CaptureFleet, Path], tmp_path: Path) -> None:
    fleet, inventory = served
    result = invoke("facts", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    hosts = json.loads(result.stdout)["hosts"]
    assert set(hosts) == set(fleet.captures)
    for name in fleet.captures:
        expected = json.loads(json.dumps(parse_facts(served_facts(fleet, name)).to_dict(), default=str))
        assert hosts[name]["facts"] == expected, name


def test_plan_of_served_captures_is_the_plan_of_the_captures(served: tuple[CaptureFleet, Path], tmp_path: Path) -> None:
    fleet, inventory = served
    result = invoke("plan", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    hosts = json.loads(result.stdout)["hosts"]
    inv = load_inventory(inventory, default_password=None, env={})
    for name, capture in fleet.captures.items():
        offline = plan(parse_facts(capture.facts), inv.host(name).desired)
        assert hosts[name]["actions"] == [{"step": a.step, "reason": a.reason} for a in offline.actions], name
        expected = "compliant" if capture.name.startswith("lab-2022-") else "changes"
        assert hosts[name]["status"] == expected, name


@pytest.mark.parametrize("family", ["2008r2", "2016"])
def test_a_rollout_of_a_served_capture_leaves_it_compliant(tmp_path: Path, family: str) -> None:
    # A fleet of its own, of that capture alone: the rollout changes it.
    (tmp_path / "captures").mkdir()
    shutil.copy(next(CAPTURES.glob(f"lab-{family}-*.json")), tmp_path / "captures")
    fleet = CaptureFleet.from_dir(tmp_path / "captures")
    inventory, runs = tmp_path / "lab.yml", str(tmp_path / "runs")
    (name,) = fleet.captures
    with fleet:
        fleet.write_inventory(inventory)
        result = invoke("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["hosts"][name]["status"] == "changed"
        again = invoke("plan", str(inventory), "--json", "--runs-dir", runs)
        assert again.exit_code == 0, again.output
        assert json.loads(again.stdout)["hosts"][name]["status"] == "compliant"
        facts = json.loads(invoke("facts", str(inventory), "--json", "--runs-dir", runs).stdout)
    vip = load_inventory(inventory, default_password=None, env={}).host(name).desired.vips[0].address
    loopbacks = [a for a in facts["hosts"][name]["facts"]["adapters"] if a["is_loopback"]]
    assert any(vip in [x["address"] for x in a["addresses"]] for a in loopbacks)


def test_capturing_a_served_capture_gives_it_back(tmp_path: Path) -> None:
    # A fleet of its own: the rollouts above change theirs.
    fleet = CaptureFleet.from_dir(CAPTURES)
    inventory = tmp_path / "lab.yml"
    with fleet:
        fleet.write_inventory(inventory)
        result = invoke("facts", str(inventory), "--capture", str(tmp_path / "again"), "--no-redact",
                        "--runs-dir", str(tmp_path / "runs"))
        assert result.exit_code == 0, result.output
    for name in fleet.captures:
        assert read_capture(tmp_path / "again" / f"{name}.json").facts == served_facts(fleet, name), name


def test_two_captures_of_one_computer_name_are_two_hosts(tmp_path: Path) -> None:
    source = sorted(CAPTURES.glob("lab-2016-*.json"))[0]
    for copy in ("a.json", "b.json"):
        shutil.copy(source, tmp_path / copy)
    fleet = CaptureFleet.from_dir(tmp_path)
    names = [h.name for h in fleet.hosts]
    assert len(set(names)) == 2 and names[1] == f"{names[0]}-2"
    inventory = fleet.inventory()["all"]["children"]["win2016"]["hosts"]
    vips = [entry["dsr_vips"][0]["address"] for entry in inventory.values()]
    assert len(set(vips)) == 2  # each its own VIP, none of them an address of either host


def test_lab_serve_from_capture_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    inventory = tmp_path / "lab.yml"
    with lab_serve("--from-capture", str(CAPTURES), inventory=inventory) as proc:
        result = invoke("plan", str(inventory), "--runs-dir", str(tmp_path / "runs"))
        assert result.exit_code == 0, result.output
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"captures in {CAPTURES}" in output and "lab fleet stopped." in output
    assert "Traceback" not in output


def test_a_directory_without_captures_is_refused(tmp_path: Path) -> None:
    result = invoke("lab", "serve", "--from-capture", str(tmp_path))
    assert result.exit_code == 2
    assert "no capture files" in result.output


def test_captures_are_served_over_https_too(tmp_path: Path) -> None:
    (tmp_path / "captures").mkdir()
    shutil.copy(next(CAPTURES.glob("lab-2012r2-*.json")), tmp_path / "captures")
    fleet = CaptureFleet.from_dir(tmp_path / "captures", https=True)
    inventory = tmp_path / "lab.yml"
    (name,) = fleet.captures
    with fleet:
        fleet.write_inventory(inventory)
        assert fleet.hosts[0].url.startswith("https://")
        result = invoke("facts", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["hosts"][name]["status"] == "ok"
