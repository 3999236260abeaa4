"""The report document built from hand-made run data, and each format parsed back: JSON against the
shipped JSON Schema, Markdown's table shape, JUnit XML with xml.etree, HTML with html.parser and
its SVG timeline with ElementTree."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator.render_report import to_html, to_json, to_junit, to_markdown, to_table
from orchestrator.runreport import RunData, build_report, report_schema, schema_text

T0 = "2025-03-01T10:00:00.000+00:00"
HOSTILE = "<script>alert(1)</script>|*x*"


def at(seconds: float) -> str:
    whole, frac = divmod(seconds, 1)
    return f"2025-03-01T10:{int(whole) // 60:02d}:{int(whole) % 60:02d}.{round(frac * 1e6):06d}Z"


def line(host: str, wave: str, seconds: float, event: str, **fields: Any) -> dict[str, Any]:
    return {"host": host, "wave": wave, "timestamp": at(seconds), "event": event, **fields}


def steps(host: str, wave: str, start: float, *names: str, fail: str | None = None) -> list[dict[str, Any]]:
    """step_start / step_result pairs, one second each; `fail` fails that step."""
    out = []
    for index, name in enumerate(names, 1):
        t = start + index - 1
        out.append(line(host, wave, t, "step_start", step=name, action=index, attempt=1, reason=f"do {name}"))
        failed = name == fail
        result = line(host, wave, t + 0.5, "step_result", step=name, action=index, attempt=1,
                      status="failed" if failed else "changed", duration=0.5)
        if failed:
            result["error"] = {"class": "ScriptError", "message": f"{name} refused\nsecond line"}
        out.append(result)
    return out


def done(host: str, wave: str, seconds: float, command: str, status: str, duration: float,
         **fields: Any) -> dict[str, Any]:
    return line(host, wave, seconds, "host_done", step=command, status=status, duration=duration, **fields)


def rollout_run() -> RunData:
    """web01 the canary (changed), web02 and a hostile name in wave 1 (web02 fails weak_host), the
    gate after wave 1 stops the run: web04 aborted; web05 unreachable at preflight; web06 compliant."""
    hosts = ["web01", "web02", HOSTILE, "web04", "web05", "web06"]
    record = {
        "run_id": "20250301T100000.000Z-abcdef", "command": "rollout", "inventory": "/srv/inv.yml", "limit": None,
        "hosts": hosts, "state": "finished", "started": T0, "ending": "aborted",
        "waves": [{"name": "canary", "hosts": ["web01"]}, {"name": "wave 1", "hosts": ["web02", HOSTILE]},
                  {"name": "wave 2", "hosts": ["web04"]}],
        "gates": [{"wave": "canary", "go_on": True, "reasons": []},
                  {"wave": "wave 1", "go_on": False, "reasons": ["wave 1: 1 failed > 0"]}],
        "outcomes": {"web01": "changed", "web02": "failed", HOSTILE: "changed", "web04": "aborted",
                     "web05": "unreachable", "web06": "ok"},
    }
    pre = {h: [done(h, "preflight", 2, "plan", "changes", 2.0)] for h in hosts if h not in ("web05", "web06")}
    logs = {
        "web01": pre["web01"] + steps("web01", "canary", 3, "loopback", "weak_host")
        + [done("web01", "canary", 5.5, "rollout", "changed", 2.5)],
        "web02": pre["web02"] + steps("web02", "wave 1", 6, "loopback", "weak_host", fail="weak_host")
        + [done("web02", "wave 1", 8, "rollout", "failed", 2.0, failed_step="weak_host",
                error={"class": "ScriptError", "message": "weak_host refused\nsecond line"})],
        HOSTILE: pre[HOSTILE] + steps(HOSTILE, "wave 1", 6, "loopback")
        + [done(HOSTILE, "wave 1", 7, "rollout", "changed", 1.0)],
        "web04": pre["web04"],
        "web05": [done("web05", "preflight", 2, "plan", "unreachable", 2.0,
                       error={"class": "Unreachable", "message": "connection refused"})],
        "web06": [done("web06", "preflight", 1, "plan", "compliant", 1.0)],
    }
    return RunData(Path("/runs/x"), record, logs, {"web02": 1})


@pytest.fixture
def doc() -> dict[str, Any]:
    return build_report(rollout_run())


def test_statuses_waves_failures_and_counts(doc: dict[str, Any]) -> None:
    assert list(doc["hosts"]) == ["web01", "web02", HOSTILE, "web04", "web05", "web06"]  # wave order, then by name
    assert {n: h["status"] for n, h in doc["hosts"].items()} == rollout_run().record["outcomes"]
    web02 = doc["hosts"]["web02"]
    assert (web02["status"], web02["wave"], web02["failed_step"]) == ("failed", "wave 1", "weak_host")
    assert web02["reason"] == "ScriptError: weak_host refused second line"
    assert web02["error"] == {"class": "ScriptError", "message": "weak_host refused\nsecond line"}
    assert doc["hosts"]["web05"]["error"]["class"] == "Unreachable"  # said by its preflight line
    assert doc["hosts"]["web06"]["wave"] is None
    assert doc["counts"] == {"ok": 1, "changed": 2, "failed": 1, "unreachable": 1, "aborted": 1}
    assert sum(doc["counts"].values()) == len(doc["hosts"])
    assert doc["torn_lines"] == 1 and web02["torn_lines"] == 1


def test_times_are_offsets_from_the_run_start(doc: dict[str, Any]) -> None:
    web01 = doc["hosts"]["web01"]
    assert [(s["step"], s["status"], s["offset"], s["duration"]) for s in web01["steps"]] == [
        ("loopback", "changed", 3.0, 0.5), ("weak_host", "changed", 4.0, 0.5)]
    assert web01["duration"] == 2.5  # the rollout phase only; the preflight is a phase of its own
    assert [(p["wave"], p["offset"]) for p in web01["phases"]] == [("preflight", 0.0), ("canary", 3.0)]
    assert [(w["name"], w["offset"], w["end"]) for w in doc["waves"]] == [
        ("canary", 3.0, 5.5), ("wave 1", 6.0, 8.0), ("wave 2", None, None)]
    assert [(g["wave"], g["go_on"], g["offset"]) for g in doc["gates"]] == [("canary", True, 5.5),
                                                                          ("wave 1", False, 8.0)]
    assert doc["duration"] == 8.0


def test_a_step_without_a_result_is_interrupted_and_a_host_without_an_outcome_too() -> None:
    run = rollout_run()
    record = {**run.record, "state": "crashed", "outcomes": {}}
    logs = {**run.logs, "web01": run.logs["web01"][:-2]}  # cut after weak_host's start line
    doc = build_report(RunData(run.path, record, logs))
    web01 = doc["hosts"]["web01"]
    assert web01["status"] == "interrupted"
    assert [(s["step"], s["status"], s["duration"]) for s in web01["steps"]] == [
        ("loopback", "changed", 0.5), ("weak_host", "interrupted", None)]
    assert doc["hosts"]["web02"]["status"] == "failed"  # its log's host_done says so
    jsonschema.validate(doc, report_schema())


def test_lines_of_the_wrong_shape_are_left_out_not_trusted() -> None:
    run = rollout_run()
    odd = [{"host": "web01", "event": "step_result", "step": 7, "status": "weird", "duration": "x",
            "timestamp": "yesterday", "error": "boom", "attempt": True},
           {"host": "web01", "event": "host_done", "step": "rollout", "status": 3, "duration": -1}]
    doc = build_report(RunData(run.path, {**run.record, "outcomes": {}}, {"web01": odd}))
    step = doc["hosts"]["web01"]["steps"][0]
    assert (step["step"], step["status"], step["offset"], step["duration"], step["error"]) == (
        "?", "failed", None, None, None)
    assert doc["hosts"]["web01"]["status"] == "interrupted"
    jsonschema.validate(doc, report_schema())


def test_facts_run_without_waves() -> None:
    record = {"run_id": "r", "command": "facts", "hosts": ["b", "a"], "state": "finished", "started": T0,
              "outcomes": {"a": "ok", "b": "unreachable"}}
    logs = {"a": [line("a", "", 1, "facts_taken"), done("a", "", 1.5, "facts", "ok", 1.5)],
            "b": [done("b", "", 3, "facts", "unreachable", 3.0, error={"class": "Unreachable", "message": "no"})]}
    doc = build_report(RunData(Path("/runs/r"), record, logs))
    assert list(doc["hosts"]) == ["a", "b"] and doc["waves"] == [] and doc["gates"] == []
    suites = ET.fromstring(to_junit(doc)).findall("testsuite")
    assert [(s.get("name"), s.get("tests"), s.get("errors")) for s in suites] == [("facts", "2", "1")]
    jsonschema.validate(doc, report_schema())


def test_the_shipped_schema_is_the_generated_one_and_the_document_follows_it(doc: dict[str, Any]) -> None:
    shipped = resources.files("orchestrator").joinpath("schemas/report.schema.json").read_text(encoding="utf-8")
    regenerate = "python -m orchestrator.runreport > orchestrator/schemas/report.schema.json"
    assert shipped == schema_text(), f"regenerate: {regenerate}"
    schema = json.loads(shipped)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(to_json(doc)), schema)
    broken = json.loads(to_json(doc))
    broken["hosts"]["web01"]["status"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def _md_rows(text: str, heading: str) -> list[list[str]]:
    """The rows of the Markdown table under `heading`, split on unescaped pipes."""
    lines = text.split(heading, 1)[1].strip().splitlines()
    rows = []
    for row in lines:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.replace("\\|", "\0").strip("|").split("|")]
        rows.append([c.replace("\0", "\\|") for c in cells])
    return rows


def test_markdown_has_the_failures_first_then_every_host_in_wave_order(doc: dict[str, Any]) -> None:
    text = to_markdown(doc)
    assert text.startswith("## dsrprep rollout run 20250301T100000.000Z-abcdef")
    assert "- **hosts**: 6 (ok 1, changed 2, failed 1, unreachable 1, aborted 1)" in text
    failed = _md_rows(text, "### Hosts that did not succeed (3)")
    assert failed[0] == ["host", "status", "wave", "step", "reason"]
    assert [r[:4] for r in failed[2:]] == [["web02", "failed", "wave 1", "weak\\_host"],
                                           ["web04", "aborted", "wave 2", "-"], ["web05", "unreachable", "-", "-"]]
    every = _md_rows(text, "### All hosts")
    assert all(len(r) == 5 for r in every) and len(every) == 2 + 6
    assert every[4][0] == "\\<script\\>alert(1)\\</script\\>\\|\\*x\\*"  # one cell, nothing Markdown would read
    assert text.index("### Hosts that did not succeed") < text.index("### All hosts") < text.index("### Gates")


def test_junit_one_case_per_host_with_failures_errors_and_skips(doc: dict[str, Any]) -> None:
    root = ET.fromstring(to_junit(doc))
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["canary", "wave 1", "wave 2", "preflight"]
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert sorted(cases) == sorted(doc["hosts"])
    failure = cases["web02"].find("failure")
    assert failure is not None and failure.get("type") == "ScriptError"
    assert failure.get("message") == "failed: weak_host: ScriptError: weak_host refused second line"
    assert cases["web05"].find("error") is not None and cases["web04"].find("skipped") is not None
    assert all(len(cases[h]) == 0 for h in ("web01", HOSTILE, "web06"))
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("6", "1", "1", "1")
    assert suites["wave 1"].get("failures") == "1"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_html_is_one_self_contained_page_with_a_timeline(doc: dict[str, Any]) -> None:
    page = to_html(doc)
    parser = _Page()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "img" not in tags and "iframe" not in tags
    assert not any(v and ("http:" in v or "https:" in v) for t, a in parser.tags for k, v in a.items()
                   if k in ("src", "href") or (t == "svg" and k != "xmlns"))
    assert HOSTILE in "".join(parser.text)  # shown as text, escaped in the source
    assert "<script>alert" not in page
    hosts = [a for t, a in parser.tags if t == "g" and a.get("class") == "host"]
    assert [h["data-host"] for h in hosts] == list(doc["hosts"])
    svg = ET.fromstring(page[page.index("<svg"): page.index("</svg>") + len("</svg>")])
    ns = "{http://www.w3.org/2000/svg}"
    rows = [g for g in svg.iter(f"{ns}g") if g.get("class") == "host"]
    assert len(rows) == len(doc["hosts"])
    for row in rows:
        bars = [r.get("data-step") for r in row.iter(f"{ns}rect") if r.get("class") == "step"]
        assert bars == [s["step"] for s in doc["hosts"][row.get("data-host", "")]["steps"]]
    web02 = next(r for r in rows if r.get("data-host") == "web02")
    fills = [r.get("fill") for r in web02.iter(f"{ns}rect") if r.get("class") == "step"]
    assert fills[0] != fills[1]  # changed and failed are told apart
    gates = [g for g in svg.iter(f"{ns}g") if g.get("class") == "gate"]
    assert [g.get("data-wave") for g in gates] == ["canary", "wave 1"]
    assert [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "wave-name"] == ["canary", "wave 1"]
    assert any(g.get("class") == "legend" for g in svg.iter(f"{ns}g"))


def test_table_lists_failures_first(doc: dict[str, Any]) -> None:
    table = to_table(doc)
    names = [cell.plain for cell in table.columns[0]._cells]
    assert names == ["web02", "web04", "web05", "web01", HOSTILE, "web06"]


def test_characters_xml_cannot_hold_are_dropped_from_junit_and_the_svg() -> None:
    name = "web\x1b[31m01\x00"
    record = {"run_id": "r", "command": "facts", "hosts": [name], "state": "finished", "started": T0,
              "outcomes": {name: "failed"}}
    logs = {name: [done(name, "", 1, "facts", "failed", 1.0, error={"class": "ScriptError", "message": "bad\x07"})]}
    doc = build_report(RunData(Path("/runs/r"), record, logs))
    case = ET.fromstring(to_junit(doc)).find("testsuite/testcase")
    assert case is not None and case.get("name") == "web[31m01"
    page = to_html(doc)
    svg = ET.fromstring(page[page.index("<svg"): page.index("</svg>") + len("</svg>")])
    assert [g.get("data-host") for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "host"] == [
        "web[31m01"]
