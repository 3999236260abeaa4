"""`build_fleet`: a seeded fleet of lab hosts, every family's host made from its row of
orchestrator.oscaps (versions, capabilities) and the lab's data about it (orchestrator.lab.profiles).
`host_from_capture`: a lab host made from a capture of a real host (orchestrator.capture), as far as
its facts say; its docstring lists what gets the lab's defaults instead.

Seeded variation (every draw comes from `random.Random(seed)`, so a seed always gives the same
fleet, event timestamps aside, which count back from `now`):

* OS family: the profile's family, or for "mixed" the families of the table in turn (host i gets
  family i mod len(families)) shuffled, so every family appears floor(count / len(families)) times
  at least.
* Build: 2003 5.2.3790 SP2 (what WMF 2.0 needs); 2008 "RTM" 6.0.6001 SP1 (35 %) or 6.0.6002 SP2;
  2008 R2 6.1.7600 RTM (20 %) or 6.1.7601 SP1; 2012 6.2.9200; 2012 R2 6.3.9600; 2016 10.0.14393;
  2019 10.0.17763; 2022 10.0.20348; 2025 10.0.26100; a family without lab data its release build.
  Edition drawn per host; 2003 is 64-bit on 40 % of hosts, 2008 on 80 %, later always. Where
  SkipAsSource needs a hotfix (2008: KB975808), half the hosts of the newest service pack have it.
  PowerShell and IIS as the family's row says (PowerShell 2.0 on 2003/2008/2008 R2, 3.0 on 2012,
  4.0 on 2012 R2, 5.1 on 2016+; IIS 6.0, 7.0, 7.5, 8.0, 8.5, 10.0).
* NIC: VMware e1000 on 2003/2008 (MACs 00:50:56:80-BF:..), e1000 or Hyper-V synthetic on 2008 R2,
  vmxnet3 or Hyper-V synthetic on 2012+ (Hyper-V MACs 00:15:5D); physical MACs are unique in a
  fleet. "Local Area Connection" up to 2008 R2, "Ethernet" from 2012. Static RIP (subnet host
  10+i, the next one past the VIP for hosts from there on), gateway .1, DNS .2. The subnet is
  `lab_subnet(count)`: 10.20.0.0/24 while every RIP stays below the VIP 10.20.0.200 (189 hosts),
  10.20.0.0/21 for larger fleets (2,035 hosts at most), the VIP in it either way. Where IPv6 is
  part of the stack (2008+) 80 % of hosts also show an fe80:: link-local address (prefix "64").
  2003 has no InterfaceIndex and is weak host by design.
* Loopback: 25 % of hosts already have an msloop adapter (ROOT\\NET\\0000, MAC 02:00:4C:4F:4F:50,
  "Microsoft Loopback Adapter" up to 2008 R2, "Microsoft KM-TEST Loopback Adapter" from 2012),
  left on DHCP with an APIPA 169.254.x.x/16 address and the automatic metric.
* Firewall: 2003 (`netsh firewall`) on for 40 % of hosts (off is the 2003 SP1+ server default),
  domain profile current on 80 %, an "HTTP" TCP 80 port opening on half. Advanced firewall (2008+):
  all profiles on (60 %), all off (25 %), or domain off and private/public on (15 %); current
  profile domain, except that an existing loopback (an unidentified network) makes it public where
  one profile applies to the whole machine (2008) and domain+public elsewhere. Built-in IIS and
  WinRM inbound rules exist; no "dsrprep" rule does.
* IIS by family; "Default Web Site" (id 1) bound to `*:80:` (70 %) or to `<RIP>:80:`; on IIS 7+
  30 % also carry `https *:443:`; 20 % of hosts have a second site "Intranet" on `*:8080:` (on
  IIS 6 with a generated site id, as IIS 6 Manager makes them).
* http.sys listen list: holds the RIP on 20 % of hosts, else empty. Where the listen tool is
  httpcfg.exe (2003 Support Tools) it is present where the list is non-empty and on half of the
  rest; elsewhere the facts field is null.
* Event log: 10 % of hosts logged one Tcpip 4199 address conflict for their RIP 1 to 6 days before
  `now`.
* WMI EnableStatic refuses 255.255.255.255 (return 66) on 25 % of the hosts of a family whose
  host mask is not sure (2003: `accepts_host_mask`; the research could not settle it, so the
  fleet has both).
* `unhealthy_share` (default 0) of the hosts fail preflight: not elevated, a 32-bit session on
  64-bit Windows, or PowerShell 1.0. These draws come last, so they leave the rest of a fleet as is.
* Machine identity, drawn after those: an SMBIOS UUID (Win32_ComputerSystemProduct.UUID) and an OS
  product id (Win32_OperatingSystem.SerialNumber) per host, so two fleets of other seeds at the same
  addresses are other machines.
* All hosts of a fleet share one `Segment` with the load balancer (MAC `DEFAULT_LB_MAC`).
"""

from __future__ import annotations

import ipaddress
import json
import random
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestrator import oscaps
from orchestrator.facts import Adapter, Facts, netsh_fields, normalize_ip, parse_facts, parse_firewall_opmode
from orchestrator.lab.common import Hashtable, LabFaults, ScriptResult
from orchestrator.lab.firewall import (
    ALL_PROFILES,
    DOMAIN_PROFILE,
    PRIVATE_PROFILE,
    PUBLIC_PROFILE,
    AdvFirewall,
    Firewall,
    FirewallRule,
    LegacyFirewall,
    PortOpening,
)
from orchestrator.lab.host import DEFAULT_PASSWORD, DEFAULT_USERNAME, Segment, WindowsHost
from orchestrator.lab.iis import Site, binding_ip_port
from orchestrator.lab.net import (
    APIPA_MASK,
    DEFAULT_LB_MAC,
    LOOPBACK_PNP_ID,
    Nic,
    apipa_for,
    unconfigured_loopback,
)
from orchestrator.lab.profiles import MIXED, FamilySpec, NicHardware, family_spec, profiles
from orchestrator.lab.steps.arp_retry import VALUE as ARP_RETRY_VALUE
from orchestrator.lab.system import ADDRESS_CONFLICT, conflict_message, tcpip_event
from orchestrator.steps import arp_retry, http_listen, iis_binding, skip_as_source, weak_host
from orchestrator.steps.iis_binding import Site as ParsedSite
from orchestrator.steps.skip_as_source import SkipFlags
from orchestrator.steps.weak_host import WeakHostTable

LAB_VIP = "10.20.0.200"
# Fleets whose RIPs (10.20.0.11 on) all stay below the VIP keep the /24 they always had; a larger
# fleet's NICs get a /21 (255.255.248.0) that holds its RIPs and the same VIP, so that DSR's one
# subnet of load balancer, VIPs and servers holds, and no RIP is the VIP or an end of the subnet.
_SMALL_SUBNET = "10.20.0.0/24"
_LARGE_SUBNET = "10.20.0.0/21"
_FIRST_RIP = 11  # host number of the first RIP in its subnet


def lab_subnet(count: int) -> str:
    """The subnet of a generated lab fleet of `count` hosts (see the module's docstring)."""
    small = ipaddress.IPv4Network(_SMALL_SUBNET)
    fits = small.network_address + _FIRST_RIP + count - 1 < ipaddress.IPv4Address(LAB_VIP)
    return _SMALL_SUBNET if fits else _LARGE_SUBNET


def rip_addresses(net: ipaddress.IPv4Network, count: int, *, skip: str | None = None) -> list[str]:
    """`count` RIPs of `net` from its host number 11 on, past `skip` (the VIP) when it is among them;
    ValueError when the subnet runs out before its broadcast address."""
    rips: list[str] = []
    address = net.network_address + _FIRST_RIP
    while len(rips) < count:
        if address >= net.broadcast_address:
            raise ValueError(f"subnet {net} is too small for {count} hosts (RIPs start at host number {_FIRST_RIP})")
        if str(address) != skip:
            rips.append(str(address))
        address += 1
    return rips


def build_fleet(
    count: int,
    *,
    seed: int,
    profile: str,
    subnet: str | None = None,
    vip: str = LAB_VIP,
    username: str = DEFAULT_USERNAME,
    password: str = DEFAULT_PASSWORD,
    now: datetime | None = None,
    unhealthy_share: float = 0.0,
    lb_mac: str = DEFAULT_LB_MAC,
) -> list[WindowsHost]:
    """`count` hosts WEB01.. of `profile` ("mixed" or one family), RIPs from host number 11 of
    `subnet` (default `lab_subnet(count)`) past `vip`, all on one `Segment` with the load balancer.
    `now` anchors the timestamps of pre-existing events (default: the current minute).
    `unhealthy_share` of the hosts (drawn per host) fail preflight: not elevated, a 32-bit session
    on 64-bit Windows, or PowerShell 1.0."""
    if not 0.0 <= unhealthy_share <= 1.0:
        raise ValueError(f"unhealthy_share must be between 0 and 1, not {unhealthy_share}")
    if profile not in profiles():
        raise ValueError(f"unknown lab profile {profile!r}; choose one of {', '.join(profiles())}")
    if count < 1:
        raise ValueError(f"a lab fleet needs at least one host, not {count}")
    net = ipaddress.IPv4Network(subnet if subnet is not None else lab_subnet(count), strict=False)
    rips = rip_addresses(net, count, skip=vip)
    rng = random.Random(seed)
    if profile == MIXED:
        table = oscaps.families()
        families = [table[i % len(table)] for i in range(count)]
        rng.shuffle(families)
    else:
        families = [profile] * count
    context = _Context(net=net, rips=rips, used_macs=set(), username=username, password=password,
                       now=now if now is not None else datetime.now().replace(second=0, microsecond=0),
                       unhealthy_share=unhealthy_share)
    hosts = [
        _build_host(i + 1, family_spec(family), random.Random(rng.getrandbits(64)), context)
        for i, family in enumerate(families)
    ]
    segment = Segment(lb_mac=lb_mac)
    for host in hosts:
        segment.join(host)
    return hosts


@dataclass
class _Context:
    """What every host of one fleet is built with."""

    net: ipaddress.IPv4Network
    rips: list[str]  # host number i's RIP is rips[i - 1]
    used_macs: set[str]
    username: str
    password: str
    now: datetime
    unhealthy_share: float


@dataclass(frozen=True)
class _Os:
    version: str
    service_pack: int
    x64: bool
    caption: str
    hotfixes: set[str]


def _build_host(number: int, spec: FamilySpec, rng: random.Random, context: _Context) -> WindowsHost:
    # The order of the draws is the fleet's seed contract: keep it when changing what is drawn.
    caps = oscaps.caps(spec.family)
    os = _draw_os(spec, caps, rng)
    rip = context.rips[number - 1]
    ipv6 = caps.ipv6_vips and rng.random() < 0.8
    nic = _draw_nic(spec, caps, rng, context, rip, ipv6)
    nics = [nic]
    has_loopback = rng.random() < 0.25
    if has_loopback:
        nics.append(_draw_loopback(spec, caps, rng, nic.interface_index, ipv6))
    firewall = _draw_firewall(caps, rng, nics, has_loopback)
    sites = _draw_sites(caps, rng, rip)
    http_listen = [rip] if rng.random() < 0.2 else []
    httpcfg_installed = bool(http_listen) or rng.random() < 0.5
    events = _draw_events(rng, context.now, rip, number)
    # Drawn last, so that the draws above (and every seeded fleet) stay as they were.
    accepts_host_mask = caps.host_mask_sure or rng.random() < 0.75
    elevated, process_64bit, powershell_version = _draw_health(rng, os.x64, caps.powershell, context.unhealthy_share)
    machine_uuid, os_serial = _draw_identity(rng)
    return WindowsHost(
        name=f"WEB{number:02d}",
        os_family=spec.family,
        version=os.version,
        caption=os.caption,
        service_pack=os.service_pack,
        architecture="64-bit" if os.x64 else "32-bit",
        hotfixes=os.hotfixes,
        powershell_version=powershell_version,
        elevated=elevated,
        process_64bit=process_64bit,
        nics=nics,
        firewall=firewall,
        iis_version=caps.iis_version,
        sites=sites,
        http_listen=http_listen,
        httpcfg_installed=httpcfg_installed if caps.listen_tool is oscaps.ListenTool.HTTPCFG else True,
        events=events,
        marker={},
        faults=LabFaults(),
        username=context.username,
        password=context.password,
        accepts_host_mask=accepts_host_mask,
        machine_uuid=machine_uuid,
        os_serial=os_serial,
    )


def _draw_os(spec: FamilySpec, caps: oscaps.OsCaps, rng: random.Random) -> _Os:
    builds = list(spec.builds)
    version, service_pack, _ = rng.choices(builds, weights=[w for _, _, w in builds])[0]
    x64 = rng.random() < spec.x64_share
    edition = rng.choice(spec.editions)
    caption_format = spec.caption if x64 or spec.caption_x86 is None else spec.caption_x86
    hotfixes = set(spec.hotfixes)
    newest_sp = max(sp for _, sp, _ in builds)
    hotfix = caps.skip_as_source_hotfix if caps.skip_as_source is oscaps.SkipAsSource.HOTFIX else None
    if hotfix is not None and service_pack == newest_sp and rng.random() < 0.5:
        hotfixes.add(hotfix)
    return _Os(version, service_pack, x64, caption_format.format(edition=edition), hotfixes)


def _draw_nic(spec: FamilySpec, caps: oscaps.OsCaps, rng: random.Random, context: _Context, rip: str,
              ipv6: bool) -> Nic:
    hw = rng.choice(spec.nic_hardware)
    interface_index = rng.choice(spec.nic_ifindex) if caps.interface_index else None
    # Where the stack has no per-interface setting (2003) it is weak host, and cannot be otherwise.
    weak = not caps.weak_host
    return Nic(
        index=rng.choice(spec.nic_index),
        interface_index=interface_index,
        connection_id=spec.connection_name,
        description=hw.description,
        service_name=hw.service_name,
        pnp_device_id=_pnp_id(hw, rng),
        mac=_unique_mac(hw, rng, context.used_macs),
        addresses=[(rip, str(context.net.netmask))] + ([(_link_local(rng), "64")] if ipv6 else []),
        dhcp_enabled=False,
        gateways=[str(context.net.network_address + 1)],
        dns_servers=[str(context.net.network_address + 2)],
        metric=spec.nic_metric,
        dns_registration=True,
        domain_dns_registration=False,
        netbios=0,
        weak_host_send=weak,
        weak_host_receive=weak,
        weak_host_send_v6=weak,
        weak_host_receive_v6=weak,
        if_luid=f"ethernet_{spec.luid_base}" if caps.interface_index else "",
    )


def _draw_loopback(spec: FamilySpec, caps: oscaps.OsCaps, rng: random.Random, nic_ifindex: int | None,
                   ipv6: bool) -> Nic:
    """A loopback someone installed before dsrprep came, left as Windows installs it."""
    lo, hi = spec.loopback_ifindex_gap
    apipa = f"169.254.{rng.randint(1, 254)}.{rng.randint(1, 254)}"
    return unconfigured_loopback(
        spec,
        caps,
        index=rng.choice(spec.loopback_index),
        interface_index=None if nic_ifindex is None else nic_ifindex + rng.randint(lo, hi),
        connection_id=f"{spec.connection_name} 2",
        description=spec.loopback_description,
        pnp_device_id=LOOPBACK_PNP_ID,
        addresses=[(apipa, APIPA_MASK)] + ([(_link_local(rng), "64")] if ipv6 else []),
        if_luid=f"ethernet_{spec.luid_base + rng.randint(1, 4)}" if caps.interface_index else "",
        apipa=apipa,
        # NLA has met it: an unidentified network.
        unidentified_network=caps.advfirewall,
    )


def _draw_firewall(caps: oscaps.OsCaps, rng: random.Random, nics: list[Nic], has_loopback: bool) -> Firewall:
    if not caps.advfirewall:
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
            interface_enabled={n.alias: True for n in nics},
            port_openings=openings,
        )
    mode = rng.choices(("on", "off", "domain-off"), weights=(0.6, 0.25, 0.15))[0]
    current = 1
    if has_loopback:
        # An unidentified network is public; 2008 applies one profile, the most restrictive, to the
        # whole machine, 2008 R2+ one per network.
        current = 4 if caps.single_firewall_profile else 1 | 4
    # `winrm quickconfig` allows WinRM on Domain and Private only. A 2008 host managed over WinRM with
    # its Public profile on has been given Public too (its machine-wide profile can turn Public);
    # tests take that away to see dsrprep refuse.
    winrm_profiles = 1 | 2 | (4 if caps.single_firewall_profile and mode != "off" else 0)
    return AdvFirewall(
        domain=mode == "on",
        private=mode != "off",
        public=mode != "off",
        current_profiles=current,
        rules=[
            FirewallRule("World Wide Web Services (HTTP Traffic-In)", True, 1, 1, 6, "*", "80", ALL_PROFILES),
            FirewallRule("Windows Remote Management (HTTP-In)", True, 1, 1, 6, "*", "5985", winrm_profiles),
        ],
    )


def _draw_sites(caps: oscaps.OsCaps, rng: random.Random, rip: str) -> list[Site]:
    metabase = caps.iis is oscaps.IisApi.METABASE
    default_binding = "*:80:" if rng.random() < 0.7 else f"{rip}:80:"
    bindings = [("http", default_binding)]
    if not metabase and rng.random() < 0.3:
        bindings.append(("https", "*:443:"))
    sites = [Site(1, "Default Web Site", bindings)]
    if rng.random() < 0.2:
        site_id = rng.randint(100_000_000, 2_147_483_647) if metabase else 2
        sites.append(Site(site_id, "Intranet", [("http", "*:8080:")]))
    return sites


def _draw_events(rng: random.Random, now: datetime, rip: str, number: int) -> list[dict[str, Any]]:
    if rng.random() >= 0.1:
        return []
    when = now - timedelta(days=rng.randint(1, 6), hours=rng.randint(0, 23), minutes=rng.randint(0, 59))
    other_mac = "-".join(f"{b:02X}" for b in (0x00, 0x50, 0x56, rng.randint(0x80, 0xBF), 0x10, number % 0x100))
    return [tcpip_event(ADDRESS_CONFLICT, conflict_message(rip, other_mac), when)]


def _draw_health(rng: random.Random, x64: bool, powershell: str, unhealthy_share: float) -> tuple[bool, bool, str]:
    """(elevated, 64-bit process, PowerShell version): healthy, or one reason to fail preflight."""
    if rng.random() >= unhealthy_share:
        return True, x64, powershell
    problem = rng.choice(("not-elevated", "wow64", "powershell-1") if x64 else ("not-elevated", "powershell-1"))
    return problem != "not-elevated", x64 and problem != "wow64", "1.0" if problem == "powershell-1" else powershell


def _draw_identity(rng: random.Random) -> tuple[str, str]:
    """(SMBIOS UUID, OS product id) as WMI prints them: the UUID in upper case, the product id in
    the shape of Microsoft's example for Win32_OperatingSystem.SerialNumber, "10497-OEM-0031416-71674"."""
    machine_uuid = str(uuid.UUID(int=rng.getrandbits(128))).upper()
    parts = (rng.randint(0, 99999), rng.randint(0, 999), rng.randint(0, 9999999), rng.randint(0, 99999))
    return machine_uuid, "{:05d}-{:03d}-{:07d}-{:05d}".format(*parts)


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


# --------------------------------------------------------------------------------------------------
# Hosts made from captures of real hosts (orchestrator.capture)


@dataclass(kw_only=True)
class CapturedHost(WindowsHost):
    """A lab host made from a capture (`host_from_capture`). Until a step changes it, it answers the
    facts script with the captured raw object itself, native texts and all; once its model differs
    from what it was built as, it answers from the model, as every lab host does."""

    captured: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    built_as: Hashtable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.built_as = self.facts()

    def run(self, step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
        if step == "facts":
            with self.lock:
                if self.facts_locked() == self.built_as:
                    return ScriptResult(output=[_hashtables(self.captured)])
        return super().run(step, params, variant)


def _hashtables(value: Any) -> Any:
    """A copy of a raw facts object with every map a Hashtable, as the facts script builds them."""
    if isinstance(value, Mapping):
        return Hashtable({str(k): _hashtables(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return [_hashtables(v) for v in value]
    return value


def host_from_capture(raw: Mapping[str, Any], *, name: str | None = None, username: str = DEFAULT_USERNAME,
                      password: str = DEFAULT_PASSWORD) -> CapturedHost:
    """A lab host built from a captured raw facts object, as far as the facts say.

    From the facts: name (`name` overrides the computer name), OS, session, every adapter with its
    addresses, DNS, NetBIOS and metric settings, weak host flags (IPv4 and IPv6), IfLuid and automatic
    metric (from the netsh texts), SkipAsSource flags, firewall (2003: both profiles, per-connection
    modes and port openings; 2008+: profile states, current profiles, dsrprep's rules), IIS version and
    sites with their http/https bindings, the http.sys listen list, events, marker, ArpRetryCount,
    machine identity (SMBIOS UUID and OS product id; a capture without them gets ones drawn from its
    content, which its served facts then show too).

    What the facts cannot tell gets the lab's defaults: the firewall's built-in rules (the IIS HTTP
    rule where IIS is installed; the WinRM rule, on the Public profile only where `winrm_public`
    says so) and, when the firewall state was unknown, every profile on; an interface missing
    from netsh's output for one IP version is strong host there (Windows' default); a loopback is on
    an unidentified network where the current profiles include Public; a loopback left on DHCP
    without an APIPA address falls back to one made from its device id; a site's state is Started
    where IIS 6 does not say; non-http bindings (net.tcp...) and an unreadable site list leave no
    sites; 2003's WMI takes a /32; elevated-ness and the like are what the capture says.
    Raises FactsError when the facts do not parse.
    """
    # The parsers are the client's: a capture is read exactly as a rollout would read it.
    facts = parse_facts(raw)
    caps = oscaps.caps(facts.os.family)
    spec = family_spec(facts.os.family)
    weak = weak_host.table(facts)
    skip = skip_as_source.skip_flags(facts)
    current = facts.firewall.current_profiles
    public = caps.advfirewall and current is not None and bool(current & PUBLIC_PROFILE)
    nics = [_captured_nic(a, raw, caps, spec, weak, skip, public, position)
            for position, a in enumerate(facts.adapters)]
    iis = iis_binding.iis(facts)
    listen = http_listen.listen_list(facts)
    registry: dict[str, int | str] = {}
    if arp_retry.current(facts) is not None:
        registry[ARP_RETRY_VALUE] = int(arp_retry.current(facts) or 0)
    events = raw.get("events")
    machine_uuid, os_serial = _captured_identity(facts, raw)
    captured = json.loads(json.dumps(raw))
    # A capture made before the facts had the machine's identity gets the one this lab host has.
    captured.setdefault("machine", {"uuid": machine_uuid, "os_serial": os_serial})
    return CapturedHost(
        name=name or facts.computer_name,
        os_family=facts.os.family,
        version=facts.os.version,
        caption=facts.os.caption,
        service_pack=facts.os.service_pack,
        architecture=facts.os.architecture,
        hotfixes=set(facts.os.hotfixes),
        powershell_version=facts.powershell_version,
        elevated=facts.elevated,
        process_64bit=facts.process_64bit,
        nics=nics,
        firewall=_captured_firewall(facts, raw, nics, iis.installed),
        iis_version=iis.version,
        sites=[_captured_site(i, site) for i, site in enumerate(iis.sites)] if iis.installed else [],
        http_listen=list(listen or ()),
        httpcfg_installed=listen is not None,
        events=[dict(e) for e in events if isinstance(e, Mapping)] if isinstance(events, list) else [],
        marker=dict(facts.marker),
        registry=registry,
        username=username,
        password=password,
        machine_uuid=machine_uuid,
        os_serial=os_serial,
        captured=captured,
    )


def _captured_identity(facts: Facts, raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The capture's own machine identity; for a capture without one, one drawn from its content
    (the same capture is always the same machine)."""
    if facts.machine is not None:
        return facts.machine.uuid, facts.machine.os_serial
    return _draw_identity(random.Random(zlib.crc32(json.dumps(raw, sort_keys=True).encode())))


def _netsh_field(raw: Mapping[str, Any], interface_index: int | None, label: str) -> str | None:
    """A field of the captured `netsh interface ipv4|ipv6 show interface` text of an interface."""
    for key in ("netsh_ipv4", "netsh_ipv6"):
        texts = raw.get(key)
        text = texts.get(str(interface_index)) if isinstance(texts, Mapping) else None
        if isinstance(text, str):
            found = next((v for k, v in netsh_fields(text) if k.casefold() == label.casefold()), None)
            if found:
                return found
    return None


def _captured_nic(adapter: Adapter, raw: Mapping[str, Any], caps: oscaps.OsCaps, spec: FamilySpec,
                  weak: WeakHostTable, skip: SkipFlags, public: bool, position: int) -> Nic:
    index = adapter.interface_index
    send4, receive4, send6, receive6 = _weak_flags(weak, index, by_design=not caps.weak_host)
    luid = _netsh_field(raw, index, "IfLuid") or (f"ethernet_{spec.luid_base + position}" if index is not None else "")
    automatic = _netsh_field(raw, index, "Use Automatic Metric")
    addresses = [(a.address, a.mask) for a in adapter.addresses]
    return Nic(
        index=adapter.index,
        interface_index=index,
        connection_id=adapter.connection_id,
        description=adapter.description,
        service_name=adapter.service_name,
        pnp_device_id=adapter.pnp_device_id,
        mac=adapter.mac,
        addresses=addresses,
        dhcp_enabled=adapter.dhcp_enabled,
        gateways=list(adapter.gateways),
        dns_servers=list(adapter.dns_servers),
        metric=adapter.metric,
        dns_registration=adapter.dns_registration,
        domain_dns_registration=adapter.domain_dns_registration,
        netbios=adapter.netbios if adapter.netbios is not None else 0,
        weak_host_send=send4,
        weak_host_receive=receive4,
        weak_host_send_v6=send6,
        weak_host_receive_v6=receive6,
        ip_enabled=adapter.ip_enabled,
        automatic_metric=automatic is None or automatic.strip().lower() == "enabled",
        if_luid=luid if caps.interface_index else "",
        skip_as_source={a for a, _ in addresses if skip.of(a)},
        apipa=_apipa(adapter, addresses),
        unidentified_network=public and adapter.is_loopback,
    )


def _weak_flags(weak: WeakHostTable, index: int | None, *, by_design: bool) -> tuple[bool, bool, bool, bool]:
    """(send, receive) for IPv4 then IPv6 as netsh showed them; all on where weak host is the only
    model (2003), all off where netsh showed nothing (strong host, the 2008+ default)."""
    flags4 = weak.get(index, 4) if index is not None else None
    flags6 = weak.get(index, 6) if index is not None else None
    return (by_design or bool(flags4 and flags4.send), by_design or bool(flags4 and flags4.receive),
            by_design or bool(flags6 and flags6.send), by_design or bool(flags6 and flags6.receive))


def _apipa(adapter: Adapter, addresses: list[tuple[str, str]]) -> str | None:
    """The APIPA address the adapter holds, or, for a loopback, the one DHCP would give it."""
    apipa = next((a for a, _ in addresses if a.startswith("169.254.")), None)
    if apipa is None and adapter.is_loopback:
        apipa = apipa_for(zlib.crc32(adapter.pnp_device_id.encode()))
    return apipa


def _captured_firewall(facts: Facts, raw: Mapping[str, Any], nics: list[Nic], iis_installed: bool) -> Firewall:
    fw = facts.firewall
    if fw.api == "netsh-firewall":
        opmode = parse_firewall_opmode(raw["firewall"]["opmode_text"])
        modes = {key.lower(): mode for key, mode in opmode.profiles.items()}
        domain, standard = modes.get("domain"), modes.get("standard")
        return LegacyFirewall(
            domain_enabled=bool(domain and domain.operational),
            domain_exceptions=bool(domain is None or domain.exceptions),
            standard_enabled=bool(standard and standard.operational),
            standard_exceptions=bool(standard is None or standard.exceptions),
            current=(opmode.current or "domain").lower(),
            interface_enabled=dict(opmode.interfaces),
            port_openings=[PortOpening(p.port, p.protocol, p.name, p.profile, p.enabled) for p in fw.port_openings
                           if p.profile in ("domain", "standard")],
        )
    profiles = fw.profiles or {"domain": True, "private": True, "public": True}
    current = fw.current_profiles if fw.current_profiles is not None else DOMAIN_PROFILE
    unidentified = any(n.unidentified_network for n in nics)
    identified = (current & ~PUBLIC_PROFILE) if unidentified else current
    rules = [FirewallRule(r.name, r.enabled, r.direction, r.action, r.protocol, r.local_addresses, r.local_ports,
                          r.profiles) for r in fw.rules]
    if iis_installed:
        rules.append(FirewallRule("World Wide Web Services (HTTP Traffic-In)", True, 1, 1, 6, "*", "80",
                                  ALL_PROFILES))
    winrm = ALL_PROFILES if fw.winrm_public else DOMAIN_PROFILE | PRIVATE_PROFILE
    rules.append(FirewallRule("Windows Remote Management (HTTP-In)", True, 1, 1, 6, "*", "5985", winrm))
    return AdvFirewall(domain=profiles["domain"], private=profiles["private"], public=profiles["public"],
                       current_profiles=current, rules=rules, identified_profiles=identified or DOMAIN_PROFILE)


def _captured_site(position: int, site: ParsedSite) -> Site:
    number = site.id.rsplit("/", 1)[-1]
    bindings = []
    for b in site.bindings:
        ip = b.ip if b.ip == "*" or ":" not in b.ip else f"[{b.ip}]"
        bindings.append((b.protocol, f"{ip}:{b.port}:{b.host}"))
    return Site(int(number) if number.isdigit() else position + 1, site.name, bindings, site.state or "Started")


def capture_inventory_vars(model: WindowsHost, avoid: set[str]) -> dict[str, Any]:
    """The dsr_* variables a lab inventory gives a host served from a capture: its NIC by the
    captured RIP; as VIPs the IPv4 addresses a loopback adapter already holds (APIPA aside), else one
    address of the NIC's subnet that no served host holds (`avoid`: every address of the fleet and
    the VIPs given so far), on port 80; the IIS sites that serve port 80 ("Default Web Site" when it
    does, none without IIS); no TCP check of the VIP when no site would answer it; no SkipAsSource
    where the hotfix it needs is missing."""
    rip = model.rip
    nic = next(n for n in model.nics if not n.is_loopback and n.has_address(rip))
    mask = nic.mask_of(rip) or "255.255.255.0"
    held = [a for n in model.nics if n.is_loopback for a, _ in n.ipv4() if not a.startswith("169.254.")]
    vips = held or [_free_address(ipaddress.IPv4Interface(f"{rip}/{mask}"), avoid)]
    served = [s.name for s in model.sites if any(p == "http" and binding_ip_port(b)[1] == 80 for p, b in s.bindings)]
    sites = ["Default Web Site"] if "Default Web Site" in served else served[:1]
    if model.iis_version is None:
        sites = []
    found: dict[str, Any] = {
        "dsr_nic": {"address": rip},
        "dsr_vips": [{"address": vip, "ports": [80], "protocol": "tcp"} for vip in vips],
        "dsr_iis_sites": sites,
        "dsr_verify_tcp": bool(sites),
    }
    if model.caps.skip_as_source is oscaps.SkipAsSource.HOTFIX and not model.skip_as_source_supported():
        found["dsr_skip_as_source"] = False
    return found


def _free_address(interface: ipaddress.IPv4Interface, avoid: set[str]) -> str:
    """An address of the interface's subnet (within its /24) that nobody holds: .200 upwards, then down."""
    network = interface.network if interface.network.prefixlen >= 24 else ipaddress.IPv4Network(
        f"{interface.ip}/24", strict=False)
    taken = {normalize_ip(a) for a in avoid}
    hosts = list(network.hosts())
    if not hosts:
        raise ValueError(f"the subnet {network} of {interface.ip} has no room for a VIP")
    # .200, .201... then .199, .198...: clear of the low numbers servers and gateways usually have
    for candidate in sorted(hosts, key=lambda h: ((int(h) & 0xFF) < 200, abs((int(h) & 0xFF) - 200))):
        if str(candidate) not in taken:
            return str(candidate)
    raise ValueError(f"no free address for a VIP in {network}")
