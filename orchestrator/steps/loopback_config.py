"""Makes the loopback exactly: NetConnectionID = `Name` (`netsh interface set interface name=<old>
newname=<Name>`; WMI `NetConnectionID` + `Put()` when it has none yet); if `Dhcp`: IPv4 DHCP on
(`EnableDHCP()`, rollback only), IPv4 addresses, gateways and DNS servers left to DHCP; else IPv4 DHCP
off, IPv4 addresses exactly `Addresses` with `Masks` (parallel; `Addresses` empty throws), no
gateway, no DNS servers (`SetDNSServerSearchOrder()` with no list). In both cases (2008+) the
non-link-local IPv6 addresses are exactly `Addresses6` (/128); link-local ones are the stack's and
stay. 2008+: when DHCP is on, `netsh interface ipv4 set address <ifindex> static <ip1> <mask1>` (the
command that turns DHCP off; it replaces every IPv4 address, APIPA included, with the first one),
then `netsh interface ipv4 add address <ifindex> <ip> <mask> [skipassource=true]` for each missing
one (the flag only when `SkipAsSource`, and only on addresses added now: existing flags are
`skip_as_source`'s job), delete + add for a wrong mask, `netsh interface ipv4 delete address
<ifindex> <ip>` for extra ones; with `SkipAsSource` the first address is then deleted and added again
with the flag (`set address` has no such keyword); a refused add puts the address back as it was
before throwing. IPv6 the same under `interface ipv6` with `<ip>/128`. Gateways: `netsh interface
ipv4 delete address <ifindex> gateway=all` (IPv6: `delete route ::/0 <ifindex> <gw>`). 2003:
`EnableStatic(Addresses, Masks)` when the list, its order, a mask or DHCP differs (it replaces the
whole list); 81 ("Unable to configure DHCP service", which Windows answers for an adapter that
already is static although it set the addresses) is success when the adapter was static and WMI
reads back exactly the addresses and masks asked for; when it returns 66 (invalid subnet mask) with
a /32 among `Masks`, it first sets the interface metric to 9999 (the highest; a refusal throws
before any subnet route reaches the loopback), then retries with `FallbackMask` for every address:
result `degraded=$true`; a later run finding exactly that fallback in place changes nothing and
reports `degraded=$true` again. Gateways: `netsh interface ip delete address name=<connection>
gateway=all`. `Addresses6` not empty or `SkipAsSource` true throw on 2003. Result: `@{changed;
degraded; addresses}` (+ `pnp_device_id`, `reboot_required`, `commands`); `addresses` is the
adapter's `IPAddress` list afterwards.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.facts import HOST_MASK, Adapter, Address, Facts
from orchestrator.steps import skip_as_source
from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    PlanContext,
    Step,
    StepOutput,
    StepPlan,
    UndoContext,
    action,
    parse_output,
)

NAME = "loopback_config"
PUBLIC_PROFILE = 4
# The 2003 fallback: the highest metric, so the NIC's subnet route wins.
DEGRADED_METRIC = 9999


def is_link_local(address: str) -> bool:
    return ipaddress.ip_address(address).is_link_local


def plan(ctx: PlanContext) -> StepPlan:
    nic, loopback, d = ctx.nic, ctx.loopback, ctx.desired
    if nic is None:
        return NOTHING
    v4 = [v.address for v in d.vips if v.version == 4]
    v6 = [v.address for v in d.vips if v.version == 6]
    rip = nic.ipv4()
    fallback_mask = rip.mask if rip else HOST_MASK
    warnings = []
    if ctx.degraded_mask is not None:
        warnings.append("degraded: Windows refused the /32 mask, so the VIPs carry the subnet mask "
                        f"{fallback_mask} and the loopback the highest metric ({DEGRADED_METRIC})")
    if loopback is None:
        pnp, reasons = "", ["configure the new loopback adapter"]
    else:
        pnp, reasons = loopback.pnp_device_id, drift(loopback, d.loopback_name, v4, v6, ctx.degraded_mask)
    kept4, kept6 = _not_ours(loopback, v4, v6)
    if kept4 or kept6:
        warnings.append("the loopback also holds " + ", ".join([a.address for a in kept4] + kept6)
                        + ": left as they are")
    if not reasons:
        return StepPlan(warnings=tuple(warnings))
    configure = action(NAME, "; ".join(reasons), PnpDeviceId=pnp, Name=d.loopback_name,
                       Addresses=v4 + [a.address for a in kept4],
                       Masks=[HOST_MASK] * len(v4) + [a.mask for a in kept4], Addresses6=v6 + kept6,
                       SkipAsSource=d.skip_as_source and skip_as_source.supported(ctx.facts),
                       FallbackMask=fallback_mask, Dhcp=False)
    return StepPlan(actions=(configure,), warnings=tuple(warnings))


def finish(ctx: PlanContext, actions: Sequence[Action]) -> StepPlan:
    """Refuse a change that would give the loopback its first address where that flips the firewall
    profile of the whole machine and shuts WinRM out (after the host's own blockers, in preflight)."""
    if not any(a.step == NAME for a in actions):  # a new loopback is always configured too
        return NOTHING
    return StepPlan(refusals=tuple(_profile_flip(ctx.facts, ctx.loopback)))


def _not_ours(loopback: Adapter | None, v4: list[str], v6: list[str]) -> tuple[list[Address], list[str]]:
    """Addresses on an adopted loopback that are not VIPs (another service's): they stay where they
    are. Only the APIPA address DHCP left behind goes."""
    held = loopback.addresses if loopback else ()
    kept4 = [a for a in held if a.version == 4 and a.address not in v4 and not is_link_local(a.address)]
    kept6 = [a.address for a in held if a.version == 6 and not is_link_local(a.address)
             and not any(ipaddress.ip_address(a.address) == ipaddress.ip_address(v) for v in v6)]
    return kept4, kept6


def drift(lb: Adapter, name: str, v4: list[str], v6: list[str], degraded_mask: str | None) -> list[str]:
    """How an existing loopback differs from what DSR needs, one phrase per difference."""
    reasons = []
    if (lb.connection_id or "") != name:
        reasons.append(f"name '{lb.connection_id}' -> '{name}'")
    if lb.dhcp_enabled:
        reasons.append("DHCP on")
    reasons += _address_drift(lb, v4, v6, degraded_mask)
    if lb.gateways:
        reasons.append("gateway on loopback: " + ", ".join(lb.gateways))
    if lb.dns_servers:
        reasons.append("DNS servers on loopback: " + ", ".join(lb.dns_servers))
    return reasons


def _address_drift(lb: Adapter, v4: list[str], v6: list[str], degraded_mask: str | None) -> list[str]:
    held4 = {a.address: a.mask for a in lb.addresses if a.version == 4}
    held6 = {a.address: a.mask for a in lb.addresses if a.version == 6 and not is_link_local(a.address)}
    accepted = {HOST_MASK} | ({degraded_mask} if degraded_mask else set())
    reasons = []
    for vip in v4:
        if vip not in held4:
            reasons.append(f"VIP {vip} missing on loopback")
        elif held4[vip] not in accepted:
            reasons.append(f"VIP {vip} has mask {held4[vip]}, not {HOST_MASK}")
    for vip in v6:
        wanted = ipaddress.ip_address(vip)
        if not any(ipaddress.ip_address(a) == wanted and m == "128" for a, m in held6.items()):
            reasons.append(f"VIP {vip} missing on loopback (/128)")
    apipa = [a for a in held4 if a not in v4 and is_link_local(a)]
    if apipa:
        reasons.append("APIPA address on loopback: " + ", ".join(apipa))
    return reasons


def _profile_flip(facts: Facts, loopback: Adapter | None) -> list[str]:
    """Where the machine has one firewall profile (2008), the loopback's unidentified network switches
    it to Public. If WinRM is not let in there, the change locks out the very session making it."""
    fw = facts.firewall
    if not facts.os.caps.single_firewall_profile or not (fw.profiles or {}).get("public"):
        return []
    already_public = fw.current_profiles is not None and fw.current_profiles & PUBLIC_PROFILE
    if already_public or fw.winrm_public is not False:
        return []
    if loopback is not None and any(a.version == 4 and not is_link_local(a.address) for a in loopback.addresses):
        return []  # the loopback already has an address: its network is already there
    return [f"{facts.os.caps.name}: the loopback's unidentified network will switch the whole machine to the "
            "Public firewall profile, where no rule lets WinRM in, cutting off management: allow WinRM "
            "(TCP 5985/5986) on the Public profile first, then run again"]


def undo(ctx: UndoContext) -> list[Action]:
    """An adopted loopback's name, DHCP and addresses as they were."""
    lb_before, lb_now = ctx.loopback_before, ctx.loopback_now
    if lb_before is None or lb_now is None:
        return []
    if (lb_before.connection_id == lb_now.connection_id and lb_before.dhcp_enabled == lb_now.dhcp_enabled
            and set(lb_before.addresses) == set(lb_now.addresses)):
        return []
    v4 = [a for a in lb_before.addresses if a.version == 4]
    v6 = [a.address for a in lb_before.addresses if a.version == 6 and not is_link_local(a.address)]
    return [action(NAME, "restore the loopback's name and addresses", PnpDeviceId=lb_now.pnp_device_id,
                   Name=lb_before.connection_id or "", Addresses=[a.address for a in v4], Masks=[a.mask for a in v4],
                   Addresses6=v6, SkipAsSource=False, FallbackMask=HOST_MASK, Dhcp=lb_before.dhcp_enabled)]


@dataclass(frozen=True)
class LoopbackConfigOutput(StepOutput):
    degraded: bool  # Windows refused /32 and the fallback mask and metric are in place (2003)
    addresses: tuple[str, ...]

    def state_moved(self) -> bool:
        return self.degraded


def _parse_output(raw: Any) -> LoopbackConfigOutput:
    return parse_output(NAME, raw, lambda r: LoopbackConfigOutput(
        changed=r.bool_("changed"), degraded=bool(r.opt_bool("degraded")), addresses=tuple(r.str_list("addresses"))))


STEP = Step(
    name=NAME,
    order=50,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_nic", "dsr_loopback_name", "dsr_skip_as_source"),
    plan=plan,
    finish=finish,
    undo=undo,
    cuts_connection=True,  # a first address on the loopback can switch the firewall profile (2008)
    parse_output=_parse_output,
    docs=Docs(
        commands={"win2003": "renamed to `dsr_loopback_name`, DHCP off, VIPs /32 through WMI `EnableStatic`; if /32 "
                             "is refused: the subnet mask and metric 9999, reported as degraded",
                  "default": "`netsh interface ipv4 add address <idx> <VIP> 255.255.255.255 [skipassource=true]`, "
                             "extra (APIPA) addresses removed, no gateway, no DNS servers"},
        checked_by="WMI `Win32_NetworkAdapterConfiguration`",
        undone_by="name, DHCP and addresses restored",
    ),
)
