"""Reads `netsh interface ipv4 show interface <idx>` (English labels, else the layout rule of the
facts parser); when either value differs or cannot be read: `netsh interface ipv4 set interface
<idx> weakhostreceive=enabled/disabled weakhostsend=enabled/disabled` (ipv6 for `IpVersion` 6).
`InterfaceIndex` 0 means the loopback from the marker. Never planned where weak host is the only
model (2003). Result: `@{changed; interface_index; receive; send; output}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from orchestrator.facts import (
    NETSH_ONOFF,
    Adapter,
    Facts,
    FactsError,
    Reader,
    excerpt,
    frozen_map,
    jsonable,
    netsh_fields,
    onoff,
    with_path,
)
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

NAME = "weak_host"


@dataclass(frozen=True)
class WeakHost:
    send: bool
    receive: bool


@dataclass(frozen=True)
class WeakHostTable:
    """Weak host flags by interface index, per IP version (what the fragment's netsh output says)."""

    v4: Mapping[int, WeakHost]
    v6: Mapping[int, WeakHost]

    def get(self, interface_index: int, ip_version: int = 4) -> WeakHost | None:
        return (self.v4 if ip_version == 4 else self.v6).get(interface_index)

    def json_fields(self) -> dict[str, Any]:
        return {"weak_host_v4": jsonable(self.v4), "weak_host_v6": jsonable(self.v6)}


def table(facts: Facts) -> WeakHostTable:
    return facts.part(NAME, WeakHostTable)


def flags(facts: Facts, interface_index: int, ip_version: int = 4) -> WeakHost | None:
    """The weak host flags of an interface; None when netsh shows no such interface for that version."""
    return table(facts).get(interface_index, ip_version)


# -- the netsh rule ---------------------------------------------------------------------------------


def netsh_interface_present(text: str) -> bool:
    """Whether `netsh interface ipv4|ipv6 show interface <idx>` printed a parameter block.

    An interface that exists for one IP version only (IPv6 unbound, a disabled adapter) makes
    netsh print a one-line error such as "Element not found." instead; such an interface has no
    weak host setting for that version. `IfLuid` and `IfIndex` are printed untranslated.
    """
    labels = {label for label, _ in netsh_fields(text)}
    return "IfLuid" in labels and "IfIndex" in labels


def netsh_interface_index(text: str) -> int | None:
    for label, value in netsh_fields(text):
        if label == "IfIndex":
            try:
                return int(value)
            except ValueError:
                raise FactsError(f"IfIndex value {value!r} is not a number") from None
    return None


def parse_netsh_interface(text: str) -> WeakHost:
    """Weak host send/receive from `netsh interface ipv4|ipv6 show interface <idx>`.

    Rule, in this order:
    1. English labels: the lines "Weak Host Sends" and "Weak Host Receives".
    2. Layout, for localized output: the field lines from "Forwarding" on are a run of on/off
       values in a fixed order (Forwarding, Advertising, Neighbor Discovery, Neighbor
       Unreachability Detection, Router Discovery, Managed Address Configuration, Other
       Stateful Configuration, Weak Host Sends, Weak Host Receives, ...). "Forwarding" is the
       first field whose value is enabled/disabled; the weak host lines are the 8th and 9th of
       the run. This holds for the Vista/2008 layout (with "Compartment Id") and the Windows 10
       layout (without it, with more fields at the end). Router Discovery may say "dhcp".
    Values: "enabled"/"disabled" only (case-insensitive); anything else raises.
    """
    if not netsh_interface_present(text):
        raise FactsError("no interface parameter block in netsh output: " + excerpt(text))
    fields_ = netsh_fields(text)
    by_label = {label.casefold(): (label, value) for label, value in fields_}
    sends = by_label.get("weak host sends")
    receives = by_label.get("weak host receives")
    if sends is not None and receives is not None:
        return WeakHost(send=onoff(*sends), receive=onoff(*receives))

    start = next((i for i, (_, value) in enumerate(fields_) if value.strip().lower() in NETSH_ONOFF), None)
    if start is None or start + 8 >= len(fields_):
        raise FactsError("cannot locate the weak host lines in netsh output: " + excerpt(text))
    run = fields_[start : start + 9]
    for label, value in run:
        if value.strip().lower() not in {*NETSH_ONOFF, "dhcp"}:
            raise FactsError(
                f"unexpected netsh layout: {label!r} = {value!r} inside the on/off fields "
                "that hold the weak host lines"
            )
    return WeakHost(send=onoff(*run[7]), receive=onoff(*run[8]))


def _parse_weak_host(r: Reader, key: str) -> Mapping[int, WeakHost]:
    texts = r.str_map(key)
    out: dict[int, WeakHost] = {}
    for name, text in texts.items():
        path = f"{r.child_path(key)}[{name!r}]"
        if not re.fullmatch(r"[0-9]{1,10}", name):
            raise FactsError(f"{path}: key must be an interface index")
        index = int(name)
        if not netsh_interface_present(text):
            continue  # the interface is not bound to this IP version (see netsh_interface_present)
        shown = with_path(path, partial(netsh_interface_index, text))
        if shown is not None and shown != index:
            raise FactsError(f"{path}: netsh output is for IfIndex {shown}")
        out[index] = with_path(path, partial(parse_netsh_interface, text))
    return frozen_map(out)


def _parse_part(r: Reader) -> WeakHostTable:
    return WeakHostTable(v4=_parse_weak_host(r, "netsh_ipv4"), v6=_parse_weak_host(r, "netsh_ipv6"))


# -- plan and undo ----------------------------------------------------------------------------------


def plan(ctx: PlanContext) -> StepPlan:
    nic, loopback, facts, desired = ctx.nic, ctx.loopback, ctx.facts, ctx.desired
    if nic is None or not facts.os.caps.weak_host:
        return NOTHING
    versions = sorted({v.version for v in desired.vips})
    if 6 in versions and nic.interface_index is not None and flags(facts, nic.interface_index, 6) is None:
        return StepPlan(refusals=(f"IPv6 VIPs but NIC '{nic.connection_id}' has no IPv6 interface (netsh shows none)",))
    actions: list[Action] = []
    for version in versions:
        if nic.interface_index is not None:
            actions += _nic_actions(facts, nic, version, desired.weakhost_send_on_nic)
        lb_current = (flags(facts, loopback.interface_index, version)
                      if loopback is not None and loopback.interface_index is not None else None)
        if lb_current is None or not (lb_current.receive and lb_current.send):
            index = loopback.interface_index if loopback is not None and loopback.interface_index else 0
            actions.append(action(NAME, f"loopback IPv{version}: weak host send/receive off",
                                  InterfaceIndex=index, IpVersion=version, Receive=True, Send=True))
    return StepPlan(actions=tuple(actions))


def _nic_actions(facts: Facts, nic: Adapter, version: int, send_on_nic: bool) -> list[Action]:
    assert nic.interface_index is not None
    current = flags(facts, nic.interface_index, version)
    want_send = send_on_nic or (current.send if current else False)
    if current is not None and current.receive and current.send == want_send:
        return []
    what = "receive" if current is None or not current.receive else "send"
    return [action(NAME, f"NIC '{nic.connection_id}' IPv{version}: weak host {what} off",
                   InterfaceIndex=nic.interface_index, IpVersion=version, Receive=True, Send=want_send)]


def undo(ctx: UndoContext) -> list[Action]:
    """The recorded flags of the NIC and of an adopted loopback, where they changed."""
    nic = ctx.before.nic(ctx.desired.nic.by, ctx.desired.nic.value)
    lb = None if ctx.created else ctx.loopback_now
    actions = []
    for adapter in (nic, lb):
        if adapter is None or adapter.interface_index is None:
            continue
        index = adapter.interface_index
        for version in (4, 6):
            was, current = flags(ctx.before, index, version), flags(ctx.now, index, version)
            if was is None or current is None or current == was:
                continue
            actions.append(action(NAME, f"interface {index} IPv{version}: restore weak host flags",
                                  InterfaceIndex=index, IpVersion=version, Receive=was.receive, Send=was.send))
    return actions


STEP = Step(
    name=NAME,
    order=80,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_nic", "dsr_weakhost_send_on_nic"),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    facts=FactsPart(keys=("netsh_ipv4", "netsh_ipv6"), parse=_parse_part),
    docs=Docs(
        commands={"default": "`netsh interface ipv4 set interface <idx> weakhostreceive=enabled` on the NIC, "
                             "`weakhostreceive=enabled weakhostsend=enabled` on the loopback; `ipv6` for IPv6 VIPs"},
        checked_by="`netsh interface ipv4 show interface <idx>`",
        undone_by="recorded flags restored",
        not_on=lambda caps: not caps.weak_host,
    ),
)
