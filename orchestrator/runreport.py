"""The report of one run: a single document (a dict) built from a run folder, which every report
format renders (orchestrator/render_report.py) and docs/report.md describes field by field.

`load_run` is the edge: it reads run.json and the host logs with orchestrator/rolloutlog.py's
checked readers (a torn or corrupt line is skipped, a file or field that cannot be used is a
RunFileError naming it). `build_report` is pure: run data in, the document out. It works for every
command's run (facts, plan, rollout, rollback) and for runs that were interrupted or crashed: a host
without a recorded outcome ends `interrupted`, a step whose result was never logged is
`interrupted` too, and a value of the wrong type in a log line is left out rather than trusted.

`report_schema()` is the JSON Schema of the document, built from the same status and command
enums the runs use; orchestrator/schemas/report.schema.json is its copy in the package (a test
keeps the two equal: `python -m orchestrator.runreport > orchestrator/schemas/report.schema.json`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestrator import rolloutlog as logfile
from orchestrator import summary
from orchestrator.results import SUCCESS, Command, PlanStatus, Status
from orchestrator.rollout import RunRecord
from orchestrator.rolloutlog import Event, RunFieldError, RunFileError
from orchestrator.summary import REASON_WIDTH

SCHEMA_ID = "dsrprep-report/1"
STATUSES: tuple[str, ...] = (*Status, *PlanStatus)  # every status a host or a step can end in

@dataclass(frozen=True)
class RunData:
    """What a run folder holds: run.json (checked) and each host's log lines (intact ones only)."""

    path: Path
    record: dict[str, Any]
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    torn_lines: dict[str, int] = field(default_factory=dict)


def load_run(run_dir: Path) -> RunData:
    """run.json and the host logs of `run_dir`; RunFileError naming the file (and field) when the
    folder is not a run or one of its files cannot be used."""
    if not run_dir.is_dir():
        raise RunFileError(run_dir, "no such folder")
    record = logfile.read_run(run_dir, required=("command", "hosts"))
    path = run_dir / "run.json"
    try:
        RunRecord.from_dict(record)  # a rollout's waves, gates and outcomes, checked as `resume` checks them
        for name, status in (record.get("outcomes") or {}).items():
            if status not in STATUSES:
                raise RunFieldError(f"outcomes.{name}", f"{status!r} is not a host status")
    except RunFieldError as exc:
        raise RunFileError(path, exc.message, exc.field) from None
    logs: dict[str, list[dict[str, Any]]] = {}
    torn: dict[str, int] = {}
    for host in dict.fromkeys(record["hosts"]):
        log_path = run_dir / "hosts" / logfile.host_file_name(host)
        if not log_path.exists():
            continue
        read = logfile.read_host_log(log_path)
        logs[host] = [e for e in read.events if e.get("host") == host]  # another host may map to the same file
        torn[host] = read.torn_lines
    return RunData(run_dir, record, logs, torn)


# --- reading values a log line may hold in any shape ------------------------------------------------


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value < 0:
        return None
    return round(float(value), 3)


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _error(value: object) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {"class": _text(value.get("class")) or "Error", "message": _text(value.get("message")) or ""}


def one_line(error: Mapping[str, str] | None, limit: int = REASON_WIDTH) -> str:
    """`Class: message` on one line, cut as the end-of-run summary cuts its reasons."""
    return summary.one_line(f"{error['class']}: {error['message']}", limit) if error else ""


class _Clock:
    """Offsets in seconds from the run's start."""

    def __init__(self, origin: datetime | None) -> None:
        self.origin = origin

    def offset(self, when: datetime | None) -> float | None:
        if when is None or self.origin is None:
            return None
        return round((when - self.origin).total_seconds(), 3)


# --- the document -------------------------------------------------------------------------------------


def _steps(events: Sequence[dict[str, Any]], clock: _Clock) -> list[dict[str, Any]]:
    """Each action attempt of a host, in order: a `step_result` line, or a `step_start` whose result
    was never logged (the run stopped or crashed there: `interrupted`, no duration)."""
    steps: list[dict[str, Any]] = []
    open_starts: dict[tuple[object, object], tuple[dict[str, Any], int]] = {}  # (wave, action) -> start line
    for event in events:
        name = event.get("event")
        key = (event.get("wave"), event.get("action"))
        if name == Event.STEP_START:
            open_starts[key] = (event, len(steps))
            steps.append(_step(event, None, clock))
        elif name == Event.STEP_RESULT:
            start, index = open_starts.pop(key, (None, -1))
            entry = _step(start or event, event, clock)
            if index >= 0:
                steps[index] = entry
            else:
                steps.append(entry)
    return steps


def _step(start: dict[str, Any], result: dict[str, Any] | None, clock: _Clock) -> dict[str, Any]:
    duration = _number(result.get("duration")) if result is not None else None
    began = _time(start.get("timestamp"))
    if result is start and began is not None and duration is not None:  # no start line: count back
        began = datetime.fromtimestamp(began.timestamp() - duration, began.tzinfo)
    status = _text(result.get("status")) if result is not None else Status.INTERRUPTED
    return {
        "step": _text(start.get("step")) or "?",
        "status": status if status in STATUSES else Status.FAILED,
        "attempt": int(n) if (n := _number(start.get("attempt"))) is not None else None,
        "wave": _text(start.get("wave")),
        "reason": _text(start.get("reason")),
        "started": began.isoformat() if began else None,
        "offset": clock.offset(began),
        "duration": duration,
        "error": _error(result.get("error")) if result is not None else None,
    }


def _phases(events: Sequence[dict[str, Any]], clock: _Clock) -> list[dict[str, Any]]:
    """Each time the run worked on the host (a rollout's preflight, then its wave): the span from the
    `host_done` line back over its duration, with the status it ended in there."""
    phases = []
    for event in events:
        if event.get("event") != Event.HOST_DONE:
            continue
        ended, duration = _time(event.get("timestamp")), _number(event.get("duration")) or 0.0
        began = datetime.fromtimestamp(ended.timestamp() - duration, ended.tzinfo) if ended else None
        phases.append({"command": _text(event.get("step")), "wave": _text(event.get("wave")),
                       "status": _text(event.get("status")), "offset": clock.offset(began),
                       "duration": duration, "abandoned": event.get("abandoned") is True})
    return phases


def _outcome(record: Mapping[str, Any], host: str, events: Sequence[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The host's status (run.json's outcome, else its log's last `host_done` of the run's command,
    else `interrupted`) and the `host_done` line that says why, if any."""
    command = record["command"]
    done = [e for e in events if e.get("event") == Event.HOST_DONE and e.get("step") == command]
    last = done[-1] if done else {}
    status = (record.get("outcomes") or {}).get(host) or _text(last.get("status"))
    if status not in STATUSES:
        status = Status.INTERRUPTED
    if not last and command == Command.ROLLOUT:  # ended in the preflight: its `plan` line says why
        last = next((e for e in reversed(events) if e.get("event") == Event.HOST_DONE), {})
    return str(status), last


def _host(record: Mapping[str, Any], host: str, events: Sequence[dict[str, Any]], wave: str | None,
          clock: _Clock, torn: int) -> dict[str, Any]:
    status, done = _outcome(record, host, events)
    steps = _steps(events, clock)
    phases = _phases(events, clock)
    times = [t for e in events if (t := _time(e.get("timestamp"))) is not None]
    error = _error(done.get("error"))
    failed_step = _text(done.get("failed_step"))
    if error is None and status == Status.FAILED:  # the last failed step says why
        failed = [s for s in steps if s["status"] == Status.FAILED]
        error, failed_step = (failed[-1]["error"], failed[-1]["step"]) if failed else (None, failed_step)
    return {
        "status": status,
        "wave": wave,
        "failed_step": failed_step,
        "error": error,
        "reason": one_line(error) or None,
        "started": min(times).isoformat() if times else None,
        "finished": max(times).isoformat() if times else None,
        "duration": round(sum(p["duration"] for p in phases if p["command"] == record["command"]), 3)
        if phases else None,
        "phases": phases,
        "steps": steps,
        "torn_lines": torn,
    }


def _waves(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    waves = []
    for wave in record.get("waves") or []:
        waves.append({"name": wave["name"], "hosts": list(wave["hosts"])})
    return waves


def _gates(record: Mapping[str, Any], waves: Sequence[dict[str, Any]],
           hosts: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The gate decisions, each placed where the wave it judged ended (the preflight's: its last host)."""
    ends = {w["name"]: w["end"] for w in waves}
    preflight = [p["offset"] + p["duration"] for h in hosts.values() for p in h["phases"]
                 if p["wave"] == "preflight" and p["offset"] is not None]
    ends.setdefault("preflight", round(max(preflight), 3) if preflight else None)
    gates = []
    for gate in record.get("gates") or []:
        reasons, wave = gate.get("reasons"), _text(gate.get("wave")) or "?"
        gates.append({"wave": wave, "go_on": gate.get("go_on") is True,
                      "reasons": [str(r) for r in reasons] if isinstance(reasons, list) else [],
                      "offset": ends.get(wave)})
    return gates


def host_order(record: Mapping[str, Any]) -> list[str]:
    """A rollout's hosts in wave order (then those no wave took, by name); other runs' by name."""
    names = list(dict.fromkeys(record["hosts"]))
    placed = list(dict.fromkeys(h for w in _waves(record) for h in w["hosts"] if h in names))
    return placed + sorted(set(names) - set(placed))


def _wave_spans(waves: list[dict[str, Any]], hosts: Mapping[str, dict[str, Any]]) -> None:
    """Each wave's start and end (offsets): from the first to the last phase its hosts ran in it."""
    for wave in waves:
        spans = [(p["offset"], p["offset"] + p["duration"]) for h in wave["hosts"] if h in hosts
                 for p in hosts[h]["phases"] if p["wave"] == wave["name"] and p["offset"] is not None]
        wave["offset"] = min(s for s, _ in spans) if spans else None
        wave["end"] = round(max(e for _, e in spans), 3) if spans else None


def build_report(data: RunData) -> dict[str, Any]:
    """The report document of a run (docs/report.md). Pure: reads only `data`."""
    record = data.record
    events = [e for lines in data.logs.values() for e in lines]
    times = [t for e in events if (t := _time(e.get("timestamp"))) is not None]
    started = _time(record.get("started"))
    clock = _Clock(started or (min(times) if times else None))
    wave_of = {h: w["name"] for w in _waves(record) for h in w["hosts"]}
    hosts = {name: _host(record, name, data.logs.get(name, []), wave_of.get(name), clock,
                         data.torn_lines.get(name, 0))
             for name in host_order(record)}
    waves = _waves(record)
    _wave_spans(waves, hosts)
    finished = max(times) if times else None
    counts = Counter(h["status"] for h in hosts.values())
    return {
        "schema": SCHEMA_ID,
        "run_id": str(record.get("run_id") or data.path.name),
        "command": record["command"],
        **{name: _text(record.get(name)) for name in ("inventory", "limit", "state", "ending")},
        "started": started.isoformat() if started else None,
        "finished": finished.isoformat() if finished else None,
        "duration": clock.offset(finished),
        "run_dir": str(data.path),
        "options": record.get("options") if isinstance(record.get("options"), dict) else None,
        "counts": {s: counts[s] for s in STATUSES if counts[s]},
        "waves": waves,
        "gates": _gates(record, waves, hosts),
        "hosts": hosts,
        "torn_lines": sum(data.torn_lines.values()),
    }


def failures(doc: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The hosts that did not end in a success status of the run's command, in report order."""
    good = {str(s) for s in SUCCESS[Command(doc["command"])]}
    return [(name, host) for name, host in doc["hosts"].items() if host["status"] not in good]


# --- the JSON Schema ----------------------------------------------------------------------------------


def _nullable(kind: str | list[str]) -> dict[str, Any]:
    kinds = [kind] if isinstance(kind, str) else kind
    return {"type": [*kinds, "null"]}


def _object(properties: Mapping[str, Any], required: Iterable[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": dict(properties),
            "required": list(required if required is not None else properties), "additionalProperties": False}


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the report document."""
    status = {"enum": list(STATUSES)}
    offset, seconds = _nullable("number"), _nullable("number")
    error = {"oneOf": [{"type": "null"}, _object({"class": {"type": "string"}, "message": {"type": "string"}})]}
    step = _object({"step": {"type": "string"}, "status": status, "attempt": _nullable("integer"),
                    "wave": _nullable("string"), "reason": _nullable("string"), "started": _nullable("string"),
                    "offset": offset, "duration": seconds, "error": error})
    phase = _object({"command": _nullable("string"), "wave": _nullable("string"), "status": _nullable("string"),
                     "offset": offset, "duration": {"type": "number"}, "abandoned": {"type": "boolean"}})
    host = _object({"status": status, "wave": _nullable("string"), "failed_step": _nullable("string"),
                    "error": error, "reason": _nullable("string"), "started": _nullable("string"),
                    "finished": _nullable("string"), "duration": seconds,
                    "phases": {"type": "array", "items": phase}, "steps": {"type": "array", "items": step},
                    "torn_lines": {"type": "integer", "minimum": 0}})
    wave = _object({"name": {"type": "string"}, "hosts": {"type": "array", "items": {"type": "string"}},
                    "offset": offset, "end": offset})
    gate = _object({"wave": {"type": "string"}, "go_on": {"type": "boolean"},
                    "reasons": {"type": "array", "items": {"type": "string"}}, "offset": offset})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "dsrprep run report",
        **_object({
            "schema": {"const": SCHEMA_ID}, "run_id": {"type": "string"}, "command": {"enum": list(Command)},
            "inventory": _nullable("string"), "limit": _nullable("string"), "state": _nullable("string"),
            "ending": _nullable("string"), "started": _nullable("string"), "finished": _nullable("string"),
            "duration": seconds, "run_dir": {"type": "string"}, "options": _nullable("object"),
            "counts": {"type": "object", "propertyNames": status,
                       "additionalProperties": {"type": "integer", "minimum": 1}},
            "waves": {"type": "array", "items": wave}, "gates": {"type": "array", "items": gate},
            "hosts": {"type": "object", "additionalProperties": host},
            "torn_lines": {"type": "integer", "minimum": 0},
        }),
    }


def schema_text() -> str:
    return json.dumps(report_schema(), indent=2) + "\n"


if __name__ == "__main__":
    print(schema_text(), end="")
