"""Throws (changing nothing) when: not elevated; 32-bit process on 64-bit Windows; PowerShell < 2.0;
any VIP is bound to an adapter whose ServiceName is not `msloop`. All refusals are listed in one
message. Result: `@{changed=$false; checks=@{elevated; process_64bit; os_64bit; powershell_version;
vip_holders=@(@{address; adapter; service_name})}}`. The planner refuses a host before any change
for the same reasons, and for a VIP outside the NIC's subnet (`dsr_subnet_check: error`), a VIP that
is the network or broadcast address of the NIC's subnet, a NIC it cannot find, IPv6 VIPs where the
OS cannot hold them, and no IPv4 VIP at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import partial

from orchestrator.facts import Adapter, Facts
from orchestrator.oscaps import SkipAsSource
from orchestrator.steps import skip_as_source
from orchestrator.steps.base import NOTHING, Action, Docs, PlanContext, Step, StepPlan, action, changed_only

NAME = "preflight"


def plan(ctx: PlanContext) -> StepPlan:
    """What is wrong with the host itself, whatever would change: a gate for every other step."""
    desired, nic = ctx.desired, ctx.nic
    refusals = []
    if nic is None:
        refusals.append(f"no physical adapter matches dsr_nic ({desired.nic.by} {desired.nic.value})")
    for vip in desired.vips:
        refusals += [f"VIP {vip.address} is bound to physical adapter '{adapter.connection_id or adapter.description}'"
                     ": it would answer ARP for the VIP"
                     for adapter in ctx.facts.adapters_with_address(vip.address) if not adapter.is_loopback]
    if nic is not None:
        refusals += _subnet_ends(nic, [v.address for v in desired.vips])
    if nic is None or desired.subnet_check == "off":
        return StepPlan(refusals=tuple(refusals))
    outside = _outside_subnet(nic, [v.address for v in desired.vips if v.version == 4])
    if desired.subnet_check == "error":
        return StepPlan(refusals=tuple(refusals + outside))
    return StepPlan(refusals=tuple(refusals), warnings=tuple(outside))


def _subnet_ends(nic: Adapter, vips: list[str]) -> list[str]:
    """VIPs that are the network or broadcast address of a subnet of the NIC (IPv6: the subnet-router
    anycast address, RFC 4291 2.6.1): traffic to them is never the VIP's, whatever the subnet check."""
    refusals = []
    for found in nic.addresses:
        network = ipaddress.ip_network(f"{found.address}/{found.prefix_length}", strict=False)
        if network.num_addresses <= 2:  # /31, /32, /127, /128: every address is a host's
            continue
        ends = {str(network.network_address): "network"}
        if network.version == 4:
            ends[str(network.broadcast_address)] = "broadcast"
        refusals += [f"VIP {vip} is the {ends[vip]} address of the NIC's subnet {network}: it cannot be a VIP"
                     for vip in vips if vip in ends]
    return list(dict.fromkeys(refusals))


def _outside_subnet(nic: Adapter, vips: list[str]) -> list[str]:
    rip = nic.ipv4()
    if rip is None:
        return []
    network = ipaddress.IPv4Network(f"{rip.address}/{rip.mask}", strict=False)
    return [f"VIP {vip} is outside the real server's subnet {network} "
            "(layer-2 DSR needs the VIP, the load balancer and the real servers on one subnet)"
            for vip in vips if ipaddress.IPv4Address(vip) not in network]


def finish(ctx: PlanContext, actions: Sequence[Action]) -> StepPlan:
    """A host that needs changes starts with the preflight check, unless something forbids changing it."""
    if not actions:
        return NOTHING
    check = action(NAME, "check the host before changing it", Vips=list(ctx.vips))
    return StepPlan(actions=(check,), refusals=tuple(change_blockers(ctx)))


def change_blockers(ctx: PlanContext) -> list[str]:
    """What forbids changing the host (a host that needs no change is fine as it is)."""
    facts, vips = ctx.facts, ctx.desired.vips
    reasons = []
    if not facts.elevated:
        reasons.append("not elevated: connect with an account in the local Administrators group "
                       "(for local accounts, UAC remote restrictions apply)")
    if facts.os.is_64bit and not facts.process_64bit:
        reasons.append("32-bit PowerShell on 64-bit Windows: device installation fails there "
                       "(use the 64-bit Microsoft.PowerShell endpoint)")
    if _version(facts) < (2,):
        reasons.append(f"PowerShell {facts.powershell_version}: 2.0 or newer is needed (install WMF 2.0, KB968930)")
    if not any(v.version == 4 for v in vips):
        reasons.append("dsr_vips has no IPv4 VIP: an IPv6-only loopback is not supported")
    if not facts.os.caps.ipv6_vips and any(v.version == 6 for v in vips):
        reasons.append(f"IPv6 VIPs on {facts.os.caps.name} are not supported (its IPv6 stack is separate)")
    caps = facts.os.caps
    hotfix_missing = caps.skip_as_source is SkipAsSource.HOTFIX and not skip_as_source.supported(facts)
    if ctx.desired.skip_as_source and hotfix_missing:
        reasons.append(f"SkipAsSource wanted but {caps.skip_as_source_hotfix} is not installed on this {caps.name}: "
                       "install it, or set dsr_skip_as_source: false")
    return reasons


def _version(facts: Facts) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in facts.powershell_version.split("."))
    except ValueError:
        return (0,)


STEP = Step(
    name=NAME,
    order=10,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_nic", "dsr_subnet_check", "dsr_skip_as_source"),
    plan=plan,
    gate=True,
    finish=finish,
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"default": "refuses, changing nothing: not elevated, 32-bit PowerShell on 64-bit Windows, "
                             "PowerShell < 2.0, VIP on a physical NIC, VIP outside the NIC's subnet "
                             "(`dsr_subnet_check: warn|error|off`), VIP that is the network or broadcast "
                             "address of the NIC's subnet, SkipAsSource wanted on 2008 without "
                             "KB975808, Windows Server 2008 whose Public profile is on without a rule letting "
                             "WinRM in there (the new loopback's unidentified network would switch the whole "
                             "machine to Public and cut the session)"},
        checked_by="WMI, `$PSVersionTable`, WindowsPrincipal, hotfix list",
        undone_by="-",
    ),
)
