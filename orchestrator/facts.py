"""The facts of one Windows host: the typed `Facts` value and the parsers that build it.

Owns the validation of the raw dict that `ps_templates/facts/default.ps1` returns (its shape is
`docs/facts.md`) and the parsers of the Windows text outputs it carries: `netsh interface
ipv4|ipv6 show interface`, `netsh interface ipv4 show ipaddresses` / `ipv6 show addresses` (verbose),
`netsh firewall show opmode|portopening`, `appcmd list site`, the IIS 6 metabase site list, and
`netsh http show iplisten` / `httpcfg query iplisten`.

Pure: no I/O. Every malformed input ends in `FactsError` whose message names the key path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

from orchestrator.errors import DsrError

T = TypeVar("T")

SCHEMA_VERSION = 1


class FactsError(DsrError):
    """The facts a host returned are missing a key, have a wrong type, or hold unparseable text."""

    error_class = "FactsError"


# --------------------------------------------------------------------------------------------
# OS family
# --------------------------------------------------------------------------------------------


class OsFamily(StrEnum):
    WIN2003 = "2003"
    WIN2008 = "2008"
    WIN2008R2 = "2008r2"
    WIN2012 = "2012"
    WIN2012R2 = "2012r2"
    WIN2016 = "2016"
    WIN2019 = "2019"
    WIN2022 = "2022"


_NT6_FAMILIES: dict[tuple[int, int], OsFamily] = {
    (5, 2): OsFamily.WIN2003,
    (6, 0): OsFamily.WIN2008,
    (6, 1): OsFamily.WIN2008R2,
    (6, 2): OsFamily.WIN2012,
    (6, 3): OsFamily.WIN2012R2,
}

# Windows 10-kernel servers all report 10.0; only the build number tells them apart.
_NT10_BUILDS: tuple[tuple[int, OsFamily], ...] = (
    (20348, OsFamily.WIN2022),
    (17763, OsFamily.WIN2019),
    (14393, OsFamily.WIN2016),
)


def os_family(version: str) -> OsFamily:
    """Map `Win32_OperatingSystem.Version` ("6.1.7601") to the server family.

    10.0 builds between the known release builds map to the nearest lower release (a later
    servicing build of the same release); a 10.0 build older than 2016's 14393, or any other
    major.minor, is not a supported server and raises.
    """
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        raise FactsError(f"unrecognised Windows version {version!r}")
    major, minor = int(match.group(1)), int(match.group(2))
    build = int(match.group(3)) if match.group(3) is not None else None
    family = _NT6_FAMILIES.get((major, minor))
    if family is not None:
        return family
    if (major, minor) == (10, 0):
        if build is None:
            raise FactsError(f"Windows version {version!r} has no build number")
        for first_build, candidate in _NT10_BUILDS:
            if build >= first_build:
                return candidate
        raise FactsError(f"Windows 10.0 build {build} is older than Windows Server 2016 (14393)")
    raise FactsError(f"unsupported Windows version {version!r}")


# --------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsInfo:
    version: str
    caption: str
    service_pack: int
    architecture: str
    hotfixes: frozenset[str]
    family: OsFamily

    @property
    def is_64bit(self) -> bool:
        # OSArchitecture is localized ("64-bit", "64 bits", "64-Bit"); the digits are not.
        return "64" in self.architecture

    @property
    def is_legacy(self) -> bool:
        """Windows Server 2003: weak host always, `netsh firewall`, IIS 6, no interface index."""
        return self.family is OsFamily.WIN2003


@dataclass(frozen=True)
class Address:
    address: str
    mask: str  # dotted for IPv4, a prefix length ("64") for IPv6, as WMI IPSubnet prints them

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def prefix_length(self) -> int:
        if self.version == 6:
            return int(self.mask)
        return ipaddress.IPv4Network(f"0.0.0.0/{self.mask}").prefixlen


@dataclass(frozen=True)
class Adapter:
    index: int
    interface_index: int | None
    connection_id: str | None
    description: str
    service_name: str
    pnp_device_id: str
    mac: str | None
    ip_enabled: bool
    addresses: tuple[Address, ...]
    dhcp_enabled: bool
    gateways: tuple[str, ...]
    dns_servers: tuple[str, ...]
    metric: int | None
    dns_registration: bool
    domain_dns_registration: bool
    netbios: int | None

    @property
    def is_loopback(self) -> bool:
        return self.service_name.lower() == "msloop"

    def has_address(self, address: str) -> bool:
        wanted = normalize_ip(address)
        return any(normalize_ip(a.address) == wanted for a in self.addresses)

    def address(self, address: str) -> Address | None:
        wanted = normalize_ip(address)
        for item in self.addresses:
            if normalize_ip(item.address) == wanted:
                return item
        return None


@dataclass(frozen=True)
class WeakHost:
    send: bool
    receive: bool


@dataclass(frozen=True)
class FirewallRule:
    name: str
    enabled: bool
    direction: int  # 1 in, 2 out
    action: int  # 0 block, 1 allow
    protocol: int  # 6 TCP, 17 UDP
    local_addresses: str
    local_ports: str
    profiles: int  # bitmask, 0x7FFFFFFF = all


@dataclass(frozen=True)
class PortOpening:
    """One row of `netsh firewall show portopening` (Windows Server 2003)."""

    protocol: str  # "TCP" | "UDP"
    port: int
    name: str
    mode: str  # "Enable" | "Disable"
    profile: str  # "domain", "standard", or the section title when it is not a profile
    direction: str | None = None  # only Vista+ prints a traffic direction column
    scope: str | None = None  # not printed without verbose=ENABLE

    @property
    def enabled(self) -> bool:
        return self.mode == "Enable"


@dataclass(frozen=True)
class ProfileMode:
    operational: bool
    exceptions: bool | None


@dataclass(frozen=True)
class FirewallOpmode:
    """`netsh firewall show opmode`: per-profile and per-connection operational modes."""

    profiles: Mapping[str, ProfileMode]
    current: str | None
    interfaces: Mapping[str, bool]

    @property
    def current_mode(self) -> ProfileMode | None:
        if self.current is not None:
            return self.profiles[self.current]
        # Without a "(current)" marker the answer is still certain when every profile agrees.
        modes = set(self.profiles.values())
        return modes.pop() if len(modes) == 1 else None


@dataclass(frozen=True)
class Firewall:
    api: str  # "netsh-firewall" (2003) | "advfirewall" (2008+)
    enabled: bool | None  # 2003: operational mode of the current profile; 2008+: any profile on
    profiles: Mapping[str, bool] | None
    current_profiles: int | None
    rules: tuple[FirewallRule, ...]
    port_openings: tuple[PortOpening, ...]
    exceptions_enabled: bool | None  # 2003 only
    interface_modes: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    # 2008+: an enabled inbound rule lets WinRM (5985/5986) in on the Public profile; None: unknown.
    winrm_public: bool | None = None


@dataclass(frozen=True)
class Binding:
    protocol: str  # "http" | "https"
    ip: str  # "*" for All Unassigned
    port: int
    host: str

    @property
    def is_all_unassigned(self) -> bool:
        return self.ip == "*"


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    bindings: tuple[Binding, ...]
    state: str | None


@dataclass(frozen=True)
class Iis:
    version: str | None
    sites: tuple[Site, ...]
    sites_known: bool = True  # False when IIS is installed but its site list could not be read

    @property
    def installed(self) -> bool:
        return self.version is not None


@dataclass(frozen=True)
class Event:
    event_id: int
    source: str
    time: str
    message: str


@dataclass(frozen=True)
class Facts:
    computer_name: str
    os: OsInfo
    powershell_version: str
    elevated: bool
    process_64bit: bool
    adapters: tuple[Adapter, ...]
    weak_host_v4: Mapping[int, WeakHost]
    weak_host_v6: Mapping[int, WeakHost]
    firewall: Firewall
    iis: Iis
    http_listen: tuple[str, ...] | None  # None: the listen list could not be read (no httpcfg)
    events: tuple[Event, ...]
    marker: Mapping[str, str]
    # address (normalized, IPv4 and IPv6) -> SkipAsSource; empty on 2003, and an address whose flag
    # netsh does not report (2008 without KB975808) is absent
    skip_as_source: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))

    # -- lookups the planner and the verifier need -------------------------------------------

    def adapter_by_index(self, index: int) -> Adapter | None:
        return next((a for a in self.adapters if a.index == index), None)

    def adapter_by_interface_index(self, interface_index: int) -> Adapter | None:
        return next((a for a in self.adapters if a.interface_index == interface_index), None)

    def adapter_by_mac(self, mac: str) -> Adapter | None:
        wanted = _normalize_mac(mac)
        return next((a for a in self.adapters if a.mac and _normalize_mac(a.mac) == wanted), None)

    def adapter_by_connection_id(self, name: str) -> Adapter | None:
        wanted = name.casefold()
        return next(
            (a for a in self.adapters if a.connection_id and a.connection_id.casefold() == wanted),
            None,
        )

    def adapter_by_pnp_id(self, pnp_device_id: str) -> Adapter | None:
        wanted = pnp_device_id.casefold()
        return next((a for a in self.adapters if a.pnp_device_id.casefold() == wanted), None)

    def adapters_with_address(self, address: str) -> tuple[Adapter, ...]:
        return tuple(a for a in self.adapters if a.has_address(address))

    def adapter_by_address(self, address: str) -> Adapter | None:
        """The first adapter holding `address`. An address on several adapters (a VIP that
        leaked onto a NIC) is exactly what the plan must notice: use `adapters_with_address`."""
        holders = self.adapters_with_address(address)
        return holders[0] if holders else None

    def loopbacks(self) -> tuple[Adapter, ...]:
        return tuple(a for a in self.adapters if a.is_loopback)

    def physical_adapters(self) -> tuple[Adapter, ...]:
        return tuple(a for a in self.adapters if not a.is_loopback)

    def skips_as_source(self, address: str) -> bool | None:
        """The SkipAsSource flag of `address`, in any spelling; None when it is not known."""
        return self.skip_as_source.get(normalize_ip(address))

    def weak_host(self, interface_index: int, ip_version: int = 4) -> WeakHost | None:
        table = self.weak_host_v4 if ip_version == 4 else self.weak_host_v6
        return table.get(interface_index)

    @property
    def weak_host_configurable(self) -> bool:
        """2003 is weak host by design and has nothing to set; 2008+ is strong host by default."""
        return not self.os.is_legacy

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able rendering of everything parsed, for `--json` and the rollout log."""
        result = _jsonable(self)
        assert isinstance(result, dict)
        return result


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def normalize_ip(text: str) -> str:
    """An address as Python spells it (zone dropped), for comparing what Windows and people write."""
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return text.strip().lower()


def _normalize_mac(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
        if isinstance(value, Adapter):
            out["is_loopback"] = value.is_loopback
        if isinstance(value, Binding):
            out["is_all_unassigned"] = value.is_all_unassigned
        return out
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _frozen_map(items: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(items))


# --------------------------------------------------------------------------------------------
# Text parsers
# --------------------------------------------------------------------------------------------

# netsh prints these two words untranslated: the zh-CN and ru-RU captures localize every label
# and keep "enabled"/"disabled"/"connected". Anything else is refused rather than guessed.
_NETSH_ONOFF: dict[str, bool] = {"enabled": True, "disabled": False}

# `label<padding>: value`. Labels may contain spaces and parentheses but no colon, so the first
# colon separates. The padding is usually there, but a label as wide as the column touches it.
_NETSH_FIELD = re.compile(r"^\s*(?P<label>[^:\s][^:]*?)\s*:\s?(?P<value>.*?)\s*$")


def _netsh_fields(text: str) -> list[tuple[str, str]]:
    return [
        (m.group("label"), m.group("value"))
        for line in text.splitlines()
        if (m := _NETSH_FIELD.match(line)) is not None
    ]


def _onoff(label: str, value: str) -> bool:
    flag = _NETSH_ONOFF.get(value.strip().lower())
    if flag is None:
        raise FactsError(
            f"{label!r} has value {value!r}; expected one of {sorted(_NETSH_ONOFF)} "
            "(netsh prints them untranslated on every language captured so far)"
        )
    return flag


def netsh_interface_present(text: str) -> bool:
    """Whether `netsh interface ipv4|ipv6 show interface <idx>` printed a parameter block.

    An interface that exists for one IP version only (IPv6 unbound, a disabled adapter) makes
    netsh print a one-line error such as "Element not found." instead; such an interface has no
    weak host setting for that version. `IfLuid` and `IfIndex` are printed untranslated.
    """
    labels = {label for label, _ in _netsh_fields(text)}
    return "IfLuid" in labels and "IfIndex" in labels


def netsh_interface_index(text: str) -> int | None:
    for label, value in _netsh_fields(text):
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
    fields_ = _netsh_fields(text)
    if not ("IfLuid" in {lb for lb, _ in fields_} and "IfIndex" in {lb for lb, _ in fields_}):
        raise FactsError("no interface parameter block in netsh output: " + _excerpt(text))
    by_label = {label.casefold(): (label, value) for label, value in fields_}
    sends = by_label.get("weak host sends")
    receives = by_label.get("weak host receives")
    if sends is not None and receives is not None:
        return WeakHost(send=_onoff(*sends), receive=_onoff(*receives))

    start = next((i for i, (_, value) in enumerate(fields_) if value.strip().lower() in _NETSH_ONOFF), None)
    if start is None or start + 8 >= len(fields_):
        raise FactsError("cannot locate the weak host lines in netsh output: " + _excerpt(text))
    run = fields_[start : start + 9]
    for label, value in run:
        if value.strip().lower() not in {*_NETSH_ONOFF, "dhcp"}:
            raise FactsError(
                f"unexpected netsh layout: {label!r} = {value!r} inside the on/off fields "
                "that hold the weak host lines"
            )
    return WeakHost(send=_onoff(*run[7]), receive=_onoff(*run[8]))


_SECTION_RULE = re.compile(r"^\s*-{10,}\s*$")

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
        return bool(lines[i].strip()) and i + 1 < len(lines) and _SECTION_RULE.match(lines[i + 1]) is not None

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
        flag = _with_path(f"address {address}", partial(_skip_as_source_flag, _netsh_fields("\n".join(body))))
        if flag is not None:
            flags[address] = flags.get(address, True) and flag
        i = j
    if blocks == 0 and text.strip():
        raise FactsError("no address block in netsh output: " + _excerpt(text))
    return _frozen_map(flags)


_KV_EQUALS = re.compile(r"^\s*(?P<label>\S.*?)\s*=\s*(?P<value>.*?)\s*$")
_ENABLE_DISABLE: dict[str, bool] = {"enable": True, "disable": False}


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """Split netsh firewall output into (head, body lines) at each dashed rule.

    The head is the one or two non-blank lines right above the rule: a title, or a title and a
    table's column header. The body runs to the first blank line, which ends every section.
    """
    lines = text.splitlines()
    starts: list[int] = [i for i, line in enumerate(lines) if _SECTION_RULE.match(line)]
    for n, rule in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        # the next section's title (and column header) precede its rule: stop at the blank
        # line that separates sections
        body: list[str] = []
        for line in lines[rule + 1 : end]:
            if not line.strip():
                break
            body.append(line)
        head = [ln for ln in lines[max(0, rule - 2) : rule] if ln.strip()]
        yield ("\n".join(head), body)


def _enable_disable(label: str, value: str) -> bool:
    flag = _ENABLE_DISABLE.get(value.strip().lower())
    if flag is None:
        raise FactsError(f"{label!r} has value {value!r}; expected Enable or Disable")
    return flag


def _profile_key(title: str) -> str:
    match = re.match(r"^\s*(\w+) profile configuration", title)
    return match.group(1).lower() if match else _strip_marker(title)


def _strip_marker(title: str) -> str:
    return re.sub(r"\s*\([^)]*\)\s*:?\s*$|\s*:\s*$", "", title.strip())


def parse_firewall_opmode(text: str) -> FirewallOpmode:
    """`netsh firewall show opmode` (Windows Server 2003 SP1+, XP SP2).

    Layout rule: a section is a title line, a dashed rule, then `label = value` lines. A profile
    section has two or more lines whose first two values are Enable/Disable (operational mode,
    exception mode); a connection section has exactly one (operational mode). The current
    profile is the one whose title carries a parenthesized marker ("(current)"). Sections whose
    first value is not Enable/Disable (for example "Log configuration" in `show config`) are
    not modes and are skipped. English labels are not needed; values must be Enable/Disable.
    """
    profiles: dict[str, ProfileMode] = {}
    interfaces: dict[str, bool] = {}
    current: str | None = None
    for title, body in _sections(text):
        pairs = [(m.group("label"), m.group("value")) for ln in body if (m := _KV_EQUALS.match(ln))]
        if not pairs or pairs[0][1].strip().lower() not in _ENABLE_DISABLE:
            continue
        title_line = title.splitlines()[-1] if title else ""
        operational = _enable_disable(*pairs[0])
        if len(pairs) >= 2:
            key = _profile_key(title_line)
            profiles[key] = ProfileMode(operational, _enable_disable(*pairs[1]))
            if re.search(r"\([^)]*\)\s*:?\s*$", title_line):
                current = key
        else:
            name = re.sub(r"\s+firewall configuration\s*:?\s*$", "", title_line.strip())
            interfaces[_strip_marker(name)] = operational
    if not profiles:
        raise FactsError("no firewall profile section in netsh firewall output: " + _excerpt(text))
    return FirewallOpmode(_frozen_map(profiles), current, _frozen_map(interfaces))


_PORT_ROW = re.compile(r"^\s*[0-9]+\s+\S")


def _columns(header: str) -> list[tuple[int, str]]:
    # Column titles are separated by two or more spaces; "Traffic direction" has one inside.
    return [(m.start(), m.group(0)) for m in re.finditer(r"\S+(?: \S+)*", header)]


def parse_portopenings(text: str) -> tuple[PortOpening, ...]:
    """Rows of `netsh firewall show portopening` (also the port tables of `show config`).

    Layout rule: a port table is a title line, a column-header line, a dashed rule and rows that
    start with a port number followed by the protocol. Columns are cut at the header's column
    starts: Port, Protocol, Mode, [Traffic direction,] Name (four columns on 2003/XP, five on
    Vista+). The profile is taken from an English title "Port configuration for X profile:",
    else the title as printed. Mode must be Enable/Disable; protocol TCP/UDP. A table with a
    four- or five-column header and no rows is an empty port list; output without any such
    table raises (it is an error message, not an empty list).
    """
    result: list[PortOpening] = []
    tables = 0
    for head, body in _sections(text):
        head_lines = head.splitlines()
        if len(head_lines) < 2 or (body and not _PORT_ROW.match(body[0])):
            continue
        title, header = head_lines[-2], head_lines[-1]
        cols = _columns(header)
        if len(cols) not in (4, 5):
            if body:
                raise FactsError(f"unexpected port table header {header!r}")
            continue  # an empty table of another kind (allowed programs, ICMP)
        tables += 1
        match = re.match(r"^\s*Port configuration for (\w+) profile\s*:", title)
        profile = match.group(1).lower() if match else _strip_marker(title)
        starts = [c[0] for c in cols] + [10**6]
        for row in body:
            cells = [row[starts[i] : starts[i + 1]].strip() for i in range(len(cols))]
            port_text, protocol, mode = cells[0], cells[1].upper(), cells[2]
            if not re.fullmatch(r"[0-9]{1,5}", port_text) or protocol not in ("TCP", "UDP"):
                raise FactsError(f"unexpected port table row {row!r}")
            _enable_disable("Mode", mode)
            result.append(
                PortOpening(
                    protocol=protocol,
                    port=int(port_text),
                    name=cells[-1],
                    mode="Enable" if mode.lower() == "enable" else "Disable",
                    profile=profile,
                    direction=cells[3] if len(cols) == 5 else None,
                )
            )
    if tables == 0:
        # "no port openings" still prints the per-profile tables with their headers
        raise FactsError("no port table in netsh firewall output: " + _excerpt(text))
    return tuple(result)


_APPCMD_SITE = re.compile(r'^SITE "(?P<name>.*)" \((?P<attrs>.*)\)\s*$')
_APPCMD_ATTRS = re.compile(r"^id:(?P<id>[^,]*),bindings:(?P<bindings>.*?)(?:,state:(?P<state>[^,]*))?$")


def parse_binding_information(protocol: str, info: str) -> Binding:
    """An IIS bindingInformation `IP:port:host` (IIS 7+) or ServerBindings entry (IIS 6).

    IP "*" or empty means All Unassigned; IPv6 addresses are bracketed: `[fe80::1]:80:`.
    """
    text = info.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise FactsError(f"malformed binding {info!r}")
        ip, rest = text[1:close], text[close + 2 :]
        port_text, sep, host = rest.partition(":")
    else:
        parts = text.split(":", 2)
        if len(parts) != 3:
            raise FactsError(f"malformed binding {info!r}: expected IP:port:host")
        ip, port_text, host = parts
        sep = ":"
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
        raise FactsError(f"malformed binding {info!r}: bad port")
    ip = ip.strip() or "*"
    if ip != "*":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise FactsError(f"malformed binding {info!r}: bad IP address {ip!r}") from None
    return Binding(protocol=protocol.lower(), ip=ip, port=int(port_text), host=host.strip())


def parse_appcmd_sites(text: str) -> tuple[Site, ...]:
    """`appcmd list site` lines; only http/https bindings are kept (net.tcp, net.pipe... are not
    web listeners the load balancer sends to). The keyword SITE and the attribute names are
    configuration names, printed the same in every language. Blank lines are ignored; any other
    line (an appcmd ERROR message) raises."""
    sites: list[Site] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _APPCMD_SITE.match(line.strip())
        attrs = _APPCMD_ATTRS.match(match.group("attrs")) if match else None
        if match is None or attrs is None:
            raise FactsError(f"unexpected appcmd line {line.strip()!r}")
        bindings: list[Binding] = []
        for item in filter(None, attrs.group("bindings").split(",")):
            protocol, sep, info = item.partition("/")
            if not sep:
                raise FactsError(f"malformed binding {item!r} in appcmd line {line.strip()!r}")
            if protocol.lower() in ("http", "https"):
                bindings.append(parse_binding_information(protocol, info))
        sites.append(
            Site(
                id=attrs.group("id"),
                name=match.group("name"),
                bindings=tuple(bindings),
                state=attrs.group("state"),
            )
        )
    return tuple(sites)


def parse_metabase_sites(raw: Any, path: str = "metabase_sites") -> tuple[Site, ...]:
    """IIS 6 sites from `IIsWebServerSetting` as the facts script lists them:
    `[{"id": "W3SVC/1", "name": "Default Web Site", "bindings": [":80:", "10.0.0.11:80:www"]}]`.
    ServerBindings has no protocol; they are http (https lives in SecureBindings)."""
    if not isinstance(raw, list | tuple):
        raise FactsError(f"{path}: expected a list, got {_type_name(raw)}")
    return tuple(_metabase_site(_Reader(item, f"{path}[{i}]")) for i, item in enumerate(raw))


def _metabase_site(r: _Reader) -> Site:
    bindings = tuple(
        _with_path(f"{r.path}.bindings[{i}]", partial(parse_binding_information, "http", b))
        for i, b in enumerate(r.str_list("bindings"))
    )
    return Site(id=r.str_("id"), name=r.str_("name"), bindings=bindings, state=None)


_HTTPCFG_STATUS = re.compile(r"^\s*HttpQueryServiceConfiguration completed with (\d+)\.?\s*$")
_HTTPCFG_EMPTY = 1168  # ERROR_NOT_FOUND: the list has no entries


def _as_ip(text: str) -> str | None:
    candidate = text.strip()
    try:
        ipaddress.ip_address(candidate.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    return candidate


def parse_http_listen(text: str) -> tuple[str, ...]:
    """The http.sys IP listen list, from either tool:

    - `netsh http show iplisten` (2008+): a title, a dashed rule, then one address per line;
      nothing under the rule when the list is empty.
    - `httpcfg query iplisten` (2003 Support Tools): records `IP : <address>` each followed by a
      dashed rule; the line "HttpQueryServiceConfiguration completed with 1168." when empty.

    Layout rule: a line that is just an address, or `<label> :<address>`, is an entry; blank
    lines, dashed rules and the title line (text ending with ":") are skipped. Any other line,
    or a "completed with N" status other than 1168, raises. Output with no address and no
    recognised structure (no rule, no status line) raises, since an empty list means "all
    addresses" and must not be read from unrecognised text.
    """
    entries: list[str] = []
    recognised = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if _SECTION_RULE.match(line):
            recognised = True
            continue
        status = _HTTPCFG_STATUS.match(line)
        if status is not None:
            if int(status.group(1)) != _HTTPCFG_EMPTY:
                raise FactsError(f"httpcfg failed: {stripped!r}")
            recognised = True
            continue
        address = _as_ip(stripped)
        if address is None and stripped.endswith(":"):
            continue  # a title such as "IP addresses present in the IP listen list:"
        if address is None and ":" in stripped:
            label, _, value = stripped.partition(":")
            # a bare IPv6 entry has colons too, but no label made of letters only
            if re.fullmatch(r"[^0-9:.\[\]]+", label.strip()):
                address = _as_ip(value)
        if address is None:
            raise FactsError(f"unexpected line in IP listen list output: {stripped!r}")
        entries.append(address)
    if not entries and not recognised:
        raise FactsError("unrecognised IP listen list output: " + _excerpt(text))
    return tuple(entries)


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


# --------------------------------------------------------------------------------------------
# Raw dict validation
# --------------------------------------------------------------------------------------------


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list", dict: "a map"}.get(
        type(value), type(value).__name__
    )


def _with_path(path: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except FactsError as exc:
        message = str(exc)
        # inner readers already name a full path; text parsers do not
        if path and not message.startswith(path):
            raise FactsError(f"{path}: {message}") from exc
        raise


class _Reader:
    """A value and the key path that reached it, with typed accessors that raise FactsError."""

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def _child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, *, optional: bool = False) -> Any:
        if not isinstance(self.value, Mapping):
            raise FactsError(f"{self.path or 'facts'}: expected a map, got {_type_name(self.value)}")
        if key not in self.value:
            if optional:
                return None
            raise FactsError(f"{self._child_path(key)}: missing")
        return self.value[key]

    def _fail(self, key: str, expected: str, got: Any) -> FactsError:
        return FactsError(f"{self._child_path(key)}: expected {expected}, got {_type_name(got)}")

    def child(self, key: str) -> _Reader:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map", value)
        return _Reader(value, self._child_path(key))

    def opt_child(self, key: str) -> _Reader | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map or null", value)
        return _Reader(value, self._child_path(key))

    def str_(self, key: str) -> str:
        value = self._get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string", value)
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._get(key, optional=True)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null", value)
        return value

    def int_(self, key: str) -> int:
        value = self._get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer", value)
        return value

    def opt_int(self, key: str) -> int | None:
        value = self._get(key, optional=True)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self._fail(key, "an integer or null", value)
        return value

    def opt_bool(self, key: str) -> bool | None:
        value = self._get(key, optional=True)
        if value is not None and not isinstance(value, bool):
            raise self._fail(key, "a boolean or null", value)
        return value

    def bool_(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "a boolean", value)
        return value

    def list_(self, key: str | None = None) -> list[Any]:
        value = self.value if key is None else self._get(key)
        if not isinstance(value, list | tuple):
            if key is None:
                raise FactsError(f"{self.path}: expected a list, got {_type_name(value)}")
            raise self._fail(key, "a list", value)
        return list(value)

    def opt_list(self, key: str) -> list[Any] | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        return self.list_(key)

    def str_list(self, key: str) -> list[str]:
        items = self.list_(key)
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise FactsError(f"{self._child_path(key)}[{i}]: expected a string, got {_type_name(item)}")
        return items

    def items(self, key: str) -> Iterator[_Reader]:
        base = self._child_path(key)
        for i, item in enumerate(self.list_(key)):
            yield _Reader(item, f"{base}[{i}]")

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map", value)
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FactsError(f"{self._child_path(key)}: keys must be strings, got {_type_name(k)}")
            if not isinstance(v, str):
                raise FactsError(f"{self._child_path(key)}[{k!r}]: expected a string, got {_type_name(v)}")
            out[k] = v
        return out


def _parse_os(r: _Reader) -> OsInfo:
    version = r.str_("version")
    family = _with_path(r._child_path("version"), partial(os_family, version))
    return OsInfo(
        version=version,
        caption=r.str_("caption"),
        service_pack=r.int_("service_pack"),
        architecture=r.str_("architecture"),
        hotfixes=frozenset(h.strip().upper() for h in r.str_list("hotfixes")),
        family=family,
    )


def _parse_addresses(r: _Reader) -> tuple[Address, ...]:
    ips = r.str_list("ip_addresses")
    masks = r.str_list("ip_subnets")
    if len(ips) != len(masks):
        raise FactsError(
            f"{r._child_path('ip_subnets')}: has {len(masks)} entries for {len(ips)} ip_addresses"
        )
    out: list[Address] = []
    for i, (ip, mask) in enumerate(zip(ips, masks, strict=True)):
        path = f"{r._child_path('ip_addresses')}[{i}]"
        try:
            parsed = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            raise FactsError(f"{path}: {ip!r} is not an IP address") from None
        address = Address(address=ip, mask=mask)
        try:
            length = address.prefix_length
        except ValueError:
            raise FactsError(
                f"{r._child_path('ip_subnets')}[{i}]: {mask!r} is not a valid mask for {ip}"
            ) from None
        if not 0 <= length <= parsed.max_prefixlen:
            raise FactsError(f"{r._child_path('ip_subnets')}[{i}]: prefix {length} out of range")
        out.append(address)
    return tuple(out)


def _parse_adapter(r: _Reader) -> Adapter:
    return Adapter(
        index=r.int_("index"),
        interface_index=r.opt_int("interface_index"),
        connection_id=r.opt_str("connection_id"),
        description=r.str_("description"),
        service_name=r.str_("service_name"),
        pnp_device_id=r.str_("pnp_device_id"),
        mac=r.opt_str("mac"),
        ip_enabled=r.bool_("ip_enabled"),
        addresses=_parse_addresses(r),
        dhcp_enabled=r.bool_("dhcp_enabled"),
        gateways=tuple(r.str_list("gateways")),
        dns_servers=tuple(r.str_list("dns_servers")),
        metric=r.opt_int("metric"),
        dns_registration=r.bool_("dns_registration"),
        domain_dns_registration=r.bool_("domain_dns_registration"),
        netbios=r.opt_int("netbios"),
    )


def _parse_weak_host(r: _Reader, key: str) -> Mapping[int, WeakHost]:
    texts = r.str_map(key)
    out: dict[int, WeakHost] = {}
    for name, text in texts.items():
        path = f"{r._child_path(key)}[{name!r}]"
        if not re.fullmatch(r"[0-9]{1,10}", name):
            raise FactsError(f"{path}: key must be an interface index")
        index = int(name)
        if not netsh_interface_present(text):
            continue  # the interface is not bound to this IP version (see netsh_interface_present)
        shown = _with_path(path, partial(netsh_interface_index, text))
        if shown is not None and shown != index:
            raise FactsError(f"{path}: netsh output is for IfIndex {shown}")
        out[index] = _with_path(path, partial(parse_netsh_interface, text))
    return _frozen_map(out)


def _parse_rule(r: _Reader) -> FirewallRule:
    return FirewallRule(
        name=r.str_("name"),
        enabled=r.bool_("enabled"),
        direction=r.int_("direction"),
        action=r.int_("action"),
        protocol=r.int_("protocol"),
        local_addresses=r.str_("local_addresses"),
        local_ports=r.str_("local_ports"),
        profiles=r.int_("profiles"),
    )


def _parse_firewall(r: _Reader) -> Firewall:
    api = r.str_("api")
    rules = tuple(_parse_rule(item) for item in r.items("rules"))
    if api == "netsh-firewall":
        opmode_text = r.str_("opmode_text")
        portopening_text = r.str_("portopening_text")
        opmode = _with_path(r._child_path("opmode_text"), partial(parse_firewall_opmode, opmode_text))
        openings = _with_path(
            r._child_path("portopening_text"), partial(parse_portopenings, portopening_text)
        )
        mode = opmode.current_mode
        return Firewall(
            api=api,
            enabled=mode.operational if mode else None,
            profiles=_frozen_map({k: v.operational for k, v in opmode.profiles.items()}),
            current_profiles=None,
            rules=rules,
            port_openings=openings,
            exceptions_enabled=mode.exceptions if mode else None,
            interface_modes=opmode.interfaces,
        )
    if api == "advfirewall":
        profiles_reader = r.opt_child("profiles")
        if profiles_reader is None:  # the firewall service did not answer: state unknown
            return Firewall(api=api, enabled=None, profiles=None, current_profiles=None, rules=rules,
                            port_openings=(), exceptions_enabled=None)
        profiles = {name: profiles_reader.bool_(name) for name in ("domain", "private", "public")}
        return Firewall(
            api=api,
            enabled=any(profiles.values()),
            profiles=_frozen_map(profiles),
            current_profiles=r.int_("current_profiles"),
            rules=rules,
            port_openings=(),
            exceptions_enabled=None,
            winrm_public=r.opt_bool("winrm_public"),
        )
    raise FactsError(f"{r._child_path('api')}: expected 'netsh-firewall' or 'advfirewall', got {api!r}")


def _parse_iis(r: _Reader) -> Iis:
    version = r.opt_str("version")
    appcmd_text = r.opt_str("appcmd_sites_text")
    metabase = r.opt_list("metabase_sites")
    if appcmd_text is not None:
        path = r._child_path("appcmd_sites_text")
        return Iis(version=version, sites=_with_path(path, partial(parse_appcmd_sites, appcmd_text)))
    if metabase is not None:
        return Iis(version=version, sites=parse_metabase_sites(metabase, r._child_path("metabase_sites")))
    return Iis(version=version, sites=(), sites_known=version is None)


def _parse_event(r: _Reader) -> Event:
    return Event(
        event_id=r.int_("event_id"),
        source=r.str_("source"),
        time=r.str_("time"),
        message=r.str_("message"),
    )


def _parse_skip_as_source(r: _Reader) -> Mapping[str, bool]:
    merged: dict[str, bool] = {}
    for key in ("netsh_ipv4_addresses", "netsh_ipv6_addresses"):
        # A missing key reads as null: facts gathered before these keys existed.
        text = r.opt_str(key)
        if text is None:
            continue
        parsed = _with_path(r._child_path(key), partial(parse_netsh_ipaddresses, text))
        for address, flag in parsed.items():
            merged[address] = merged.get(address, True) and flag
    return _frozen_map(merged)


def parse_facts(raw: Mapping[str, Any]) -> Facts:
    """Validate the facts script's raw dict (docs/facts.md) and parse its text fields."""
    r = _Reader(raw, "")
    if not isinstance(raw, Mapping):
        raise FactsError(f"facts: expected a map, got {_type_name(raw)}")
    schema = r.int_("schema")
    if schema != SCHEMA_VERSION:
        raise FactsError(f"schema: expected {SCHEMA_VERSION}, got {schema}")
    os_info = _parse_os(r.child("os"))
    adapters = tuple(_parse_adapter(item) for item in r.items("adapters"))
    http_text = r.opt_str("http_listen_text")
    http_listen = (
        None if http_text is None else _with_path("http_listen_text", partial(parse_http_listen, http_text))
    )
    return Facts(
        computer_name=r.str_("computer_name"),
        os=os_info,
        powershell_version=r.str_("powershell_version"),
        elevated=r.bool_("elevated"),
        process_64bit=r.bool_("process_64bit"),
        adapters=adapters,
        weak_host_v4=_parse_weak_host(r, "netsh_ipv4"),
        weak_host_v6=_parse_weak_host(r, "netsh_ipv6"),
        firewall=_parse_firewall(r.child("firewall")),
        iis=_parse_iis(r.child("iis")),
        http_listen=http_listen,
        events=tuple(_parse_event(item) for item in r.items("events")),
        marker=_frozen_map(r.str_map("marker")),
        skip_as_source=_parse_skip_as_source(r),
    )
