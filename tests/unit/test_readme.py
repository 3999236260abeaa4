"""The README's quick start and CI stay in step: CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL)]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = quick_start_commands()
    assert len(commands) == 2
    assert all("\n" not in c for c in commands)
    assert commands[0].endswith("dsrprep demo")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert quick_start_commands()[1] in ci_lines


def test_test_command_lints_and_type_checks_the_package() -> None:
    test_command = quick_start_commands()[1]
    assert "ruff check orchestrator" in test_command
    assert "mypy --strict orchestrator" in test_command


def test_readme_states_how_fresh_preflight_facts_must_be() -> None:
    from orchestrator.runner import PREFLIGHT_FACTS_FRESH

    words = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"within {PREFLIGHT_FACTS_FRESH:g} s of its preflight" in words
