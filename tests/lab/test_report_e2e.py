"""`dsrprep report` on the run folder of a real rollout: the CLI over real pypsrp against an in-process
lab fleet, one host's step failing, then every format read back."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet
from orchestrator.lab.scenes import refuse_step
from orchestrator.rolloutlog import read_host_log

pytestmark = pytest.mark.lab


def report(run: Path, fmt: str) -> str:
    result = CliRunner().invoke(app, ["report", str(run), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_reports_of_a_rollout_with_a_failed_host(tmp_path: Path) -> None:
    with LabFleet.build(4, seed=5, profile="2019") as fleet:
        inventory = tmp_path / "lab.yml"
        fleet.write_inventory(inventory)
        refuse_step(fleet.host("web03"), "weak_host")
        rolled = CliRunner().invoke(app, ["rollout", str(inventory), "--yes", "--json", "--waves", "1,100%",
                                          "--max-failures", "1", "--runs-dir", str(tmp_path / "runs")])
    assert rolled.exit_code == 1, rolled.output
    run = Path(json.loads(rolled.stdout)["run_dir"])

    doc = json.loads(report(run, "json"))
    schema = json.loads(resources.files("orchestrator").joinpath("schemas/report.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["counts"] == {"changed": 3, "failed": 1}
    assert [w["name"] for w in doc["waves"]] == ["canary", "wave 1", "wave 2"]
    web03 = doc["hosts"]["web03"]
    assert (web03["status"], web03["failed_step"]) == ("failed", "weak_host")
    assert "weak_host refused on purpose" in web03["reason"]
    for name, host in doc["hosts"].items():  # a bar per step attempt the log holds
        logged = [e for e in read_host_log(run / "hosts" / f"{name}.jsonl").events if e["event"] == "step_result"]
        assert [(s["step"], s["status"]) for s in host["steps"]] == [(e["step"], e["status"]) for e in logged]
        assert all(s["offset"] is not None and s["offset"] >= 0 for s in host["steps"])

    markdown = report(run, "markdown")
    failed_table = markdown.split("### Hosts that did not succeed (1)", 1)[1].split("###", 1)[0]
    assert "| web03 | failed | " in failed_table and "weak\\_host refused on purpose" in failed_table

    junit = ET.fromstring(report(run, "junit"))
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    assert sorted(cases) == ["web01", "web02", "web03", "web04"]
    failure = cases["web03"].find("failure")
    assert failure is not None and "weak_host" in (failure.get("message") or "")

    page = report(run, "html")
    svg = ET.fromstring(page[page.index("<svg"): page.index("</svg>") + 6])
    ns = "{http://www.w3.org/2000/svg}"
    rows = {g.get("data-host"): g for g in svg.iter(f"{ns}g") if g.get("class") == "host"}
    assert sorted(rows) == sorted(doc["hosts"])
    for name, row in rows.items():
        bars = [r for r in row.iter(f"{ns}rect") if r.get("class") == "step"]
        assert len(bars) == len(doc["hosts"][name]["steps"]) > 0
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")

    table = report(run, "table")
    assert table.index("web03") < table.index("web01")  # failures first
