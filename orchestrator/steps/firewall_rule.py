"""2008+: the rule is looked up by name in `HNetCfg.FwPolicy2.Rules` first (which throws when the
firewall service does not answer, so an error is never read as "no such rule"; the name carries
VIP, protocol and port, so an existing rule of that name is taken as the one asked for), then
`netsh advfirewall firewall add rule name=<Name> dir=in action=allow protocol=<P> localip=<Vip> localport=<Port>
profile=any` / `delete rule name=<Name>` only when needed. 2003: the port openings are read through
the Windows Firewall API (`HNetCfg.FwMgr`, Domain and Standard profiles, keyed by port and protocol),
then `netsh firewall add portopening protocol=<P> port=<Port> name=<Name> mode=ENABLE scope=ALL
profile=ALL` when an enabled opening is missing in either profile, or `delete portopening
protocol=<P> port=<Port> profile=DOMAIN` (or `STANDARD`) for each profile whose opening carries
`Name`. An opening made by someone else for that port is never overwritten or removed: enabled in
both profiles it counts as present; disabled, or in one profile only, Present throws. (2003 port
openings cannot be scoped to a local address.) Names: `dsrprep <Vip> <PROTO> <port>`. Result:
`@{changed; name; output}`.
"""

from __future__ import annotations

import ipaddress
from functools import partial

from orchestrator.desired import Vip
from orchestrator.facts import Firewall, FirewallRule
from orchestrator.steps.base import (
    ALL_PROFILES,
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

NAME = "firewall_rule"
PREFIX = "dsrprep "
UNREADABLE = ("the Windows Firewall state could not be read (is the Windows Firewall service running?): "
              "start it, or set dsr_firewall: skip")
_PROTOCOL_NAMES = {6: "TCP", 17: "UDP"}


def rule_name(vip: Vip, port: int) -> str:
    return f"{PREFIX}{vip.address} {vip.protocol.upper()} {port}"


def _rule(ensure: str, reason: str, vip: Vip, port: int) -> Action:
    return action(NAME, reason, Ensure=ensure, Name=rule_name(vip, port), Vip=vip.address,
                  Protocol=vip.protocol.upper(), Port=port)


def plan(ctx: PlanContext) -> StepPlan:
    if ctx.nic is None or ctx.desired.firewall != "rule":
        return NOTHING
    fw = ctx.facts.firewall
    if not ctx.facts.os.caps.advfirewall:
        return _plan_openings(fw, ctx.desired.vips)
    if fw.profiles is None:
        return StepPlan(refusals=(UNREADABLE,))
    if not any(fw.profiles.values()):
        return NOTHING
    rules = {r.name: r for r in fw.rules}
    actions: list[Action] = []
    for vip in ctx.desired.vips:
        for port in vip.ports:
            rule = rules.get(rule_name(vip, port))
            if rule is None:
                actions.append(_rule("Present", f"no firewall rule for {vip.address} {vip.protocol.upper()} {port}",
                                     vip, port))
            elif not _as_needed(rule, vip, port):
                # netsh cannot edit a rule in place from a template that checks by name: replace it.
                reason = f"firewall rule '{rule.name}' differs from what DSR needs: replace it"
                actions += [_rule("Absent", reason, vip, port), _rule("Present", reason, vip, port)]
    return StepPlan(actions=tuple(actions))


def _as_needed(rule: FirewallRule, vip: Vip, port: int) -> bool:
    return (rule.enabled and rule.action == 1 and rule.direction == 1 and rule.profiles == ALL_PROFILES
            and _rule_addresses(rule.local_addresses) == {ipaddress.ip_address(vip.address)}
            and rule.local_ports == str(port))


def _plan_openings(fw: Firewall, vips: tuple[Vip, ...]) -> StepPlan:
    """`netsh firewall` (2003): a port opening per VIP port, where the firewall is on and takes exceptions."""
    if fw.enabled is False:
        return NOTHING
    if fw.exceptions_enabled is False:
        return StepPlan(refusals=("Windows Firewall is on with 'Don't allow exceptions': port openings have no "
                                  "effect (allow exceptions, or set dsr_firewall: disable or skip)",))
    actions = [
        _rule("Present", f"no port opening for {vip.protocol.upper()} {port}", vip, port)
        for vip in vips for port in vip.ports
        if not any(p.enabled and p.port == port and p.protocol.upper() == vip.protocol.upper()
                   for p in fw.port_openings)
    ]
    return StepPlan(actions=tuple(actions))


def _rule_addresses(text: str) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses of a firewall rule's LocalAddresses ("10.0.0.5/255.255.255.255,..."); junk drops out."""
    found = set()
    for part in text.split(","):
        try:
            found.add(ipaddress.ip_address(part.split("/")[0].strip()))
        except ValueError:
            continue
    return found


def undo(ctx: UndoContext) -> list[Action]:
    """Rules and port openings named by dsrprep that were not there before."""
    before, now = ctx.before.firewall, ctx.now.firewall
    before_rules = {r.name for r in before.rules}
    actions = [
        action(NAME, f"remove firewall rule '{rule.name}'", Ensure="Absent", Name=rule.name, Vip="",
               Protocol=_PROTOCOL_NAMES.get(rule.protocol, "TCP"),
               Port=int(rule.local_ports) if rule.local_ports.isdigit() else 0)
        for rule in now.rules if rule.name.startswith(PREFIX) and rule.name not in before_rules
    ]
    before_openings = {(p.protocol, p.port, p.name) for p in before.port_openings}
    actions += [
        action(NAME, f"remove port opening '{opening.name}'", Ensure="Absent", Name=opening.name, Vip="",
               Protocol=opening.protocol, Port=opening.port)
        for opening in now.port_openings
        if opening.name.startswith(PREFIX) and (opening.protocol, opening.port, opening.name) not in before_openings
    ]
    return actions


STEP = Step(
    name=NAME,
    # Before the loopback gets its first address: on 2008 that flips the whole machine to Public.
    order=30,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_firewall"),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"win2003": "`netsh firewall add portopening` per VIP port (2003 cannot scope to the VIP)",
                  "default": "`netsh advfirewall firewall add rule ... localip=<VIP> localport=<port> profile=any`, "
                             "before the loopback gets its address (2008's single-profile flip)"},
        checked_by="`netsh firewall show opmode/portopening`; HNetCfg.FwPolicy2 rules named `dsrprep ...`",
        undone_by="the rule / opening is deleted",
    ),
)
