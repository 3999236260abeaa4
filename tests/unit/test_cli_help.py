"""Help that teaches: every command's --help has an example and shows flags without a type; the exit
codes are in `dsrprep --help`; shell completion prints its script."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer.main
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.exitcodes import MEANING


def command_paths() -> Iterator[list[str]]:
    """Every command and group of the CLI, the app itself first, as the words that name it."""
    def walk(command: object, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])
    yield from walk(typer.main.get_command(app), [])


PATHS = list(command_paths())


def help_of(path: list[str]) -> str:
    done = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    return done.stdout


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(p) for p in PATHS}
    assert {"", "facts", "plan", "rollout", "rollback", "resume", "rerun", "inventory check", "lab serve"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "dsrprep")
def test_every_help_has_an_example_and_no_bool_metavar(path: list[str]) -> None:
    text = help_of(path)
    assert "<bool>" not in text
    assert "--help" in text
    if path and path[-1] not in ("inventory", "lab"):  # a group's help lists its commands
        assert "Examples:" in text
        assert f"dsrprep {' '.join(path)}" in text.split("Examples:", 1)[1]


def test_options_that_take_a_value_keep_their_type() -> None:
    text = help_of(["rollout"])
    assert "<int range>" in text and "<path>" in text


def test_the_exit_codes_are_in_the_top_help_and_the_rollout_help() -> None:
    for path in ([], ["rollout"]):
        text = " ".join(help_of(path).replace("│", " ").split())
        for code, meaning in MEANING.items():
            assert f"{int(code)} {meaning}" in text, (path, code)


def test_show_completion_prints_a_bash_completion_script() -> None:
    done = CliRunner().invoke(app, ["--show-completion", "bash"], prog_name="dsrprep", env={"SHELL": "/bin/bash"})
    assert done.exit_code == 0, done.output
    assert "_DSRPREP_COMPLETE=complete_bash" in done.stdout
    assert "complete -o default -F _dsrprep_completion dsrprep" in done.stdout


def test_completion_completes_commands_and_options() -> None:
    env = {"_DSRPREP_COMPLETE": "complete_bash", "COMP_WORDS": "dsrprep rollout --qu", "COMP_CWORD": "2"}
    done = CliRunner().invoke(app, [], prog_name="dsrprep", env=env)
    assert done.stdout.split() == ["--quiet"]
    env = {**env, "COMP_WORDS": "dsrprep rol", "COMP_CWORD": "1"}
    assert sorted(CliRunner().invoke(app, [], prog_name="dsrprep", env=env).stdout.split()) == ["rollback", "rollout"]
