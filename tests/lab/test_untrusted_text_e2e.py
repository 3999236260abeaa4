"""Text dsrprep does not control, end to end through real pypsrp against the lab: PowerShell
metacharacters in names reach the host byte-exact as bound PSRP parameters (never spliced into a
script), and rich markup or emoji codes in names, users, groups, adapters, sites and error messages
are printed exactly as written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.fleet import LAB_PASSWORD, LabFleet
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.steps import STEPS
from orchestrator.lab.steps.base import LabStep

pytestmark = pytest.mark.lab

# Quotes of both kinds, a subexpression, a variable, backticks, a statement separator, a comment,
# a pipe, a redirection, unicode (Cyrillic, an emoji, a right-to-left mark) and, where Windows keeps
# it, a newline: a script built by splicing any of these in would run something else.
SITE = "Shop \"$(Get-Date)\" 'x' `whoami`; # | > $env:TEMP Ünïcødé 🙂 \u200f"
LOOPBACK = "DSR $(Stop-Computer) `n';\"\n& del C:\\* # Лупбэк 😀"
USER = "lab$(x)`;'\"admin"


class Recorder:
    """Every template the host runs, with the parameters bound to it, as the model received them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def steps(self) -> dict[str, LabStep]:
        return {name: replace(step, run=self._wrap(name, step)) for name, step in STEPS.items()}

    def _wrap(self, name: str, step: LabStep) -> Any:
        def run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
            self.calls.append((name, dict(params)))
            return step.run(host, params, variant)
        return run

    def values(self, step: str, param: str) -> list[Any]:
        return [params[param] for name, params in self.calls if name == step and param in params]


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def write(path: Path, inventory: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(inventory, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture()
def recorded_fleet() -> Iterator[tuple[LabFleet, Recorder]]:
    recorder = Recorder()
    fleet = LabFleet.build(1, seed=31, profile="2016")
    model = fleet.hosts[0].model
    model.steps = recorder.steps()
    model.sites[0].name = SITE
    model.sites[0].bindings = [("http", f"{model.rip}:80:")]  # not every address: the VIP must be added
    model.username = USER
    with fleet:
        yield fleet, recorder


def test_metacharacters_reach_the_host_byte_exact_as_parameters(
        recorded_fleet: tuple[LabFleet, Recorder], tmp_path: Path) -> None:
    fleet, recorder = recorded_fleet
    inventory = fleet.inventory()
    inventory["all"]["vars"].update(ansible_user=USER, dsr_iis_sites=[SITE], dsr_loopback_name=LOOPBACK)
    path = write(tmp_path / "lab.yml", inventory)
    result = cli("rollout", str(path), "--yes", "--json", "--runs-dir", str(tmp_path / "runs"))
    assert result.exit_code == 0, result.output
    assert {h["status"] for h in json.loads(result.stdout)["hosts"].values()} == {"changed"}

    assert recorder.values("iis_binding", "Site") == [SITE]
    names = recorder.values("loopback_config", "Name")
    assert names and all(name == LOOPBACK for name in names), names
    model = fleet.hosts[0].model
    assert model.sites[0].name == SITE
    assert any(("http", f"{fleet.vip}:80:") == binding for binding in model.sites[0].bindings)
    assert LOOPBACK in [n.connection_id for n in model.nics if n.service_name == "msloop"]

    again = cli("plan", str(path), "--json", "--runs-dir", str(tmp_path / "runs"))
    assert again.exit_code == 0, again.output
    assert {h["status"] for h in json.loads(again.stdout)["hosts"].values()} == {"compliant"}


# --- rich markup and emoji codes --------------------------------------------------------------------

MARKUP_HOST = "web[/x]:smile:"
MARKUP_GROUP = "[bold]g[/bold]"
MARKUP_USER = "[red]lab[/]"  # the lab takes no colon in a user name
MARKUP_NIC = "LAN [/nic] :smile:"
MARKUP_SITE = "[bold]Shop[/] :smile:"
MISSING_SITE = "[/gone] :x:"
IPV6_VIP = "2001:db8::100"


@pytest.fixture()
def markup_fleet() -> Iterator[LabFleet]:
    fleet = LabFleet.build(2, seed=32, profile="2016")
    first, second = (h.model for h in fleet.hosts)
    for model in (first, second):
        model.username = MARKUP_USER
        model.sites[0].name = MARKUP_SITE
        model.sites[0].bindings = [("http", f"{model.rip}:80:")]
        next(n for n in model.nics if n.service_name != "msloop").connection_id = MARKUP_NIC
    with fleet:
        yield fleet


def _markup_inventory(fleet: LabFleet, path: Path) -> Path:
    first, second = fleet.hosts
    common = {"ansible_port": first.port, "dsr_nic": {"name": MARKUP_NIC}}
    inventory = {"all": {
        "vars": {"ansible_user": MARKUP_USER, "ansible_password": LAB_PASSWORD,
                 "ansible_psrp_connection_timeout": 5, "ansible_psrp_operation_timeout": 5,
                 "ansible_psrp_read_timeout": 10,
                 "dsr_vips": [fleet.vip, {"address": IPV6_VIP, "ports": [80]}], "dsr_iis_sites": [MARKUP_SITE]},
        "children": {MARKUP_GROUP: {"hosts": {
            MARKUP_HOST: {**common, "ansible_host": first.address},
            "web2": {**common, "ansible_host": second.address, "ansible_port": second.port,
                     "dsr_iis_sites": [MISSING_SITE]},
        }}},
    }}
    return write(path, inventory)


def _cells(output: str) -> str:
    """The printed text with the table's borders and padding taken out: cells one per line."""
    return "\n".join(cell.strip() for line in output.splitlines() for cell in line.split("│") if cell.strip())


def test_markup_and_emoji_codes_print_exactly_as_written(markup_fleet: LabFleet, tmp_path: Path) -> None:
    path = _markup_inventory(markup_fleet, tmp_path / "lab.yml")
    runs = str(tmp_path / "runs")

    checked = cli("inventory", "check", str(path))
    assert checked.exit_code == 0, checked.output
    cells = _cells(checked.stdout)
    for text in (MARKUP_HOST, MARKUP_USER, MARKUP_GROUP, f"{IPV6_VIP}:80/tcp", f"name {MARKUP_NIC}"):
        assert text in cells.splitlines(), (text, cells)
    assert f"groups: all (2), {MARKUP_GROUP} (2)" in checked.stdout

    facts = cli("facts", str(path), "--runs-dir", runs)
    assert facts.exit_code == 0, facts.output
    cells = _cells(facts.stdout)
    assert MARKUP_HOST in cells.splitlines()
    assert any(line.startswith(f"{MARKUP_NIC}: ") for line in cells.splitlines()), cells
    assert any(MARKUP_SITE in line for line in cells.splitlines()), cells

    planned = cli("plan", str(path), "--runs-dir", runs)
    assert planned.exit_code == 1, planned.output  # web2's site does not exist
    lines = _cells(planned.stdout).splitlines()
    assert f"preflight: PreflightRefused: IIS site '{MISSING_SITE}' not found (sites: {MARKUP_SITE}, Intranet)" in lines
    assert f"iis_binding: site '{MARKUP_SITE}' not bound to {IPV6_VIP}:80" in lines
    assert f"weak_host: NIC '{MARKUP_NIC}' IPv4: weak host receive off" in lines
    assert f"canary: {MARKUP_HOST}" in lines

    rolled = cli("rollout", str(path), "--yes", "--limit", "!web2", "--runs-dir", runs)
    assert rolled.exit_code == 0, rolled.output
    cells = _cells(rolled.stdout)
    assert MARKUP_HOST in cells.splitlines() and "changed" in cells.splitlines()
    for printed in (checked.output, facts.output, planned.output, rolled.output):
        assert "😄" not in printed and "👍" not in printed and "💯" not in printed and "❌" not in printed
        assert "Traceback" not in printed
