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
* WMI EnableStatic on 2003 refuses 255.255.255.255 (return 66) on 25 % of the 2003 hosts
  (`accepts_host_mask`; the research could not settle it, so the fleet has both).
* `unhealthy_share` (default 0) of the hosts fail preflight: not elevated, a 32-bit session on
  64-bit Windows, or PowerShell 1.0. These draws come last, so they leave the rest of a fleet as is.
* All hosts of a fleet share one `Segment` with the load balancer (MAC `DEFAULT_LB_MAC`).

Steps (docs/steps.md; `run(step, params, variant)`): each handler does what its template under
ps_templates/ does on that Windows version, command for command, with the template's result keys
and its throws ("<command> failed (exit N): <output>" for a native command). A variant meant for
another family fails the way its commands fail there: netsh contexts 2003 lacks ("The following
command was not found: ..."), appcmd, httpcfg, the IIS 6 WMI namespace or HNetCfg.FwPolicy2
missing, `netsh firewall` working on 2008+ with its deprecation notice. Also modelled: skipassource
refused by 2008 without KB975808 ("The parameter is incorrect."; 2008 R2 has it from RTM),
EnableStatic's 66 for /32 and the fallback, refusals without elevation, ERROR_IN_WOW64 when creating
the loopback, NLA: a loopback's first real address makes its network unidentified (Public), which
on 2008 is the one profile of the whole machine; when that flip happens with the Public profile on
and no dsrprep rule for the address, the result asks the server to cut the session
(`ScriptResult.cut_connection`), the change staying made. `cut_on_step` cuts any one step on demand.
Not modelled: the HTTP/WinRM restart that http_listen schedules a few seconds after its result.

Text layouts (see the render_* functions): `netsh interface ipv4|ipv6 show interface <idx>`,
`netsh interface ipv4 show ipaddresses` / `ipv6 show addresses` (level=verbose), `netsh firewall
show opmode|portopening`, `appcmd list site`, `netsh http show iplisten`, `httpcfg query iplisten`,
`arp -a <address>`, CRLF line ends as PowerShell's Out-String joins native output.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from orchestrator.facts import normalize_ip
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
    "Segment",
    "Site",
    "StepFailed",
    "WindowsHost",
    "build_fleet",
    "render_appcmd_sites",
    "render_arp",
    "render_firewall_opmode",
    "render_firewall_portopening",
    "render_httpcfg_iplisten",
    "render_netsh_http_iplisten",
    "render_netsh_interface",
    "render_netsh_ipaddresses",
]

CRLF = "\r\n"
LOOPBACK_SERVICE = "msloop"
LOOPBACK_PNP_ID = "ROOT\\NET\\0000"
# Every Microsoft loopback adapter reports this address ("\x02\x00LOOP").
LOOPBACK_MAC = "02:00:4C:4F:4F:50"
ALL_PROFILES = 0x7FFFFFFF
# The load balancer's MAC as `arp -a` prints it (VMware's OUI: the lab LB is a VM).
DEFAULT_LB_MAC = "00-0C-29-4C-42-01"
# The http_listen step's service restart: it begins this long after the step answers and keeps
# WinRM away for this long (seconds). Windows takes about five seconds to begin.
HTTP_RESTART_DELAY = 0.3
HTTP_RESTART_OUTAGE = 0.5
HOST_MASK = "255.255.255.255"
APIPA_MASK = "255.255.0.0"
# The highest interface metric: the 2003 fallback keeps the loopback's subnet route the loser.
FALLBACK_METRIC = 9999
DOMAIN_PROFILE, PRIVATE_PROFILE, PUBLIC_PROFILE = 1, 2, 4
MARKER_KEY = "HKLM\\SOFTWARE\\dsrprep\\DSR"
DEFAULT_VARIANT = "default"
# Steps whose 2003 commands differ enough to have their own template (docs/steps.md).
_WIN2003_STEPS = frozenset({"firewall_rule", "firewall_state", "loopback_config", "http_listen", "iis_binding"})
_PROTOCOLS = {"TCP": 6, "UDP": 17}
_NETSH_IP_CONTEXTS = (["interface", "ipv4"], ["interface", "ipv6"])
_NETSH_ELEVATION = "The requested operation requires elevation (Run as administrator)."
# What netsh prints for a tag its helper does not know (2008 without KB975808: skipassource).
_NETSH_BAD_PARAMETER = "The parameter is incorrect."
# Vista/2008+ netsh still runs the XP/2003 `firewall` context, and says so after every command.
_NETSH_FIREWALL_DEPRECATED = (
    "\r\nIMPORTANT: Command executed successfully.\r\n"
    'However, "netsh firewall" is deprecated;\r\n'
    'use "netsh advfirewall firewall" instead.\r\n'
    'For more information on using "netsh advfirewall firewall" commands\r\n'
    'instead of "netsh firewall", see KB article 947709\r\n'
    "at http://go.microsoft.com/fwlink/?linkid=121488 .\r\n\r\nOk.\r\n\r\n"
)
DEFAULT_USERNAME = "labadmin"
DEFAULT_PASSWORD = "Lab-Passw0rd!"

_NETSH_LABEL_WIDTH = 35
_NETSH_DASHES = "-" * 46
_FIREWALL_DASHES = "-" * 67
_HTTPCFG_SEPARATOR = "-" * 78
_IPLISTEN_HEADER = "IP addresses present in the IP listen list:"
_IPADDRESS_DASHES = "-" * 57
_PSEUDO_INTERFACE = "Loopback Pseudo-Interface 1"
_ARP_TITLES = "  Internet Address      Physical Address      Type"
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
    # Addresses added with skipassource=true (netsh can set the flag only when adding one).
    skip_as_source: set[str] = field(default_factory=set)
    # What DHCP falls back to on a segment without a DHCP server (APIPA), for EnableDHCP().
    apipa: str | None = None
    # NLA has classified the adapter's network as unidentified, which means the Public profile.
    unidentified_network: bool = False

    @property
    def is_loopback(self) -> bool:
        return self.service_name.lower() == LOOPBACK_SERVICE

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


# (host, parameters, variant): the variant is the template file that ran ("default", "win2003").
StepHandler = Callable[["WindowsHost", dict[str, Any], str], ScriptResult]


@dataclass(eq=False)
class Segment:
    """The layer-2 segment a fleet's hosts share with the load balancer, which answers ARP for
    every VIP with `lb_mac`. Steps that look at other hosts (`arp_check`) read them through it."""

    lb_mac: str = DEFAULT_LB_MAC
    hosts: list[WindowsHost] = field(default_factory=list, repr=False)

    def join(self, host: WindowsHost) -> None:
        if all(h is not host for h in self.hosts):
            self.hosts.append(host)
        host.segment = self


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
    # 2003 only: whether WMI EnableStatic takes 255.255.255.255 (research: unresolved, so both).
    accepts_host_mask: bool = True
    # The next successful run of this step that changes something drops the management
    # connection (the change stays made); the knob then clears itself.
    cut_on_step: str | None = None
    segment: Segment | None = field(default=None, repr=False, compare=False)
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
            netsh_ipv4_addresses=None if is_2003 else render_netsh_ipaddresses(
                adapters, ipv6=False, skip_as_source_shown=self._skipassource_supported()
            ),
            netsh_ipv6_addresses=None if is_2003 else render_netsh_ipaddresses(
                adapters, ipv6=True, skip_as_source_shown=self._skipassource_supported()
            ),
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
                winrm_public=None,
            )
        return Hashtable(
            api="advfirewall",
            winrm_public=any(
                r.enabled and r.direction == 1 and r.action == 1 and r.profiles & 4
                and bool({"5985", "5986", "*"} & set(r.local_ports.split(",")))
                for r in fw.rules
            ),
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

    def natural_variant(self, step: str) -> str:
        """The variant the template catalogue picks for this host (default.ps1 unless 2003 has
        its own file for the step)."""
        return "win2003" if self.spec.is_2003 and step in _WIN2003_STEPS else DEFAULT_VARIANT

    def run(self, step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
        """Execute template `step`/`variant` with the parameters the client bound.

        `variant` None means the variant the catalogue would pick for this host. Any other
        variant runs its own commands here, and fails the way they fail on this Windows version.
        """
        handler = self._STEPS.get(step)
        if handler is None:
            return ScriptResult(failed=_not_recognized(step))
        chosen = variant if variant is not None else self.natural_variant(step)
        try:
            if step in self._SEGMENT_STEPS:
                # These read other hosts of the segment and take every lock themselves, one at a
                # time, so that two hosts checking each other cannot deadlock.
                return handler(self, dict(params), chosen)
            with self.lock:
                return self._after_step(step, handler(self, dict(params), chosen))
        except StepFailed as exc:
            return ScriptResult(failed=str(exc))

    def _after_step(self, step: str, result: ScriptResult) -> ScriptResult:
        if self.cut_on_step == step and result.failed is None and _changed(result):
            self.cut_on_step = None
            result.cut_connection = True
        return result

    def _step_facts(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("facts", variant, DEFAULT_VARIANT)
        return ScriptResult(output=[self._facts_locked()])

    # -- shared helpers (caller holds the lock) --

    def _windir(self) -> str:
        return "C:\\WINDOWS" if self.spec.is_2003 else "C:\\Windows"

    def _skipassource_supported(self) -> bool:
        # 2008 (6.0) learned skipassource from KB975808. 2008 R2 RTM already has it (Windows 7's
        # netsh; KB2386184 later fixed only the DNS registration of such addresses).
        if self.spec.is_2003:
            return False
        return self.os_family != "2008" or "KB975808" in {h.upper() for h in self.hotfixes}

    def _require_admin(self, message: str) -> None:
        if not self.elevated:
            raise StepFailed(message)

    def _nic_by_pnp(self, pnp_device_id: str) -> Nic | None:
        wanted = pnp_device_id.casefold()
        return next((n for n in self.nics if n.pnp_device_id.casefold() == wanted), None)

    def _resolve_adapter(self, pnp_device_id: str) -> Nic:
        """The adapter a template names by PNPDeviceID; '' is the loopback in dsrprep's marker."""
        target = pnp_device_id or self.marker.get("LoopbackPnpId", "")
        if not target:
            raise StepFailed(f"PnpDeviceId is empty and {MARKER_KEY} has no LoopbackPnpId")
        nic = self._nic_by_pnp(target)
        if nic is None:
            raise StepFailed(f"No network adapter has PNPDeviceID '{target}'")
        return nic

    def _holders(self, address: str) -> list[Nic]:
        return [n for n in self.nics if n.ip_enabled and n.has_address(address)]

    def _refresh_profiles(self) -> None:
        fw = self.firewall
        if not isinstance(fw, AdvFirewall):
            return
        unidentified = any(n.unidentified_network for n in self.nics)
        if not unidentified:
            fw.current_profiles = fw.identified_profiles
        elif self.os_family == "2008":
            # Vista/2008 apply one profile to the whole machine: the most restrictive one.
            fw.current_profiles = PUBLIC_PROFILE
        else:
            fw.current_profiles = fw.identified_profiles | PUBLIC_PROFILE

    def _rule_allows(self, address: str) -> bool:
        fw = self.firewall
        if not isinstance(fw, AdvFirewall):
            return False
        return any(
            r.name.lower().startswith("dsrprep") and r.enabled and r.direction == 1 and r.action == 1
            and r.profiles & PUBLIC_PROFILE and _addresses_cover(r.local_addresses, address)
            for r in fw.rules
        )

    def _network_identified(self, nic: Nic) -> bool:
        """NLA meets the loopback's first real address: an unidentified network, Public profile.
        True when that cuts the management connection (2008's machine-wide profile flip with
        the Public profile on and no dsrprep rule for the address in it)."""
        if self.spec.is_2003 or not nic.is_loopback or nic.unidentified_network:
            return False
        real = [a for a, _ in nic.addresses if not _is_autoconfigured(a)]
        if not real:
            return False
        nic.unidentified_network = True
        fw = self.firewall
        if not isinstance(fw, AdvFirewall):
            return False
        before = fw.current_profiles
        self._refresh_profiles()
        flipped = self.os_family == "2008" and before != PUBLIC_PROFILE and fw.current_profiles == PUBLIC_PROFILE
        return flipped and fw.public and not all(self._rule_allows(a) for a in real)

    def _ip_interface_index(self, nic: Nic) -> int:
        # 2003's IP helper numbers interfaces 0x10000 + n; WMI has no InterfaceIndex there.
        return nic.interface_index if nic.interface_index is not None else 0x10002 + nic.index

    def _add_event(self, event_id: int, message: str) -> None:
        self.events.append(
            {
                "event_id": event_id,
                "source": "Tcpip",
                "time": datetime.now().strftime("%Y-%m-%dT%H:%M:%S"),
                "message": message,
            }
        )

    # -- preflight --

    def _step_preflight(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("preflight", variant, DEFAULT_VARIANT)
        os_64bit = self.architecture.startswith("64")
        problems: list[str] = []
        if not self.elevated:
            problems.append(
                "the session is not elevated (not a member of the local Administrators group, or UAC "
                "filtered the token of a local account)"
            )
        if os_64bit and not self.process_64bit:
            problems.append(
                "this is a 32-bit PowerShell on 64-bit Windows; connect to the 64-bit endpoint "
                "(Microsoft.PowerShell, not Microsoft.PowerShell32)"
            )
        if _major(self.powershell_version) < 2:
            problems.append(f"PowerShell {self.powershell_version} is older than 2.0")
        wanted: dict[str, str] = {}
        for vip in _p_list(params, "Vips"):
            if not vip:
                continue
            if not _is_ip(vip):
                problems.append(f"'{vip}' is not an IP address")
                continue
            wanted[normalize_ip(vip)] = vip
        holders = []
        for nic in sorted(self.nics, key=lambda n: n.index):
            for address, _ in nic.addresses:
                held = wanted.get(normalize_ip(address))
                if held is None:
                    continue
                name = nic.connection_id or nic.description
                holders.append(Hashtable(address=held, adapter=name, service_name=nic.service_name))
                if not nic.is_loopback:
                    problems.append(
                        f"VIP {held} is bound to '{name}' (service {nic.service_name}), an adapter that is "
                        "not a loopback; it answers ARP for the VIP on the segment"
                    )
        if problems:
            raise StepFailed("Preflight refused: " + "; ".join(problems))
        checks = Hashtable(
            elevated=self.elevated,
            process_64bit=self.process_64bit,
            os_64bit=os_64bit,
            powershell_version=self.powershell_version,
            vip_holders=holders,
        )
        return _result(False, checks=checks)

    # -- firewall --

    def _netsh(self, args: list[str], *, ok: tuple[int, ...] = (0,), admin: bool = True) -> tuple[int, str]:
        """Runs netsh as the templates' Invoke-NativeCommand does: (exit code, output), or the
        throw for an exit code not in `ok`. Only the refusals every command shares are decided
        here: a context this Windows version lacks, and a session without elevation."""
        code, output = 0, ""
        if self.spec.is_2003 and (args[0] in ("advfirewall", "http") or args[:2] in _NETSH_IP_CONTEXTS):
            code, output = 1, _text([_netsh_not_found(" ".join(args)), ""])
        elif admin and not self.elevated:
            code, output = 1, _text([_NETSH_ELEVATION, ""])
        if code not in ok:
            raise _native_failed("netsh.exe", args, code, output)
        return code, output

    def _step_firewall_rule(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("firewall_rule", variant, DEFAULT_VARIANT, "win2003")
        present = _ensure(params)
        name = _p_str(params, "Name")
        if not name:
            raise StepFailed("Name is empty")
        vip = _p_str(params, "Vip")
        proto = _p_str(params, "Protocol").upper()
        port = _p_int(params, "Port")
        if variant == DEFAULT_VARIANT:
            return self._advfirewall_rule(present, name, vip, proto, port)
        number = _PROTOCOLS.get(proto)
        if number is None:
            raise StepFailed(f"Protocol must be TCP or UDP, not '{_p_str(params, 'Protocol')}'")
        if not 1 <= port <= 65535:
            raise StepFailed(f"Port {port} is out of range")
        return self._port_opening(present, name, proto, port)

    def _advfirewall_rule(self, present: bool, name: str, vip: str, proto: str, port: int) -> ScriptResult:
        fw = self.firewall
        # `show rule` exits 1 both for "No rules match" and, on 2003, for the missing context.
        code, _ = self._netsh(["advfirewall", "firewall", "show", "rule", f"name={name}"], ok=(0, 1), admin=False)
        existing = (
            [r for r in fw.rules if r.name.casefold() == name.casefold()]
            if code == 0 and isinstance(fw, AdvFirewall)
            else []
        )
        if present and not existing:
            number = _PROTOCOLS.get(proto)
            if number is None:
                raise StepFailed(f"Protocol must be TCP or UDP, not '{proto}'")
            if not 1 <= port <= 65535:
                raise StepFailed(f"Port {port} is out of range")
            if not _is_ip(vip):
                raise StepFailed(f"Vip '{vip}' is not an IP address")
            self._netsh(
                ["advfirewall", "firewall", "add", "rule", f"name={name}", "dir=in", "action=allow",
                 f"protocol={proto}", f"localip={vip}", f"localport={port}", "profile=any"]
            )
            assert isinstance(fw, AdvFirewall)
            fw.rules.append(FirewallRule(name, True, 1, 1, number, _rule_address(vip), str(port), ALL_PROFILES))
            return _result(True, name=name, output=_text(["Ok.", ""]))
        if not present and existing:
            self._netsh(["advfirewall", "firewall", "delete", "rule", f"name={name}"])
            assert isinstance(fw, AdvFirewall)
            fw.rules = [r for r in fw.rules if all(r is not e for e in existing)]
            return _result(True, name=name, output=_text(["", f"Deleted {len(existing)} rule(s).", "Ok.", ""]))
        return _result(False, name=name, output=None)

    def _openings(self, port: int, proto: str) -> dict[int, tuple[str, bool] | None]:
        """HNetCfg.FwMgr's view, per profile type (0 domain, 1 standard): (name, enabled) of the
        port opening for port/protocol. 2008+ shows the rules `netsh firewall` made, with
        Standard as the Private profile."""
        fw = self.firewall
        found: dict[int, tuple[str, bool] | None] = {0: None, 1: None}
        if isinstance(fw, LegacyFirewall):
            for opening in fw.port_openings:
                if (opening.port, opening.protocol) == (port, proto):
                    key = 0 if opening.profile == "domain" else 1
                    if found[key] is None:
                        found[key] = (opening.name, opening.enabled)
            return found
        number = _PROTOCOLS[proto]
        for rule in fw.rules:
            if rule.from_port_opening and (rule.protocol, rule.local_ports) == (number, str(port)):
                for key, bit in ((0, DOMAIN_PROFILE), (1, PRIVATE_PROFILE)):
                    if rule.profiles & bit and found[key] is None:
                        found[key] = (rule.name, rule.enabled)
        return found

    def _port_opening(self, present: bool, name: str, proto: str, port: int) -> ScriptResult:
        openings = self._openings(port, proto)
        titles = {0: "DOMAIN", 1: "STANDARD"}
        outputs: list[str] = []
        changed = False
        if present:
            missing = False
            for key, opening in openings.items():
                if opening is None:
                    missing = True
                    continue
                if opening[0] != name and not opening[1]:
                    raise StepFailed(
                        f"{port}/{proto} has a disabled port opening '{opening[0]}' in the {titles[key]} "
                        "profile that dsrprep did not make; enable or remove it first"
                    )
                if not opening[1]:
                    missing = True
            foreign = [o for o in openings.values() if o is not None and o[0] != name]
            if missing and foreign:
                raise StepFailed(
                    f"{port}/{proto} is opened by '{foreign[0][0]}' in only one profile; dsrprep will not "
                    "overwrite another port opening"
                )
            if missing:
                outputs.append(self._netsh_firewall(
                    ["firewall", "add", "portopening", f"protocol={proto}", f"port={port}", f"name={name}",
                     "mode=ENABLE", "scope=ALL", "profile=ALL"]
                ))
                self._set_opening(port, proto, name, (0, 1))
                changed = True
        else:
            for key, opening in openings.items():
                if opening is not None and opening[0] == name:
                    outputs.append(self._netsh_firewall(
                        ["firewall", "delete", "portopening", f"protocol={proto}", f"port={port}",
                         f"profile={titles[key]}"]
                    ))
                    self._set_opening(port, proto, None, (key,))
                    changed = True
        return _result(changed, name=name, output="".join(outputs) if outputs else None)

    def _netsh_firewall(self, args: list[str]) -> str:
        self._netsh(args)
        return _text(["Ok.", ""]) if self.spec.is_2003 else _NETSH_FIREWALL_DEPRECATED

    def _set_opening(self, port: int, proto: str, name: str | None, keys: tuple[int, ...]) -> None:
        """Adds (name) or deletes (None) the opening for port/protocol in profile types `keys`."""
        fw = self.firewall
        if isinstance(fw, LegacyFirewall):
            profiles = {"domain" if key == 0 else "standard" for key in keys}
            kept = [
                p for p in fw.port_openings if not ((p.port, p.protocol) == (port, proto) and p.profile in profiles)
            ]
            if name is not None:
                kept += [PortOpening(port, proto, name, p) for p in ("domain", "standard") if p in profiles]
            fw.port_openings = kept
            return
        number = _PROTOCOLS[proto]
        bits = sum(DOMAIN_PROFILE if key == 0 else PRIVATE_PROFILE for key in keys)
        rules: list[FirewallRule] = []
        for rule in fw.rules:
            if rule.from_port_opening and (rule.protocol, rule.local_ports) == (number, str(port)):
                rule = replace(rule, profiles=rule.profiles & ~bits)
                if not rule.profiles & (DOMAIN_PROFILE | PRIVATE_PROFILE):
                    continue
            rules.append(rule)
        if name is not None:
            # netsh firewall's "standard" is Private on 2008 R2+, and Private and Public on 2008.
            extra = PUBLIC_PROFILE if self.os_family == "2008" and bits & PRIVATE_PROFILE else 0
            rules.append(FirewallRule(name, True, 1, 1, number, "*", str(port), bits | extra, from_port_opening=True))
        fw.rules = rules

    def _step_firewall_state(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("firewall_state", variant, DEFAULT_VARIANT, "win2003")
        enabled = _p_bool(params, "Enabled")
        fw = self.firewall
        if variant == DEFAULT_VARIANT:
            wanted: list[str] = []
            for profile in _p_list(params, "Profiles"):
                key = profile.strip().lower()
                if not key:
                    continue
                if key not in ("domain", "private", "public"):
                    raise StepFailed(f"Unknown firewall profile '{profile}'; expected domain, private or public")
                if key not in wanted:
                    wanted.append(key)
            if not isinstance(fw, AdvFirewall):
                raise StepFailed("Cannot load COM type HNetCfg.FwPolicy2.")
            outputs = []
            for key in wanted:
                if getattr(fw, key) != enabled:
                    self._netsh(["advfirewall", "set", f"{key}profile", "state", "on" if enabled else "off"])
                    setattr(fw, key, enabled)
                    outputs.append(_text(["Ok.", ""]))
            return _result(
                bool(outputs), profiles=Hashtable({k: enabled for k in wanted}), output="".join(outputs) or None
            )
        mode = "ENABLE" if enabled else "DISABLE"
        if isinstance(fw, LegacyFirewall):
            attribute = f"{fw.current}_enabled"
            changed = getattr(fw, attribute) != enabled
            output = self._netsh_firewall(["firewall", "set", "opmode", f"mode={mode}"]) if changed else None
            setattr(fw, attribute, enabled)
            return _result(changed, enabled=enabled, current_profile_type=0 if fw.current == "domain" else 1,
                           output=output)
        # FwMgr on 2008+ sees the current profile; set opmode switches every current one.
        current = [p for bit, p in ((DOMAIN_PROFILE, "domain"), (PRIVATE_PROFILE, "private"),
                                    (PUBLIC_PROFILE, "public")) if fw.current_profiles & bit]
        changed = bool(current) and getattr(fw, current[0]) != enabled
        output = None
        if changed:
            output = self._netsh_firewall(["firewall", "set", "opmode", f"mode={mode}"])
            for profile in current:
                setattr(fw, profile, enabled)
        return _result(changed, enabled=enabled, current_profile_type=0 if current[:1] == ["domain"] else 1,
                       output=output)

    # -- the loopback adapter --

    def _step_loopback(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("loopback", variant, DEFAULT_VARIANT)
        present = _ensure(params)
        pnp = _p_str(params, "PnpDeviceId")
        if present:
            return self._loopback_present(pnp, _p_list(params, "Vips"))
        return self._loopback_absent(pnp)

    def _assert_native_process(self) -> None:
        if self.architecture.startswith("64") and not self.process_64bit:
            raise StepFailed(
                "ERROR_IN_WOW64: this is a 32-bit PowerShell on 64-bit Windows; devices can only be "
                "installed from the 64-bit endpoint"
            )

    def _write_marker(self, name: str, value: str) -> None:
        self._require_registry()
        self.marker[name] = value

    def _require_registry(self) -> None:
        if not self.elevated:
            raise StepFailed(
                'Exception calling "CreateSubKey" with "1" argument(s): "Access to the registry key '
                "'HKEY_LOCAL_MACHINE\\SOFTWARE\\dsrprep\\DSR' is denied.\""
            )

    def _loopback_present(self, pnp: str, vips: list[str]) -> ScriptResult:
        loopbacks = [n for n in self.nics if n.is_loopback]
        marker_id = self.marker.get("LoopbackPnpId")
        marker_created = self.marker.get("LoopbackCreated")
        found = None
        for wanted in (pnp, marker_id):
            if found is None and wanted:
                found = next((n for n in loopbacks if n.pnp_device_id == wanted), None)
        if found is None:
            # A loopback already holding a VIP is adopted rather than duplicated.
            wanted_ips = {normalize_ip(v) for v in vips if _is_ip(v)}
            found = next(
                (n for n in sorted(loopbacks, key=lambda n: n.index)
                 if any(normalize_ip(a) in wanted_ips for a, _ in n.addresses)),
                None,
            )
        created = found is None
        if found is None:
            self._assert_native_process()
            if not self.elevated:
                raise StepFailed(
                    'Exception calling "Create" with "2" argument(s): "SetupDiCallClassInstaller'
                    '(DIF_REGISTERDEVICE) failed: Access is denied. (0x00000005)"'
                )
            found = self._new_loopback()
            self.nics.append(found)
            self.marker["LoopbackPnpId"] = found.pnp_device_id
            self.marker["LoopbackCreated"] = "1"
        pnp_id = found.pnp_device_id
        created_value = "1" if created or (marker_id == pnp_id and marker_created == "1") else "0"
        changed = created
        if marker_id != pnp_id and self.marker.get("LoopbackPnpId") != pnp_id:
            self._write_marker("LoopbackPnpId", pnp_id)
            changed = True
        if marker_created != created_value and self.marker.get("LoopbackCreated") != created_value:
            self._write_marker("LoopbackCreated", created_value)
            changed = True
        return _result(changed, pnp_device_id=pnp_id, created=created, reboot_required=False, output=None)

    def _loopback_absent(self, pnp: str) -> ScriptResult:
        marker_id = self.marker.get("LoopbackPnpId")
        marker_created = self.marker.get("LoopbackCreated")
        target = pnp or marker_id or ""
        if not target:
            return _result(False, pnp_device_id="", created=False, reboot_required=False, output=None)
        ours = marker_id == target and marker_created == "1"
        nic = next((n for n in self.nics if n.is_loopback and n.pnp_device_id == target), None)
        if nic is not None and not ours:
            raise StepFailed(
                f"Refusing to remove {target}: {MARKER_KEY} does not record that dsrprep created it "
                "(LoopbackCreated=1 for that device)"
            )
        changed = False
        if nic is not None:
            self._assert_native_process()
            if not self.elevated:
                raise StepFailed(
                    'Exception calling "Remove" with "1" argument(s): "SetupDiCallClassInstaller(DIF_REMOVE) '
                    f'for {target} failed: Access is denied. (0x00000005)"'
                )
            self.nics.remove(nic)
            self._refresh_profiles()
            changed = True
        if marker_id == target:
            if not self.elevated:
                raise StepFailed(
                    'Exception calling "OpenSubKey" with "2" argument(s): "Requested registry access is not allowed."'
                )
            changed = changed or marker_id is not None or marker_created is not None
            self.marker.pop("LoopbackPnpId", None)
            self.marker.pop("LoopbackCreated", None)
        return _result(changed, pnp_device_id=target, created=False, reboot_required=False, output=None)

    def _new_loopback(self) -> Nic:
        """What `UpdateDriverForPlugAndPlayDevices(*msloop)` leaves: the next ROOT\\NET\\nnnn, a
        DHCP adapter that falls back to APIPA, the family's description (#n from the second on)."""
        spec = self.spec
        taken = {n.pnp_device_id.upper() for n in self.nics}
        number = next(i for i in range(10000) if f"ROOT\\NET\\{i:04d}" not in taken)
        pnp = f"ROOT\\NET\\{number:04d}"
        index = max([n.index for n in self.nics] + [spec.loopback_index[0] - 1]) + 1
        ifindexes = [n.interface_index for n in self.nics if n.interface_index is not None]
        ifindex = None if spec.is_2003 else max(ifindexes, default=1) + spec.loopback_ifindex_gap[0]
        names = {n.connection_id for n in self.nics}
        suffix = next(i for i in range(2, 10000) if f"{spec.connection_name} {i}" not in names)
        existing = sum(1 for n in self.nics if n.is_loopback)
        description = spec.loopback_description + (f" #{existing + 1}" if existing else "")
        seed = zlib.crc32(f"{self.name}|{pnp}".encode())
        apipa = f"169.254.{seed % 254 + 1}.{(seed >> 8) % 254 + 1}"
        addresses = [(apipa, APIPA_MASK)]
        if any(a.startswith("fe80::") for n in self.nics for a, _ in n.addresses):
            addresses.append(("fe80::" + ":".join(f"{(seed >> s) & 0xFFFF:x}" for s in (0, 5, 11, 16)), "64"))
        luids = [int(n.if_luid.rsplit("_", 1)[1]) for n in self.nics if n.if_luid.startswith("ethernet_")]
        return _unconfigured_loopback(
            spec,
            index=index,
            interface_index=ifindex,
            connection_id=f"{spec.connection_name} {suffix}",
            description=description,
            pnp_device_id=pnp,
            addresses=addresses,
            if_luid="" if spec.is_2003 else f"ethernet_{max(luids, default=spec.luid_base) + 1}",
            apipa=apipa,
        )

    # -- addresses on the loopback --

    def _ipv4_pairs(self, addresses: list[str], masks: list[str]) -> list[tuple[str, str]]:
        if len(addresses) != len(masks):
            raise StepFailed(f"Addresses has {len(addresses)} entries but Masks has {len(masks)}")
        pairs = []
        for address, mask in zip(addresses, masks, strict=True):
            if not _is_ip(address) or ":" in address:
                raise StepFailed(f"'{address}' is not an IPv4 address")
            if not _is_ip(mask) or ":" in mask:
                raise StepFailed(f"'{mask}' is not an IPv4 mask")
            pairs.append((normalize_ip(address), normalize_ip(mask)))
        return pairs

    def _step_loopback_config(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("loopback_config", variant, DEFAULT_VARIANT, "win2003")
        name = _p_str(params, "Name")
        dhcp = _p_bool(params, "Dhcp")
        skip = _p_bool(params, "SkipAsSource")
        if variant != DEFAULT_VARIANT:
            if _p_list(params, "Addresses6"):
                raise StepFailed(
                    "Addresses6: IPv6 VIPs are not supported on Windows Server 2003 (its IPv6 stack is separate "
                    "and has no weak host setting)"
                )
            if skip:
                raise StepFailed("SkipAsSource: Windows Server 2003 has no skipassource option")
        pairs = self._ipv4_pairs(_p_list(params, "Addresses"), _p_list(params, "Masks"))
        wanted6 = []
        for item in _p_list(params, "Addresses6"):
            if not _is_ip(item) or ":" not in item:
                raise StepFailed(f"'{item}' is not an IPv6 address")
            wanted6.append(normalize_ip(item))
        fallback = _p_str(params, "FallbackMask")
        if variant != DEFAULT_VARIANT and fallback and (not _is_ip(fallback) or ":" in fallback):
            raise StepFailed(f"FallbackMask '{fallback}' is not an IPv4 mask")
        if not dhcp and not pairs:
            raise StepFailed(
                "Addresses is empty: IPv4 cannot be made static without an address (Dhcp=$true leaves IPv4 on DHCP)"
                if variant == DEFAULT_VARIANT
                else "Addresses is empty: EnableStatic needs at least one address (Dhcp=$true leaves the loopback "
                "on DHCP)"
            )
        nic = self._resolve_adapter(_p_str(params, "PnpDeviceId"))
        if variant == DEFAULT_VARIANT and nic.interface_index is None:
            raise StepFailed("The adapter has no InterfaceIndex (Windows Server 2003 takes win2003.ps1)")
        run = _Commands(self)
        try:
            if variant == DEFAULT_VARIANT:
                changed, degraded = self._configure_netsh(run, nic, name, pairs, wanted6, skip, dhcp), False
            else:
                fallback_mask = normalize_ip(fallback) if fallback else ""
                changed, degraded = self._configure_wmi(run, nic, name, pairs, fallback_mask, dhcp)
        except StepFailed:
            # The script ends in an error, but what it did stays done: the profile flip with it.
            if self._network_identified(nic):
                return ScriptResult(cut_connection=True)
            raise
        result = _result(
            changed,
            degraded=degraded,
            addresses=[a for a, _ in nic.addresses],
            pnp_device_id=nic.pnp_device_id,
            reboot_required=False,
            commands=run.commands,
        )
        result.cut_connection = self._network_identified(nic)
        return result

    def _rename(self, run: _Commands, nic: Nic, name: str) -> bool:
        old = nic.connection_id or ""
        if not name or old == name:
            return False
        if not old:
            self._require_admin("Exception calling \"Put\" with \"0\" argument(s): \"Access denied \"")
            run.commands.append(f"Win32_NetworkAdapter.NetConnectionID = {name}")
        else:
            args = ["interface", "set", "interface", f"name={old}", f"newname={name}"]
            if any(n is not nic and (n.connection_id or "").casefold() == name.casefold() for n in self.nics):
                self._netsh(args)
                raise _native_failed("netsh.exe", args, 1, "Cannot create a file when that file already exists.")
            run.netsh(args)
        if isinstance(self.firewall, LegacyFirewall) and old in self.firewall.interface_enabled:
            self.firewall.interface_enabled[name] = self.firewall.interface_enabled.pop(old)
        nic.connection_id = name
        return True

    def _enable_dhcp(self, run: _Commands, nic: Nic) -> bool:
        if nic.dhcp_enabled:
            return False
        run.wmi(nic, "EnableDHCP")
        nic.dhcp_enabled = True
        nic.skip_as_source = {a for a in nic.skip_as_source if ":" in a}
        nic.addresses = ([(nic.apipa, APIPA_MASK)] if nic.apipa else []) + nic.ipv6()
        return True

    def _add_address(self, run: _Commands, nic: Nic, address: str, mask: str, skip: bool) -> None:
        ipv6 = ":" in address
        args = ["interface", "ipv6" if ipv6 else "ipv4", "add", "address", str(nic.interface_index),
                f"{address}/128" if ipv6 else address, *([] if ipv6 else [mask])]
        if skip:
            args.append("skipassource=true")
        run.netsh(args)
        if skip and not self._skipassource_supported():
            raise _native_failed("netsh.exe", args, 1, _NETSH_BAD_PARAMETER)
        v4, v6 = nic.ipv4(), nic.ipv6()
        if ipv6:
            v6.insert(sum(1 for a, _ in v6 if not _is_autoconfigured(a)), (address, "128"))
        else:
            v4.append((address, mask))
        nic.addresses = v4 + v6
        if skip:
            nic.skip_as_source.add(normalize_ip(address))

    def _delete_address(self, run: _Commands, nic: Nic, address: str) -> None:
        run.netsh(["interface", "ipv6" if ":" in address else "ipv4", "delete", "address",
                   str(nic.interface_index), address])
        key = normalize_ip(address)
        nic.addresses = [(a, m) for a, m in nic.addresses if normalize_ip(a) != key]
        nic.skip_as_source.discard(key)

    def _reset_address(self, run: _Commands, nic: Nic, address: str, mask: str, skip: bool, old_mask: str) -> None:
        """netsh applies a mask or the flag only when adding: delete, add; on a refused add the
        address goes back as it was and the refusal is thrown."""
        self._delete_address(run, nic, address)
        try:
            self._add_address(run, nic, address, mask, skip)
        except StepFailed:
            with contextlib.suppress(StepFailed):
                self._add_address(run, nic, address, old_mask, False)
            raise

    def _configure_netsh(
        self, run: _Commands, nic: Nic, name: str, pairs: list[tuple[str, str]], wanted6: list[str], skip: bool,
        dhcp: bool,
    ) -> bool:
        """loopback_config/default.ps1, command for command."""
        changed = self._rename(run, nic, name)
        if dhcp:
            changed = self._enable_dhcp(run, nic) or changed
        else:
            current4 = [(normalize_ip(a), m) for a, m in nic.ipv4()]
            flag_first = None
            if nic.dhcp_enabled:
                # `set address ... static` turns DHCP off and replaces every IPv4 address.
                first = pairs[0]
                run.netsh(["interface", "ipv4", "set", "address", str(nic.interface_index), "static", *first])
                nic.dhcp_enabled = False
                nic.skip_as_source = {a for a in nic.skip_as_source if ":" in a}
                nic.addresses = [first, *nic.ipv6()]
                current4 = [first]
                flag_first = first if skip else None
                changed = True
            have = dict(current4)
            for address, mask in pairs:
                if address not in have:
                    self._add_address(run, nic, address, mask, skip)
                    changed = True
                elif have[address] != mask:
                    self._reset_address(run, nic, address, mask, skip, have[address])
                    changed = True
            wanted = {a for a, _ in pairs}
            for address, _ in current4:
                if address not in wanted:
                    self._delete_address(run, nic, address)
                    changed = True
            if flag_first is not None:
                self._reset_address(run, nic, flag_first[0], flag_first[1], True, flag_first[1])
        current6 = [(normalize_ip(a), m) for a, m in nic.ipv6() if not _is_autoconfigured(a)]
        have6 = dict(current6)
        for address in wanted6:
            if have6.get(address) == "128":
                continue
            if address in have6:
                self._delete_address(run, nic, address)
            self._add_address(run, nic, address, "128", skip)
            changed = True
        for address, _ in current6:
            if address not in wanted6:
                self._delete_address(run, nic, address)
                changed = True
        if not dhcp:
            if any(":" not in g for g in nic.gateways):
                run.netsh(["interface", "ipv4", "delete", "address", str(nic.interface_index), "gateway=all"])
                nic.gateways = [g for g in nic.gateways if ":" in g]
                changed = True
            for gateway in [g for g in nic.gateways if ":" in g]:
                run.netsh(["interface", "ipv6", "delete", "route", "::/0", str(nic.interface_index), gateway])
                nic.gateways.remove(gateway)
                changed = True
            if nic.dns_servers:
                run.wmi(nic, "SetDNSServerSearchOrder")
                nic.dns_servers = []
                changed = True
        return changed

    def _configure_wmi(
        self, run: _Commands, nic: Nic, name: str, pairs: list[tuple[str, str]], fallback: str, dhcp: bool
    ) -> tuple[bool, bool]:
        """loopback_config/win2003.ps1: (changed, degraded)."""
        changed = self._rename(run, nic, name)
        degraded = False
        if dhcp:
            return self._enable_dhcp(run, nic) or changed, False
        current = [(normalize_ip(a), m) for a, m in nic.ipv4()]
        static = not nic.dhcp_enabled
        same = [a for a, _ in current] == [a for a, _ in pairs]
        exact = static and current == pairs
        wanted_masks = [m for _, m in pairs]
        in_place = (
            static and same and bool(fallback) and HOST_MASK in wanted_masks
            and [m for _, m in current] == [fallback] * len(pairs) and nic.metric == FALLBACK_METRIC
        )
        if in_place:
            degraded = True
        elif not exact:
            # EnableStatic replaces the whole list, turns DHCP off and drops the APIPA address.
            refused = self.spec.is_2003 and not self.accepts_host_mask and HOST_MASK in wanted_masks
            run.wmi(nic, "EnableStatic", 66 if refused else 0, note="EnableStatic(Addresses, Masks)",
                    fail=not (refused and fallback))
            if refused:
                pairs = [(a, fallback) for a, _ in pairs]
                run.wmi(nic, "EnableStatic", note="EnableStatic(Addresses, FallbackMask)")
                if nic.metric != FALLBACK_METRIC:
                    run.wmi(nic, "SetIPConnectionMetric", note=f"SetIPConnectionMetric({FALLBACK_METRIC})")
                    nic.metric = FALLBACK_METRIC
                    nic.automatic_metric = False
                degraded = True
            nic.dhcp_enabled = False
            nic.skip_as_source = {a for a in nic.skip_as_source if ":" in a}
            nic.addresses = list(pairs) + nic.ipv6()
            changed = True
        if nic.gateways:
            # 2003's `interface ip` context knows interfaces by connection name only.
            run.netsh(["interface", "ip", "delete", "address", f"name={nic.connection_id}", "gateway=all"])
            nic.gateways = []
            changed = True
        if nic.dns_servers:
            run.wmi(nic, "SetDNSServerSearchOrder")
            nic.dns_servers = []
            changed = True
        return changed, degraded

    # -- adapter hygiene, SkipAsSource, weak host --

    def _step_adapter_settings(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("adapter_settings", variant, DEFAULT_VARIANT)
        metric = _p_int(params, "Metric")
        dns = _p_bool(params, "DnsRegistration")
        netbios = _p_int(params, "NetBios")
        if not 0 <= netbios <= 2:
            raise StepFailed(f"NetBios must be 0 (from DHCP), 1 (on) or 2 (off), not {netbios}")
        if not 0 <= metric <= FALLBACK_METRIC:
            raise StepFailed(f"Metric {metric} is out of range (1-9999; 0 leaves the metric alone)")
        nic = self._resolve_adapter(_p_str(params, "PnpDeviceId"))
        run = _Commands(self)
        changed = False
        if metric > 0 and (nic.metric != metric or nic.automatic_metric or not nic.ip_enabled):
            run.wmi(nic, "SetIPConnectionMetric", note=f"SetIPConnectionMetric({metric})", prefix=False)
            nic.metric = metric
            nic.automatic_metric = False
            changed = True
        if nic.dns_registration != dns or nic.domain_dns_registration:
            run.wmi(nic, "SetDynamicDNSRegistration", note=f"SetDynamicDNSRegistration({dns}, False)", prefix=False)
            nic.dns_registration = dns
            nic.domain_dns_registration = False
            changed = True
        if nic.netbios != netbios:
            run.wmi(nic, "SetTcpipNetbios", note=f"SetTcpipNetbios({netbios})", prefix=False)
            nic.netbios = netbios
            changed = True
        return _result(changed, pnp_device_id=nic.pnp_device_id, reboot_required=False, commands=run.commands)

    def _step_skip_as_source(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("skip_as_source", variant, DEFAULT_VARIANT)
        address = _p_str(params, "Address")
        mask = _p_str(params, "Mask")
        enabled = _p_bool(params, "Enabled")
        if not _is_ip(address):
            raise StepFailed(f"'{address}' is not an IP address")
        canonical = normalize_ip(address)
        ipv6 = ":" in canonical
        if not ipv6 and (not _is_ip(mask) or ":" in mask):
            raise StepFailed(f"Mask '{mask}' is not an IPv4 mask")
        nic = self._resolve_adapter(_p_str(params, "PnpDeviceId"))
        if nic.interface_index is None:
            raise StepFailed("The adapter has no InterfaceIndex: skipassource needs Windows Server 2008 or later")
        context = "ipv6" if ipv6 else "ipv4"
        self._netsh(["interface", context, "show", "addresses" if ipv6 else "ipaddresses", "level=verbose"],
                    admin=False)
        holders = [n for n in self.nics if n.ip_enabled and n.interface_index is not None and n.has_address(canonical)]
        if len(holders) > 1:
            holders = [n for n in holders if n.connection_id == nic.connection_id]
            if len(holders) != 1:
                raise StepFailed(f"{canonical} is on several interfaces; cannot tell which is the loopback")
        if not holders:
            raise StepFailed(f"{canonical} is not on the loopback (interface {nic.interface_index})")
        if not self._skipassource_supported():
            raise StepFailed(
                f"netsh does not report Skip as Source for {canonical}: this Windows lacks the skipassource "
                "option (KB975808 on 2008 SP2)"
            )
        current = canonical in holders[0].skip_as_source
        if current == enabled:
            return _result(False, address=canonical, skip_as_source=enabled, output=None)
        run = _Commands(self)
        old_mask = nic.mask_of(canonical)
        if old_mask is None:
            # The address is another interface's: there is nothing of the loopback's to delete.
            args = ["interface", context, "delete", "address", str(nic.interface_index), canonical]
            self._netsh(args)
            raise _native_failed("netsh.exe", args, 1, "Element not found.")
        new_mask = "128" if ipv6 else normalize_ip(mask)
        self._delete_address(run, nic, canonical)
        try:
            self._add_flagged(run, nic, canonical, new_mask, enabled)
        except StepFailed:
            with contextlib.suppress(StepFailed):
                self._add_flagged(run, nic, canonical, new_mask, current)
            raise
        return _result(True, address=canonical, skip_as_source=enabled, output=_text(["Ok.", "", "Ok.", ""]))

    def _add_flagged(self, run: _Commands, nic: Nic, address: str, mask: str, flag: bool) -> None:
        ipv6 = ":" in address
        run.netsh(["interface", "ipv6" if ipv6 else "ipv4", "add", "address", str(nic.interface_index),
                   f"{address}/128" if ipv6 else address, *([] if ipv6 else [mask]),
                   f"skipassource={'true' if flag else 'false'}"])
        v4, v6 = nic.ipv4(), nic.ipv6()
        if ipv6:
            v6.insert(0, (address, "128"))
        else:
            v4.append((address, mask))
        nic.addresses = v4 + v6
        if flag:
            nic.skip_as_source.add(address)

    def _step_weak_host(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("weak_host", variant, DEFAULT_VARIANT)
        index = _p_int(params, "InterfaceIndex")
        version = _p_int(params, "IpVersion")
        receive = _p_bool(params, "Receive")
        send = _p_bool(params, "Send")
        if version not in (4, 6):
            raise StepFailed(f"IpVersion must be 4 or 6, not {version}")
        context = f"ipv{version}"
        if index == 0:
            loopback = self._resolve_adapter("")
            if loopback.interface_index is None:
                raise StepFailed(
                    "The loopback has no InterfaceIndex: weak host settings need Windows Server 2008 or later"
                )
            index = loopback.interface_index
        show = ["interface", context, "show", "interface", str(index)]
        self._netsh(show, admin=False)
        nic = next((n for n in self.nics if n.interface_index == index), None)
        if nic is None:
            raise _native_failed("netsh.exe", show, 1, "Element not found.")
        current = (nic.weak_host_receive_v6, nic.weak_host_send_v6) if version == 6 else (
            nic.weak_host_receive, nic.weak_host_send
        )
        changed = current != (receive, send)
        output = None
        if changed:
            self._netsh(["interface", context, "set", "interface", str(index),
                         f"weakhostreceive={_enabled(receive)}", f"weakhostsend={_enabled(send)}"])
            if version == 6:
                nic.weak_host_receive_v6, nic.weak_host_send_v6 = receive, send
            else:
                nic.weak_host_receive, nic.weak_host_send = receive, send
            output = _text(["Ok.", ""])
        return _result(changed, interface_index=index, receive=receive, send=send, output=output)

    # -- IIS and http.sys --

    def _http_restart(self) -> Hashtable:
        """What Start-HttpRestart reports. The restart itself (HTTP, then W3SVC and WinRM again)
        happens seconds after the result is sent; the lab's http.sys list is effective at once."""
        seed = zlib.crc32(f"{self.name}|{self.http_listen}".encode())
        # The lab restarts faster than Windows (about five seconds there), but the same way: WinRM
        # goes away shortly after the result was sent, and comes back.
        now = time.monotonic()
        self.faults.down_from = now + HTTP_RESTART_DELAY
        self.faults.down_until = now + HTTP_RESTART_DELAY + HTTP_RESTART_OUTAGE
        return Hashtable(
            services=["W3SVC", "WinRM"],
            log=f"{self._windir()}\\Temp\\dsrprep-http-restart.log",
            process_id=1000 + seed % 8000 * 4,
            delay_seconds=HTTP_RESTART_DELAY,
        )

    def _step_http_listen(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("http_listen", variant, DEFAULT_VARIANT, "win2003")
        present = _ensure(params)
        addresses = [str(a) for a in _p_list(params, "Addresses")]
        if not addresses:
            raise StepFailed("Addresses is empty")
        for address in addresses:
            if not _is_ip(address):
                raise StepFailed(f"'{address}' is not an IP address")
        wanted = [normalize_ip(a) for a in addresses]
        if variant == DEFAULT_VARIANT:
            self._netsh(["http", "show", "iplisten"], admin=False)
        elif not self.spec.is_2003 or not self.httpcfg_installed:
            raise StepFailed("httpcfg.exe was not found (Windows Server 2003 Support Tools)")
        current = [normalize_ip(a) for a in self.http_listen]
        todo = [a for a in wanted if (a in current) != present]
        if not todo:
            return _result(False, addresses=wanted, restart_scheduled=False, restart=None, output=None)
        verb = "add" if present else "delete"
        outputs = []
        for address in todo:
            if variant == DEFAULT_VARIANT:
                self._netsh(["http", verb, "iplisten", f"ipaddress={address}"])
                outputs.append(_text(["", f"IP address successfully {verb}{'ed' if present else 'd'}", ""]))
            else:
                call = "HttpSetServiceConfiguration" if present else "HttpDeleteServiceConfiguration"
                if not self.elevated:
                    command = _command_line("httpcfg.exe", ["set" if present else "delete", "iplisten", "-i", address])
                    raise StepFailed(f"{command} failed (status 5): {call} completed with 5.")
                outputs.append(_text([f"{call} completed with 0."]))
            if present:
                self.http_listen.append(address)
            else:
                self.http_listen = [a for a in self.http_listen if normalize_ip(a) != address]
        return _result(True, addresses=wanted, restart_scheduled=True, restart=self._http_restart(),
                       output="".join(outputs))

    def _step_iis_binding(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("iis_binding", variant, DEFAULT_VARIANT, "win2003")
        present = _ensure(params)
        site_name = _p_str(params, "Site")
        protocol = _p_str(params, "Protocol")
        ip = _p_str(params, "Ip")
        port = _p_int(params, "Port")
        host_header = _p_str(params, "HostHeader").strip()
        restart = _p_bool(params, "Restart")
        if not site_name:
            raise StepFailed("Site is empty")
        iis6 = self.iis_version is not None and self.iis_version.startswith("6.")
        if variant == DEFAULT_VARIANT:
            if not protocol:
                raise StepFailed("Protocol is empty")
        elif protocol.lower() != "http":
            raise StepFailed(f"IIS 6 ServerBindings hold http bindings only, not '{protocol}'")
        if not 1 <= port <= 65535:
            raise StepFailed(f"Port {port} is out of range")
        ip_part = "*"
        if ip and ip != "*":
            if not _is_ip(ip.strip("[]")):
                raise StepFailed(f"Ip '{ip}' is not an IP address")
            ip_part = normalize_ip(ip.strip("[]"))
        information = f"{f'[{ip_part}]' if ':' in ip_part else ip_part}:{port}:{host_header}"
        binding = (protocol.strip().lower(), information)
        if variant == DEFAULT_VARIANT:
            appcmd = f"{self._windir()}\\system32\\inetsrv\\appcmd.exe"
            if self.iis_version is None or iis6:
                raise StepFailed(f"{appcmd} is missing: IIS 7 or later is not installed")
            site = next((s for s in self.sites if s.name.casefold() == site_name.casefold()), None)
            if site is None:
                listing = ["list", "site", f"/site.name:{site_name}", "/config", "/xml"]
                message = f'ERROR ( message:Cannot find SITE object with identifier "{site_name}". )'
                raise _native_failed("appcmd.exe", listing, 1168, message)
            shown = f"{binding[0]}/{information}"
        else:
            if not iis6:
                raise StepFailed(
                    'Invalid namespace "root\\MicrosoftIISv2"' if _major(self.powershell_version) >= 3
                    else "Invalid namespace "
                )
            matching = [s for s in self.sites if s.name.casefold() == site_name.casefold()]
            if len(matching) != 1:
                raise StepFailed(f"{len(matching)} IIsWebServerSetting objects have ServerComment '{site_name}'")
            site = matching[0]
            shown = ("" if ip_part == "*" else ip_part) + f":{port}:{host_header}"
        bound = binding in site.bindings
        changed = present != bound
        outputs = []
        if changed:
            if not present and iis6 and len(site.bindings) == 1:
                raise StepFailed(
                    f"Removing {shown} would leave site '{site_name}' without bindings"
                )
            if not self.elevated:
                if iis6:
                    raise StepFailed('Exception calling "Put" with "0" argument(s): "Access denied "')
                entry = f"[protocol='{binding[0]}',bindingInformation='{information}']"
                args = ["set", "site", f"/site.name:{site_name}", f"/{'+' if present else '-'}bindings.{entry}"]
                message = "ERROR ( message:Cannot write configuration file due to insufficient permissions. )"
                raise _native_failed("appcmd.exe", args, 5, message)
            if present:
                site.bindings.append(binding)
            else:
                site.bindings.remove(binding)
            outputs.append(f'SITE object "{site.name}" changed')
        # A stopped site stays stopped: restarting is for picking up the new binding.
        restarted = changed and restart and site.state == "Started"
        if restarted:
            outputs += [f'"{site.name}" successfully stopped', f'"{site.name}" successfully started.']
        output = None if iis6 or not outputs else _text(outputs)
        return _result(changed, site=site_name, binding=shown, restarted=restarted, output=output)

    # -- marker --

    def _step_marker(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("marker", variant, DEFAULT_VARIANT)
        present = _ensure(params)
        if not present:
            changed = bool(self.marker)
            if changed and not self.elevated:
                raise StepFailed(
                    'Exception calling "DeleteSubKeyTree" with "1" argument(s): "Access to the registry key '
                    "'HKEY_LOCAL_MACHINE\\SOFTWARE\\dsrprep\\DSR' is denied.\""
                )
            self.marker.clear()
            return _result(changed, values=[])
        self._require_registry()
        raw = params.get("Values")
        values = raw if isinstance(raw, dict) else {}
        changed = False
        written = []
        for name, value in values.items():
            key = str(name)
            if not key:
                raise StepFailed("A marker value name is empty")
            if value is None:
                changed = self.marker.pop(key, None) is not None or changed
                continue
            text = _ps_string(value)
            if self.marker.get(key) != text:
                self.marker[key] = text
                changed = True
            written.append(key)
        return _result(changed, values=written)

    # -- checks --

    def _step_verify(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("verify", variant, DEFAULT_VARIANT)
        vips = []
        for vip in _p_list(params, "Vips"):
            if not vip:
                continue
            if not _is_ip(vip):
                raise StepFailed(f"'{vip}' is not an IP address")
            vips.append(normalize_ip(vip))
        targets = []
        rip = _p_str(params, "Rip")
        if rip:
            if not _is_ip(rip):
                raise StepFailed(f"Rip '{rip}' is not an IP address")
            targets.append(normalize_ip(rip))
        targets += vips
        ports = [int(p) for p in _p_list(params, "Ports")]
        tcp = [
            Hashtable(address=address, port=port, ok=self._tcp_connects(address, port))
            for address in targets
            for port in ports
        ]
        ping = [Hashtable(address=vip, ok=bool(self._holders(vip))) for vip in vips]
        routes = []
        for nic in sorted(self.nics, key=lambda n: self._ip_interface_index(n)):
            if not (nic.is_loopback and nic.ip_enabled):
                continue
            for address, mask in nic.ipv4():
                if normalize_ip(address) not in vips:
                    continue
                metric = nic.metric if nic.metric is not None else 0
                if self.spec.is_2003:
                    # 2003 routes every local address, whatever its mask, as a host route through
                    # 127.0.0.1 on the "MS TCP Loopback interface" (index 1).
                    routes.append(Hashtable(destination=address, mask=HOST_MASK, next_hop="127.0.0.1",
                                            interface_index=1, metric=metric))
                    continue
                if mask != HOST_MASK:
                    continue
                routes.append(
                    Hashtable(
                        destination=address,
                        mask=HOST_MASK,
                        # 2008+ keeps on-link routes without a gateway.
                        next_hop="0.0.0.0",
                        interface_index=self._ip_interface_index(nic),
                        metric=metric + 256,
                    )
                )
        return _result(False, tcp=tcp, ping=ping, routes=routes)

    def _step_arp_check(self, params: dict[str, Any], variant: str) -> ScriptResult:
        _expect_variant("arp_check", variant, DEFAULT_VARIANT)
        address = _p_str(params, "Address")
        if not _is_ip(address) or ":" in address:
            raise StepFailed(f"'{address}' is not an IPv4 address (ARP is IPv4 only)")
        target = normalize_ip(address)
        with self.lock:
            if not self.elevated:
                raise StepFailed("arp -d needs an elevated session (member of the local Administrators group)")
        segment = self.segment
        lb_mac = segment.lb_mac if segment is not None else DEFAULT_LB_MAC
        claimants: list[tuple[WindowsHost, str]] = []
        for other in list(segment.hosts) if segment is not None else []:
            if other is self:
                continue
            with other.lock:
                nic = next((n for n in other._holders(target) if not n.is_loopback and n.mac), None)
                if nic is not None and nic.mac is not None:
                    claimants.append((other, nic.mac))
        with self.lock:
            local = bool(self._holders(target))
            on_link = self._on_link_nic(target)
            if local or on_link is None:
                # A local address never goes through ARP; an off-link one is the gateway's business.
                text, ping_ok = _text(["No ARP Entries Found."]), local
            else:
                mac = claimants[0][1] if claimants else lb_mac
                text = render_arp(on_link.ipv4()[0][0], self._ip_interface_index(on_link), [(target, mac)])
                ping_ok = True
        for other, _ in claimants:
            # The load balancer answers ARP for the VIP as well: the host holding it on a NIC sees the
            # conflict (the load balancer logs nothing in Windows).
            with other.lock:
                other._add_event(
                    4199,
                    f"The system detected an address conflict for IP address {target} with the system "
                    f"having network hardware address {lb_mac.replace(':', '-').upper()}. Network operations "
                    "on this system may be disrupted as a result.",
                )
        return _result(False, arp_text=text, ping_ok=ping_ok, delete_output="")

    def _tcp_connects(self, address: str, port: int) -> bool:
        """A local connect to address:port: something listens there (IIS through http.sys).
        Windows Firewall does not filter local connections."""
        if self.iis_version is None or not self._holders(address):
            return False
        key = normalize_ip(address)
        if self.http_listen and all(normalize_ip(a) != key for a in self.http_listen):
            return False
        for site in self.sites:
            if site.state != "Started":
                continue
            for _, info in site.bindings:
                bound_ip, bound_port = _binding_ip_port(info)
                if bound_port == port and (bound_ip == "*" or normalize_ip(bound_ip) == key):
                    return True
        return False

    def _on_link_nic(self, address: str) -> Nic | None:
        try:
            target = ipaddress.ip_address(address)
        except ValueError:
            return None
        for nic in self.nics:
            if nic.is_loopback or not nic.ip_enabled:
                continue
            for a, m in nic.ipv4():
                if _is_autoconfigured(a):
                    continue
                if target in ipaddress.IPv4Network(f"{a}/{m}", strict=False):
                    return nic
        return None

    # Step id -> handler.
    _STEPS: ClassVar[dict[str, StepHandler]] = {
        "facts": _step_facts,
        "preflight": _step_preflight,
        "firewall_rule": _step_firewall_rule,
        "firewall_state": _step_firewall_state,
        "loopback": _step_loopback,
        "loopback_config": _step_loopback_config,
        "adapter_settings": _step_adapter_settings,
        "skip_as_source": _step_skip_as_source,
        "weak_host": _step_weak_host,
        "http_listen": _step_http_listen,
        "iis_binding": _step_iis_binding,
        "marker": _step_marker,
        "verify": _step_verify,
        "arp_check": _step_arp_check,
    }
    _SEGMENT_STEPS: ClassVar[frozenset[str]] = frozenset({"arp_check"})


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
# Step helpers: parameter binding as PowerShell does it, and what the native tools print.


def _not_recognized(name: str) -> str:
    return (
        f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is "
        "correct and try again."
    )


def _netsh_not_found(command: str) -> str:
    """netsh's answer for a context or command this Windows version does not have."""
    return f"The following command was not found: {command}."


def _command_line(exe: str, args: list[str]) -> str:
    shown = [f'"{a}"' if any(c.isspace() for c in a) else a for a in args]
    return f"{exe} {' '.join(shown)}"


def _native_failed(exe: str, args: list[str], code: int, output: str) -> StepFailed:
    """The templates' Invoke-NativeCommand throw for an exit code it does not accept."""
    return StepFailed(f"{_command_line(exe, args)} failed (exit {code}): {output.strip()}")


class _Commands:
    """Runs a template's commands through the host's refusals and keeps the list the template
    returns as `commands`."""

    def __init__(self, host: WindowsHost) -> None:
        self.host = host
        self.commands: list[str] = []

    def netsh(self, args: list[str]) -> None:
        self.host._netsh(args)
        self.commands.append(_command_line("netsh.exe", args))

    def wmi(self, nic: Nic, method: str, code: int = 0, *, note: str | None = None, fail: bool = True,
            prefix: bool = True) -> None:
        """A Win32_NetworkAdapterConfiguration method returning `code`, checked as the templates'
        Assert-WmiResult does (0 and 1 are success) unless `fail` is off."""
        _wmi(self.host, nic, method)
        self.commands.append(("Win32_NetworkAdapterConfiguration." if prefix else "") + (note or f"{method}()"))
        if fail and code not in (0, 1):
            raise StepFailed(f"{method} returned {code}")


def _ps_string(value: Any) -> str:
    """[string]$value as PowerShell converts it."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list | tuple):
        return " ".join(_ps_string(v) for v in value)
    if isinstance(value, dict):
        return "System.Collections.Hashtable"
    return str(value)


def _expect_variant(step: str, variant: str, *known: str) -> None:
    if variant not in known:
        raise StepFailed(f"The lab host does not model variant {variant!r} of step {step!r}")


def _result(changed: bool, **values: Any) -> ScriptResult:
    return ScriptResult(output=[Hashtable(changed=changed, **values)])


def _changed(result: ScriptResult) -> bool:
    first = result.output[0] if result.output else None
    return isinstance(first, dict) and bool(first.get("changed"))


def _p_str(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    return "" if value is None else str(value)


def _p_bool(params: dict[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "$true", "1")
    return bool(value)


def _p_int(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except (TypeError, ValueError):
        raise StepFailed(
            f"Cannot process argument transformation on parameter '{name}'. Cannot convert value "
            f'"{value}" to type "System.Int32".'
        ) from None


def _p_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _ensure(params: dict[str, Any]) -> bool:
    ensure = _p_str(params, "Ensure")
    if ensure.lower() not in ("present", "absent"):
        raise StepFailed(f"Ensure must be 'Present' or 'Absent', not '{ensure}'")
    return ensure.lower() == "present"


def _wmi(host: WindowsHost, nic: Nic, method: str) -> None:
    """The return codes of Win32_NetworkAdapterConfiguration methods that the model produces:
    91 access denied, 84 IP not enabled on the adapter."""
    if not host.elevated:
        raise StepFailed(f"{method} returned 91")
    if not nic.ip_enabled:
        raise StepFailed(f"{method} returned 84")


def _major(version: str) -> int:
    try:
        return int(version.split(".", 1)[0])
    except ValueError:
        return 0


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_autoconfigured(address: str) -> bool:
    """APIPA (169.254/16) or IPv6 link-local: what an adapter has before anyone configures it."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return ip.is_link_local


def _rule_address(vip: str) -> str:
    # FwPolicy2 shows a single IPv4 address with its host mask.
    return f"{vip}/{HOST_MASK}" if ":" not in vip else vip


def _addresses_cover(local_addresses: str, address: str) -> bool:
    try:
        target = ipaddress.ip_address(address)
    except ValueError:
        return False
    for item in local_addresses.split(","):
        item = item.strip()
        if item in ("*", "") or item.lower() == "any":
            return True
        try:
            if "-" in item:
                low, high = (ipaddress.ip_address(x) for x in item.split("-", 1))
                if low.version == target.version and low <= target <= high:  # type: ignore[operator]
                    return True
            elif target in ipaddress.ip_network(item, strict=False):
                return True
        except ValueError:
            continue
    return False


def _binding_ip_port(info: str) -> tuple[str, int]:
    """("*" or the IP, port) of an IIS binding "ip:port:host" ("[v6]:port:host")."""
    if info.startswith("["):
        ip, _, rest = info[1:].partition("]:")
    else:
        ip, _, rest = info.partition(":")
    port = rest.split(":", 1)[0]
    return (ip or "*", int(port) if port.isdigit() else 0)


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


def render_netsh_ipaddresses(nics: list[Nic], *, ipv6: bool, skip_as_source_shown: bool) -> str:
    """`netsh interface ipv4|ipv6 show ipaddresses level=verbose` (2008+): one block per address,
    the Loopback Pseudo-Interface's first, then the adapters' in interface index order. Labels are
    padded to 18 columns; "Interface Luid" shows the interface's alias. 2008 prints no "Skip as
    Source" line until KB975808 adds the flag."""
    rows: list[tuple[str, str, str, str]] = [
        ("::1" if ipv6 else "127.0.0.1", _PSEUDO_INTERFACE, "0.0", "Other")
    ]
    ordered = sorted((n for n in nics if n.interface_index is not None and n.ip_enabled),
                     key=lambda n: n.interface_index or 0)
    skipped: set[str] = set()
    for nic in ordered:
        alias = nic.connection_id or nic.description
        for address, _ in (nic.ipv6() if ipv6 else nic.ipv4()):
            if ipv6 and _is_autoconfigured(address):
                rows.append((f"{address}%{nic.interface_index}", alias, f"0.{nic.interface_index}", "Other"))
                continue
            kind = "Other" if _is_autoconfigured(address) else "Dhcp" if nic.dhcp_enabled else "Manual"
            rows.append((address, alias, "0.0", kind))
            if normalize_ip(address) in nic.skip_as_source:
                skipped.add(address)
    lines = [""]
    for address, alias, scope, kind in rows:
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
    return _text(lines)


def render_arp(interface_address: str, interface_index: int, entries: list[tuple[str, str]]) -> str:
    """`arp -a <address>`: the interface header (index in hex), the column titles, a row per
    entry with the MAC in lower case and dashes; "No ARP Entries Found." when nothing matches."""
    if not entries:
        return _text(["No ARP Entries Found."])
    lines = ["", f"Interface: {interface_address} --- 0x{interface_index:x}", _ARP_TITLES]
    lines += [f"  {ip:<22}{mac.replace(':', '-').lower():<22}dynamic   " for ip, mac in entries]
    lines.append("")
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
    unhealthy_share: float = 0.0,
    lb_mac: str = DEFAULT_LB_MAC,
) -> list[WindowsHost]:
    """`count` hosts WEB01.. of `profile` ("mixed" or one family), RIPs from host number 11 of
    `subnet`, all on one `Segment` with the load balancer. `now` anchors the timestamps of
    pre-existing events (default: the current minute). `unhealthy_share` of the hosts (drawn per
    host) fail preflight: not elevated, a 32-bit session on 64-bit Windows, or PowerShell 1.0."""
    if not 0.0 <= unhealthy_share <= 1.0:
        raise ValueError(f"unhealthy_share must be between 0 and 1, not {unhealthy_share}")
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
    hosts = [
        _build_host(
            number=i + 1,
            spec=FAMILY_SPECS[family],
            rng=random.Random(rng.getrandbits(64)),
            net=net,
            used_macs=used_macs,
            username=username,
            password=password,
            now=anchor,
            unhealthy_share=unhealthy_share,
        )
        for i, family in enumerate(families)
    ]
    segment = Segment(lb_mac=lb_mac)
    for host in hosts:
        segment.join(host)
    return hosts


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


def _unconfigured_loopback(
    spec: FamilySpec,
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
    address, no gateway or DNS servers, DNS registration and NetBIOS at their defaults."""
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
        weak_host_send=spec.is_2003,
        weak_host_receive=spec.is_2003,
        weak_host_send_v6=spec.is_2003,
        weak_host_receive_v6=spec.is_2003,
        if_luid=if_luid,
        apipa=apipa,
        unidentified_network=unidentified_network,
    )


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
    unhealthy_share: float = 0.0,
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
            _unconfigured_loopback(
                spec,
                index=rng.choice(spec.loopback_index),
                interface_index=None if nic_ifindex is None else nic_ifindex + rng.randint(lo, hi),
                connection_id=f"{spec.connection_name} 2",
                description=spec.loopback_description,
                pnp_device_id=LOOPBACK_PNP_ID,
                addresses=[(apipa, "255.255.0.0")] + ([(_link_local(rng), "64")] if ipv6 else []),
                if_luid="" if is_2003 else f"ethernet_{spec.luid_base + rng.randint(1, 4)}",
                apipa=apipa,
                unidentified_network=not is_2003,
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

    # Drawn last, so that the draws above (and every seeded fleet) stay as they were.
    accepts_host_mask = not is_2003 or rng.random() < 0.75
    elevated, process_64bit, powershell_version = True, x64, spec.powershell_version
    if rng.random() < unhealthy_share:
        problem = rng.choice(("not-elevated", "wow64", "powershell-1") if x64 else ("not-elevated", "powershell-1"))
        elevated = problem != "not-elevated"
        process_64bit = x64 and problem != "wow64"
        powershell_version = "1.0" if problem == "powershell-1" else powershell_version

    return WindowsHost(
        name=f"WEB{number:02d}",
        os_family=spec.family,
        version=version,
        caption=caption_format.format(edition=edition),
        service_pack=service_pack,
        architecture="64-bit" if x64 else "32-bit",
        hotfixes=hotfixes,
        powershell_version=powershell_version,
        elevated=elevated,
        process_64bit=process_64bit,
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
        accepts_host_mask=accepts_host_mask,
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
    # `winrm quickconfig` allows WinRM on Domain and Private only. A 2008 host managed over WinRM with
    # its Public profile on has been given Public too (its machine-wide profile can turn Public);
    # tests take that away to see dsrprep refuse.
    winrm_profiles = 1 | 2 | (4 if spec.family == "2008" and mode != "off" else 0)
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
