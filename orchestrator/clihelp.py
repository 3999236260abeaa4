"""How dsrprep's `--help` reads: flags without a type, and examples under every command.

typer's rich help (typer 0.29) prints each option's type beside it, `<bool>` even for a flag, which
takes no value (`--yes <bool>` reads as if it wanted one; typer's plain help leaves flags out, and
fastapi/typer#493 and #1727 discuss how flags are shown). `HelpGroup`, the class of every typer app
of the CLI, gives each flag of a command it hands out, and of itself, an empty metavar: the rich help
then shows no type for flags, and the other options keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from typer.core import TyperGroup, TyperOption


def untyped_flags(params: Iterable[Any]) -> None:
    """An empty metavar for every flag among `params` (the help option too) that has none."""
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""


class HelpGroup(TyperGroup):
    """A typer group whose commands, subgroups and own options show flags without a type."""

    # ctx is typer's vendored click Context, which typer does not export under a public name.
    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        untyped_flags(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            untyped_flags(command.get_params(ctx))
        return command


def examples(*lines: str) -> str:
    """A command's epilog: its examples, one a line (rich help joins lines not parted by a blank one)."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)
