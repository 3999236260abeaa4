"""What a template sees of PowerShell on a lab host: its parameters as PowerShell binds them, the
result object it emits, the `throw` that ends its pipeline, and the text native commands print.

Owns the conventions every step handler shares (docs/steps.md): a template emits one hashtable
with `changed`, throws "<command> failed (exit N): <output>" for a native command's refusal (the
templates' Invoke-NativeCommand), and joins native output with CRLF as Out-String does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from orchestrator.lab.common import Hashtable, ScriptResult

CRLF = "\r\n"
DEFAULT_VARIANT = "default"


class StepFailed(Exception):
    """Raised by a step handler for what the real script would `throw`: ends the pipeline Failed."""


def text(lines: Iterable[str]) -> str:
    """Native output as Out-String joins it: CRLF line ends, one after the last line."""
    return CRLF.join(lines) + CRLF


def enabled(flag: bool) -> str:
    return "enabled" if flag else "disabled"


def not_recognized(name: str) -> str:
    """PowerShell's CommandNotFoundException text, for a step the host has no script for."""
    return (
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is "
        "correct and try again."
    )


def command_line(exe: str, args: list[str]) -> str:
    shown = [f'"{a}"' if any(c.isspace() for c in a) else a for a in args]
    return f"{exe} {' '.join(shown)}"


def native_failed(exe: str, args: list[str], code: int, output: str) -> StepFailed:
    """The templates' Invoke-NativeCommand throw for an exit code it does not accept."""
    return StepFailed(f"{command_line(exe, args)} failed (exit {code}): {output.strip()}")


def result(changed: bool, **values: Any) -> ScriptResult:
    """The one result object a template emits."""
    return ScriptResult(output=[Hashtable(changed=changed, **values)])


def changed(outcome: ScriptResult) -> bool:
    first = outcome.output[0] if outcome.output else None
    return isinstance(first, dict) and bool(first.get("changed"))


def ps_string(value: Any) -> str:
    """[string]$value as PowerShell converts it."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return " ".join(ps_string(v) for v in value)
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    return str(value)


def p_str(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def p_bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "$true", "1")
    return bool(value)


def p_int(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StepFailed(
            f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
            f'"{value}" to type "System.Int32".'
        ) from None


def p_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def ensure(params: dict[str, Any]) -> bool:
    """$Ensure: True for Present, False for Absent; the templates' throw for anything else."""
    wanted = p_str(params, "Ensure")
    if wanted.lower() not in ("present", "absent"):
        raise StepFailed(f"Ensure must be 'Present' or 'Absent', not '{wanted}'")
    return wanted.lower() == "present"


def major(version: str) -> int:
    """The major number of a version string ("5.1" -> 5; 0 when unreadable)."""
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return 0
