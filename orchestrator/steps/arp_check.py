"""Run on a *peer* host: `arp -d <Address>`, one ping, then `arp -a <Address>` (IPv4 only; arp's
exit 1, "no such entry", is not an error). Throws when not elevated: `arp -d` would fail with the
same exit code and the cached entry would be read. Result: `@{changed=$false; arp_text=<raw arp -a
output>; ping_ok}` (+ `delete_output`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from orchestrator.steps.base import Docs, Step, StepOutput, parse_output

NAME = "arp_check"
_ARP_ROW = re.compile(r"^\s*(?P<ip>[0-9a-fA-F.:]+)\s+(?P<mac>(?:[0-9a-fA-F]{2}[-:]){5}[0-9a-fA-F]{2})\s+\S+")


@dataclass(frozen=True)
class ArpOutput(StepOutput):
    arp_text: str
    ping_ok: bool | None


def parse(raw: Any) -> ArpOutput:
    return parse_output(NAME, raw, lambda r: ArpOutput(changed=r.bool_("changed"), arp_text=r.str_("arp_text"),
                                                       ping_ok=r.opt_bool("ping_ok")))


def parse_arp(text: str) -> dict[str, str]:
    """IP -> MAC (upper case, dashes) from `arp -a` output; the layout is the same in every language."""
    table = {}
    for line in text.splitlines():
        match = _ARP_ROW.match(line)
        if match:
            try:
                ip = str(ipaddress.ip_address(match.group("ip")))
            except ValueError:
                continue
            table[ip] = match.group("mac").upper().replace(":", "-")
    return table


def judge(arp_text: str, vip: str, server_macs: Iterable[str]) -> str | None:
    """A problem when the peer resolved the VIP to one of this server's MACs, else None."""
    mac = parse_arp(arp_text).get(str(ipaddress.ip_address(vip)))
    own = {m.upper().replace(":", "-") for m in server_macs}
    if mac is not None and mac in own:
        return f"the peer resolves VIP {vip} to this server's MAC {mac}: the server answers ARP for the VIP"
    return None


STEP = Step(
    name=NAME,
    order=130,
    description=__doc__ or "",
    reads=("dsr_verify_peer",),
    parse_output=parse,
    docs=Docs(commands={"default": "on the peer: `arp -d`, one ping, `arp -a <VIP>`"}, checked_by="", undone_by=""),
)
