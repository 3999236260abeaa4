"""Drift verdicts from dry-run results, and their formats: Prometheus text parsed by prometheus_client's
parser, the Nagios line and its codes, the exit codes, the atomic writing of --output."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner, Result

from orchestrator import privatefs
from orchestrator.cli import Deps, app
from orchestrator.drift import Check, State, judge
from orchestrator.errors import ErrorInfo
from orchestrator.exitcodes import ExitCode, Nagios
from orchestrator.results import Command, FleetResult, HostResult, PlanStatus, Status
from orchestrator.steps.base import action
from tests.unit.test_cli_bad_input import Refused  # a host refusing the credentials

PREFLIGHT = action("preflight", "checks before any change")
BINDING = action("iis_binding", "site 'Default Web Site' lacks http 10.20.0.200:80", Site="Default Web Site")
FIREWALL = action("firewall_rule", "no rule for 10.20.0.200:80/tcp")


def compliant(name: str) -> HostResult:
    return HostResult(name, Command.PLAN, PlanStatus.COMPLIANT, os_family="2016")


def drifted(name: str) -> HostResult:
    return HostResult(name, Command.PLAN, PlanStatus.CHANGES, planned=(PREFLIGHT, BINDING, FIREWALL))


def unreachable(name: str) -> HostResult:
    return HostResult(name, Command.PLAN, Status.UNREACHABLE, failed_step="facts",
                      error=ErrorInfo("Unreachable", "connection refused"))


def refused(name: str) -> HostResult:
    return HostResult(name, Command.PLAN, Status.FAILED, failed_step="preflight",
                      error=ErrorInfo("PreflightRefused", "not elevated"))


def check(*results: HostResult) -> Check:
    return Check(FleetResult(Command.PLAN, results), 1_700_000_000.25)


def test_judge_only_an_empty_plan_is_compliant() -> None:
    assert judge(compliant("a")).state == State.COMPLIANT
    verdict = judge(drifted("b"))
    assert verdict.state == State.DRIFTED
    assert [p.step for p in verdict.pending] == ["iis_binding", "firewall_rule"]  # preflight is no change
    # A plan result saying "compliant" while it holds an action is drift, not compliance.
    odd = HostResult("c", Command.PLAN, PlanStatus.COMPLIANT, planned=(BINDING,))
    assert judge(odd).state == State.DRIFTED
    for result in (unreachable("d"), refused("e"), HostResult("f", Command.PLAN, Status.INTERRUPTED)):
        verdict = judge(result)
        assert verdict.state == State.UNCHECKED and verdict.reason, result
    assert judge(unreachable("d")).reason == "facts: Unreachable: connection refused"


@pytest.mark.parametrize(("results", "code", "nagios"), [
    ((compliant("a"), compliant("b")), ExitCode.OK, Nagios.OK),
    ((compliant("a"), drifted("b")), ExitCode.DRIFTED, Nagios.CRITICAL),
    ((compliant("a"), unreachable("b")), ExitCode.UNCHECKED, Nagios.WARNING),
    ((refused("a"), compliant("b")), ExitCode.UNCHECKED, Nagios.WARNING),
    ((drifted("a"), unreachable("b")), ExitCode.DRIFTED, Nagios.CRITICAL),
    ((), ExitCode.UNCHECKED, Nagios.WARNING),
])
def test_exit_codes_and_nagios_codes(results: tuple[HostResult, ...], code: ExitCode, nagios: Nagios) -> None:
    verdict = check(*results)
    assert verdict.exit_code() == code
    assert verdict.nagios()[1] == nagios
    assert verdict.nagios()[0].startswith(f"DSRPREP {nagios.name} - ")


def test_nagios_line_names_hosts_and_carries_perfdata() -> None:
    line, _ = check(compliant("web01"), drifted("web02"), unreachable("web03")).nagios()
    status, perfdata = line.split(" | ")
    assert "\n" not in line and line.count("|") == 1
    assert status == ("DSRPREP CRITICAL - 1 of 3 hosts drifted: web02 (iis_binding,firewall_rule); "
                      "1 of 3 hosts cannot be checked: web03 (Unreachable); 1 hosts compliant")
    assert perfdata == "compliant=1;;;0;3 drifted=1;;;0;3 unchecked=1;;;0;3"
    ok, _ = check(compliant("web01"), compliant("web02")).nagios()
    assert ok == "DSRPREP OK - 2 hosts compliant | compliant=2;;;0;2 drifted=0;;;0;2 unchecked=0;;;0;2"


def test_nagios_line_lists_five_hosts_and_no_pipe_from_a_name() -> None:
    line, _ = check(*(drifted(f"web{i:02d}") for i in range(8)), drifted("a|b")).nagios()
    assert line.count("|") == 1 and "a/b (" in line and "and 4 more" in line


def _families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {f.name: [(s.labels, s.value) for s in f.samples] for f in text_string_to_metric_families(text)}


def test_prometheus_text_parses_with_the_values_of_each_host() -> None:
    text = check(compliant("web01"), drifted("web02"), unreachable("web03")).prometheus()
    metrics = _families(text)
    assert metrics["dsrprep_host_compliant"] == [({"host": "web01"}, 1), ({"host": "web02"}, 0),
                                                 ({"host": "web03"}, 0)]
    # A host that could not be checked has no pending count: unknown is not zero.
    assert metrics["dsrprep_host_actions_pending"] == [({"host": "web01"}, 0), ({"host": "web02"}, 2)]
    assert metrics["dsrprep_host_checked"] == [({"host": "web01"}, 1), ({"host": "web02"}, 1), ({"host": "web03"}, 0)]
    assert dict((s["state"], v) for s, v in metrics["dsrprep_check_hosts"]) == {
        "compliant": 1, "drifted": 1, "unchecked": 1}
    assert metrics["dsrprep_check_timestamp"] == [({}, 1_700_000_000.25)]
    assert text.count("# HELP ") == text.count("# TYPE ") == 5 and text.endswith("\n")
    assert all(f.type == "gauge" for f in text_string_to_metric_families(text))


def test_prometheus_label_values_are_escaped() -> None:
    odd = 'we"b\\01\nx'
    metrics = _families(check(compliant(odd)).prometheus())
    assert metrics["dsrprep_host_compliant"] == [({"host": odd}, 1)]


def test_json_document_holds_verdicts_beside_the_plan() -> None:
    doc = check(compliant("web01"), drifted("web02"), unreachable("web03")).to_dict()
    assert doc["exit_code"] == 5 and doc["counts"] == {"compliant": 1, "drifted": 1, "unchecked": 1}
    assert doc["checked_at"] == "2023-11-14T22:13:20+00:00"
    assert doc["hosts"]["web02"]["state"] == "drifted"
    assert [p["step"] for p in doc["hosts"]["web02"]["pending"]] == ["iis_binding", "firewall_rule"]
    assert [a["step"] for a in doc["hosts"]["web02"]["actions"]] == ["preflight", "iis_binding", "firewall_rule"]
    assert doc["hosts"]["web03"]["reason"] == "facts: Unreachable: connection refused"
    assert doc["hosts"]["web03"]["status"] == "unreachable"


def test_replace_text_is_atomic_with_its_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "dsrprep.prom"
    target.write_text("old\n")
    privatefs.replace_text(target, "new\n", mode=0o644)
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["dsrprep.prom"]
    privatefs.replace_text(target, "private\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_replace_text_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "dsrprep.prom"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        privatefs.replace_text(target, "\udcff")  # a lone surrogate cannot be written as UTF-8
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["dsrprep.prom"]


def test_output_takes_json_or_prometheus_only(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path / "inv.yml"), "--output", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--output takes --format json or prometheus" in result.stderr


def test_nagios_bad_input_is_unknown_with_the_reason_on_stdout(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yml"
    result = CliRunner().invoke(app, ["check", str(missing), "--format", "nagios"])
    assert result.exit_code == Nagios.UNKNOWN
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("DSRPREP UNKNOWN - ") and str(missing) in lines[0]
    assert str(missing) in result.stderr and "Traceback" not in result.output


def test_bad_input_exits_2_in_the_other_formats(tmp_path: Path) -> None:
    for fmt in ("table", "json", "prometheus"):
        result = CliRunner().invoke(app, ["check", str(tmp_path / "nowhere.yml"), "--format", fmt])
        assert result.exit_code == 2 and result.stdout == "", fmt


def invoke(tmp_path: Path, *args: str) -> Result:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  vars:\n    dsr_vips: [10.0.0.50]\n"
                         "  hosts:\n    web1:\n      ansible_host: 10.0.0.11\n")
    return CliRunner().invoke(app, ["check", str(inventory), "--runs-dir", str(tmp_path / "runs"), *args],
                              env={"DSRPREP_PASSWORD": "x"}, obj=Deps(session_factory=Refused))


def test_a_host_that_cannot_be_checked_is_exit_6_in_metrics_and_nagios_warning(tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "dsrprep.prom"
    target.parent.mkdir()
    result = invoke(tmp_path, "--format", "prometheus", "--output", str(target))
    assert result.exit_code == ExitCode.UNCHECKED and result.stdout == "", result.output
    metrics = _families(target.read_text())
    assert metrics["dsrprep_host_checked"] == [({"host": "web1"}, 0)]
    assert metrics["dsrprep_host_compliant"] == [({"host": "web1"}, 0)]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["dsrprep.prom"]
    result = invoke(tmp_path, "--format", "nagios")
    assert result.exit_code == Nagios.WARNING
    assert result.stdout == ("DSRPREP WARNING - 1 of 1 hosts cannot be checked: web1 (AuthError); 0 hosts compliant"
                             " | compliant=0;;;0;1 drifted=0;;;0;1 unchecked=1;;;0;1\n")
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(json.loads((r / "run.json").read_text())["command"] == "check" for r in runs)


def test_an_output_in_a_missing_folder_is_exit_2_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "dsrprep.prom"
    result = invoke(tmp_path, "--format", "json", "--output", str(target))
    assert result.exit_code == ExitCode.BAD_INPUT
    assert f"--output {target}: cannot write it: No such file or directory" in result.stderr
    assert "Traceback" not in result.output and not target.parent.exists()
