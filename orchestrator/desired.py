"""The DSR desired state of one host: the `dsr_*` inventory variables, their defaults and their checks.

Every `dsr_*` variable may be set on a host or on any group (host > child group > parent group > all).
Each is declared once: those several steps read in `VARIABLES` below (name, type, default, parser,
meaning), those one step reads in that step's module (`Step.variables`, kept in `Desired.options`);
the defaults, the known names, this table (of the ones below), the README's list and `Desired`'s
defaults all come from there, and a unit
test fails when a copy falls out of step (`variables_table()` and `variables_markdown()` print them).

============================  =======================  ==========================================
variable                      default                  meaning
============================  =======================  ==========================================
dsr_vips                      none (required)          VIPs to put on the loopback: a list of
                                                       `{address, ports: [80], protocol: tcp}`; a
                                                       bare address means that with defaults
dsr_iis_sites                 ["Default Web Site"]     IIS sites to bind to the VIPs; [] leaves
                                                       IIS alone
dsr_nic                       {address: ansible_host}  the NIC holding the real IP: exactly one
                                                       of `address`, `mac` or `name` (connection
                                                       name); required when ansible_host is a DNS
                                                       name
dsr_loopback_name             "DSR Loopback"           connection name of the loopback adapter
dsr_metric                    254                      interface metric of the loopback, 1-9999
dsr_skip_as_source            true                     mark the VIPs SkipAsSource (2008 SP2 with
                                                       KB975808, 2008 R2 and later)
dsr_disable_dns_registration  true                     the loopback does not register in DNS
dsr_disable_netbios           true                     NetBIOS over TCP/IP off on the loopback
dsr_weakhost_send_on_nic      false                    also enable weak host send on the NIC
dsr_firewall                  rule                     rule: allow the VIP ports; disable: turn
                                                       the firewall off; skip: leave it alone
dsr_subnet_check              warn                     a VIP outside the NIC's subnet (DSR wants
                                                       LB, VIPs and servers in one subnet): warn,
                                                       error or off
dsr_devcon_path               null                     absolute path of devcon.exe on the host,
                                                       used to install the loopback adapter
                                                       (null: install without devcon)
dsr_restart_site              true                     restart the IIS sites whose bindings
                                                       changed
dsr_http_listen               true                     add the VIPs to the http.sys IP listen
                                                       list when that list has entries
dsr_verify_peer               null                     another inventory host on the same VLAN,
                                                       from which the VIP must resolve by ARP to
                                                       the load balancer, not to a real server
dsr_verify_tcp                true                     after the change, connect to each VIP port
dsr_allow_insecure_basic      false                    accept Basic auth over plain http
                                                       (credentials and scripts in clear); also
                                                       needs message encryption `never`
============================  =======================  ==========================================

YAML reads an unquoted `off` as false: `dsr_subnet_check: off` is accepted for that reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import json
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, UnionType
from typing import Any, Final, Literal, get_args, get_origin, get_type_hints

VIP_DEFAULT_PORTS: tuple[int, ...] = (80,)
VIP_DEFAULT_PROTOCOL = "tcp"
VIP_PROTOCOLS = ("tcp", "udp")
FIREWALL_MODES = ("rule", "disable", "skip")
SUBNET_CHECK_MODES = ("warn", "error", "off")

@dataclass(frozen=True)
class Vip:
    address: str
    ports: tuple[int, ...]
    protocol: str

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class NicSelector:
    by: Literal["address", "mac", "name"]
    value: str


class FieldError(ValueError):
    """One unusable value. `field` narrows the variable down to an item, e.g. `dsr_vips[2].ports`."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class FieldErrors(ValueError):
    """Several unusable items inside one variable (a list reports all its bad items at once)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors


# --- small value parsers, shared with the connection variables -------------------------------------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def show(value: object) -> str:
    """A value as a message shows it: numbers bare, text quoted."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null (no value)"
    return str(value)


def parse_bool(value: object) -> bool:
    # Ansible inventories often carry yes/no strings; accept what Ansible's boolean() accepts.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise FieldError(f"{show(value)} is not true or false")


def parse_int(value: object, low: int, high: int | None, what: str) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        number = int(value)
    span = f"{low}-{high}" if high is not None else f">= {low}"
    if number is None:
        raise FieldError(f"{show(value)} is not {what} (a whole number {span})")
    if number < low or (high is not None and number > high):
        raise FieldError(f"{number} is not {what} ({span})")
    return number


def parse_port(value: object) -> int:
    return parse_int(value, 1, 65535, "a port")


def parse_text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"{show(value)} is not a non-empty text value (quote it in YAML)")
    return value.strip()


def parse_choice(value: object, choices: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.strip().lower() in choices:
        return value.strip().lower()
    raise FieldError(f"{show(value)} is not one of: {', '.join(choices)}")


def parse_ip(value: object) -> str:
    """An IPv4/IPv6 address in canonical text (IPv6 compressed, lower case)."""
    if isinstance(value, str) and "/" in value:
        raise FieldError(f"{show(value)} has a prefix length: write the address alone")
    try:
        if isinstance(value, str):
            return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        pass
    raise FieldError(f"{show(value)} is not an IPv4 or IPv6 address")


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- dsr_* parsers ---------------------------------------------------------------------------------

# Addresses no VIP can be, whatever the host: (test, why). The load balancer sends the VIP's traffic
# to the servers' MACs, so the VIP must be a unicast address that travels between hosts.
_NOT_A_VIP: tuple[tuple[Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool], str], ...] = (
    (lambda ip: ip.is_unspecified, "the unspecified address stands for every address of a host"),
    (lambda ip: ip.is_loopback, "a loopback address never leaves the host (127.0.0.0/8, ::1)"),
    (lambda ip: ip == ipaddress.IPv4Address("255.255.255.255"), "the limited broadcast address"),
    (lambda ip: ip.is_multicast, "a multicast address (224.0.0.0/4, ff00::/8) is not a unicast VIP"),
    (lambda ip: ip.is_link_local,
     "a link-local address (169.254.0.0/16, fe80::/10) is never forwarded, and Windows gives 169.254.x.x "
     "to adapters on its own (APIPA)"),
    (lambda ip: isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None,
     "an IPv4-mapped IPv6 address: write the IPv4 address itself"),
)


def vip_refusal(address: str) -> str | None:
    """Why `address` (a valid IP) can never be a VIP, or None."""
    ip = ipaddress.ip_address(address)
    return next((why for test, why in _NOT_A_VIP if test(ip)), None)



def _parse_vip_item(item: object, field: str) -> Vip:
    if isinstance(item, str):
        item = {"address": item}
    if not isinstance(item, Mapping):
        raise FieldError(f"{show(item)} is not an address or a mapping {{address, ports, protocol}}", field)
    unknown = sorted(str(k) for k in item if k not in ("address", "ports", "protocol"))
    if unknown:
        raise FieldError(f"unknown key(s) {', '.join(unknown)}: a VIP has address, ports and protocol", field)
    if "address" not in item:
        raise FieldError("has no address", field)
    try:
        address = parse_ip(item["address"])
    except FieldError as exc:
        raise FieldError(exc.message, f"{field}.address") from None
    refusal = vip_refusal(address)
    if refusal is not None:
        raise FieldError(f"{address} cannot be a VIP: {refusal}", f"{field}.address")
    raw_ports = item.get("ports", list(VIP_DEFAULT_PORTS))
    if isinstance(raw_ports, int | str) and not isinstance(raw_ports, bool):
        raw_ports = [raw_ports]
    if not isinstance(raw_ports, list) or not raw_ports:
        raise FieldError(f"{show(raw_ports)} is not a non-empty list of ports", f"{field}.ports")
    ports: set[int] = set()
    for index, port in enumerate(raw_ports):
        try:
            ports.add(parse_port(port))
        except FieldError as exc:
            raise FieldError(exc.message, f"{field}.ports[{index}]") from None
    try:
        protocol = parse_choice(item.get("protocol", VIP_DEFAULT_PROTOCOL), VIP_PROTOCOLS)
    except FieldError as exc:
        raise FieldError(exc.message, f"{field}.protocol") from None
    return Vip(address=address, ports=tuple(sorted(ports)), protocol=protocol)


def parse_vips(value: object) -> tuple[Vip, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise FieldError(f"{show(value)} is not a non-empty list of VIPs")
    vips: list[Vip] = []
    errors: list[FieldError] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(value):
        field = f"dsr_vips[{index}]"
        try:
            vip = _parse_vip_item(item, field)
        except FieldError as exc:
            errors.append(exc)
            continue
        if vip.address in seen:
            # One address is one IP on the loopback: list its ports in a single entry.
            errors.append(
                FieldError(
                    f"{vip.address} is listed twice (also dsr_vips[{seen[vip.address]}]): "
                    "give each VIP address once with all its ports",
                    field,
                )
            )
            continue
        seen[vip.address] = index
        vips.append(vip)
    if errors:
        raise FieldErrors(errors)
    return tuple(vips)


def parse_iis_sites(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise FieldError(f"{show(value)} is not a list of IIS site names ([] leaves IIS alone)")
    sites: list[str] = []
    for index, site in enumerate(value):
        try:
            name = parse_text(site)
        except FieldError as exc:
            raise FieldError(exc.message, f"dsr_iis_sites[{index}]") from None
        # IIS site names are case-insensitive: the same site twice would be bound twice.
        if name.lower() not in (s.lower() for s in sites):
            sites.append(name)
    return tuple(sites)


_MAC = re.compile(r"[0-9A-Fa-f]{2}([-:]?)(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}")


def parse_mac(value: object) -> str:
    if not isinstance(value, str) or not _MAC.fullmatch(value.strip()):
        raise FieldError(f"{show(value)} is not a MAC address like AA:BB:CC:DD:EE:FF or AA-BB-CC-DD-EE-FF")
    digits = re.sub(r"[-:]", "", value.strip()).upper()
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def parse_nic(value: object) -> NicSelector:
    hint = "set exactly one of address, mac or name, e.g. dsr_nic: {address: 10.0.0.21}"
    if not isinstance(value, Mapping) or len(value) != 1:
        raise FieldError(f"{show(value)} is not a NIC selector: {hint}")
    ((key, raw),) = value.items()
    if key == "address":
        return NicSelector("address", parse_ip(raw))
    if key == "mac":
        return NicSelector("mac", parse_mac(raw))
    if key == "name":
        return NicSelector("name", parse_text(raw))
    raise FieldError(f"unknown NIC selector {show(key)}: {hint}")


def parse_devcon_path(value: object) -> str | None:
    if value is None:
        return None
    path = parse_text(value)
    if any(ord(c) < 32 for c in path):
        # "C:\tools\devcon.exe" in double quotes turns \t into a tab.
        raise FieldError(
            f"{show(path)} holds control characters: use single quotes in YAML for Windows paths"
        )
    if not re.match(r"^([A-Za-z]:\\|\\\\)", path):
        raise FieldError(f"{show(path)} is not an absolute Windows path like 'C:\\Tools\\devcon.exe'")
    return path


def parse_subnet_check(value: object) -> str:
    if value is False:  # YAML 1.1 reads a bare `off` as false
        return "off"
    return parse_choice(value, SUBNET_CHECK_MODES)


def parse_optional_text(value: object) -> str | None:
    return None if value is None else parse_text(value)


def parse_metric(value: object) -> int:
    return parse_int(value, 1, 9999, "an interface metric")


def parse_firewall(value: object) -> str:
    return parse_choice(value, FIREWALL_MODES)


# --- the declarations ------------------------------------------------------------------------------


class _NoDefault:
    """The default of a variable that must be set, or whose default depends on the host."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Final = _NoDefault()


@dataclass(frozen=True)
class Variable:
    """One `dsr_*` inventory variable: the single place that says what it is.

    `type` is the type of the parsed value (the `Desired` field's type, or the `Desired.options` value
    of a variable a step declares); `parse` turns an inventory
    value into it or raises FieldError / FieldErrors; `default` is the value of an unset variable,
    NO_DEFAULT when there is none (then `shown_default` says what happens instead). `desired` is
    False for a variable that belongs to the connection rather than to `Desired`.
    """

    name: str
    type: object
    default: object
    parse: Callable[[object], object]
    help: str
    shown_default: str | None = None
    desired: bool = True
    # A value other than the default, for the docs and for tests that exercise what it changes
    # (required of the variables steps declare; NO_DEFAULT: none given).
    example: object = NO_DEFAULT

    @property
    def field(self) -> str:
        """The `Desired` field (and `to_dict` key) holding the variable's value."""
        return self.name.removeprefix("dsr_")

    @property
    def default_text(self) -> str:
        """The default as the docs show it: the YAML one would write."""
        if self.shown_default is not None:
            return self.shown_default
        value = self.default
        if isinstance(value, str) and re.fullmatch(r"[a-z]+", value):
            return value
        return json.dumps(list(value) if isinstance(value, tuple) else value)


V = Variable
VARIABLES: tuple[Variable, ...] = (
    V("dsr_vips", tuple[Vip, ...], NO_DEFAULT, parse_vips,
      "VIPs to put on the loopback: a list of `{address, ports: [80], protocol: tcp}`; a bare address "
      "means that with defaults", shown_default="none (required)"),
    V("dsr_iis_sites", tuple[str, ...], ("Default Web Site",), parse_iis_sites,
      "IIS sites to bind to the VIPs; [] leaves IIS alone"),
    V("dsr_nic", NicSelector, NO_DEFAULT, parse_nic,
      "the NIC holding the real IP: exactly one of `address`, `mac` or `name` (connection name); "
      "required when ansible_host is a DNS name", shown_default="{address: ansible_host}"),
    V("dsr_loopback_name", str, "DSR Loopback", parse_text, "connection name of the loopback adapter"),
    V("dsr_metric", int, 254, parse_metric, "interface metric of the loopback, 1-9999"),
    V("dsr_skip_as_source", bool, True, parse_bool,
      "mark the VIPs SkipAsSource (2008 SP2 with KB975808, 2008 R2 and later)"),
    V("dsr_disable_dns_registration", bool, True, parse_bool, "the loopback does not register in DNS"),
    V("dsr_disable_netbios", bool, True, parse_bool, "NetBIOS over TCP/IP off on the loopback"),
    V("dsr_weakhost_send_on_nic", bool, False, parse_bool, "also enable weak host send on the NIC"),
    V("dsr_firewall", str, "rule", parse_firewall,
      "rule: allow the VIP ports; disable: turn the firewall off; skip: leave it alone"),
    V("dsr_subnet_check", str, "warn", parse_subnet_check,
      "a VIP outside the NIC's subnet (DSR wants LB, VIPs and servers in one subnet): warn, error or off"),
    V("dsr_devcon_path", str | None, None, parse_devcon_path,
      "absolute path of devcon.exe on the host, used to install the loopback adapter (null: install "
      "without devcon)"),
    V("dsr_restart_site", bool, True, parse_bool, "restart the IIS sites whose bindings changed"),
    V("dsr_http_listen", bool, True, parse_bool,
      "add the VIPs to the http.sys IP listen list when that list has entries"),
    V("dsr_verify_peer", str | None, None, parse_optional_text,
      "another inventory host on the same VLAN, from which the VIP must resolve by ARP to the load "
      "balancer, not to a real server"),
    V("dsr_verify_tcp", bool, True, parse_bool, "after the change, connect to each VIP port"),
    V("dsr_allow_insecure_basic", bool, False, parse_bool,
      "accept Basic auth over plain http (credentials and scripts in clear); also needs message "
      "encryption `never`", desired=False),
)
del V

_CORE_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {v.name: v.default for v in VARIABLES if v.default is not NO_DEFAULT}
)
_DESIRED_VARIABLES: tuple[Variable, ...] = tuple(v for v in VARIABLES if v.desired)


@functools.cache
def all_variables() -> tuple[Variable, ...]:
    """Every `dsr_*` variable: the ones declared above, then those the steps declare (`Step.variables`),
    in step order. A step's own variables are kept in `Desired.options`."""
    # The step modules import this module for its types, so the registry is read when first needed.
    from orchestrator import steps

    declared = VARIABLES + tuple(v for step in steps.ordered() for v in step.variables)
    names = [v.name for v in declared]
    if len(set(names)) != len(names):
        raise ValueError("a dsr_ variable is declared twice: " + ", ".join(sorted({n for n in names
                                                                                   if names.count(n) > 1})))
    return declared


def step_variables() -> tuple[Variable, ...]:
    """The variables the steps declare (kept in `Desired.options`)."""
    return all_variables()[len(VARIABLES):]


def variable(name: str) -> Variable | None:
    return next((v for v in all_variables() if v.name == name), None)


def known_keys() -> tuple[str, ...]:
    return tuple(v.name for v in all_variables())


def defaults() -> Mapping[str, object]:
    """The value of every variable that has a default, when it is not set."""
    return MappingProxyType({v.name: v.default for v in all_variables() if v.default is not NO_DEFAULT})


def _default(name: str) -> Any:
    # Any: the declared default is typed by its declaration; a unit test checks it against the field.
    return _CORE_DEFAULTS[name]


def unknown_key_message(key: str) -> str:
    known = known_keys()
    close = difflib.get_close_matches(key, known, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    return f"unknown dsr_ variable: {guess}known: {', '.join(known)}"


def parse_dsr_value(key: str, value: object) -> object:
    """Parse one `dsr_*` value; raises FieldError / FieldErrors, or KeyError for an unknown key."""
    found = variable(key)
    if found is None:
        raise KeyError(key)
    return found.parse(value)


# --- the desired state -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Desired:
    """A host's parsed `dsr_*` values. One field per declared variable (a unit test keeps them in step).

    The constructor does not validate: inventories go through the parsers and `build_desired`.
    Unset fields take the declared defaults; `nic` has none (it comes from dsr_nic or ansible_host),
    so its placeholder selects no adapter at all.
    """

    vips: tuple[Vip, ...]
    iis_sites: tuple[str, ...] = _default("dsr_iis_sites")
    nic: NicSelector = NicSelector("address", "")
    loopback_name: str = _default("dsr_loopback_name")
    metric: int = _default("dsr_metric")
    skip_as_source: bool = _default("dsr_skip_as_source")
    disable_dns_registration: bool = _default("dsr_disable_dns_registration")
    disable_netbios: bool = _default("dsr_disable_netbios")
    weakhost_send_on_nic: bool = _default("dsr_weakhost_send_on_nic")
    firewall: str = _default("dsr_firewall")
    subnet_check: str = _default("dsr_subnet_check")
    devcon_path: str | None = _default("dsr_devcon_path")
    restart_site: bool = _default("dsr_restart_site")
    http_listen: bool = _default("dsr_http_listen")
    verify_peer: str | None = _default("dsr_verify_peer")
    verify_tcp: bool = _default("dsr_verify_tcp")
    # The values of the variables steps declare themselves: (variable name, value) pairs, sorted by
    # name, unset ones absent (pairs rather than a mapping keep the value hashable).
    options: tuple[tuple[str, object], ...] = ()

    def option(self, name: str) -> object:
        """A step-declared variable's value, or its declared default when it is not set."""
        found = dict(self.options)
        if name in found:
            return found[name]
        declared = variable(name)
        if declared is None or declared.default is NO_DEFAULT:
            raise KeyError(f"no step declares a dsr_ variable {name!r} with a default")
        return declared.default

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (tuples become lists), for `inventory check` and the rollout log."""
        data = {v.field: _encode(getattr(self, v.field)) for v in _DESIRED_VARIABLES}
        data["options"] = {name: _encode(value) for name, value in self.options}
        return data

    @classmethod
    def from_dict(cls, data: object) -> Desired:
        """The inverse of `to_dict`. Checks the shape and types of every field and raises ValueError
        naming the field; the values' meaning was checked by the parsers when the state was built."""
        if not isinstance(data, Mapping):
            raise ValueError(f"desired state: {show(data)} is not a mapping of fields")
        fields = [v.field for v in _DESIRED_VARIABLES]
        unknown = sorted(str(k) for k in data if k not in fields and k != "options")
        missing = [f for f in fields if f not in data]
        if unknown or missing:
            parts = ([f"unknown field(s) {', '.join(unknown)}"] if unknown else []) + (
                [f"missing field(s) {', '.join(missing)}"] if missing else []
            )
            raise ValueError(f"desired state: {'; '.join(parts)}")
        values = {v.field: _decode(v.type, data[v.field], v.field) for v in _DESIRED_VARIABLES}
        return cls(**values, options=_decode_options(data.get("options", {})))


def _decode_options(data: object) -> tuple[tuple[str, object], ...]:
    if not isinstance(data, Mapping):
        raise ValueError(f"desired state field options: {show(data)} is not a mapping")
    options: dict[str, object] = {}
    for name, value in data.items():
        declared = variable(str(name))
        if declared is None or declared not in step_variables():
            raise ValueError(f"desired state field options: no step declares {name!r}")
        options[declared.name] = _decode(declared.type, value, f"options.{name}")
    return tuple(sorted(options.items()))


def _encode(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    return value


_SCALARS: Mapping[object, str] = MappingProxyType({bool: "true or false", int: "a whole number", str: "text"})


def _decode(kind: object, value: object, path: str) -> Any:
    """`value` (as `_encode` wrote it) rebuilt as `kind`: bool, int, str, X | None, tuple[X, ...],
    Literal[...] or a dataclass of those."""
    origin, args = get_origin(kind), get_args(kind)
    if kind in _SCALARS:
        # Exact types: True is not a metric, 80 is not a site name.
        if type(value) is not kind:
            raise ValueError(f"desired state field {path}: {show(value)} is not {_SCALARS[kind]}")
        return value
    if origin is UnionType:
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _decode(inner, value, path)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"desired state field {path}: {show(value)} is not one of: {', '.join(map(str, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"desired state field {path}: {show(value)} is not a list")
        return tuple(_decode(args[0], item, f"{path}[{index}]") for index, item in enumerate(value))
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return _decode_dataclass(kind, value, path)
    raise TypeError(f"desired state field {path}: no decoder for {kind!r}")


def _decode_dataclass(kind: type[Any], value: object, path: str) -> Any:
    hints = get_type_hints(kind)
    names = [f.name for f in dataclasses.fields(kind)]
    if not isinstance(value, Mapping) or sorted(map(str, value)) != sorted(names):
        raise ValueError(f"desired state field {path}: {show(value)} is not a mapping of {', '.join(names)}")
    return kind(**{name: _decode(hints[name], value[name], f"{path}.{name}") for name in names})


def build_desired(
    values: Mapping[str, object], *, host_address: str, invalid: frozenset[str] = frozenset()
) -> tuple[Desired | None, list[FieldError]]:
    """Assemble a host's Desired from its parsed, merged `dsr_*` values (unset keys take DEFAULTS).

    `host_address` is the connection address: the NIC defaults to it when it is an IP address.
    `invalid` names keys whose value failed to parse (the caller reported them): they are neither
    defaulted nor reported again, and the result is None.
    """
    errors: list[FieldError] = []
    vips = values.get("dsr_vips")
    if vips is None and "dsr_vips" not in invalid:
        errors.append(
            FieldError("this host has no VIP: set dsr_vips on the host or one of its groups", "dsr_vips")
        )
    nic = values.get("dsr_nic")
    if "dsr_nic" not in values and "dsr_nic" not in invalid:
        if is_ip(host_address):
            nic = NicSelector("address", host_address)
        else:
            errors.append(
                FieldError(
                    f"ansible_host {host_address} is a DNS name, so the NIC holding the real IP is unknown: "
                    "set dsr_nic to {address: <real IP>}, {mac: ...} or {name: <connection name>}",
                    "dsr_nic",
                )
            )
    rest: dict[str, Any] = {
        v.field: values.get(v.name, v.default)
        for v in _DESIRED_VARIABLES
        if v.default is not NO_DEFAULT
    }
    loopback_name = rest["loopback_name"]
    if isinstance(nic, NicSelector) and nic.by == "name" and nic.value.lower() == loopback_name.lower():
        errors.append(
            FieldError(
                f"{show(loopback_name)} is also dsr_nic's name: the loopback needs its own name",
                "dsr_loopback_name",
            )
        )
    if errors or invalid or not isinstance(nic, NicSelector) or not isinstance(vips, tuple):
        return None, errors
    options = tuple(sorted((v.name, values[v.name]) for v in step_variables() if v.name in values))
    return Desired(vips=vips, nic=nic, **rest, options=options), []


# --- the docs, generated from the declarations -----------------------------------------------------


def variables_table() -> str:
    """The variable table of this module's docstring (reStructuredText simple table)."""
    width = (max(len(v.name) for v in VARIABLES), max(len(v.default_text) for v in VARIABLES), 42)
    rule = "  ".join("=" * w for w in width)
    lines = [rule, f"{'variable':<{width[0]}}  {'default':<{width[1]}}  meaning", rule]
    for v in VARIABLES:
        meaning = textwrap.wrap(v.help, width[2])
        lines.append(f"{v.name:<{width[0]}}  {v.default_text:<{width[1]}}  {meaning[0]}")
        lines += [f"{'':<{width[0] + width[1] + 4}}{more}" for more in meaning[1:]]
    return "\n".join([*lines, rule])


def variables_markdown() -> str:
    """The README's variable list: a Markdown table name | default | meaning, steps' own included."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for v in all_variables():
        default = v.default_text if v.shown_default is not None else f"`{v.default_text}`"
        lines.append(f"| `{v.name}` | {default} | {v.help} |")
    return "\n".join(lines)
