"""Defaults and choices of command-line options that the modules acting on them share with the CLI.

They live here, apart from those modules, because typer reads every command's signature to build
`dsrprep --help`: importing them from the runner, the drift check or the report renderers would
import those (and the facts parsers, the planner and the step registry behind them) on every start.
Nothing here imports anything of dsrprep.
"""

from __future__ import annotations

from enum import StrEnum

DEFAULT_FORKS = 32  # hosts worked on at once (--forks)
DEFAULT_WAVES = "1,5,25%,100%"  # wave sizes after the canary (--waves)


class CheckFormat(StrEnum):
    """What `dsrprep check --format` prints."""

    TABLE = "table"
    JSON = "json"
    PROMETHEUS = "prometheus"
    NAGIOS = "nagios"


class ReportFormat(StrEnum):
    """What `dsrprep report --format` writes."""

    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"
    JUNIT = "junit"
    HTML = "html"
