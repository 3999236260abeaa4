"""`dsrprep steps`: the step table printed from the registry, and the generated docs rewritten."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from orchestrator import stepdocs, steps
from orchestrator.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_steps_lists_every_step_with_its_commands() -> None:
    result = CliRunner().invoke(app, ["steps"])
    assert result.exit_code == 0, result.output
    for step in steps.ordered():
        assert step.name in result.output
    assert "Windows Server 2003" in result.output and "not applicable" in result.output


def test_markdown_is_the_readme_table() -> None:
    result = CliRunner().invoke(app, ["steps", "--markdown"])
    assert result.exit_code == 0 and result.output == stepdocs.readme_table()


def test_write_docs_restores_a_stale_copy(tmp_path: Path) -> None:
    for rel in ("README.md", "docs/steps.md", "inventory/example.yml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace("| weak_host |", "| weak_hots |"), encoding="utf-8")
    result = CliRunner().invoke(app, ["steps", "--write-docs", str(tmp_path)])
    assert result.exit_code == 0 and "README.md" in result.output
    assert readme.read_text(encoding="utf-8") == (ROOT / "README.md").read_text(encoding="utf-8")
    again = CliRunner().invoke(app, ["steps", "--write-docs", str(tmp_path)])
    assert "already up to date" in again.output


def test_write_docs_names_a_folder_that_is_not_the_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["steps", "--write-docs", str(tmp_path)])
    assert result.exit_code == 2 and "not a dsrprep source folder" in result.output
