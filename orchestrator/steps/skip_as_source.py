"""Reads the flag first from `netsh interface ipv4 show ipaddresses level=verbose` (IPv6: `interface
ipv6 show addresses level=verbose`), by the same rule as the facts parser; no change when it
already is `Enabled`. Throws, changing nothing, when the address is not on the loopback (adding it
is `loopback_config`'s job) or when netsh does not report the flag (no KB975808). netsh can set the
flag only when adding: `netsh interface ipv4 delete address <ifindex> <Address>` then `add address
<ifindex> <Address> <Mask> skipassource=true/false` (IPv6: `interface ipv6`, `<Address>/128`); a
refused add re-adds the address with its old flag before throwing. Never planned where the flag
does not exist (2003), nor on 2008 without KB975808 (the planner refuses if wanted). Result:
`@{changed; address; skip_as_source; output}`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator.facts import (
    HOST_MASK,
    SECTION_RULE,
    Facts,
    FactsError,
    Reader,
    excerpt,
    frozen_map,
    netsh_fields,
    normalize_ip,
    with_path,
)
from orchestrator.oscaps import SkipAsSource
from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    FactsPart,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)

NAME = "skip_as_source"


@dataclass(frozen=True)
class SkipFlags:
    """SkipAsSource by normalized address (IPv4 and IPv6); empty where netsh has no such flag, and
    an address whose flag netsh does not report (2008 without KB975808) is absent."""

    flags: Mapping[str, bool]

    def of(self, address: str) -> bool | None:
        """The flag of `address`, in any spelling; None when it is not known."""
        return self.flags.get(normalize_ip(address))

    def json_fields(self) -> dict[str, Any]:
        return {"skip_as_source": dict(self.flags)}


def skip_flags(facts: Facts) -> SkipFlags:
    return facts.part(NAME, SkipFlags)


def supported(facts: Facts) -> bool:
    """Whether this host can mark an address SkipAsSource (natively, or with the hotfix installed)."""
    caps = facts.os.caps
    if caps.skip_as_source is SkipAsSource.HOTFIX:
        return caps.skip_as_source_hotfix in facts.os.hotfixes
    return caps.skip_as_source is SkipAsSource.NATIVE


# -- the netsh rule ---------------------------------------------------------------------------------


# Like enabled/disabled, netsh prints these untranslated.
_NETSH_TRUE_FALSE: dict[str, bool] = {"true": True, "false": False}
_IPV4_DOTTED = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")


def _block_address(title: str) -> str:
    """The one IP address in a block title such as "Address fe80::1%72 Parameters"."""
    found: list[str] = []
    for token in title.split():
        candidate = token.split("%", 1)[0]
        # "10" would parse as an IPv4 address in some tools; only dotted quads and colon forms count
        if not (_IPV4_DOTTED.fullmatch(candidate) or ":" in candidate):
            continue
        try:
            found.append(str(ipaddress.ip_address(candidate)))
        except ValueError:
            continue
    if len(found) != 1:
        raise FactsError(f"expected one IP address in the netsh block title {title.strip()!r}")
    return found[0]


def _skip_as_source_flag(fields_: list[tuple[str, str]]) -> bool | None:
    for label, value in fields_:
        if label.casefold() == "skip as source":
            flag = _NETSH_TRUE_FALSE.get(value.strip().lower())
            if flag is None:
                raise FactsError(f"{label!r} has value {value!r}; expected true or false")
            return flag
    # the first field names the interface, free text that could read "true"
    flags = [value for _, value in fields_[1:] if value.strip().lower() in _NETSH_TRUE_FALSE]
    if len(flags) > 1:
        raise FactsError(f"{len(flags)} true/false fields in one netsh address block; cannot tell Skip as Source")
    return _NETSH_TRUE_FALSE[flags[0].strip().lower()] if flags else None


def parse_netsh_ipaddresses(text: str) -> Mapping[str, bool]:
    """SkipAsSource per address, from `netsh interface ipv4 show ipaddresses level=verbose` or
    `netsh interface ipv6 show addresses level=verbose` (2008+).

    Layout rule: a block is a title line, a dashed rule, then `label : value` lines up to a blank
    line (or the next title). The title holds exactly one IP address ("Address 10.0.0.50
    Parameters"; an IPv6 zone such as `%72` is dropped). The first field names the interface.
    The flag is, in this order:
    1. the field labelled "Skip as Source" (English), whose value must be true or false;
    2. otherwise (localized labels, untranslated values) the only field after the first whose
       value is true or false; several such fields raise.
    A block without any true/false field is an address whose flag this netsh does not report
    (2008 without KB975808): it is left out. Keys are normalized addresses. The same address on
    several interfaces counts as skipped only when every block says true. Lines outside blocks
    are ignored, but output with text and no block at all (an error message) raises; empty
    output is an empty mapping.
    """
    lines = text.splitlines()

    def is_title(i: int) -> bool:
        return bool(lines[i].strip()) and i + 1 < len(lines) and SECTION_RULE.match(lines[i + 1]) is not None

    flags: dict[str, bool] = {}
    blocks = 0
    i = 0
    while i < len(lines):
        if not is_title(i):
            i += 1
            continue
        address = _block_address(lines[i])
        j = i + 2
        body: list[str] = []
        while j < len(lines) and lines[j].strip() and not is_title(j):
            body.append(lines[j])
            j += 1
        blocks += 1
        flag = with_path(f"address {address}", partial(_skip_as_source_flag, netsh_fields("\n".join(body))))
        if flag is not None:
            flags[address] = flags.get(address, True) and flag
        i = j
    if blocks == 0 and text.strip():
        raise FactsError("no address block in netsh output: " + excerpt(text))
    return frozen_map(flags)


def _parse_skip_as_source(r: Reader) -> Mapping[str, bool]:
    merged: dict[str, bool] = {}
    for key in ("netsh_ipv4_addresses", "netsh_ipv6_addresses"):
        # A missing key reads as null: facts gathered before these keys existed.
        text = r.opt_str(key)
        if text is None:
            continue
        parsed = with_path(r.child_path(key), partial(parse_netsh_ipaddresses, text))
        for address, flag in parsed.items():
            merged[address] = merged.get(address, True) and flag
    return frozen_map(merged)


def _parse_part(r: Reader) -> SkipFlags:
    return SkipFlags(_parse_skip_as_source(r))


# -- plan and undo ----------------------------------------------------------------------------------


def plan(ctx: PlanContext) -> StepPlan:
    loopback, desired = ctx.loopback, ctx.desired
    if ctx.nic is None or loopback is None or not (desired.skip_as_source and supported(ctx.facts)):
        return NOTHING
    current = skip_flags(ctx.facts)
    actions = [
        action(NAME, f"VIP {vip.address} may be used as a source address (SkipAsSource off)",
               PnpDeviceId=loopback.pnp_device_id, Address=vip.address,
               Mask=HOST_MASK if vip.version == 4 else "128", Enabled=True)
        for vip in desired.vips
        if loopback.has_address(vip.address) and not current.of(vip.address)
    ]
    return StepPlan(actions=tuple(actions))


def undo(ctx: UndoContext) -> list[Action]:
    """The recorded flag of each address an adopted loopback held before."""
    lb_before, lb_now = ctx.loopback_before, ctx.loopback_now
    if lb_before is None or lb_now is None:
        return []
    was_flags, now_flags = skip_flags(ctx.before).flags, skip_flags(ctx.now).flags
    actions = []
    for address, was in was_flags.items():
        if lb_before.has_address(address) and now_flags.get(address) not in (None, was):
            mask = next((a.mask for a in lb_before.addresses if a.address == address), HOST_MASK)
            actions.append(action(NAME, f"restore SkipAsSource on {address}", PnpDeviceId=lb_now.pnp_device_id,
                                  Address=address, Mask=mask, Enabled=was))
    return actions


STEP = Step(
    name=NAME,
    order=70,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_skip_as_source"),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    cuts_connection=True,  # the address is deleted and added again
    facts=FactsPart(keys=("netsh_ipv4_addresses", "netsh_ipv6_addresses"), parse=_parse_part),
    docs=Docs(
        commands={"default": "delete + re-add with `skipassource=true` (2008 needs KB975808)"},
        checked_by="`netsh interface ipv4 show ipaddresses level=verbose`",
        undone_by="flag restored",
        not_on=lambda caps: caps.skip_as_source is SkipAsSource.NONE,
    ),
)
