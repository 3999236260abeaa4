"""The Windows host model behind each lab server: one simulated Windows Server's state (OS, adapters,
addresses, weak host flags, metrics, DNS/NetBIOS flags, firewall, IIS sites, http.sys listen list,
event log, dsrprep marker), the raw facts object of docs/facts.md with its text fields in the layouts
real Windows prints, the steps the host executes by step id, and `build_fleet`, which makes a seeded
fleet of such hosts.

Seeded variation (`build_fleet`; every draw comes from `random.Random(seed)`, so a seed always gives
the same fleet, event timestamps aside, which count back from `now`):

* OS family: the profile's family, or for "mixed" the families in turn (host i gets family i mod 7)
  shuffled, so every family appears floor(count / 7) times at least.
* Build: 2003 5.2.3790 SP2 (what WMF 2.0 needs); 2008 "RTM" 6.0.6001 SP1 (35 %) or 6.0.6002 SP2;
  2008 R2 6.1.7600 RTM (20 %) or 6.1.7601 SP1; 2012 R2 6.3.9600; 2016 10.0.14393; 2019 10.0.17763;
  2022 10.0.20348. Edition drawn per host; 2003 is 64-bit on 40 % of hosts, 2008 on 80 %, later
  always. KB975808 (SkipAsSource for 2008) on half the 2008 SP2 hosts. PowerShell 2.0 on
  2003/2008/2008 R2, 4.0 on 2012 R2, 5.1 on 2016+.
* NIC: VMware e1000 on 2003/2008 (MACs 00:50:56:80-BF:..), e1000 or Hyper-V synthetic on 2008 R2, vmxnet3
  or Hyper-V synthetic on 2012 R2+ (Hyper-V MACs 00:15:5D); physical MACs are unique in a fleet.
  "Local Area Connection" up to 2008 R2, "Ethernet" from 2012 R2. Static RIP (subnet host 10+i),
  gateway .1, DNS .2. On 2008+ 80 % of hosts also show an fe80:: link-local address (prefix "64").
  2003 has no InterfaceIndex and is weak host by design.
* Loopback: 25 % of hosts already have an msloop adapter (ROOT\\NET\\0000, MAC 02:00:4C:4F:4F:50,
  "Microsoft Loopback Adapter" up to 2008 R2, "Microsoft KM-TEST Loopback Adapter" from 2012 R2),
  left on DHCP with an APIPA 169.254.x.x/16 address and the automatic metric.
* Firewall: 2003 on for 40 % of hosts (off is the 2003 SP1+ server default), domain profile current
  on 80 %, an "HTTP" TCP 80 port opening on half. 2008+: all profiles on (60 %), all off (25 %), or
  domain off and private/public on (15 %); current profile domain, except that an existing loopback
  (an unidentified network) makes it public on 2008 (one profile for the whole machine) and
  domain+public on 2008 R2+. Built-in IIS and WinRM inbound rules exist; no "dsrprep" rule does.
* IIS by family (6.0, 7.0, 7.5, 8.5, 10.0); "Default Web Site" (id 1) bound to `*:80:` (70 %) or to
  `<RIP>:80:`; on IIS 7+ 30 % also carry `https *:443:`; 20 % of hosts have a second site "Intranet"
  on `*:8080:` (on IIS 6 with a generated site id, as IIS 6 Manager makes them).
* http.sys listen list: holds the RIP on 20 % of hosts, else empty. On 2003 httpcfg.exe (Support
  Tools) is present where the list is non-empty and on half of the rest; elsewhere the facts field
  is null.
* Event log: 10 % of hosts logged one Tcpip 4199 address conflict for their RIP 1 to 6 days before
  `now`.

Text layouts (see the render_* functions): `netsh interface ipv4|ipv6 show interface <idx>`,
`netsh firewall show opmode|portopening`, `appcmd list site`, `netsh http show iplisten`, `httpcfg
query iplisten`, CRLF line ends as PowerShell's Out-String joins native output.
"""

from __future__ import annotations

import ipaddress
import random
import threading
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

from orchestrator.lab.common import Hashtable, LabFaults, ScriptResult
from orchestrator.lab.profiles import FAMILIES, FAMILY_SPECS, PROFILES, FamilySpec, NicHardware

__all__ = [
    "FAMILIES",
    "PROFILES",
    "AdvFirewall",
    "FirewallRule",
    "LegacyFirewall",
    "Nic",
    "PortOpening",
    "Site",
    "StepFailed",
    "WindowsHost",
    "build_fleet",
    "render_appcmd_sites",
    "render_firewall_opmode",
    "render_firewall_portopening",
    "render_httpcfg_iplisten",
    "render_netsh_http_iplisten",
    "render_netsh_interface",
]

CRLF = "\r\n"
LOOPBACK_SERVICE = "msloop"
LOOPBACK_PNP_ID = "ROOT\\NET\\0000"
# Every Microsoft loopback adapter reports this address ("\x02\x00LOOP").
LOOPBACK_MAC = "02:00:4C:4F:4F:50"
ALL_PROFILES = 0x7FFFFFFF
DEFAULT_USERNAME = "labadmin"
DEFAULT_PASSWORD = "Lab-Passw0rd!"

_NETSH_LABEL_WIDTH = 35
_NETSH_DASHES = "-" * 46
_FIREWALL_DASHES = "-" * 67
_HTTPCFG_SEPARATOR = "-" * 78
_IPLISTEN_HEADER = "IP addresses present in the IP listen list:"
# ERROR_NOT_FOUND: what httpcfg prints when the listen list has no entry.
_HTTPCFG_EMPTY = "HttpQueryServiceConfiguration completed with 1168."


def _text(lines: Iterable[str]) -> str:
    return CRLF.join(lines) + CRLF


def _enabled(flag: bool) -> str:
    return "enabled" if flag else "disabled"


def _mode(flag: bool) -> str:
    return "Enable" if flag else "Disable"


# --------------------------------------------------------------------------------------------------
# State


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

    @property
    def is_loopback(self) -> bool:
        return self.service_name.lower() == LOOPBACK_SERVICE

    def ipv4(self) -> list[tuple[str, str]]:
        return [(a, m) for a, m in self.addresses if ":" not in a]


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


@dataclass
class AdvFirewall:
    """Windows Firewall with Advanced Security (2008+)."""

    domain: bool
    private: bool
    public: bool
    current_profiles: int
    rules: list[FirewallRule]


Firewall = LegacyFirewall | AdvFirewall


@dataclass
class Site:
    """An IIS site. Bindings are (protocol, "ip:port:host") with "*" for All Unassigned, whatever
    the IIS version; IIS 6 shows "*" as an empty IP."""

    id: int
    name: str
    bindings: list[tuple[str, str]]
    state: str = "Started"


class StepFailed(Exception):
    """Raised by a step handler for what the real script would `throw`: ends the pipeline Failed."""


StepHandler = Callable[["WindowsHost", dict[str, Any]], ScriptResult]


@dataclass(kw_only=True)
class WindowsHost:
    """One simulated Windows server.

    `lock` guards every field: the protocol server calls `run` from several threads. Step handlers
    run with it held, so they read state through the `_locked` helpers, never through `facts()`.
    """

    name: str
    os_family: str
    version: str
    caption: str
    service_pack: int
    architecture: str
    hotfixes: set[str]
    powershell_version: str
    nics: list[Nic]
    firewall: Firewall
    iis_version: str | None
    sites: list[Site]
    elevated: bool = True
    process_64bit: bool = True
    http_listen: list[str] = field(default_factory=list)
    httpcfg_installed: bool = True
    events: list[dict[str, Any]] = field(default_factory=list)
    marker: dict[str, str] = field(default_factory=dict)
    faults: LabFaults = field(default_factory=LabFaults)
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def spec(self) -> FamilySpec:
        return FAMILY_SPECS[self.os_family]

    @property
    def inventory_name(self) -> str:
        """The name an inventory uses for this host ("web07")."""
        return self.name.lower()

    @property
    def rip(self) -> str:
        """The real IP: the first IPv4 address of the first non-loopback adapter."""
        for nic in self.nics:
            if not nic.is_loopback and nic.ipv4():
                return nic.ipv4()[0][0]
        raise LookupError(f"{self.name} has no IPv4 address on a physical adapter")

    # ---- facts -----------------------------------------------------------------------------------

    def facts(self) -> Hashtable:
        """The raw facts object of docs/facts.md, as the facts script returns it.

        Every map is a `Hashtable`, adapters, rules, sites and events included: the template builds
        each of them with `@{}`. Lists and strings are fresh copies, safe to hand to another thread.
        """
        with self.lock:
            return self._facts_locked()

    def _facts_locked(self) -> Hashtable:
        is_2003 = self.spec.is_2003
        adapters = sorted(self.nics, key=lambda n: n.index)
        netsh_ipv4 = Hashtable()
        netsh_ipv6 = Hashtable()
        if not is_2003:
            for nic in adapters:
                if nic.interface_index is not None:
                    key = str(nic.interface_index)
                    netsh_ipv4[key] = render_netsh_interface(nic, self.spec.netsh_level, ipv6=False)
                    netsh_ipv6[key] = render_netsh_interface(nic, self.spec.netsh_level, ipv6=True)
        return Hashtable(
            schema=1,
            computer_name=self.name,
            os=Hashtable(
                version=self.version,
                caption=self.caption,
                service_pack=self.service_pack,
                architecture=self.architecture,
                hotfixes=sorted(h.upper() for h in self.hotfixes),
            ),
            powershell_version=self.powershell_version,
            elevated=self.elevated,
            process_64bit=self.process_64bit,
            adapters=[_adapter_facts(nic) for nic in adapters],
            netsh_ipv4=netsh_ipv4,
            netsh_ipv6=netsh_ipv6,
            firewall=self._firewall_facts(adapters),
            iis=self._iis_facts(),
            http_listen_text=self._http_listen_text(),
            events=[Hashtable(e) for e in self.events],
            marker=Hashtable(self.marker),
        )

    def _firewall_facts(self, adapters: list[Nic]) -> Hashtable:
        fw = self.firewall
        if isinstance(fw, LegacyFirewall):
            return Hashtable(
                api="netsh-firewall",
                opmode_text=render_firewall_opmode(fw, [n.connection_id or n.description for n in adapters]),
                portopening_text=render_firewall_portopening(fw),
                profiles=None,
                current_profiles=None,
                rules=[],
            )
        return Hashtable(
            api="advfirewall",
            opmode_text=None,
            portopening_text=None,
            profiles=Hashtable(domain=fw.domain, private=fw.private, public=fw.public),
            current_profiles=fw.current_profiles,
            rules=[
                Hashtable(
                    name=r.name,
                    enabled=r.enabled,
                    direction=r.direction,
                    action=r.action,
                    protocol=r.protocol,
                    local_addresses=r.local_addresses,
                    local_ports=r.local_ports,
                    profiles=r.profiles,
                )
                for r in fw.rules
                if r.name.startswith("dsrprep")
            ],
        )

    def _iis_facts(self) -> Hashtable:
        if self.iis_version is None:
            return Hashtable(version=None, appcmd_sites_text=None, metabase_sites=None)
        if self.iis_version.startswith("6."):
            return Hashtable(
                version=self.iis_version,
                appcmd_sites_text=None,
                metabase_sites=[
                    Hashtable(
                        id=f"W3SVC/{site.id}",
                        name=site.name,
                        bindings=[_metabase_binding(b) for p, b in site.bindings if p == "http"],
                    )
                    for site in sorted(self.sites, key=lambda s: s.id)
                ],
            )
        return Hashtable(
            version=self.iis_version,
            appcmd_sites_text=render_appcmd_sites(self.sites),
            metabase_sites=None,
        )

    def _http_listen_text(self) -> str | None:
        if not self.spec.is_2003:
            return render_netsh_http_iplisten(self.http_listen)
        if not self.httpcfg_installed:
            return None
        return render_httpcfg_iplisten(self.http_listen)

    # ---- steps -----------------------------------------------------------------------------------

    def run(self, step: str, params: dict[str, Any]) -> ScriptResult:
        """Execute the template for `step` with the parameters the client bound."""
        handler = self._STEPS.get(step)
        if handler is None:
            return ScriptResult(
                failed=(
                    f"The term '{step}' is not recognized as the name of a cmdlet, function, script "
                    "file, or operable program. Check the spelling of the name, or if a path was "
                    "included, verify that the path is correct and try again."
                )
            )
        with self.lock:
            try:
                return handler(self, dict(params))
            except StepFailed as exc:
                return ScriptResult(failed=str(exc))

    def _step_facts(self, params: dict[str, Any]) -> ScriptResult:
        return ScriptResult(output=[self._facts_locked()])

    # Step id -> handler; the apply steps join this table.
    _STEPS: ClassVar[dict[str, StepHandler]] = {
        "facts": _step_facts,
    }


def _adapter_facts(nic: Nic) -> Hashtable:
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


def _metabase_binding(binding: str) -> str:
    ip, _, rest = binding.partition(":")
    return f"{'' if ip == '*' else ip}:{rest}"


# --------------------------------------------------------------------------------------------------
# Text renderers: the exact layouts of the Windows tools the facts script runs.


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
        ("Weak Host Sends", _enabled(nic.weak_host_send_v6 if ipv6 else nic.weak_host_send)),
        ("Weak Host Receives", _enabled(nic.weak_host_receive_v6 if ipv6 else nic.weak_host_receive)),
        ("Use Automatic Metric", _enabled(nic.automatic_metric)),
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
    name = nic.connection_id or nic.description
    lines = ["", f"Interface {name} Parameters", _NETSH_DASHES]
    lines += [f"{label.ljust(_NETSH_LABEL_WIDTH)}: {value}" for label, value in rows]
    lines.append("")
    return _text(lines)


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
    return _text(lines)


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
    return _text(lines)


def render_appcmd_sites(sites: list[Site]) -> str:
    """`appcmd list site`: one `SITE "<name>" (id:<n>,bindings:<proto>/<info>,...,state:<s>)` line
    per site in id order; nothing at all when there is no site."""
    lines = []
    for site in sorted(sites, key=lambda s: s.id):
        bindings = ",".join(f"{proto}/{info}" for proto, info in site.bindings)
        lines.append(f'SITE "{site.name}" (id:{site.id},bindings:{bindings},state:{site.state})')
    return _text(lines) if lines else ""


def render_netsh_http_iplisten(addresses: list[str]) -> str:
    """`netsh http show iplisten` (2008+): heading, dashes, then the entries indented by four."""
    lines = ["", _IPLISTEN_HEADER, "-" * len(_IPLISTEN_HEADER), ""]
    if addresses:
        lines += [f"    {a}" for a in addresses]
        lines.append("")
    lines.append("")
    return _text(lines)


def render_httpcfg_iplisten(addresses: list[str]) -> str:
    """`httpcfg query iplisten` (2003 Support Tools): a record per entry, as the Platform SDK's
    httpcfg sample prints it, followed by httpcfg's 78-dash record separator; an empty list makes
    the query fail with ERROR_NOT_FOUND (1168)."""
    if not addresses:
        return _text([_HTTPCFG_EMPTY])
    lines: list[str] = []
    for a in addresses:
        lines += [f"IP         :{a}", _HTTPCFG_SEPARATOR]
    return _text(lines)


# --------------------------------------------------------------------------------------------------
# Fleet building


def build_fleet(
    count: int,
    *,
    seed: int,
    profile: str,
    subnet: str = "10.20.0.0/24",
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    now: datetime | None = None,
) -> list[WindowsHost]:
    """`count` hosts WEB01.. of `profile` ("mixed" or one family), RIPs from host number 11 of
    `subnet`. `now` anchors the timestamps of pre-existing events (default: the current minute)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown lab profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if count < 1:
        raise ValueError(f"a lab fleet needs at least one host, not {count}")
    net = ipaddress.IPv4Network(subnet, strict=False)
    if 10 + count >= net.num_addresses - 1:
        raise ValueError(f"subnet {subnet} is too small for {count} hosts (RIPs start at host number 11)")
    anchor = now if now is not None else datetime.now().replace(second=0, microsecond=0)
    rng = random.Random(seed)
    if profile == "mixed":
        families = [FAMILIES[i % len(FAMILIES)] for i in range(count)]
        rng.shuffle(families)
    else:
        families = [profile] * count
    used_macs: set[str] = set()
    return [
        _build_host(
            number=i + 1,
            spec=FAMILY_SPECS[family],
            rng=random.Random(rng.getrandbits(64)),
            net=net,
            used_macs=used_macs,
            username=username,
            password=password,
            now=anchor,
        )
        for i, family in enumerate(families)
    ]


def _weighted_build(spec: FamilySpec, rng: random.Random) -> tuple[str, int]:
    builds = list(spec.builds)
    version, sp, _ = rng.choices(builds, weights=[w for _, _, w in builds])[0]
    return version, sp


def _unique_mac(hw: NicHardware, rng: random.Random, used: set[str]) -> str:
    while True:
        # vCenter assigns 00:50:56:80-BF:xx:xx; Hyper-V's dynamic pool is 00:15:5D:xx:xx:xx.
        first = rng.randint(0x80, 0xBF) if hw.mac_prefix == "00:50:56" else rng.randint(0, 0xFF)
        mac = f"{hw.mac_prefix}:{first:02X}:{rng.randint(0, 0xFF):02X}:{rng.randint(0, 0xFF):02X}"
        if mac not in used:
            used.add(mac)
            return mac


def _pnp_id(hw: NicHardware, rng: random.Random) -> str:
    if hw.kind == "vmbus":
        return f"{hw.pnp_prefix}\\{{{str(uuid.UUID(int=rng.getrandbits(128), version=4)).upper()}}}"
    if hw.service_name == "vmxnet3ndis6":
        return f"{hw.pnp_prefix}\\FF565000{rng.getrandbits(32):08X}00"
    slot = rng.choice(("0888", "1088", "00A8", "0818"))
    return f"{hw.pnp_prefix}\\4&{rng.getrandbits(32):X}&0&{slot}"


def _link_local(rng: random.Random) -> str:
    return "fe80::" + ":".join(f"{rng.getrandbits(16):x}" for _ in range(4))


def _build_host(
    *,
    number: int,
    spec: FamilySpec,
    rng: random.Random,
    net: ipaddress.IPv4Network,
    used_macs: set[str],
    username: str,
    password: str,
    now: datetime,
) -> WindowsHost:
    is_2003 = spec.is_2003
    version, service_pack = _weighted_build(spec, rng)
    x64 = rng.random() < spec.x64_share
    edition = rng.choice(spec.editions)
    caption_format = spec.caption if x64 or spec.caption_x86 is None else spec.caption_x86
    hotfixes = set(spec.hotfixes)
    if spec.family == "2008" and service_pack == 2 and rng.random() < 0.5:
        hotfixes.add("KB975808")

    rip = str(net.network_address + 10 + number)
    mask = str(net.netmask)
    gateway = str(net.network_address + 1)
    dns = str(net.network_address + 2)
    ipv6 = not is_2003 and rng.random() < 0.8

    hw = rng.choice(spec.nic_hardware)
    nic_ifindex = None if spec.nic_ifindex is None else rng.choice(spec.nic_ifindex)
    nic = Nic(
        index=rng.choice(spec.nic_index),
        interface_index=nic_ifindex,
        connection_id=spec.connection_name,
        description=hw.description,
        service_name=hw.service_name,
        pnp_device_id=_pnp_id(hw, rng),
        mac=_unique_mac(hw, rng, used_macs),
        addresses=[(rip, mask)] + ([(_link_local(rng), "64")] if ipv6 else []),
        dhcp_enabled=False,
        gateways=[gateway],
        dns_servers=[dns],
        metric=spec.nic_metric,
        dns_registration=True,
        domain_dns_registration=False,
        netbios=0,
        # 2003's stack is weak host and cannot be made otherwise.
        weak_host_send=is_2003,
        weak_host_receive=is_2003,
        weak_host_send_v6=is_2003,
        weak_host_receive_v6=is_2003,
        if_luid="" if is_2003 else f"ethernet_{spec.luid_base}",
    )
    nics = [nic]

    has_loopback = rng.random() < 0.25
    if has_loopback:
        lo, hi = spec.loopback_ifindex_gap
        apipa = f"169.254.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
        nics.append(
            Nic(
                index=rng.choice(spec.loopback_index),
                interface_index=None if nic_ifindex is None else nic_ifindex + rng.randint(lo, hi),
                connection_id=f"{spec.connection_name} 2",
                description=spec.loopback_description,
                service_name=LOOPBACK_SERVICE,
                pnp_device_id=LOOPBACK_PNP_ID,
                mac=LOOPBACK_MAC,
                addresses=[(apipa, "255.255.0.0")] + ([(_link_local(rng), "64")] if ipv6 else []),
                dhcp_enabled=True,
                gateways=[],
                dns_servers=[],
                metric=spec.loopback_metric,
                dns_registration=True,
                domain_dns_registration=False,
                netbios=0,
                weak_host_send=is_2003,
                weak_host_receive=is_2003,
                weak_host_send_v6=is_2003,
                weak_host_receive_v6=is_2003,
                if_luid="" if is_2003 else f"ethernet_{spec.luid_base + rng.randint(1, 4)}",
            )
        )

    firewall = _build_firewall(spec, rng, nics, has_loopback)

    default_binding = "*:80:" if rng.random() < 0.7 else f"{rip}:80:"
    bindings = [("http", default_binding)]
    if not is_2003 and rng.random() < 0.3:
        bindings.append(("https", "*:443:"))
    sites = [Site(1, "Default Web Site", bindings)]
    if rng.random() < 0.2:
        site_id = rng.randint(100_000_000, 2_147_483_647) if is_2003 else 2
        sites.append(Site(site_id, "Intranet", [("http", "*:8080:")]))

    http_listen = [rip] if rng.random() < 0.2 else []
    httpcfg_installed = bool(http_listen) or rng.random() < 0.5

    events: list[dict[str, Any]] = []
    if rng.random() < 0.1:
        when = now - timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
        other_mac = "-".join(f"{b:02X}" for b in (0x00, 0x50, 0x56, rng.randint(0x80, 0xBF), 0x10, number))
        events.append(
            {
                "event_id": 4199,
                "source": "Tcpip",
                "time": when.strftime("%Y-%m-%dT%H:%M:%S"),
                "message": (
                    f"The system detected an address conflict for IP address {rip} with the system "
                    f"having network hardware address {other_mac}. Network operations on this system "
                    "may be disrupted as a result."
                ),
            }
        )

    return WindowsHost(
        name=f"WEB{number:02d}",
        os_family=spec.family,
        version=version,
        caption=caption_format.format(edition=edition),
        service_pack=service_pack,
        architecture="64-bit" if x64 else "32-bit",
        hotfixes=hotfixes,
        powershell_version=spec.powershell_version,
        elevated=True,
        process_64bit=x64,
        nics=nics,
        firewall=firewall,
        iis_version=spec.iis_version,
        sites=sites,
        http_listen=http_listen,
        httpcfg_installed=httpcfg_installed if is_2003 else True,
        events=events,
        marker={},
        faults=LabFaults(),
        username=username,
        password=password,
    )


def _build_firewall(spec: FamilySpec, rng: random.Random, nics: list[Nic], has_loopback: bool) -> Firewall:
    if spec.is_2003:
        on = rng.random() < 0.4
        openings = []
        if rng.random() < 0.5:
            openings = [PortOpening(80, "TCP", "HTTP", profile) for profile in ("domain", "standard")]
        return LegacyFirewall(
            domain_enabled=on,
            domain_exceptions=True,
            standard_enabled=on,
            standard_exceptions=True,
            current="domain" if rng.random() < 0.8 else "standard",
            interface_enabled={n.connection_id or n.description: True for n in nics},
            port_openings=openings,
        )
    mode = rng.choices(("on", "off", "domain-off"), weights=(0.6, 0.25, 0.15))[0]
    current = 1
    if has_loopback:
        # An unidentified network is public; 2008 applies one profile, the most restrictive, to the
        # whole machine, 2008 R2+ one per network.
        current = 4 if spec.family == "2008" else 1 | 4
    return AdvFirewall(
        domain=mode == "on",
        private=mode != "off",
        public=mode != "off",
        current_profiles=current,
        rules=[
            FirewallRule("World Wide Web Services (HTTP Traffic-In)", True, 1, 1, 6, "*", "80", ALL_PROFILES),
            FirewallRule("Windows Remote Management (HTTP-In)", True, 1, 1, 6, "*", "5985", 1 | 2),
        ],
    )
