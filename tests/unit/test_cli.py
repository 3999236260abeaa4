"""The command line on bad input: clear messages naming file, host and field, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example.yml"

BAD = """\
all:
  vars:
    dsr_vips: [10.0.0.50]
  hosts:
    web1:
      ansible_host: 10.0.0.11
      ansible_port: 99999
      ansible_psrp_auth: telepathy
    web2:
      ansible_host: 10.0.0.50
"""


def test_inventory_check_shows_hosts_without_passwords() -> None:
    result = CliRunner().invoke(app, ["inventory", "check", str(EXAMPLE)], env={"DSRPREP_WEB_PASSWORD": "s3cret-x"})
    assert result.exit_code == 0, result.output
    assert "web01" in result.stdout and "intra01" in result.stdout
    assert "s3cret-x" not in result.stdout


def test_inventory_check_json_resolves_settings() -> None:
    result = CliRunner().invoke(app, ["inventory", "check", "--json", str(EXAMPLE)],
                                env={"DSRPREP_WEB_PASSWORD": "s3cret-x"})
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    hosts = {h["name"]: h for h in doc["hosts"]}
    assert hosts["web01"]["password"] == "set"
    assert hosts["web01"]["password_source"] == "env DSRPREP_WEB_PASSWORD"
    assert "s3cret-x" not in result.stdout
    assert set(doc["groups"]) >= {"all", "web"}


def test_bad_inventory_exits_2_naming_file_host_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(BAD)
    result = CliRunner().invoke(app, ["inventory", "check", str(path)])
    assert result.exit_code == 2
    text = result.output
    assert "Traceback" not in text
    assert f"{path}: host web1: ansible_port" in text
    assert "telepathy" in text
    assert "web2" in text  # its VIP equals its own address


def test_missing_inventory_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["facts", str(tmp_path / "nope.yml")])
    assert result.exit_code == 2
    assert "not found" in result.output and "Traceback" not in result.output


def test_limit_matching_nothing_exits_2() -> None:
    result = CliRunner().invoke(app, ["facts", str(EXAMPLE), "--limit", "nosuchhost"],
                                env={"DSRPREP_WEB_PASSWORD": "x"})
    assert result.exit_code == 2
    assert "nosuchhost" in result.output and "Traceback" not in result.output


def test_facts_needs_the_password_variable() -> None:
    result = CliRunner().invoke(app, ["facts", str(EXAMPLE)], env={"DSRPREP_WEB_PASSWORD": ""})
    assert result.exit_code == 2
    assert "DSRPREP_WEB_PASSWORD" in result.output


def test_python_dash_m_entry_point() -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "orchestrator", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0
    assert "facts" in done.stdout and "inventory" in done.stdout
