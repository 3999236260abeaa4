"""The TCP/IP side of a lab host: its adapters (Win32_NetworkAdapter joined to its
Win32_NetworkAdapterConfiguration, plus the per-interface settings netsh shows), a freshly
installed Microsoft loopback adapter, address look-ups, and the text layouts of the netsh and arp
commands the facts and check scripts run.

Text layouts: `netsh interface ipv4|ipv6 show interface <idx>`, `netsh interface ipv4 show
ipaddresses` / `ipv6 show addresses` (level=verbose), `arp -a <address>`, CRLF line ends as
PowerShell's Out-String joins native output.
"""

from __future__ import annotations

import ipaddress
import zlib
from dataclasses import dataclass, field

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable
from orchestrator.lab.profiles import FamilySpec
from orchestrator.lab.shell import enabled, text

LOOPBACK_SERVICE = "msloop"
LOOPBACK_PNP_ID = "ROOT\\NET\\0000"
# Every Microsoft loopback adapter reports this address ("\x02\x00LOOP").
LOOPBACK_MAC = "02:00:4C:4F:4F:50"
HOST_MASK = "255.255.255.255"
APIPA_MASK = "255.255.0.0"
# The load balancer's MAC as `arp -a` prints it (VMware's OUI: the lab LB is a VM).
DEFAULT_LB_MAC = "00-0C-29-4C-42-01"
# The highest interface metric: the 2003 fallback keeps the loopback's subnet route the loser.
FALLBACK_METRIC = 9999

_NETSH_LABEL_WIDTH = 35
_NETSH_DASHES = "-" * 46
_IPADDRESS_DASHES = "-" * 57
_PSEUDO_INTERFACE = "Loopback Pseudo-Interface 1"
_ARP_TITLES = "  Internet Address      Physical Address      Type"


@dataclass
class Nic:
    """One Win32_NetworkAdapter joined to its Win32_NetworkAdapterConfiguration, plus the per
    interface IP settings netsh shows. `addresses` holds (address, mask) pairs in WMI order: IPv4
    first, IPv6 entries with a prefix length such as "64" as the mask."""

    index: int
    interface_index: int | None
    connection_id: str | None
    description: str
    service_name: str
    pnp_device_id: str
    mac: str | None
    addresses: list[tuple[str, str]]
    dhcp_enabled: bool
    gateways: list[str]
    dns_servers: list[str]
    metric: int | None
    dns_registration: bool
    domain_dns_registration: bool
    netbios: int
    weak_host_send: bool
    weak_host_receive: bool
    weak_host_send_v6: bool
    weak_host_receive_v6: bool
    ip_enabled: bool = True
    automatic_metric: bool = True
    if_luid: str = ""
    # Addresses added with skipassource=true (netsh can set the flag only when adding one).
    skip_as_source: set[str] = field(default_factory=set)
    # What DHCP falls back to on a segment without a DHCP server (APIPA), for EnableDHCP().
    apipa: str | None = None
    # NLA has classified the adapter's network as unidentified, which means the Public profile.
    unidentified_network: bool = False
    # How many times a driver (re)install took this adapter down and up (orchestrator.lab.steps.loopback).
    driver_installs: int = field(default=0, compare=False)

    @property
    def is_loopback(self) -> bool:
        return self.service_name.lower() == LOOPBACK_SERVICE

    @property
    def alias(self) -> str:
        """The name netsh and the firewall show: the connection name, else the description."""
        return self.connection_id or self.description

    def ipv4(self) -> list[tuple[str, str]]:
        return [(a, m) for a, m in self.addresses if ":" not in a]

    def ipv6(self) -> list[tuple[str, str]]:
        return [(a, m) for a, m in self.addresses if ":" in a]

    def has_address(self, address: str) -> bool:
        wanted = normalize_ip(address)
        return any(normalize_ip(a) == wanted for a, _ in self.addresses)

    def mask_of(self, address: str) -> str | None:
        wanted = normalize_ip(address)
        return next((m for a, m in self.addresses if normalize_ip(a) == wanted), None)

    def drop_ipv4_flags(self) -> None:
        """What replacing every IPv4 address does to the SkipAsSource flags: only IPv6's stay."""
        self.skip_as_source = {a for a in self.skip_as_source if ":" in a}


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_ipv4(value: str) -> bool:
    return is_ip(value) and ":" not in value


def apipa_for(seed: int) -> str:
    """The APIPA address (169.254/16, never .0 or .255) a DHCP adapter that found no server takes,
    drawn from `seed` so that a lab host always gets the same one."""
    return f"169.254.{seed % 254 + 1}.{(seed >> 8) % 254 + 1}"


def is_autoconfigured(address: str) -> bool:
    """APIPA (169.254/16) or IPv6 link-local: what an adapter has before anyone configures it."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_link_local


def on_link_nic(nics: list[Nic], address: str) -> Nic | None:
    """The physical adapter whose IPv4 subnet holds `address` (None: off-link or not an address)."""
    try:
        target = ipaddress.ip_address(address)
    except ValueError:
        return None
    for nic in nics:
        if nic.is_loopback or not nic.ip_enabled:
            continue
        for a, m in nic.ipv4():
            if not is_autoconfigured(a) and target in ipaddress.IPv4Network(f"{a}/{m}", strict=False):
                return nic
    return None


def ip_interface_index(nic: Nic) -> int:
    # 2003's IP helper numbers interfaces 0x10000 + n; WMI has no InterfaceIndex there.
    return nic.interface_index if nic.interface_index is not None else 0x10002 + nic.index


def adapter_facts(nic: Nic) -> Hashtable:
    """One entry of the facts' `adapters`."""
    # WMI reports IPAddress, IPSubnet and the metric only for IP-enabled configurations.
    addresses = nic.addresses if nic.ip_enabled else []
    return Hashtable(
        index=nic.index,
        interface_index=nic.interface_index,
        connection_id=nic.connection_id,
        description=nic.description,
        service_name=nic.service_name,
        pnp_device_id=nic.pnp_device_id,
        mac=nic.mac,
        ip_enabled=nic.ip_enabled,
        ip_addresses=[a for a, _ in addresses],
        ip_subnets=[m for _, m in addresses],
        dhcp_enabled=nic.dhcp_enabled,
        gateways=list(nic.gateways) if nic.ip_enabled else [],
        dns_servers=list(nic.dns_servers) if nic.ip_enabled else [],
        metric=nic.metric if nic.ip_enabled else None,
        dns_registration=nic.dns_registration,
        domain_dns_registration=nic.domain_dns_registration,
        netbios=nic.netbios,
    )


# --------------------------------------------------------------------------------------------------
# The Microsoft loopback adapter


def unconfigured_loopback(
    spec: FamilySpec,
    caps: oscaps.OsCaps,
    *,
    index: int,
    interface_index: int | None,
    connection_id: str,
    description: str,
    pnp_device_id: str,
    addresses: list[tuple[str, str]],
    if_luid: str,
    apipa: str,
    unidentified_network: bool = False,
) -> Nic:
    """A Microsoft loopback adapter as Windows leaves it after installation: DHCP on, so an APIPA
    address, no gateway or DNS servers, DNS registration and NetBIOS at their defaults; weak host
    where the stack has no other model."""
    weak = not caps.weak_host
    return Nic(
        index=index,
        interface_index=interface_index,
        connection_id=connection_id,
        description=description,
        service_name=LOOPBACK_SERVICE,
        pnp_device_id=pnp_device_id,
        mac=LOOPBACK_MAC,
        addresses=addresses,
        dhcp_enabled=True,
        gateways=[],
        dns_servers=[],
        metric=spec.loopback_metric,
        dns_registration=True,
        domain_dns_registration=False,
        netbios=0,
        weak_host_send=weak,
        weak_host_receive=weak,
        weak_host_send_v6=weak,
        weak_host_receive_v6=weak,
        if_luid=if_luid,
        apipa=apipa,
        unidentified_network=unidentified_network,
    )


def new_loopback(nics: list[Nic], spec: FamilySpec, caps: oscaps.OsCaps, host_name: str) -> Nic:
    """What installing netloop.inf's driver on a new `*msloop` device leaves: the next
    ROOT\\NET\\nnnn, a DHCP adapter that falls back to APIPA, the family's description (#n from the
    second on)."""
    taken = {n.pnp_device_id.upper() for n in nics}
    number = next(i for i in range(10000) if f"ROOT\\NET\\{i:04d}" not in taken)
    pnp = f"ROOT\\NET\\{number:04d}"
    names = {n.connection_id for n in nics}
    suffix = next(i for i in range(2, 10000) if f"{spec.connection_name} {i}" not in names)
    existing = sum(1 for n in nics if n.is_loopback)
    seed = zlib.crc32(f"{host_name}|{pnp}".encode())
    apipa = apipa_for(seed)
    addresses = [(apipa, APIPA_MASK)]
    if any(a.startswith("fe80::") for n in nics for a, _ in n.addresses):
        addresses.append(("fe80::" + ":".join(f"{(seed >> s) & 0xFFFF:x}" for s in (0, 5, 11, 16)), "64"))
    ifindex, luid = _next_interface(nics, spec, caps)
    return unconfigured_loopback(
        spec,
        caps,
        index=max([n.index for n in nics] + [spec.loopback_index[0] - 1]) + 1,
        interface_index=ifindex,
        connection_id=f"{spec.connection_name} {suffix}",
        description=spec.loopback_description + (f" #{existing + 1}" if existing else ""),
        pnp_device_id=pnp,
        addresses=addresses,
        if_luid=luid,
        apipa=apipa,
    )


def _next_interface(nics: list[Nic], spec: FamilySpec, caps: oscaps.OsCaps) -> tuple[int | None, str]:
    """(InterfaceIndex, IfLuid alias) of a new adapter: none of either where Windows has no
    InterfaceIndex (2003's stack has no NDIS 6 interface LUIDs either)."""
    if not caps.interface_index:
        return None, ""
    ifindexes = [n.interface_index for n in nics if n.interface_index is not None]
    luids = [int(n.if_luid.rsplit("_", 1)[1]) for n in nics if n.if_luid.startswith("ethernet_")]
    ifindex = max(ifindexes, default=1) + spec.loopback_ifindex_gap[0]
    return ifindex, f"ethernet_{max(luids, default=spec.luid_base) + 1}"


# --------------------------------------------------------------------------------------------------
# Text layouts


def _reachable_time_ms(nic: Nic, ipv6: bool) -> int:
    # Windows draws ReachableTime once per interface in [0.5, 1.5] x BaseReachableTime (RFC 4861);
    # a checksum keeps it stable for an interface without storing it.
    seed = zlib.crc32(f"{nic.pnp_device_id}|{nic.interface_index}|{ipv6}".encode())
    return 15000 + (seed % 61) * 500


def render_netsh_interface(nic: Nic, netsh_level: int, *, ipv6: bool) -> str:
    """`netsh interface ipv4|ipv6 show interface <idx>` for one adapter.

    One "label : value" per line, labels padded to column 35, under "Interface <name> Parameters"
    and 46 dashes, with netsh's blank first and last lines. `netsh_level` (see FamilySpec) selects
    the lines the build prints.
    """
    metric = nic.metric if nic.metric is not None else 0
    rows: list[tuple[str, str]] = [
        ("IfLuid", nic.if_luid),
        ("IfIndex", str(nic.interface_index)),
    ]
    if netsh_level == 0:
        rows.append(("Compartment Id", "1"))
    rows += [
        ("State", "connected"),
        ("Metric", str(metric)),
        ("Link MTU", "1500 bytes"),
        ("Reachable Time", f"{_reachable_time_ms(nic, ipv6)} ms"),
        ("Base Reachable Time", "30000 ms"),
        ("Retransmission Interval", "1000 ms"),
        ("DAD Transmits", "1" if ipv6 else "3"),
        ("Site Prefix Length", "64"),
        ("Site Id", "1"),
        ("Forwarding", "disabled"),
        ("Advertising", "disabled"),
        ("Neighbor Discovery", "enabled"),
        ("Neighbor Unreachability Detection", "enabled"),
        ("Router Discovery", "enabled" if ipv6 else "dhcp"),
        ("Managed Address Configuration", "enabled"),
        ("Other Stateful Configuration", "enabled"),
        ("Weak Host Sends", enabled(nic.weak_host_send_v6 if ipv6 else nic.weak_host_send)),
        ("Weak Host Receives", enabled(nic.weak_host_receive_v6 if ipv6 else nic.weak_host_receive)),
        ("Use Automatic Metric", enabled(nic.automatic_metric)),
        ("Ignore Default Routes", "disabled"),
    ]
    if netsh_level >= 2:
        rows += [
            ("Advertised Router Lifetime", "1800 seconds"),
            ("Advertise Default Route", "disabled"),
            ("Current Hop Limit", "0"),
            ("Force ARPND Wake up patterns", "disabled"),
            ("Directed MAC Wake up patterns", "disabled"),
            ("ECN capability", "application"),
        ]
    if netsh_level >= 3:
        rows.append(("RA Based DNS Config (RFC 6106)", "disabled"))
    if netsh_level >= 4:
        rows.append(("DHCP/Static IP coexistence", "disabled"))
    lines = ["", f"Interface {nic.alias} Parameters", _NETSH_DASHES]
    lines += [f"{label.ljust(_NETSH_LABEL_WIDTH)}: {value}" for label, value in rows]
    lines.append("")
    return text(lines)


def _address_rows(nics: list[Nic], ipv6: bool) -> list[tuple[str, str, str, str, bool]]:
    """(address as shown, interface alias, scope id, address type, skip as source) per address,
    the Loopback Pseudo-Interface's first, then the adapters' in interface index order."""
    rows = [("::1" if ipv6 else "127.0.0.1", _PSEUDO_INTERFACE, "0.0", "Other", False)]
    ordered = sorted((n for n in nics if n.interface_index is not None and n.ip_enabled),
                     key=lambda n: n.interface_index or 0)
    for nic in ordered:
        for address, _ in (nic.ipv6() if ipv6 else nic.ipv4()):
            if ipv6 and is_autoconfigured(address):
                rows.append((f"{address}%{nic.interface_index}", nic.alias, f"0.{nic.interface_index}", "Other", False))
                continue
            kind = "Other" if is_autoconfigured(address) else "Dhcp" if nic.dhcp_enabled else "Manual"
            rows.append((address, nic.alias, "0.0", kind, normalize_ip(address) in nic.skip_as_source))
    return rows


def render_netsh_ipaddresses(nics: list[Nic], *, ipv6: bool, skip_as_source_shown: bool) -> str:
    """`netsh interface ipv4|ipv6 show ipaddresses level=verbose` (2008+): one block per address,
    the Loopback Pseudo-Interface's first, then the adapters' in interface index order. Labels are
    padded to 18 columns; "Interface Luid" shows the interface's alias. 2008 prints no "Skip as
    Source" line until KB975808 adds the flag."""
    rows = _address_rows(nics, ipv6)
    skipped = {row[0] for row in rows if row[4]}
    lines = [""]
    for address, alias, scope, kind, _ in rows:
        fields_ = [
            ("Interface Luid", alias),
            ("Scope Id", scope),
            ("Valid Lifetime", "infinite"),
            ("Preferred Lifetime", "infinite"),
            ("DAD State", "Preferred"),
            ("Address Type", kind),
        ]
        if skip_as_source_shown:
            fields_.append(("Skip as Source", "true" if address in skipped else "false"))
        lines += [f"Address {address} Parameters", _IPADDRESS_DASHES]
        lines += [f"{label:<18} : {value}" for label, value in fields_]
        lines.append("")
    return text(lines)


def render_arp(interface_address: str, interface_index: int, entries: list[tuple[str, str]]) -> str:
    """`arp -a <address>`: the interface header (index in hex), the column titles, a row per
    entry with the MAC in lower case and dashes; "No ARP Entries Found." when nothing matches."""
    if not entries:
        return text(["No ARP Entries Found."])
    lines = ["", f"Interface: {interface_address} --- 0x{interface_index:x}", _ARP_TITLES]
    lines += [f"  {ip:<22}{mac.replace(':', '-').lower():<22}dynamic   " for ip, mac in entries]
    lines.append("")
    return text(lines)
