"""The facts of one Windows host: the typed `Facts` value and the parsers that build it.

Owns the validation of the common part of the raw dict the facts script returns (its shape is
`docs/facts.md`): OS, session, adapters, firewall (with the parsers of `netsh firewall show
opmode|portopening`) and marker; the look-ups over them that steps, verification and reports share
(the NIC, dsrprep's loopback, the 2003 fallback mask); the typed `Reader` and the netsh text helpers
the steps' own parsers use. Each step's own facts are parsed by its module (orchestrator/steps/) into
`Facts.parts`.

Pure: no I/O. Every malformed input ends in `FactsError` whose message names the key path.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from enum import StrEnum
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

from orchestrator import oscaps
from orchestrator.errors import DsrError

T = TypeVar("T")

SCHEMA_VERSION = 1


class FactsError(DsrError):
    """The facts a host returned are missing a key, have a wrong type, or hold unparseable text."""

    error_class = "FactsError"


def os_family(version: str) -> str:
    """The family of `Win32_OperatingSystem.Version` ("6.1.7601"), from the capability table."""
    try:
        return oscaps.family_of(version)
    except oscaps.UnknownFamily as exc:
        raise FactsError(str(exc)) from None


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
    family: str  # a row of orchestrator.oscaps

    @property
    def caps(self) -> oscaps.OsCaps:
        return oscaps.caps(self.family)

    @property
    def is_64bit(self) -> bool:
        # OSArchitecture is localized ("64-bit", "64 bits", "64-Bit"); the digits are not.
        return "64" in self.architecture


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

    def json_extra(self) -> dict[str, Any]:
        return {"is_loopback": self.is_loopback}

    def has_address(self, address: str) -> bool:
        wanted = normalize_ip(address)
        return any(normalize_ip(a.address) == wanted for a in self.addresses)

    def ipv4(self) -> Address | None:
        """The adapter's first IPv4 address (the real IP on a NIC)."""
        return next((a for a in self.addresses if a.version == 4), None)



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
class Machine:
    """What tells one machine from another: the SMBIOS UUID (Win32_ComputerSystemProduct.UUID) and
    the OS installation's product id (Win32_OperatingSystem.SerialNumber); None where WMI gave none."""

    uuid: str | None
    os_serial: str | None


# The marker dsrprep leaves on a host (HKLM\SOFTWARE\dsrprep\DSR): which loopback is its own.
MARKER_PNP = "LoopbackPnpId"
MARKER_CREATED = "LoopbackCreated"
HOST_MASK = "255.255.255.255"


@dataclass(frozen=True)
class Facts:
    """What a host is like: the common facts every step reads, and the parts of single steps.

    `parts` holds, by step name, what that step's own facts fragment returned, parsed by that
    step's module (`orchestrator/steps/<step>.py`); read one through that module's accessor.
    """

    computer_name: str
    os: OsInfo
    powershell_version: str
    elevated: bool
    process_64bit: bool
    adapters: tuple[Adapter, ...]
    firewall: Firewall
    marker: Mapping[str, str]
    parts: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    # None: facts without the `machine` key (recorded or captured by an older dsrprep).
    machine: Machine | None = None

    def part(self, step: str, kind: type[T]) -> T:
        """The facts of `step`'s own fragment, as the type its module parses them into."""
        value = self.parts.get(step)
        if not isinstance(value, kind):
            raise FactsError(f"the facts hold no {step} part ({kind.__name__})")
        return value

    # -- lookups the steps, the verifier and the reports share ----------------------------------

    def adapter_by_mac(self, mac: str) -> Adapter | None:
        wanted = normalize_mac(mac)
        return next((a for a in self.adapters if a.mac and normalize_mac(a.mac) == wanted), None)

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

    def loopbacks(self) -> tuple[Adapter, ...]:
        return tuple(a for a in self.adapters if a.is_loopback)

    def physical_adapters(self) -> tuple[Adapter, ...]:
        return tuple(a for a in self.adapters if not a.is_loopback)

    def nic(self, by: str, value: str) -> Adapter | None:
        """The physical adapter holding the real IP, found by "mac", "name" (connection) or "address"."""
        if by == "mac":
            found = self.adapter_by_mac(value)
        elif by == "name":
            found = self.adapter_by_connection_id(value)
        else:
            found = next((a for a in self.physical_adapters() if a.has_address(value)), None)
        return found if found is not None and not found.is_loopback else None

    def dsr_loopback(self, vips: Iterable[str]) -> Adapter | None:
        """dsrprep's loopback: the one in the marker, else a msloop adapter already holding a VIP."""
        pnp = self.marker.get(MARKER_PNP)
        if pnp:
            marked = self.adapter_by_pnp_id(pnp)
            if marked is not None and marked.is_loopback:
                return marked
        addresses = list(vips)
        return next((lb for lb in self.loopbacks() if any(lb.has_address(a) for a in addresses)), None)

    def created_loopback(self) -> Adapter | None:
        """The loopback the marker says dsrprep created itself, when it is still there."""
        pnp = self.marker.get(MARKER_PNP, "")
        found = self.adapter_by_pnp_id(pnp) if pnp else None
        created = found is not None and found.is_loopback and self.marker.get(MARKER_CREATED) == "1"
        return found if created else None

    def degraded_mask(self, nic: Adapter | None, vips: Iterable[str]) -> str | None:
        """The subnet mask a loopback fell back to where Windows refused /32, or None.

        Only families whose /32 is not sure (2003's WMI EnableStatic) fall back; the fallback is
        recognisable from the facts alone: a VIP on dsrprep's loopback with the NIC's own mask.
        """
        if self.os.caps.host_mask_sure or nic is None:
            return None
        every = list(vips)
        addresses = [v for v in every if ipaddress.ip_address(v).version == 4]
        loopback = self.dsr_loopback(every)
        rip = nic.ipv4()
        if rip is None or loopback is None or rip.mask == HOST_MASK:
            return None
        held = {a.address: a.mask for a in loopback.addresses if a.version == 4}
        return rip.mask if any(held.get(v) == rip.mask for v in addresses) else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able rendering of everything parsed, for `--json` and the rollout log."""
        result = jsonable(self)
        assert isinstance(result, dict)
        # Each step's part beside the common facts, under the keys its type names (`json_fields`),
        # else under the step's name.
        shown = result.pop("parts")
        for name, part in self.parts.items():
            fields_of = getattr(part, "json_fields", None)
            result.update(fields_of() if callable(fields_of) else {name: shown[name]})
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


def normalize_mac(text: str) -> str:
    return re.sub(r"[^0-9a-f]", "", text.lower())


def jsonable(value: Any) -> Any:
    """`value` with dataclasses, enums, mappings and tuples turned into JSON-able data."""
    if is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
        # Derived flags a reader of the JSON would otherwise have to recompute.
        extra = getattr(value, "json_extra", None)
        if callable(extra):
            out.update(extra())
        return out
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, frozenset):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value


def frozen_map(items: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(items))


# --------------------------------------------------------------------------------------------
# Text parsers
# --------------------------------------------------------------------------------------------

# netsh prints these two words untranslated: the zh-CN and ru-RU captures localize every label
# and keep "enabled"/"disabled"/"connected". Anything else is refused rather than guessed.
NETSH_ONOFF: dict[str, bool] = {"enabled": True, "disabled": False}

# `label<padding>: value`. Labels may contain spaces and parentheses but no colon, so the first
# colon separates. The padding is usually there, but a label as wide as the column touches it.
_NETSH_FIELD = re.compile(r"^\s*(?P<label>[^:\s][^:]*?)\s*:\s?(?P<value>.*?)\s*$")


def netsh_fields(text: str) -> list[tuple[str, str]]:
    return [
        (m.group("label"), m.group("value"))
        for line in text.splitlines()
        if (m := _NETSH_FIELD.match(line)) is not None
    ]


def onoff(label: str, value: str) -> bool:
    flag = NETSH_ONOFF.get(value.strip().lower())
    if flag is None:
        raise FactsError(
            f"{label!r} has value {value!r}; expected one of {sorted(NETSH_ONOFF)} "
            "(netsh prints them untranslated on every language captured so far)"
        )
    return flag


SECTION_RULE = re.compile(r"^\s*-{10,}\s*$")

_KV_EQUALS = re.compile(r"^\s*(?P<label>\S.*?)\s*=\s*(?P<value>.*?)\s*$")
_ENABLE_DISABLE: dict[str, bool] = {"enable": True, "disable": False}


def _sections(text: str) -> Iterator[tuple[str, list[str]]]:
    """Split netsh firewall output into (head, body lines) at each dashed rule.

    The head is the one or two non-blank lines right above the rule: a title, or a title and a
    table's column header. The body runs to the first blank line, which ends every section.
    """
    lines = text.splitlines()
    starts: list[int] = [i for i, line in enumerate(lines) if SECTION_RULE.match(line)]
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
        raise FactsError("no firewall profile section in netsh firewall output: " + excerpt(text))
    return FirewallOpmode(frozen_map(profiles), current, frozen_map(interfaces))


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
        raise FactsError("no port table in netsh firewall output: " + excerpt(text))
    return tuple(result)


def excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


# --------------------------------------------------------------------------------------------
# Raw dict validation
# --------------------------------------------------------------------------------------------


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list", dict: "a map"}.get(
        type(value), type(value).__name__
    )


def with_path(path: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except FactsError as exc:
        message = str(exc)
        # inner readers already name a full path; text parsers do not
        if path and not message.startswith(path):
            raise FactsError(f"{path}: {message}") from exc
        raise


class Reader:
    """A value and the key path that reached it, with typed accessors that raise FactsError."""

    def __init__(self, value: Any, path: str) -> None:
        self.value = value
        self.path = path

    def child_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def _get(self, key: str, *, optional: bool = False) -> Any:
        if not isinstance(self.value, Mapping):
            raise FactsError(f"{self.path or 'facts'}: expected a map, got {type_name(self.value)}")
        if key not in self.value:
            if optional:
                return None
            raise FactsError(f"{self.child_path(key)}: missing")
        return self.value[key]

    def _fail(self, key: str, expected: str, got: Any) -> FactsError:
        return FactsError(f"{self.child_path(key)}: expected {expected}, got {type_name(got)}")

    def child(self, key: str) -> Reader:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map", value)
        return Reader(value, self.child_path(key))

    def opt_child(self, key: str) -> Reader | None:
        value = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map or null", value)
        return Reader(value, self.child_path(key))

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

    def opt_number(self, key: str) -> float | None:
        value = self._get(key, optional=True)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise self._fail(key, "a number or null", value)
        return None if value is None else float(value)

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
                raise FactsError(f"{self.path}: expected a list, got {type_name(value)}")
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
                raise FactsError(f"{self.child_path(key)}[{i}]: expected a string, got {type_name(item)}")
        return items

    def items(self, key: str) -> Iterator[Reader]:
        base = self.child_path(key)
        for i, item in enumerate(self.list_(key)):
            yield Reader(item, f"{base}[{i}]")

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key)
        if not isinstance(value, Mapping):
            raise self._fail(key, "a map", value)
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FactsError(f"{self.child_path(key)}: keys must be strings, got {type_name(k)}")
            if not isinstance(v, str):
                raise FactsError(f"{self.child_path(key)}[{k!r}]: expected a string, got {type_name(v)}")
            out[k] = v
        return out


def _parse_os(r: Reader) -> OsInfo:
    version = r.str_("version")
    family = with_path(r.child_path("version"), partial(os_family, version))
    return OsInfo(
        version=version,
        caption=r.str_("caption"),
        service_pack=r.int_("service_pack"),
        architecture=r.str_("architecture"),
        hotfixes=frozenset(h.strip().upper() for h in r.str_list("hotfixes")),
        family=family,
    )


def _parse_addresses(r: Reader) -> tuple[Address, ...]:
    ips = r.str_list("ip_addresses")
    masks = r.str_list("ip_subnets")
    if len(ips) != len(masks):
        raise FactsError(
            f"{r.child_path('ip_subnets')}: has {len(masks)} entries for {len(ips)} ip_addresses"
        )
    out: list[Address] = []
    for i, (ip, mask) in enumerate(zip(ips, masks, strict=True)):
        path = f"{r.child_path('ip_addresses')}[{i}]"
        try:
            parsed = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            raise FactsError(f"{path}: {ip!r} is not an IP address") from None
        address = Address(address=ip, mask=mask)
        try:
            length = address.prefix_length
        except ValueError:
            raise FactsError(
                f"{r.child_path('ip_subnets')}[{i}]: {mask!r} is not a valid mask for {ip}"
            ) from None
        if not 0 <= length <= parsed.max_prefixlen:
            raise FactsError(f"{r.child_path('ip_subnets')}[{i}]: prefix {length} out of range")
        out.append(address)
    return tuple(out)


def _parse_adapter(r: Reader) -> Adapter:
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


def _parse_rule(r: Reader) -> FirewallRule:
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


def _parse_firewall(r: Reader) -> Firewall:
    api = r.str_("api")
    rules = tuple(_parse_rule(item) for item in r.items("rules"))
    if api == "netsh-firewall":
        opmode_text = r.str_("opmode_text")
        portopening_text = r.str_("portopening_text")
        opmode = with_path(r.child_path("opmode_text"), partial(parse_firewall_opmode, opmode_text))
        openings = with_path(
            r.child_path("portopening_text"), partial(parse_portopenings, portopening_text)
        )
        mode = opmode.current_mode
        return Firewall(
            api=api,
            enabled=mode.operational if mode else None,
            profiles=frozen_map({k: v.operational for k, v in opmode.profiles.items()}),
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
            profiles=frozen_map(profiles),
            current_profiles=r.int_("current_profiles"),
            rules=rules,
            port_openings=(),
            exceptions_enabled=None,
            winrm_public=r.opt_bool("winrm_public"),
        )
    raise FactsError(f"{r.child_path('api')}: expected 'netsh-firewall' or 'advfirewall', got {api!r}")


def _parse_machine(r: Reader | None) -> Machine | None:
    if r is None:
        return None
    return Machine(uuid=r.opt_str("uuid"), os_serial=r.opt_str("os_serial"))


def parse_facts(raw: Mapping[str, Any]) -> Facts:
    """Validate the facts script's raw dict (docs/facts.md): the common keys here, each step's own
    keys by that step's module."""
    # The step registry imports this module for its types: import it when first needed.
    from orchestrator.steps import facts_parts

    r = Reader(raw, "")
    if not isinstance(raw, Mapping):
        raise FactsError(f"facts: expected a map, got {type_name(raw)}")
    schema = r.int_("schema")
    if schema != SCHEMA_VERSION:
        raise FactsError(f"schema: expected {SCHEMA_VERSION}, got {schema}")
    os_info = _parse_os(r.child("os"))
    return Facts(
        computer_name=r.str_("computer_name"),
        os=os_info,
        powershell_version=r.str_("powershell_version"),
        elevated=r.bool_("elevated"),
        process_64bit=r.bool_("process_64bit"),
        adapters=tuple(_parse_adapter(item) for item in r.items("adapters")),
        firewall=_parse_firewall(r.child("firewall")),
        marker=frozen_map(r.str_map("marker")),
        parts=frozen_map({name: parse(r) for name, parse in facts_parts()}),
        machine=_parse_machine(r.opt_child("machine")),
    )
