"""One table of exit codes (orchestrator/exitcodes.py): the README and `dsrprep --help` say what it says."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from orchestrator import cli
from orchestrator.exitcodes import MEANING, NAGIOS_MEANING, ExitCode, readme_lines

ROOT = Path(__file__).resolve().parents[2]


def _section(title: str) -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    body = readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    return body.strip().splitlines()


def test_readme_lists_exactly_the_exit_codes_of_the_table() -> None:
    listed = _section("Exit codes")
    assert listed[: len(readme_lines())] == readme_lines(), "README 'Exit codes' differs from exitcodes.readme_lines()"
    assert all(not line.startswith("- `") for line in listed[len(readme_lines()):])


def test_help_lists_every_exit_code_with_its_meaning() -> None:
    result = CliRunner().invoke(cli.app, ["--help"], terminal_width=400)
    text = " ".join(result.stdout.replace("│", " ").split())
    for code, meaning in [*MEANING.items(), *NAGIOS_MEANING.items()]:
        assert f"{int(code)} {meaning}" in text, (code, meaning)


def test_codes_are_distinct_and_the_cli_uses_the_table() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode) and set(MEANING) == set(ExitCode)
    assert (cli.EXIT_OK, cli.EXIT_HOSTS_FAILED, cli.EXIT_BAD_INPUT, cli.EXIT_ABORTED, cli.EXIT_DECLINED,
            cli.EXIT_INTERRUPTED) == (ExitCode.OK, ExitCode.HOSTS_FAILED, ExitCode.BAD_INPUT, ExitCode.ABORTED,
                                      ExitCode.DECLINED, ExitCode.INTERRUPTED)
    assert [int(c) for c in NAGIOS_MEANING] == [0, 1, 2, 3]
