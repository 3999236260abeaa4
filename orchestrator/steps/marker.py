"""Present: writes each value (as REG_SZ) under `HKLM\\SOFTWARE\\dsrprep\\DSR` when it differs; a
`$null` value deletes that one value. Absent: deletes the key, and `HKLM\\SOFTWARE\\dsrprep` once it
is empty. Result: `@{changed; values}`. The `loopback` step writes the marker itself; rollback
removes it once everything else is undone.
"""

from __future__ import annotations

from functools import partial

from orchestrator.steps.base import Action, Docs, Step, UndoContext, action, changed_only

NAME = "marker"


def undo(ctx: UndoContext) -> list[Action]:
    if ctx.before.marker or not ctx.now.marker:
        return []
    return [action(NAME, "remove dsrprep's marker", Ensure="Absent", Values={})]


STEP = Step(
    name=NAME,
    order=110,
    description=__doc__ or "",
    undo=undo,
    undo_last=True,
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"default": "`HKLM\\SOFTWARE\\dsrprep\\DSR` values written by `loopback`"},
        checked_by="the marker key",
        undone_by="key deleted",
    ),
)
