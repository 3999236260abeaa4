"""2008+: for each of `domain`, `private`, `public` listed whose state (`HNetCfg.FwPolicy2.FirewallEnabled`)
differs: `netsh advfirewall set <p>profile state on/off`. 2003: `netsh firewall set opmode
mode=ENABLE/DISABLE` when the current profile's mode (`HNetCfg.FwMgr`) differs; without `profile=`
it acts on the current profile (Profiles ignored). Used for `dsr_firewall: disable` and its rollback.
Result: `@{changed; output}` (+ `profiles` / `enabled`).
"""

from __future__ import annotations

from functools import partial

from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)
from orchestrator.steps.firewall_rule import UNREADABLE

NAME = "firewall_state"


def plan(ctx: PlanContext) -> StepPlan:
    if ctx.nic is None or ctx.desired.firewall != "disable":
        return NOTHING
    fw = ctx.facts.firewall
    if not ctx.facts.os.caps.advfirewall:
        if not fw.enabled:
            return NOTHING
        return StepPlan(actions=(action(NAME, "Windows Firewall is on (dsr_firewall: disable)", Enabled=False,
                                        Profiles=[]),))
    if fw.profiles is None:
        return StepPlan(refusals=(UNREADABLE,))
    on = sorted(name for name, enabled in fw.profiles.items() if enabled)
    if not on:
        return NOTHING
    return StepPlan(actions=(action(NAME, f"firewall profiles on: {', '.join(on)} (dsr_firewall: disable)",
                                    Enabled=False, Profiles=on),))


def undo(ctx: UndoContext) -> list[Action]:
    """The firewall back on where the rollout's `dsr_firewall: disable` turned it off."""
    if ctx.desired.firewall != "disable":
        return []
    before, now = ctx.before.firewall, ctx.now.firewall
    if not ctx.now.os.caps.advfirewall:
        if before.enabled and now.enabled is False:
            return [action(NAME, "turn Windows Firewall back on", Enabled=True, Profiles=[])]
        return []
    was_on = sorted(n for n, on in (before.profiles or {}).items() if on and not (now.profiles or {}).get(n, False))
    if not was_on:
        return []
    return [action(NAME, f"turn firewall profiles back on: {', '.join(was_on)}", Enabled=True, Profiles=was_on)]


STEP = Step(
    name=NAME,
    order=20,
    description=__doc__ or "",
    reads=("dsr_firewall",),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"win2003": "`netsh firewall set opmode DISABLE`",
                  "default": "`netsh advfirewall set <profile> state off`"},
        checked_by="opmode; FwPolicy2 profiles",
        undone_by="profiles switched back on",
    ),
)
