"""The README's first quick-start command: `dsrprep demo` starts a mixed lab fleet (some hosts partly
configured by hand, one flaky), rolls it out canary first and then in waves, writes the HTML report
into the run folder, checks that every host is compliant, and exits 0; `--scenario canary-fails`
shows the canary's failure stopping the rollout before any other host (exit 3)."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.exitcodes import ExitCode
from orchestrator.rolloutlog import read_host_log, read_run

pytestmark = pytest.mark.lab


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)


def _runs(runs_dir: Path) -> list[dict[str, object]]:
    runs = [r for r in runs_dir.iterdir() if r.is_dir() and not r.name.startswith(".")]
    return sorted((read_run(r) | {"path": r} for r in runs), key=lambda r: str(r["started"]))


def _report_tags(run_dir: Path) -> list[str]:
    parser = _Tags()
    parser.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    return parser.tags


def test_demo_rolls_out_a_fleet_canary_first_then_checks_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--hosts", "8", "--seed", "7", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "partly configured by hand already (firewall_rule, loopback)" in text
    assert "flaky" in text
    assert "gate after canary: go on" in text
    assert "compliant 8, drifted 0, unchecked 0" in text
    assert text.strip().endswith("lab fleet stopped.")
    rollout, check = _runs(tmp_path)
    assert rollout["command"] == "rollout" and check["command"] == "check"
    assert rollout["ending"] == "finished" and rollout["summary"] == {"changed": 8}
    waves = rollout["waves"]
    assert isinstance(waves, list) and waves[0]["name"] == "canary" and len(waves[0]["hosts"]) == 1
    # Every line of a host's log says which wave it belongs to.
    run_dir = Path(str(rollout["path"]))
    for wave in waves:
        for host in wave["hosts"]:
            assert {e["wave"] for e in read_host_log(run_dir / "hosts" / f"{host}.jsonl").events} == {
                "preflight", wave["name"]}
    assert f"HTML report: {run_dir / 'report.html'}" in text
    tags = _report_tags(run_dir)
    assert "svg" in tags and "script" not in tags


def test_demo_canary_fails_stops_before_any_other_host(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--hosts", "6", "--scenario", "canary-fails",
                                      "--runs-dir", str(tmp_path)])
    assert result.exit_code == ExitCode.ABORTED, result.output
    assert "loopback_config refused on purpose" in result.output
    (rollout,) = _runs(tmp_path)
    assert rollout["ending"] == "aborted" and rollout["summary"] == {"failed": 1, "aborted": 5}
    assert "svg" in _report_tags(Path(str(rollout["path"])))
