"""Captures of real hosts: what `dsrprep facts --capture DIR` saves, and the redaction that takes
what identifies a host and its network out of it.

A capture is one JSON file per host, DIR/<host>.json: the raw facts object the facts script
returned (docs/facts.md, with the native texts of netsh, appcmd, httpcfg and `netsh firewall` in
it), exactly as it came back, under a small header:

    {
      "capture": {"format": 1, "dsrprep_version": "0.1.0", "os_family": "2016",
                  "captured_at": "2026-01-05T10:00:00Z", "redacted": true},
      "facts": {...the raw facts object...}
    }

Redaction (`redact_captures`, `Redactor`) is pure. One `Redactor` serves every host of a capture
run, so a value becomes the same placeholder wherever it appears: in every field, inside every
native text (the parsers read addresses out of netsh and appcmd output) and in every file. The
placeholders are valid values of the same kind, so the redacted facts still parse and plan the
same actions (with the replaced values):

- IPv4 addresses: into the documentation ranges 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24.
  Each /24 of the original keeps its last octets in one placeholder /24 (the first three /24s met,
  the adapters' own first), so a NIC, its gateway and a VIP of its subnet stay in one subnet with
  the same host numbers; addresses of a fourth /24 and later take free documentation addresses
  from the top down, and past those 762 addresses the benchmarking range 198.18.0.0/15. APIPA
  addresses (169.254/16) stay APIPA: 169.254.1.1 onwards. Kept as they are: 0.0.0.0/8, 127/8,
  multicast and 240/4 (which holds the 255.x masks); masks in `adapters[].ip_subnets` are never
  touched.
- IPv6 addresses: link-local ones become fe80::1, fe80::2...; any other unicast address (global,
  unique local, 6to4, Teredo) 2001:db8:0:<n>::<m>, one <n> per original /64. ISATAP addresses keep
  their 5efe interface identifier around the placeholder of the IPv4 address they embed, IPv4-mapped
  ones map their IPv4 address. Zone ids (%12, the interface index) are kept. Kept: ::, ::1, multicast.
- MAC addresses: 00-00-5E-00-53-01 to -FF (RFC 7042's documentation block), then locally
  administered 02-00-5E-00-00-00 onwards, printed with the original's separator and case. Kept:
  the Microsoft loopback adapter's 02-00-4C-4F-4F-50 (every loopback adapter has it), broadcast,
  all zeros and multicast MACs.
- Host names (every `computer_name`, every inventory name) become HOST01, HOST02... (host01 where
  the original is lower case), wherever they appear as a word. A DNS name anywhere (an IIS host
  header, an FQDN in a text) becomes <name>.domainNN.example, its first label through the same
  host name table. Single-label IIS host headers are replaced in the bindings only. A host name
  made of letters only that is also a word of the native texts' labels ("State", "Metric") is left
  as it is: replacing it there would break the texts, and such a word says nothing about the host.
- Machine identity (`machine`): the SMBIOS UUID becomes 00000000-0000-0000-0000-000000000001,
  ...002 and so on, the OS product id 00000-000-0000000-00001 and so on, wherever either appears.
  Kept: a UUID of all zeros or all Fs (firmware that sets none: it identifies nothing).
- PNPDeviceIDs: the instance part after the last backslash (unique per device, for vmxnet3 made
  from the MAC) becomes zeros of the same shape ending in a counter; root-enumerated ids
  (ROOT\\NET\\0000, the loopback adapters dsrprep's marker names) are kept.

Not redacted, on purpose: IIS site names (inventories name sites, `dsr_iis_sites`), connection
names ("Local Area Connection"), adapter descriptions, OS captions, versions and hotfixes,
interface indexes, firewall rule names (their addresses are replaced), event times. A site or
connection name that contains a host name or an address has that part replaced.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import __version__, oscaps, privatefs
from orchestrator.errors import DsrError
from orchestrator.rolloutlog import Event, host_file_name, read_host_log

FORMAT = 1
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


class CaptureError(DsrError):
    """A capture file cannot be read, or a capture cannot be redacted."""

    error_class = "CaptureError"


# --------------------------------------------------------------------------------------------------
# Redaction


_DOC_V4 = tuple(ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
_APIPA = ipaddress.IPv4Network("169.254.0.0/16")
_KEPT_V4 = tuple(ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4"))
_DOC_V6 = int(ipaddress.IPv6Address("2001:db8::"))
_LINK_LOCAL_V6 = int(ipaddress.IPv6Address("fe80::"))
_ISATAP_IDS = (0x00005EFE, 0x02005EFE)
_DOC_MAC = "00005E0053"
_LOCAL_MAC = "02005E"
_BENCHMARK_V4 = ipaddress.IPv4Network("198.18.0.0/15")
# Microsoft's loopback adapter ("\x02\x00LOOP" on every Windows), broadcast, all zeros.
_KEPT_MACS = frozenset({"02004C4F4F50", "FFFFFFFFFFFF", "000000000000"})
# Dotted words that are not DNS names: IIS binding protocols, file names.
_NOT_DNS_NAMES = frozenset({"net.tcp", "net.pipe", "net.msmq", "msmq.formatname"})
_FILE_EXTENSIONS = frozenset({
    "asp", "aspx", "bat", "cab", "cat", "cer", "cmd", "config", "cpl", "dll", "etl", "evtx", "exe", "htm",
    "html", "inf", "ini", "json", "log", "msc", "msi", "msu", "pfx", "ps1", "psd1", "psm1", "sys", "txt",
    "vbs", "xml",
})

_MAC = r"(?P<mac>(?<![\w:-])[0-9A-F]{2}(?P<sep>[:-])[0-9A-F]{2}(?:(?P=sep)[0-9A-F]{2}){4}(?![\w:-]))"
_V6 = (r"(?P<v6>(?<![\w.:%])(?:[0-9A-F]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-F]{1,4})?"
       r"(?:%[0-9A-Z]+)?(?![\w:]|\.\d))")
_V4 = r"(?P<v4>(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d))"
_FQDN = r"(?P<fqdn>(?<![\w.-])(?:[A-Z0-9](?:[A-Z0-9-]{0,61}[A-Z0-9])?\.)+[A-Z]{2,63}(?![\w-]|\.\w))"
_V4_ONLY = re.compile(_V4)
_APPCMD_LINE = re.compile(
    r'^(?P<head>\s*SITE ")(?P<name>.*)(?P<mid>" \(id:[^,]*,bindings:)(?P<bindings>.*?)'
    r"(?P<tail>(?:,state:[^,]*)?\)\s*)$"
)
_PNP_ID = re.compile(r"^[A-Za-z0-9_]+\\.+\\[^\\]+$")


def _kept_v4(ip: ipaddress.IPv4Address) -> bool:
    return any(ip in net for net in _KEPT_V4)


class Redactor:
    """Placeholders for the addresses, MACs, names and device ids of one capture run.

    Build it with `for_hosts` (it learns the names, device ids and the adapters' addresses of every
    host first, so that these get the first placeholders), then pass each raw facts object through
    `facts`. `text` and `value` redact anything else the same way (a VIP of an inventory, say).
    """

    def __init__(self) -> None:
        self._v4: dict[ipaddress.IPv4Address, ipaddress.IPv4Address] = {}
        self._v4_taken: set[ipaddress.IPv4Address] = set()
        self._v4_groups: dict[int, ipaddress.IPv4Network] = {}
        self._overflow_v4 = 0
        self._v6: dict[ipaddress.IPv6Address, ipaddress.IPv6Address] = {}
        self._v6_groups: dict[int, int] = {}  # original /64 -> placeholder group number
        self._v6_hosts: dict[int, int] = {}  # placeholder group number -> addresses given in it
        self._link_local = 0
        self._macs: dict[str, int] = {}
        self._names: dict[str, int] = {}
        self._global_names: list[str] = []
        self._domains: dict[str, int] = {}
        self._pnp: dict[str, str] = {}  # original id, casefolded -> redacted id
        self._identity: dict[str, str] = {}  # a machine's UUID or product id, casefolded -> placeholder
        self._identity_counts: dict[str, int] = {}  # placeholder shape -> placeholders given
        self._pattern: re.Pattern[str] | None = None
        self._vocabulary: frozenset[str] = frozenset()

    # -- set-up ------------------------------------------------------------------------------------

    @classmethod
    def for_hosts(cls, raws: Mapping[str, Any]) -> Redactor:
        """A redactor for these hosts (inventory name -> raw facts object), in that order."""
        redactor = cls()
        redactor._vocabulary = _label_words(raws.values())
        for name, raw in raws.items():
            redactor.add_host_name(name)
            if isinstance(raw, Mapping) and isinstance(raw.get("computer_name"), str):
                redactor.add_host_name(raw["computer_name"])
        for raw in raws.values():
            redactor._learn_devices(raw)
        for raw in raws.values():
            redactor._learn_addresses(raw)
        return redactor

    def add_host_name(self, name: str) -> None:
        """A host name to replace wherever it appears as a word (an FQDN's first label, an IP nothing)."""
        if _is_ip(name) or not name.strip():
            return
        label = name.split(".", 1)[0]
        if label.casefold() in self._vocabulary:
            return  # a word of the native texts' layout ("State", "Metric"): replacing it would break them
        if label and label.casefold() not in (n.casefold() for n in self._global_names):
            self._global_names.append(label)
            self._name(label)
            self._pattern = None

    def _learn_devices(self, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            return
        for adapter in _maps(raw.get("adapters")):
            pnp = adapter.get("pnp_device_id")
            if isinstance(pnp, str):
                self._add_pnp(pnp)
        marker = raw.get("marker")
        for value in marker.values() if isinstance(marker, Mapping) else ():
            if isinstance(value, str) and _PNP_ID.match(value):
                self._add_pnp(value)
        machine = raw.get("machine")
        if isinstance(machine, Mapping):
            self._add_identity(machine.get("uuid"), "00000000-0000-0000-0000-{:012X}")
            self._add_identity(machine.get("os_serial"), "00000-000-0000000-{:05d}")

    def _learn_addresses(self, raw: Any) -> None:
        """The adapters' addresses first (physical adapters before loopbacks), then their gateways
        and DNS servers: these are the /24s that keep their host numbers."""
        adapters = _maps(raw.get("adapters")) if isinstance(raw, Mapping) else []
        ordered = sorted(adapters, key=lambda a: str(a.get("service_name", "")).lower() == "msloop")
        for key in ("ip_addresses", "gateways", "dns_servers"):
            for adapter in ordered:
                for item in adapter.get(key) or ():
                    if isinstance(item, str):
                        self.text(item)

    def _add_identity(self, value: Any, shape: str) -> None:
        if not isinstance(value, str) or not value.strip() or value.casefold() in self._identity:
            return
        if set(value) <= set("0-") or set(value.upper()) <= set("F-"):
            return  # firmware that sets no UUID: the same on every such machine, it identifies nothing
        self._identity_counts[shape] = self._identity_counts.get(shape, 0) + 1
        self._identity[value.casefold()] = shape.format(self._identity_counts[shape])
        self._pattern = None

    def _add_pnp(self, pnp: str) -> None:
        head, sep, tail = pnp.rpartition("\\")
        if not sep or not tail or pnp.upper().startswith("ROOT\\") or pnp.casefold() in self._pnp:
            return
        self._pnp[pnp.casefold()] = f"{head}\\{_same_shape(tail, len(self._pnp) + 1)}"
        self._pattern = None

    # -- values ------------------------------------------------------------------------------------

    def facts(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of one raw facts object."""
        redacted = self._walk(raw, ())
        assert isinstance(redacted, dict)
        return redacted

    def host_name(self, name: str) -> str:
        """The placeholder of an inventory name (its capture's file name)."""
        if _is_ip(name):
            return self.text(name)
        if "." in name:
            return self._fqdn(name)
        return self._name(name)

    def value(self, value: Any) -> Any:
        """Any JSON-able value with every string redacted."""
        return self._walk(value, ("",))

    def text(self, text: str) -> str:
        """One string with every address, MAC, host name, DNS name and device id replaced."""
        if self._pattern is None:
            self._pattern = self._compile()
        return self._pattern.sub(self._replace, text)

    def _walk(self, value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            return {(self.text(k) if isinstance(k, str) else k): self._walk(v, (*path, str(k)))
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._walk(v, (*path, "[]")) for v in value]
        if not isinstance(value, str):
            return value
        if path == ("adapters", "[]", "ip_subnets", "[]"):
            return value  # masks and prefix lengths
        if path == ("iis", "appcmd_sites_text"):
            return self._appcmd(value)
        if path == ("iis", "metabase_sites", "[]", "bindings", "[]"):
            return self._binding(value)
        return self.text(value)

    # -- the pattern -------------------------------------------------------------------------------

    def _compile(self) -> re.Pattern[str]:
        parts = []
        if self._pnp:
            ids = sorted(self._pnp, key=len, reverse=True)
            parts.append("(?P<pnp>" + "|".join(re.escape(i) for i in ids) + ")")
        if self._identity:
            values = sorted(self._identity, key=len, reverse=True)
            parts.append("(?P<identity>" + "|".join(re.escape(v) for v in values) + ")")
        parts += [_MAC, _V6, _V4, _FQDN]
        if self._global_names:
            names = sorted(self._global_names, key=len, reverse=True)
            parts.append(r"(?P<name>(?<![\w-])(?:" + "|".join(re.escape(n) for n in names) + r")(?![\w-]))")
        return re.compile("|".join(parts), re.IGNORECASE)

    def _replace(self, match: re.Match[str]) -> str:
        found = match.group(0)
        groups = match.groupdict()
        if groups.get("pnp"):
            return self._pnp[found.casefold()]
        if groups.get("identity"):
            return self._identity[found.casefold()]
        if groups.get("mac"):
            return self._mac(found)
        if groups.get("v6"):
            return self._v6_text(found)
        if groups.get("v4"):
            return self._v4_text(found)
        if groups.get("fqdn"):
            return self._fqdn(found)
        return self._name(found)

    # -- IPv4 --------------------------------------------------------------------------------------

    def _v4_text(self, text: str) -> str:
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            return text  # 999.1.1.1: not an address
        return str(self.v4(ip))

    def v4(self, ip: ipaddress.IPv4Address) -> ipaddress.IPv4Address:
        if _kept_v4(ip):
            return ip
        known = self._v4.get(ip)
        if known is not None:
            return known
        if ip in _APIPA:
            placeholder = self._next_apipa()
        else:
            group = self._v4_groups.get(int(ip) >> 8)
            if group is None and len(self._v4_groups) < len(_DOC_V4):
                group = _DOC_V4[len(self._v4_groups)]
                self._v4_groups[int(ip) >> 8] = group
            wanted = None if group is None else group.network_address + (int(ip) & 0xFF)
            placeholder = wanted if wanted is not None and wanted not in self._v4_taken else self._spare_v4()
        self._v4[ip] = placeholder
        self._v4_taken.add(placeholder)
        return placeholder

    def _spare_v4(self) -> ipaddress.IPv4Address:
        for net in reversed(_DOC_V4):
            for host in range(254, 0, -1):
                candidate = net.network_address + host
                if candidate not in self._v4_taken:
                    return candidate
        # Past the 762 documentation addresses: the benchmarking range (RFC 2544), not routed either.
        while self._overflow_v4 < _BENCHMARK_V4.num_addresses - 2:
            self._overflow_v4 += 1
            candidate = _BENCHMARK_V4.network_address + self._overflow_v4
            if int(candidate) & 0xFF not in (0, 255) and candidate not in self._v4_taken:
                return candidate
        raise CaptureError("too many distinct IPv4 addresses to redact: capture fewer hosts at a time (--limit)")

    def _next_apipa(self) -> ipaddress.IPv4Address:
        # RFC 3927 keeps 169.254.0.x and 169.254.255.x out of use: start at 169.254.1.1.
        for number in range(256, 65280):
            candidate = _APIPA.network_address + number
            if number & 0xFF not in (0, 255) and candidate not in self._v4_taken:
                return candidate
        raise CaptureError("too many distinct APIPA addresses to redact")

    # -- IPv6 --------------------------------------------------------------------------------------

    def _v6_text(self, text: str) -> str:
        address, sep, zone = text.partition("%")
        try:
            ip = ipaddress.IPv6Address(address)
        except ValueError:
            return _V4_ONLY.sub(lambda m: self._v4_text(m.group(0)), text)
        redacted = self.v6(ip)
        shown = _mixed(redacted) if "." in address else str(redacted)
        if address.isupper():
            shown = shown.upper()
        return shown + sep + zone

    def v6(self, ip: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
        if ip.is_unspecified or ip.is_loopback or ip.is_multicast:
            return ip
        known = self._v6.get(ip)
        if known is not None:
            return known
        value = int(ip)
        mapped = ip.ipv4_mapped
        if mapped is not None:
            placeholder = ipaddress.IPv6Address(0xFFFF << 32 | int(self.v4(mapped)))
        elif ((value >> 32) & 0xFFFFFFFF) in _ISATAP_IDS:
            embedded = self.v4(ipaddress.IPv4Address(value & 0xFFFFFFFF))
            prefix = _LINK_LOCAL_V6 if ip.is_link_local else self._v6_prefix(value >> 64)
            placeholder = ipaddress.IPv6Address(prefix | (value & (0xFFFFFFFF << 32)) | int(embedded))
        elif ip.is_link_local:
            self._link_local += 1
            placeholder = ipaddress.IPv6Address(_LINK_LOCAL_V6 | self._link_local)
        else:
            prefix = self._v6_prefix(value >> 64)
            self._v6_hosts[prefix] = self._v6_hosts.get(prefix, 0) + 1
            placeholder = ipaddress.IPv6Address(prefix | self._v6_hosts[prefix])
        self._v6[ip] = placeholder
        return placeholder

    def _v6_prefix(self, original_prefix: int) -> int:
        group = self._v6_groups.setdefault(original_prefix, len(self._v6_groups) + 1)
        return _DOC_V6 | group << 64

    # -- MACs, names, device ids --------------------------------------------------------------------

    def _mac(self, text: str) -> str:
        digits = re.sub(r"[^0-9A-Fa-f]", "", text).upper()
        if digits in _KEPT_MACS or int(digits[:2], 16) & 1:
            return text
        number = self._macs.setdefault(digits, len(self._macs) + 1)
        # RFC 7042's documentation block holds 255 besides 00; then locally administered addresses.
        placeholder = f"{_DOC_MAC}{number:02X}" if number <= 0xFF else f"{_LOCAL_MAC}{number - 0x100:06X}"
        if len(placeholder) != 12:
            raise CaptureError("too many distinct MAC addresses to redact: capture fewer hosts at a time (--limit)")
        pairs = [placeholder[i : i + 2] for i in range(0, 12, 2)]
        shown = text[2].join(pairs)
        return shown.lower() if text.islower() else shown

    def _name(self, name: str) -> str:
        number = self._names.setdefault(name.casefold(), len(self._names) + 1)
        placeholder = f"HOST{number:02d}"
        return placeholder.lower() if name.islower() else placeholder

    def _fqdn(self, text: str) -> str:
        labels = text.split(".")
        if text.casefold() in _NOT_DNS_NAMES or labels[-1].casefold() in _FILE_EXTENSIONS:
            known = {n.casefold() for n in self._global_names}
            return ".".join(self._name(label) if label.casefold() in known else label for label in labels)
        domain = ".".join(labels[1:])
        number = self._domains.setdefault(domain.casefold(), len(self._domains) + 1)
        placeholder = f"domain{number:02d}.example"
        return f"{self._name(labels[0])}.{placeholder.upper() if domain.isupper() else placeholder}"

    # -- IIS bindings ------------------------------------------------------------------------------

    def _appcmd(self, text: str) -> str:
        """`appcmd list site`: site names and non-http bindings as any text; http(s) bindings field by
        field, so that a one-word host header is replaced in the binding and nowhere else."""
        lines = []
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            end = line[len(body):]
            match = _APPCMD_LINE.match(body)
            if match is None:
                lines.append(self.text(body) + end)
                continue
            bindings = []
            for item in match.group("bindings").split(","):
                protocol, sep, info = item.partition("/")
                web = sep and protocol.lower() in ("http", "https")
                bindings.append(f"{protocol}/{self._binding(info)}" if web else self.text(item))
            lines.append(match.group("head") + self.text(match.group("name")) + match.group("mid")
                         + ",".join(bindings) + match.group("tail") + end)
        return "".join(lines)

    def _binding(self, info: str) -> str:
        """An IIS binding `IP:port:host` (IPv6 bracketed, IP empty or * for All Unassigned)."""
        if info.startswith("["):
            close = info.find("]")
            ip, rest = (info[: close + 1], info[close + 1 :]) if close > 0 else ("", "")
        else:
            ip, colon, rest = info.partition(":")
            rest = colon + rest
        port, colon, host = rest[1:].partition(":")
        if not rest.startswith(":") or not colon:
            return self.text(info)
        bare = host.strip()
        shown = self.text(host) if not bare or bare == "*" or "." in bare else self._name(host)
        return f"{self.text(ip)}:{port}:{shown}"


# Words of the native texts' titles that carry no colon ("Interface X Parameters", port table headers).
_TITLE_WORDS = frozenset({"interface", "parameters", "address", "port", "protocol", "mode", "name", "traffic",
                          "direction"})


def _label_words(raws: Iterable[Any]) -> frozenset[str]:
    """The words the native texts use as labels (left of a line's first ':' or '='), casefolded."""
    words = set(_TITLE_WORDS)
    stack = list(raws)
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
        elif isinstance(value, str) and "\n" in value:
            for line in value.splitlines():
                label = re.split(r"[:=]", line, maxsplit=1)[0] if re.search(r"[:=]", line) else ""
                words.update(w.casefold() for w in re.findall(r"[A-Za-z]+", label))
    return frozenset(words)


def _same_shape(tail: str, number: int) -> str:
    """`tail` with every hex digit zeroed and `number` (hex) written into the last of them."""
    chars = list(tail)
    positions = [i for i, c in enumerate(chars) if c in string.hexdigits]
    for i in positions:
        chars[i] = "0"
    digits = f"{number:X}"
    if len(positions) < len(digits):
        return "".join(chars) + digits
    for i, digit in zip(positions[len(positions) - len(digits):], digits, strict=True):
        chars[i] = digit
    return "".join(chars)


def _mixed(ip: ipaddress.IPv6Address) -> str:
    """An IPv6 address with its last 32 bits as a dotted IPv4 address (::ffff:192.0.2.1)."""
    head = str(ipaddress.IPv6Address(int(ip) & ~0xFFFFFFFF))
    tail = str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return head + tail if head.endswith("::") else head.removesuffix("0:0") + tail


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _maps(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list | tuple) else []


@dataclass(frozen=True)
class Redacted:
    """The redacted facts by placeholder host name, and the redactor that made them."""

    hosts: dict[str, dict[str, Any]]
    names: dict[str, str]  # inventory name -> placeholder
    redactor: Redactor


def redact_captures(raws: Mapping[str, Mapping[str, Any]]) -> Redacted:
    """Redact the raw facts of the hosts of one capture run (inventory name -> raw facts object),
    consistently across all of them."""
    redactor = Redactor.for_hosts(raws)
    names = {name: redactor.host_name(name) for name in raws}
    return Redacted({names[name]: redactor.facts(raw) for name, raw in raws.items()}, names, redactor)


def redact(raw: Mapping[str, Any], names: Iterable[str] = ()) -> dict[str, Any]:
    """One host's raw facts, redacted; `names` are more host names to take out (its inventory name)."""
    redactor = Redactor.for_hosts({name: {} for name in names} | {"": raw})
    return redactor.facts(raw)


# --------------------------------------------------------------------------------------------------
# Capture files


@dataclass(frozen=True)
class Capture:
    """One capture file: its header and the raw facts object."""

    path: Path
    header: Mapping[str, Any]
    facts: dict[str, Any]

    @property
    def redacted(self) -> bool:
        return bool(self.header.get("redacted"))

    @property
    def name(self) -> str:
        return self.path.stem


def os_family_of(raw: Mapping[str, Any]) -> str | None:
    """The OS family the raw facts' Win32_OperatingSystem.Version belongs to, None if unknown."""
    os_info = raw.get("os")
    version = os_info.get("version") if isinstance(os_info, Mapping) else None
    try:
        return oscaps.family_of(version) if isinstance(version, str) else None
    except oscaps.UnknownFamily:
        return None


def capture_document(raw: Mapping[str, Any], *, captured_at: str, redacted: bool) -> dict[str, Any]:
    """A capture file's content: the header, then the raw facts object as given."""
    header = {"format": FORMAT, "dsrprep_version": __version__, "os_family": os_family_of(raw),
              "captured_at": captured_at, "redacted": redacted}
    return {"capture": header, "facts": dict(raw)}


def capture_file_name(host: str) -> str:
    return _UNSAFE_NAME.sub("_", host) + ".json"


def raw_facts_from_log(run_dir: Path, host: str) -> dict[str, Any] | None:
    """The raw facts object a run's log recorded for `host` (its last `facts_taken` event)."""
    path = run_dir / "hosts" / host_file_name(host)
    if not path.exists():
        return None
    raw: dict[str, Any] | None = None
    for event in read_host_log(path).events:
        if event.get("host") == host and event.get("event") == Event.FACTS_TAKEN and isinstance(event.get("raw"), dict):
            raw = event["raw"]
    return raw


def write_capture(directory: Path, host: str, document: Mapping[str, Any]) -> Path:
    """DIR/<host>.json, 0600 (a folder it creates: 0700): a capture holds a host's full facts."""
    privatefs.make_dirs(directory)
    path = directory / capture_file_name(host)
    privatefs.write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


def read_capture(path: Path) -> Capture:
    """One capture file; CaptureError when it is not one (the facts inside are not checked here)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CaptureError(f"{path}: not a readable JSON file ({exc})") from None
    if not (isinstance(data, dict) and isinstance(data.get("capture"), dict) and isinstance(data.get("facts"), dict)):
        raise CaptureError(f"{path}: not a dsrprep capture (expected an object with 'capture' and 'facts')")
    if data["capture"].get("format") != FORMAT:
        raise CaptureError(f"{path}: capture format {data['capture'].get('format')!r}, this dsrprep reads {FORMAT}")
    return Capture(path, data["capture"], data["facts"])


def read_captures(directory: Path) -> list[Capture]:
    """Every capture file (*.json) in `directory`, by file name."""
    if not directory.is_dir():
        raise CaptureError(f"{directory}: not a directory")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise CaptureError(f"{directory}: no capture files (*.json) in it")
    return [read_capture(path) for path in files]
