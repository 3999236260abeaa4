"""The formats of a run's report (orchestrator/runreport.py builds the one document they render):
a terminal table, JSON, Markdown for a change ticket, JUnit XML for CI, and one self-contained HTML
page with a timeline picture of the run as inline SVG. Pure: the document in, text out.

Every host-supplied text (host names, step reasons, error messages) is escaped for the format it
lands in: HTML and XML entities, Markdown's table syntax; characters XML 1.0 cannot carry are
dropped. The HTML page loads nothing: no script, no font, no image from anywhere (its
Content-Security-Policy says so to the browser too).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from orchestrator.choices import ReportFormat
from orchestrator.errors import ErrorInfo
from orchestrator.report import STATUS_STYLE, steps_cell, styled
from orchestrator.results import Command, Status, StepResult
from orchestrator.rollout import host_status
from orchestrator.runreport import STATUSES, failures, one_line

_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _clean(text: str) -> str:
    """`text` without the characters XML 1.0 cannot hold (terminal escapes, NUL...)."""
    return _NOT_XML.sub("", text)


def _steps_text(host: Mapping[str, Any]) -> Text:
    """What the host's steps changed, in the terminal table's words (orchestrator/report.py)."""
    results = [StepResult(s["step"], s["reason"] or "", Status(s["status"]) if s["status"] in set(Status)
                          else Status.FAILED, s["attempt"] or 1, s["duration"] or 0.0,
                          error=ErrorInfo(s["error"]["class"], s["error"]["message"]) if s["error"] else None)
               for s in host["steps"]]
    return steps_cell(results)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _summary(doc: Mapping[str, Any]) -> str:
    return ", ".join(f"{status} {n}" for status, n in doc["counts"].items()) or "no hosts"


# --- table and JSON ----------------------------------------------------------------------------------


def to_table(doc: Mapping[str, Any]) -> Table:
    """The hosts in report order (failures first), with what changed or why they failed."""
    table = Table(title=f"{doc['command']} run {doc['run_id']}: {_summary(doc)}", title_justify="left",
                  show_lines=True)
    for column in ("host", "wave", "status", "steps", "time"):
        table.add_column(column)
    failed = dict(failures(doc))
    for name, host in [*failed.items(), *((n, h) for n, h in doc["hosts"].items() if n not in failed)]:
        where = f"{host['failed_step']}: " if host["failed_step"] else ""
        detail = Text(f"{where}{host['reason']}") if host["reason"] else _steps_text(host)
        table.add_row(Text(name), Text(host["wave"] or "-"), styled(host_status(host["status"])), detail,
                      Text(_seconds(host["duration"])))
    return table


def to_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


# --- Markdown ----------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: object) -> str:
    """A Markdown table cell: one line, every character Markdown would read as syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(_clean(str(text)).split())) or "-"


def _md_table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines


def to_markdown(doc: Mapping[str, Any]) -> str:
    """For a change ticket: what ran and when, the counts, the hosts that failed first, then every
    host in wave order, then the gate decisions."""
    lines = [f"## dsrprep {doc['command']} run {_md(doc['run_id'])}", ""]
    facts = [("inventory", doc["inventory"]), ("limit", doc["limit"]), ("started", doc["started"]),
             ("finished", doc["finished"]), ("duration", _seconds(doc["duration"])),
             ("state", doc["state"]), ("ending", doc["ending"]), ("run folder", doc["run_dir"])]
    lines += [f"- **{label}**: {_md(value)}" for label, value in facts if value is not None]
    lines += [f"- **hosts**: {len(doc['hosts'])} ({_md(_summary(doc))})", ""]
    failed = failures(doc)
    lines += [f"### Hosts that did not succeed ({len(failed)})", ""]
    lines += _md_table(("host", "status", "wave", "step", "reason"),
                       [(n, h["status"], h["wave"] or "-", h["failed_step"] or "-", h["reason"] or "-")
                        for n, h in failed]) if failed else ["None."]
    lines += ["", "### All hosts", ""]
    lines += _md_table(("host", "wave", "status", "steps", "time"),
                       [(n, h["wave"] or "-", h["status"], _steps_text(h).plain, _seconds(h["duration"]))
                        for n, h in doc["hosts"].items()])
    if doc["gates"]:
        lines += ["", "### Gates", ""]
        lines += _md_table(("after", "decision", "reasons"),
                           [(g["wave"], "go on" if g["go_on"] else "stop", "; ".join(g["reasons"]) or "-")
                            for g in doc["gates"]])
    return "\n".join(lines) + "\n"


# --- JUnit XML ---------------------------------------------------------------------------------------


def _suites(doc: Mapping[str, Any]) -> dict[str, list[str]]:
    """One test suite per wave of a rollout (hosts no wave took: `preflight`), else one per command."""
    outside = "preflight" if doc["command"] == Command.ROLLOUT else str(doc["command"])
    suites: dict[str, list[str]] = {w["name"]: [] for w in doc["waves"]}
    for name, host in doc["hosts"].items():
        suites.setdefault(host["wave"] or outside, []).append(name)
    return {k: v for k, v in suites.items() if v}


def to_junit(doc: Mapping[str, Any]) -> str:
    """A test case per host: a failed host is a <failure> (step and reason), an unreachable one an
    <error>, a host the run did not finish (aborted, interrupted, skipped) <skipped>."""
    failed = dict(failures(doc))
    root = ET.Element("testsuites", name=_clean(f"dsrprep {doc['command']} {doc['run_id']}"),
                      tests=str(len(doc["hosts"])), time=f"{doc['duration'] or 0:.3f}")
    totals = {"failures": 0, "errors": 0, "skipped": 0}
    for suite_name, names in _suites(doc).items():
        suite = ET.SubElement(root, "testsuite", name=_clean(suite_name), tests=str(len(names)))
        counts = {"failures": 0, "errors": 0, "skipped": 0}
        for name in names:
            host = doc["hosts"][name]
            case = ET.SubElement(suite, "testcase", name=_clean(name), time=f"{host['duration'] or 0:.3f}",
                                 classname=_clean(f"dsrprep.{doc['command']}.{suite_name}"))
            if name not in failed:
                continue
            kind = {Status.FAILED: "failure", Status.UNREACHABLE: "error"}.get(host["status"], "skipped")
            counts["skipped" if kind == "skipped" else kind + "s"] += 1
            where = f"{host['failed_step']}: " if host["failed_step"] else ""
            element = ET.SubElement(case, kind, message=_clean(f"{host['status']}: {where}{host['reason'] or ''}"))
            if host["error"]:
                element.set("type", _clean(host["error"]["class"]))
                element.text = _clean(host["error"]["message"])
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# --- HTML and its timeline ---------------------------------------------------------------------------

# The terminal's colour of each status (orchestrator/report.py), as the page draws it.
_HEX = {"green": "#2e7d32", "yellow": "#e0a800", "cyan": "#00838f", "red": "#c62828"}
_OTHER = "#9e9e9e"


def colour(status: str) -> str:
    style = STATUS_STYLE.get(host_status(status)) if status in STATUSES else None
    return _HEX.get(style or "", _OTHER)


def _e(value: object) -> str:
    return html.escape(_clean(str(value)), quote=True)


class _Scale:
    """Seconds from the run's start to x on the timeline."""

    LABEL, WIDTH, ROW, TOP = 170, 1180, 20, 46

    def __init__(self, total: float) -> None:
        self.total = max(total, 0.001)

    def x(self, seconds: float) -> float:
        return round(self.LABEL + seconds / self.total * (self.WIDTH - self.LABEL - 10), 1)

    def width(self, seconds: float) -> float:
        return max(round(seconds / self.total * (self.WIDTH - self.LABEL - 10), 1), 2.0)

    def ticks(self) -> list[float]:
        step = next(s for s in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 1e9)
                    if self.total / s <= 12)
        return [i * step for i in range(int(self.total / step) + 1)]


def _extent(doc: Mapping[str, Any]) -> float:
    """The last second the timeline must show."""
    ends = [doc["duration"] or 0.0]
    for host in doc["hosts"].values():
        ends += [s["offset"] + (s["duration"] or 0.0) for s in host["steps"] if s["offset"] is not None]
        ends += [p["offset"] + p["duration"] for p in host["phases"] if p["offset"] is not None]
    return max(ends)


def _host_row(name: str, host: Mapping[str, Any], y: int, scale: _Scale, end: float) -> list[str]:
    parts = [f'<g class="host" data-host="{_e(name)}" data-status="{_e(host["status"])}">',
             f'<text class="label" x="{scale.LABEL - 6}" y="{y + 14}" text-anchor="end">{_e(name)}</text>',
             f'<circle cx="8" cy="{y + 10}" r="5" fill="{colour(host["status"])}"/>']
    for phase in host["phases"]:
        if phase["offset"] is not None:
            parts.append(f'<rect class="phase" x="{scale.x(phase["offset"])}" y="{y + 5}" '
                         f'width="{scale.width(phase["duration"])}" height="10"><title>{_e(phase["wave"] or "run")}: '
                         f'{_e(phase["command"])} {_e(phase["status"])} in {phase["duration"]:.2f} s</title></rect>')
    for step in host["steps"]:
        if step["offset"] is None:
            continue
        length = step["duration"] if step["duration"] is not None else max(end - step["offset"], 0.0)
        why = f": {one_line(step['error'])}" if step["error"] else ""
        parts.append(f'<rect class="step" data-step="{_e(step["step"])}" x="{scale.x(step["offset"])}" y="{y + 3}" '
                     f'width="{scale.width(length)}" height="14" fill="{colour(step["status"])}"><title>'
                     f'{_e(step["step"])} (attempt {_e(step["attempt"])}): {_e(step["status"])} in '
                     f'{_seconds(step["duration"])}{_e(why)}</title></rect>')
    parts.append("</g>")
    return parts


def _marks(doc: Mapping[str, Any], scale: _Scale, height: int) -> list[str]:
    """Wave spans behind the rows, their names above, and a line where each gate decided."""
    parts = []
    for index, wave in enumerate(doc["waves"]):
        if wave["offset"] is None or wave["end"] is None:
            continue
        x = scale.x(wave["offset"])
        width = scale.width(wave["end"] - wave["offset"])
        parts.append(f'<rect class="wave" x="{x}" y="{scale.TOP - 16}" width="{width}"'
                     f' height="{height - scale.TOP + 16}" fill="{"#eef3fb" if index % 2 == 0 else "#f6f6f6"}">'
                     f'<title>{_e(wave["name"])}: {len(wave["hosts"])} host(s)</title></rect>')
        parts.append(f'<text class="wave-name" x="{x + 3}" y="{scale.TOP - 4}">{_e(wave["name"])}</text>')
    for gate in doc["gates"]:
        if gate["offset"] is None:
            continue
        x, fill = scale.x(gate["offset"]), _HEX["green"] if gate["go_on"] else _HEX["red"]
        parts.append(f'<g class="gate" data-wave="{_e(gate["wave"])}"><line x1="{x}" y1="{scale.TOP - 16}" x2="{x}" '
                     f'y2="{height}" stroke="{fill}" stroke-width="2" stroke-dasharray="4 3"/>'
                     f'<path d="M{x - 6},{scale.TOP - 22} l6,6 l6,-6 l-6,-6 z" fill="{fill}"/>'
                     f'<title>gate after {_e(gate["wave"])}: {_e(_verdict(gate))}</title></g>')
    return parts


def _axis_and_legend(scale: _Scale, height: int, statuses: Sequence[str]) -> list[str]:
    parts = [f'<g class="axis"><line x1="{scale.LABEL}" y1="{height}" x2="{scale.WIDTH - 10}" y2="{height}" '
             'stroke="#555"/>']
    for tick in scale.ticks():
        x = scale.x(tick)
        parts.append(f'<line x1="{x}" y1="{height}" x2="{x}" y2="{height + 5}" stroke="#555"/>'
                     f'<text x="{x}" y="{height + 17}" text-anchor="middle">{tick:g} s</text>')
    parts.append("</g>")
    y = height + 34
    parts.append(f'<g class="legend"><text x="10" y="{y + 10}">steps:</text>')
    x = 60
    for status in statuses:
        parts.append(f'<rect x="{x}" y="{y}" width="14" height="12" fill="{colour(status)}"/>'
                     f'<text x="{x + 18}" y="{y + 10}">{_e(status)}</text>')
        x += 30 + 7 * len(status)
    parts.append(f'<rect x="{x}" y="{y + 2}" width="20" height="8" class="phase"/>'
                 f'<text x="{x + 24}" y="{y + 10}">host at work</text>')
    x += 120
    parts.append(f'<path d="M{x},{y + 6} l6,6 l6,-6 l-6,-6 z" fill="{_HEX["green"]}"/><text x="{x + 16}" '
                 f'y="{y + 10}">gate: go on</text><path d="M{x + 100},{y + 6} l6,6 l6,-6 l-6,-6 z" '
                 f'fill="{_HEX["red"]}"/><text x="{x + 116}" y="{y + 10}">gate: stop</text></g>')
    return parts


def timeline_svg(doc: Mapping[str, Any]) -> str:
    """One row per host, one bar per step attempt (x: seconds from the run's start, coloured by its
    result) over the spans the host was worked on; waves shaded, gate decisions marked; a legend."""
    end = _extent(doc)
    scale = _Scale(end)
    height = scale.TOP + scale.ROW * len(doc["hosts"]) + 4
    parts = _marks(doc, scale, height)
    for index, (name, host) in enumerate(doc["hosts"].items()):
        parts += _host_row(name, host, scale.TOP + index * scale.ROW, scale, end)
    parts += _axis_and_legend(scale, height, (Status.OK, Status.CHANGED, Status.FAILED, Status.INTERRUPTED))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{scale.WIDTH}" '
            f'height="{height + 56}" viewBox="0 0 {scale.WIDTH} {height + 56}" role="img" '
            f'aria-label="timeline of the run">' + "".join(parts) + "</svg>")


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1220px; }
h1 { font-size: 20px; margin: 0 0 8px; } h2 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; } .meta td:first-child { color: #666; }
.badge { display: inline-block; padding: 2px 9px; border-radius: 10px; color: #fff; margin-right: 6px; }
.st { font-weight: 600; } .none { color: #2e7d32; }
svg text { font: 11px system-ui, sans-serif; fill: #333; } svg .wave-name { font-weight: 600; }
svg .phase { fill: #cfd8dc; } svg .label { font-size: 12px; }
"""


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """`rows` are HTML already (escaped by the caller)."""
    header = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" if head else ""
    return (f'<table class="{cls}">{header}'
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</table>")


def _status_html(status: str) -> str:
    return f'<span class="st" style="color:{colour(status)}">{_e(status)}</span>'


def _verdict(gate: Mapping[str, Any]) -> str:
    return "go on" if gate["go_on"] else "STOP: " + "; ".join(gate["reasons"])


def _waves_html(doc: Mapping[str, Any]) -> str:
    """The waves with the gate after each, and a stop decided where no wave ran (the preflight)."""
    if not doc["waves"]:
        html_text = f"<p>No waves: a {_e(doc['command'])} run works on every host at once.</p>"
    else:
        after = {g["wave"]: _verdict(g) for g in doc["gates"]}
        html_text = _html_table(("wave", "hosts", "gate after it"), [
            (_e(w["name"]), _e(", ".join(w["hosts"])), _e(after.get(w["name"], "-"))) for w in doc["waves"]])
    names = {w["name"] for w in doc["waves"]}
    return html_text + "".join(f"<p>gate after {_e(g['wave'])}: {_e(_verdict(g))}</p>"
                               for g in doc["gates"] if g["wave"] not in names)


def to_html(doc: Mapping[str, Any]) -> str:
    """One self-contained page: what ran, the counts, waves and gates, failures, the timeline, every host."""
    meta = [(k, doc[k]) for k in ("command", "inventory", "limit", "state", "ending", "started", "finished")
            if doc[k] is not None] + [("duration", _seconds(doc["duration"])), ("run folder", doc["run_dir"])]
    badges = "".join(f'<span class="badge" style="background:{colour(s)}">{_e(s)} {n}</span>'
                     for s, n in doc["counts"].items())
    failed = failures(doc)
    failed_html = _html_table(("host", "status", "wave", "step", "reason"), [
        (_e(n), _status_html(h["status"]), _e(h["wave"] or "-"), _e(h["failed_step"] or "-"), _e(h["reason"] or "-"))
        for n, h in failed]) if failed else '<p class="none">Every host succeeded.</p>'
    hosts_html = _html_table(("host", "wave", "status", "steps", "time", "reason"), [
        (_e(n), _e(h["wave"] or "-"), _status_html(h["status"]), _e(_steps_text(h).plain),
         _e(_seconds(h["duration"])), _e(h["reason"] or "")) for n, h in doc["hosts"].items()], "hosts")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>dsrprep {_e(doc['command'])} {_e(doc['run_id'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>dsrprep {_e(doc['command'])} run {_e(doc['run_id'])}</h1>"
        + _html_table((), [(_e(k), _e(v)) for k, v in meta], "meta")
        + f"<p>{len(doc['hosts'])} host(s): {badges}</p>"
        + f"<h2>Waves and gates</h2>{_waves_html(doc)}"
        + f"<h2>Hosts that did not succeed ({len(failed)})</h2>{failed_html}"
        + f"<h2>Timeline</h2>{timeline_svg(doc)}"
        + f"<h2>All hosts</h2>{hosts_html}"
        + "</body></html>\n"
    )


RENDERERS = {ReportFormat.JSON: to_json, ReportFormat.MARKDOWN: to_markdown, ReportFormat.JUNIT: to_junit,
             ReportFormat.HTML: to_html}
