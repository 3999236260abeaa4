"""The Windows Firewall of a lab host: 2003's (`netsh firewall`, a domain and a standard profile,
port openings) or Windows Firewall with Advanced Security (2008+: three profiles, FwPolicy2 rules),
which of them `oscaps.caps(family).advfirewall` says the family has. Also NLA's part: a loopback's
first real address is an unidentified network, so the Public profile, which 2008 applies to the
whole machine (`single_firewall_profile`) and later Windows to that network only.

Text layouts: 2003 `netsh firewall show opmode` and `show portopening`, checked against the
captures in tests/data/firewall (sources in tests/data/SOURCES.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from orchestrator import oscaps
from orchestrator.lab.common import Hashtable
from orchestrator.lab.net import HOST_MASK, Nic, is_autoconfigured
from orchestrator.lab.shell import text

ALL_PROFILES = 0x7FFFFFFF
DOMAIN_PROFILE, PRIVATE_PROFILE, PUBLIC_PROFILE = 1, 2, 4
PROTOCOLS = {"TCP": 6, "UDP": 17}
# HNetCfg.FwMgr's profile types, and the titles netsh firewall gives them.
PROFILE_TYPES = {0: "DOMAIN", 1: "STANDARD"}
_FIREWALL_DASHES = "-" * 67


@dataclass
class PortOpening:
    """A 2003 `netsh firewall` port opening in one profile ("domain" or "standard")."""

    port: int
    protocol: str
    name: str
    profile: str
    enabled: bool = True


@dataclass
class LegacyFirewall:
    """Windows Firewall of 2003 SP1+: a domain and a standard profile, each with an operational mode
    and an exception mode, a per-connection operational mode, and port openings."""

    domain_enabled: bool
    domain_exceptions: bool
    standard_enabled: bool
    standard_exceptions: bool
    current: str
    interface_enabled: dict[str, bool]
    port_openings: list[PortOpening]


@dataclass
class FirewallRule:
    """One HNetCfg.FwPolicy2 rule, with the COM enum values (direction 1 in / 2 out, action 0 block /
    1 allow, protocol 6 TCP / 17 UDP, profiles bitmask)."""

    name: str
    enabled: bool
    direction: int
    action: int
    protocol: int
    local_addresses: str
    local_ports: str
    profiles: int
    # Made by the deprecated `netsh firewall add portopening`, which deletes only its own.
    from_port_opening: bool = field(default=False, compare=False)


@dataclass
class AdvFirewall:
    """Windows Firewall with Advanced Security (2008+). `identified_profiles` is the profile of
    the networks NLA identifies (the domain); unidentified ones add or (2008) impose Public."""

    domain: bool
    private: bool
    public: bool
    current_profiles: int
    rules: list[FirewallRule]
    identified_profiles: int = DOMAIN_PROFILE


Firewall = LegacyFirewall | AdvFirewall


def firewall_facts(fw: Firewall, adapters: list[Nic]) -> Hashtable:
    """The facts' `firewall`: the raw netsh text on 2003, the FwPolicy2 view (dsrprep's rules
    only) on 2008+."""
    if isinstance(fw, LegacyFirewall):
        return Hashtable(
            api="netsh-firewall",
            opmode_text=render_firewall_opmode(fw, [n.alias for n in adapters]),
            portopening_text=render_firewall_portopening(fw),
            profiles=None,
            current_profiles=None,
            rules=[],
            winrm_public=None,
        )
    return Hashtable(
        api="advfirewall",
        winrm_public=any(
            r.enabled and r.direction == 1 and r.action == 1 and r.profiles & PUBLIC_PROFILE
            and bool({"5985", "5986", "*"} & set(r.local_ports.split(",")))
            for r in fw.rules
        ),
        opmode_text=None,
        portopening_text=None,
        profiles=Hashtable(domain=fw.domain, private=fw.private, public=fw.public),
        current_profiles=fw.current_profiles,
        rules=[_rule_facts(r) for r in fw.rules if r.name.startswith("dsrprep")],
    )


def _rule_facts(rule: FirewallRule) -> Hashtable:
    return Hashtable(
        name=rule.name,
        enabled=rule.enabled,
        direction=rule.direction,
        action=rule.action,
        protocol=rule.protocol,
        local_addresses=rule.local_addresses,
        local_ports=rule.local_ports,
        profiles=rule.profiles,
    )


# --------------------------------------------------------------------------------------------------
# Network location (NLA) and the current profiles


def refresh_profiles(fw: Firewall, nics: list[Nic], caps: oscaps.OsCaps) -> None:
    """The current profiles after NLA classified the networks again."""
    if not isinstance(fw, AdvFirewall):
        return
    if not any(n.unidentified_network for n in nics):
        fw.current_profiles = fw.identified_profiles
    elif caps.single_firewall_profile:
        # Vista/2008 apply one profile to the whole machine: the most restrictive one.
        fw.current_profiles = PUBLIC_PROFILE
    else:
        fw.current_profiles = fw.identified_profiles | PUBLIC_PROFILE


def rule_allows(fw: Firewall, address: str) -> bool:
    """A dsrprep rule lets inbound traffic to `address` in on the Public profile."""
    if not isinstance(fw, AdvFirewall):
        return False
    return any(
        r.name.lower().startswith("dsrprep") and r.enabled and r.direction == 1 and r.action == 1
        and r.profiles & PUBLIC_PROFILE and addresses_cover(r.local_addresses, address)
        for r in fw.rules
    )


def identify_network(fw: Firewall, nics: list[Nic], nic: Nic, caps: oscaps.OsCaps) -> bool:
    """NLA meets the loopback's first real address: an unidentified network, Public profile.
    True when that cuts the management connection (2008's machine-wide profile flip with
    the Public profile on and no dsrprep rule for the address in it)."""
    # Network location awareness came with the Vista stack and its advanced firewall.
    if not caps.advfirewall or not nic.is_loopback or nic.unidentified_network:
        return False
    real = [a for a, _ in nic.addresses if not is_autoconfigured(a)]
    if not real:
        return False
    nic.unidentified_network = True
    if not isinstance(fw, AdvFirewall):
        return False
    before = fw.current_profiles
    refresh_profiles(fw, nics, caps)
    flipped = caps.single_firewall_profile and before != PUBLIC_PROFILE and fw.current_profiles == PUBLIC_PROFILE
    return flipped and fw.public and not all(rule_allows(fw, a) for a in real)


def rule_address(vip: str) -> str:
    # FwPolicy2 shows a single IPv4 address with its host mask.
    return f"{vip}/{HOST_MASK}" if ":" not in vip else vip


def addresses_cover(local_addresses: str, address: str) -> bool:
    """A rule's LocalAddresses ("*", "a.b.c.d/mask", "low-high", comma-separated) include `address`."""
    try:
        target = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(_item_covers(item.strip(), target) for item in local_addresses.split(","))


def _item_covers(item: str, target: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if item in ("*", "") or item.lower() == "any":
        return True
    try:
        if "-" in item:
            low, high = (ipaddress.ip_address(x) for x in item.split("-", 1))
            return low.version == target.version and low <= target <= high  # type: ignore[operator]  # same version checked first
        return target in ipaddress.ip_network(item, strict=False)
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Port openings: 2003's own, and the rules `netsh firewall` makes on 2008+


def openings(fw: Firewall, port: int, proto: str) -> dict[int, tuple[str, bool] | None]:
    """HNetCfg.FwMgr's view, per profile type (0 domain, 1 standard): (name, enabled) of the
    port opening for port/protocol. 2008+ shows the rules `netsh firewall` made, with
    Standard as the Private profile."""
    found: dict[int, tuple[str, bool] | None] = {0: None, 1: None}
    if isinstance(fw, LegacyFirewall):
        for opening in fw.port_openings:
            key = 0 if opening.profile == "domain" else 1
            if (opening.port, opening.protocol) == (port, proto) and found[key] is None:
                found[key] = (opening.name, opening.enabled)
        return found
    number = PROTOCOLS[proto]
    for rule in fw.rules:
        if not (rule.from_port_opening and (rule.protocol, rule.local_ports) == (number, str(port))):
            continue
        for key, bit in ((0, DOMAIN_PROFILE), (1, PRIVATE_PROFILE)):
            if rule.profiles & bit and found[key] is None:
                found[key] = (rule.name, rule.enabled)
    return found


def set_opening(fw: Firewall, caps: oscaps.OsCaps, port: int, proto: str, name: str | None,
                keys: tuple[int, ...]) -> None:
    """Adds (name) or deletes (None) the opening for port/protocol in profile types `keys`."""
    if isinstance(fw, LegacyFirewall):
        _set_port_opening(fw, port, proto, name, keys)
    else:
        _set_opening_rule(fw, caps, port, proto, name, keys)


def _set_port_opening(fw: LegacyFirewall, port: int, proto: str, name: str | None, keys: tuple[int, ...]) -> None:
    profiles = {"domain" if key == 0 else "standard" for key in keys}
    kept = [p for p in fw.port_openings if not ((p.port, p.protocol) == (port, proto) and p.profile in profiles)]
    if name is not None:
        kept += [PortOpening(port, proto, name, p) for p in ("domain", "standard") if p in profiles]
    fw.port_openings = kept


def _set_opening_rule(fw: AdvFirewall, caps: oscaps.OsCaps, port: int, proto: str, name: str | None,
                      keys: tuple[int, ...]) -> None:
    """2008+: `netsh firewall` keeps one rule per opening, its profiles those of the types it is in."""
    number = PROTOCOLS[proto]
    bits = sum(DOMAIN_PROFILE if key == 0 else PRIVATE_PROFILE for key in keys)
    rules: list[FirewallRule] = []
    for rule in fw.rules:
        if rule.from_port_opening and (rule.protocol, rule.local_ports) == (number, str(port)):
            rule = replace(rule, profiles=rule.profiles & ~bits)
            if not rule.profiles & (DOMAIN_PROFILE | PRIVATE_PROFILE):
                continue
        rules.append(rule)
    if name is not None:
        # netsh firewall's "standard" is Private on 2008 R2+; on 2008, where one profile applies to
        # the whole machine, it stands for every profile but the domain's: Private and Public.
        extra = PUBLIC_PROFILE if caps.single_firewall_profile and bits & PRIVATE_PROFILE else 0
        rules.append(FirewallRule(name, True, 1, 1, number, "*", str(port), bits | extra, from_port_opening=True))
    fw.rules = rules


# --------------------------------------------------------------------------------------------------
# Text layouts


def _mode(flag: bool) -> str:
    return "Enable" if flag else "Disable"


def render_firewall_opmode(fw: LegacyFirewall, connections: list[str]) -> str:
    """2003 `netsh firewall show opmode`: both profiles (the current one marked), then the
    operational mode of every connection."""
    lines = [""]
    for key, title, enabled, exceptions in (
        ("domain", "Domain", fw.domain_enabled, fw.domain_exceptions),
        ("standard", "Standard", fw.standard_enabled, fw.standard_exceptions),
    ):
        current = " (current)" if fw.current == key else ""
        lines += [
            f"{title} profile configuration{current}:",
            _FIREWALL_DASHES,
            f"{'Operational mode':<34}= {_mode(enabled)}",
            f"{'Exception mode':<34}= {_mode(exceptions)}",
            "",
        ]
    for conn in connections:
        lines += [
            f"{conn} firewall configuration:",
            _FIREWALL_DASHES,
            f"{'Operational mode':<34}= {_mode(fw.interface_enabled.get(conn, True))}",
            "",
        ]
    return text(lines)


def render_firewall_portopening(fw: LegacyFirewall) -> str:
    """2003 `netsh firewall show portopening`: a table per profile (Port 7, Protocol 10, Mode 9
    columns), headings and dashes even when a profile has no opening."""
    lines = [""]
    for key, title in (("domain", "Domain"), ("standard", "Standard")):
        lines += [
            f"Port configuration for {title} profile:",
            "Port   Protocol  Mode     Name",
            _FIREWALL_DASHES,
        ]
        lines += [
            f"{p.port!s:<7}{p.protocol:<10}{_mode(p.enabled):<9}{p.name}"
            for p in fw.port_openings
            if p.profile == key
        ]
        lines.append("")
    return text(lines)
