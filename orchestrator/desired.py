"""The DSR desired state of one host: the `dsr_*` inventory variables, their defaults and their checks.

Every `dsr_*` variable may be set on a host or on any group (host > child group > parent group > all).
Defaults live in `DEFAULTS` and nowhere else.

=============================  =======================  ==========================================
variable                       default                  meaning
=============================  =======================  ==========================================
dsr_vips                       (required)               VIPs to put on the loopback: a list of
                                                        `{address, ports: [80], protocol: tcp}`;
                                                        a bare address means that with defaults
dsr_iis_sites                  ["Default Web Site"]     IIS sites to bind to the VIPs; [] leaves
                                                        IIS alone
dsr_nic                        {address: ansible_host}  the NIC holding the real IP: exactly one
                                                        of `address`, `mac` or `name` (connection
                                                        name); required when ansible_host is a
                                                        DNS name
dsr_loopback_name              "DSR Loopback"           connection name of the loopback adapter
dsr_metric                     254                      interface metric of the loopback, 1-9999
dsr_skip_as_source             true                     mark the VIPs SkipAsSource (2008 SP2 with
                                                        KB975808, 2008 R2 and later)
dsr_disable_dns_registration   true                     the loopback does not register in DNS
dsr_disable_netbios            true                     NetBIOS over TCP/IP off on the loopback
dsr_weakhost_send_on_nic       false                    also enable weak host send on the NIC
dsr_firewall                   rule                     rule: allow the VIP ports; disable: turn
                                                        the firewall off; skip: leave it alone
dsr_subnet_check               warn                     a VIP outside the NIC's subnet (DSR wants
                                                        LB, VIPs and servers in one subnet):
                                                        warn, error or off
dsr_devcon_path                null                     absolute path of devcon.exe on the host,
                                                        used to install the loopback adapter
                                                        (null: install without devcon)
dsr_restart_site               true                     restart the IIS sites whose bindings
                                                        changed
dsr_http_listen                true                     add the VIPs to the http.sys IP listen
                                                        list when that list has entries
dsr_verify_peer                null                     another inventory host on the same VLAN,
                                                        from which the VIP must resolve by ARP to
                                                        the load balancer, not to a real server
dsr_verify_tcp                 true                     after the change, connect to each VIP port
dsr_allow_insecure_basic       false                    accept Basic auth over plain http
                                                        (credentials and scripts in clear); also
                                                        needs message encryption `never`
=============================  =======================  ==========================================

YAML reads an unquoted `off` as false: `dsr_subnet_check: off` is accepted for that reason.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, cast

VIP_DEFAULT_PORTS: tuple[int, ...] = (80,)
VIP_DEFAULT_PROTOCOL = "tcp"
VIP_PROTOCOLS = ("tcp", "udp")
FIREWALL_MODES = ("rule", "disable", "skip")
SUBNET_CHECK_MODES = ("warn", "error", "off")

DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "dsr_iis_sites": ("Default Web Site",),
        "dsr_loopback_name": "DSR Loopback",
        "dsr_metric": 254,
        "dsr_skip_as_source": True,
        "dsr_disable_dns_registration": True,
        "dsr_disable_netbios": True,
        "dsr_weakhost_send_on_nic": False,
        "dsr_firewall": "rule",
        "dsr_subnet_check": "warn",
        "dsr_devcon_path": None,
        "dsr_restart_site": True,
        "dsr_http_listen": True,
        "dsr_verify_peer": None,
        "dsr_verify_tcp": True,
        "dsr_allow_insecure_basic": False,
    }
)


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


@dataclass(frozen=True)
class Desired:
    vips: tuple[Vip, ...]
    iis_sites: tuple[str, ...]
    nic: NicSelector
    loopback_name: str
    metric: int
    skip_as_source: bool
    disable_dns_registration: bool
    disable_netbios: bool
    weakhost_send_on_nic: bool
    firewall: str
    subnet_check: str
    devcon_path: str | None
    restart_site: bool
    http_listen: bool
    verify_peer: str | None
    verify_tcp: bool


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
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified or ip.is_multicast:
        raise FieldError(f"{address} cannot be a VIP (unspecified or multicast address)", f"{field}.address")
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


PARSERS: Mapping[str, Callable[[object], object]] = MappingProxyType(
    {
        "dsr_vips": parse_vips,
        "dsr_iis_sites": parse_iis_sites,
        "dsr_nic": parse_nic,
        "dsr_loopback_name": parse_text,
        "dsr_metric": lambda v: parse_int(v, 1, 9999, "an interface metric"),
        "dsr_skip_as_source": parse_bool,
        "dsr_disable_dns_registration": parse_bool,
        "dsr_disable_netbios": parse_bool,
        "dsr_weakhost_send_on_nic": parse_bool,
        "dsr_firewall": lambda v: parse_choice(v, FIREWALL_MODES),
        "dsr_subnet_check": parse_subnet_check,
        "dsr_devcon_path": parse_devcon_path,
        "dsr_restart_site": parse_bool,
        "dsr_http_listen": parse_bool,
        "dsr_verify_peer": parse_optional_text,
        "dsr_verify_tcp": parse_bool,
        "dsr_allow_insecure_basic": parse_bool,
    }
)

KNOWN_KEYS: tuple[str, ...] = tuple(PARSERS)


def unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
    guess = f"did you mean {close[0]}? " if close else ""
    return f"unknown dsr_ variable: {guess}known: {', '.join(KNOWN_KEYS)}"


def parse_dsr_value(key: str, value: object) -> object:
    """Parse one `dsr_*` value; raises FieldError / FieldErrors, or KeyError for an unknown key."""
    return PARSERS[key](value)


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

    def get(key: str) -> object:
        return values[key] if key in values else DEFAULTS[key]

    loopback_name = cast(str, get("dsr_loopback_name"))
    if isinstance(nic, NicSelector) and nic.by == "name" and nic.value.lower() == loopback_name.lower():
        errors.append(
            FieldError(
                f"{show(loopback_name)} is also dsr_nic's name: the loopback needs its own name",
                "dsr_loopback_name",
            )
        )
    if errors or invalid or not isinstance(nic, NicSelector) or not isinstance(vips, tuple):
        return None, errors
    desired = Desired(
        vips=cast(tuple[Vip, ...], vips),
        iis_sites=cast(tuple[str, ...], get("dsr_iis_sites")),
        nic=nic,
        loopback_name=loopback_name,
        metric=cast(int, get("dsr_metric")),
        skip_as_source=cast(bool, get("dsr_skip_as_source")),
        disable_dns_registration=cast(bool, get("dsr_disable_dns_registration")),
        disable_netbios=cast(bool, get("dsr_disable_netbios")),
        weakhost_send_on_nic=cast(bool, get("dsr_weakhost_send_on_nic")),
        firewall=cast(str, get("dsr_firewall")),
        subnet_check=cast(str, get("dsr_subnet_check")),
        devcon_path=cast("str | None", get("dsr_devcon_path")),
        restart_site=cast(bool, get("dsr_restart_site")),
        http_listen=cast(bool, get("dsr_http_listen")),
        verify_peer=cast("str | None", get("dsr_verify_peer")),
        verify_tcp=cast(bool, get("dsr_verify_tcp")),
    )
    return desired, []


def desired_to_dict(desired: Desired) -> dict[str, object]:
    """JSON-able form, for `inventory check` and logs."""
    return {
        "vips": [
            {"address": v.address, "ports": list(v.ports), "protocol": v.protocol} for v in desired.vips
        ],
        "iis_sites": list(desired.iis_sites),
        "nic": {"by": desired.nic.by, "value": desired.nic.value},
        "loopback_name": desired.loopback_name,
        "metric": desired.metric,
        "skip_as_source": desired.skip_as_source,
        "disable_dns_registration": desired.disable_dns_registration,
        "disable_netbios": desired.disable_netbios,
        "weakhost_send_on_nic": desired.weakhost_send_on_nic,
        "firewall": desired.firewall,
        "subnet_check": desired.subnet_check,
        "devcon_path": desired.devcon_path,
        "restart_site": desired.restart_site,
        "http_listen": desired.http_listen,
        "verify_peer": desired.verify_peer,
        "verify_tcp": desired.verify_tcp,
    }
