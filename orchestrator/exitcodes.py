"""Every exit code dsrprep ends with, and what each means: the one table that `dsrprep --help`, the
README's "Exit codes" section (checked by tests/unit/test_exitcodes.py) and the CLI read.

`dsrprep check --format nagios` follows the Nagios plugin convention instead (`NAGIOS`), so that a
monitoring system reads its exit code as it reads any plugin's.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType


class ExitCode(IntEnum):
    OK = 0
    HOSTS_FAILED = 1
    BAD_INPUT = 2
    ABORTED = 3
    DECLINED = 4
    DRIFTED = 5
    UNCHECKED = 6
    INTERRUPTED = 130


MEANING: Mapping[ExitCode, str] = MappingProxyType({
    ExitCode.OK: "every host ok (or changed, or rolled back; for check: compliant)",
    ExitCode.HOSTS_FAILED: "some hosts failed or were unreachable, within the thresholds",
    ExitCode.BAD_INPUT: "bad input or usage (also hosts held by another run)",
    ExitCode.ABORTED: "a gate or threshold stopped the rollout",
    ExitCode.DECLINED: "declined at a prompt",
    ExitCode.DRIFTED: "check: some host has drifted (a rollout would change it)",
    ExitCode.UNCHECKED: "check: no host has drifted, but some host could not be checked (unreachable or failed)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C, SIGTERM or SIGHUP)",
})


class Nagios(IntEnum):
    """The Nagios plugin exit codes (Nagios Plugin Development Guidelines, "Plugin Return Codes")."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3


NAGIOS_MEANING: Mapping[Nagios, str] = MappingProxyType({
    Nagios.OK: "every host compliant",
    Nagios.WARNING: "no host has drifted, but some host could not be checked",
    Nagios.CRITICAL: "some host has drifted",
    Nagios.UNKNOWN: "the check could not run (bad inventory or option, interrupted)",
})


def _joined(table: Mapping[ExitCode, str] | Mapping[Nagios, str]) -> str:
    return "; ".join(f"{int(code)} {meaning}" for code, meaning in table.items())


def help_text() -> str:
    """The exit codes as `dsrprep --help` lists them."""
    return f"Exit codes: {_joined(MEANING)}. check --format nagios: {_joined(NAGIOS_MEANING)}."


def readme_lines() -> list[str]:
    """The list in README.md's "Exit codes" section, line for line."""
    lines = [f"- `{int(code)}` {meaning}" for code, meaning in MEANING.items()]
    lines += ["", "`dsrprep check --format nagios` exits as a Nagios plugin does:", ""]
    lines += [f"- `{int(code)}` {code.name}: {meaning}" for code, meaning in NAGIOS_MEANING.items()]
    return lines
