"""Captures: the redaction (pure, property-tested on varied lab hosts), the capture files, and
`dsrprep facts --capture` through the CLI with a fake session."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from orchestrator import oscaps
from orchestrator.capture import (
    CaptureError,
    Redactor,
    capture_document,
    raw_facts_from_log,
    read_capture,
    read_captures,
    redact,
    redact_captures,
    write_capture,
)
from orchestrator.cli import Deps, app
from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import parse_facts
from orchestrator.inventory import Connection
from orchestrator.lab.build import build_fleet
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.iis import Site
from orchestrator.plan import plan
from orchestrator.rolloutlog import RunLog
from orchestrator.steps import http_listen, iis_binding, skip_as_source
from orchestrator.transport import RunResult

DOC_V4 = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
KEPT_V4 = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]
APIPA = ipaddress.IPv4Network("169.254.0.0/16")
V4_TOKEN = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
V6_TOKEN = re.compile(r"(?<![\w.:%])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?")
MAC_TOKEN = re.compile(r"(?<![\w:-])[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:-])")
KEPT_MACS = {"02004C4F4F50", "FFFFFFFFFFFF", "000000000000"}


# -- strategies: lab hosts of every family, moved to another network and renamed -------------------

subnets = st.one_of(
    st.builds("10.{}.{}.0/24".format, st.integers(0, 255), st.integers(0, 255)),
    st.builds("172.{}.{}.0/24".format, st.integers(16, 31), st.integers(0, 255)),
    st.builds("192.168.{}.0/24".format, st.integers(0, 255)),
)
names = st.from_regex(r"[A-Z]{2,7}[0-9]{1,3}", fullmatch=True).filter(lambda n: not n.startswith("HOST"))
domains = st.from_regex(r"[a-z]{3,9}\.(com|net|org|local)", fullmatch=True).filter(
    lambda d: not d.startswith(("domain", "host", "example")))


@st.composite
def hosts(draw: st.DrawFn) -> tuple[WindowsHost, str]:
    """A lab host of any family on a random private /24, with a random name, and optionally a
    global IPv6 address, a host-header site, a DNS server in another /24 and an address conflict
    event; and the inventory name it goes by."""
    family = draw(st.sampled_from(oscaps.families()))
    subnet = draw(subnets)
    fleet = build_fleet(3, seed=draw(st.integers(0, 2**16)), profile=family, subnet=subnet)
    host = fleet[draw(st.integers(0, 2))]
    host.name = draw(names)
    nic = host.nics[0]
    if family != "2003" and draw(st.booleans()):
        prefix = draw(st.integers(1, 0xFFFF))
        nic.addresses.append((f"fd00:{prefix:x}:1::{draw(st.integers(1, 0xFFFF)):x}", "64"))
    if host.iis_version is not None and draw(st.booleans()):
        header = f"www.{draw(domains)}"
        host.sites.append(Site(len(host.sites) + 2, "Shop", [("http", f"{host.rip}:80:{header}")]))
    if draw(st.booleans()):
        other = ipaddress.IPv4Network(draw(subnets))
        if other.network_address != ipaddress.IPv4Network(subnet).network_address:
            nic.dns_servers = [str(other.network_address + 53)]
    if draw(st.booleans()):
        host.events.append({"event_id": 4199, "source": "Tcpip", "time": "2026-01-02T03:04:05",
                            "message": f"The system detected an address conflict for IP address {host.rip} with "
                                       f"the system having network hardware address 00-50-56-AB-CD-EF."})
    inventory_name = draw(st.sampled_from([host.name.lower(), f"{host.name.lower()}.{draw(domains)}"]))
    return host, inventory_name


def raw_of(host: WindowsHost) -> dict[str, Any]:
    value = json.loads(json.dumps(host.facts()))
    assert isinstance(value, dict)
    return value


def desired_for(rip: str, vip: str) -> Desired:
    return Desired(vips=(Vip(vip, (80,), "tcp"),), nic=NicSelector("address", rip))


def strings(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every string of a JSON value with its path, keys included."""
    if isinstance(value, Mapping):
        found = [((*path, "key"), k) for k in value]
        for k, v in value.items():
            found += strings(v, (*path, k))
        return found
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in strings(v, (*path, str(i)))]
    return [(path, value)] if isinstance(value, str) else []


def tokens(text: str) -> list[str]:
    """Addresses and MACs in a text, in order (invalid candidates left out)."""
    found: list[tuple[int, str]] = [(m.start(), m.group(0)) for m in MAC_TOKEN.finditer(text)]
    covered = {i for start, t in found for i in range(start, start + len(t))}
    for m in V6_TOKEN.finditer(text):
        try:
            ipaddress.IPv6Address(m.group(0))
        except ValueError:
            continue
        if m.start() not in covered:
            found.append((m.start(), m.group(0)))
            covered.update(range(m.start(), m.end()))
    for m in V4_TOKEN.finditer(text):
        if m.start() not in covered:
            found.append((m.start(), m.group(0)))
    return [t for _, t in sorted(found)]


def kept_v4(text: str) -> bool:
    ip = ipaddress.IPv4Address(text)
    return any(ip in net for net in KEPT_V4)


def originals(raw: Mapping[str, Any]) -> dict[str, set[str]]:
    """What must not survive redaction, found independently of the redactor."""
    v4: set[str] = set()
    v6: set[str] = set()
    macs: set[str] = set()
    for path, text in strings(raw):
        if path[:1] == ("adapters",) and "ip_subnets" in path:
            continue
        for token in tokens(text):
            if MAC_TOKEN.fullmatch(token):
                digits = re.sub(r"[^0-9A-F]", "", token.upper())
                if digits not in KEPT_MACS:
                    macs.add(digits)
            elif ":" in token:
                ip6 = ipaddress.IPv6Address(token)
                if not (ip6.is_loopback or ip6.is_unspecified or ip6.is_multicast):
                    v6.add(str(ip6))
            elif not kept_v4(token):
                v4.add(token)
    tails = {a["pnp_device_id"].rsplit("\\", 1)[1] for a in raw["adapters"]
             if not a["pnp_device_id"].upper().startswith("ROOT\\")}
    return {"v4": v4, "v6": v6, "macs": macs, "tails": tails}


# -- properties -------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(hosts())
def test_redacted_facts_parse_and_plan_the_same_actions(drawn: tuple[WindowsHost, str]) -> None:
    host, name = drawn
    raw = raw_of(host)
    redactor = Redactor.for_hosts({name: raw})
    redacted = redactor.facts(raw)
    facts, facts_r = parse_facts(raw), parse_facts(redacted)
    vip = str(ipaddress.IPv4Interface(f"{host.rip}/24").network.network_address + 200)
    expected = plan(facts, desired_for(host.rip, vip))
    got = plan(facts_r, desired_for(redactor.text(host.rip), redactor.text(vip)))
    assert got.to_dict() == redactor.value(expected.to_dict())
    # the parsed parts that read native texts agree with the replaced values
    assert skip_as_source.skip_flags(facts_r).flags == {
        redactor.text(k): v for k, v in skip_as_source.skip_flags(facts).flags.items()}
    listen = http_listen.listen_list(facts)
    assert http_listen.listen_list(facts_r) == (None if listen is None else tuple(redactor.text(a) for a in listen))
    sites = iis_binding.iis(facts).sites
    assert [s.name for s in iis_binding.iis(facts_r).sites] == [s.name for s in sites]  # site names kept
    assert [[b.ip for b in s.bindings] for s in iis_binding.iis(facts_r).sites] == [
        [b.ip if b.ip == "*" else redactor.text(b.ip) for b in s.bindings] for s in sites]


@PROPERTY
@given(hosts())
def test_no_original_address_mac_name_or_device_id_is_left(drawn: tuple[WindowsHost, str]) -> None:
    host, name = drawn
    raw = raw_of(host)
    text = json.dumps(redact(raw, names=[name]))
    found = originals(raw)
    assert found["v4"], "every host has addresses to replace"
    for address in found["v4"]:
        assert not re.search(rf"(?<![\d.]){re.escape(address)}(?![\d])", text), address
    for address in found["v6"]:
        assert address not in {str(ipaddress.IPv6Address(t.split("%")[0])) for t in V6_TOKEN.findall(text)
                               if _valid_v6(t)}, address
    redacted_macs = {re.sub(r"[^0-9A-F]", "", m.group(0).upper()) for m in MAC_TOKEN.finditer(text)}
    assert not found["macs"] & redacted_macs
    for word in {host.name, name.split(".")[0]}:
        assert not re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE), word
    headers = [info.rsplit(":", 1)[1] for site in host.sites for _, info in site.bindings]
    for dns_name in [name, *headers]:
        domain = dns_name.partition(".")[2]
        assert not domain or domain.casefold() not in text.casefold(), domain
    for tail in found["tails"]:
        assert tail not in text


@PROPERTY
@given(hosts())
def test_every_value_is_replaced_consistently_by_a_valid_placeholder(drawn: tuple[WindowsHost, str]) -> None:
    host, name = drawn
    raw = raw_of(host)
    redacted = redact(raw, names=[name])
    pairs: dict[str, str] = {}
    for (path, before), (path_r, after) in zip(strings(raw), strings(redacted), strict=True):
        assert path == path_r or path[-1] == "key"
        old, new = tokens(before), tokens(after)
        assert len(old) == len(new), (before, after)
        for o, n in zip(old, new, strict=True):
            key = o.upper()
            assert pairs.setdefault(key, n.upper()) == n.upper(), f"{o} became {pairs[key]} and {n}"
    placeholders = list(pairs.values())
    assert len(set(placeholders)) == len(placeholders), "two values share a placeholder"
    for original, placeholder in pairs.items():
        if MAC_TOKEN.fullmatch(placeholder):
            digits = re.sub(r"[^0-9A-F]", "", placeholder)
            assert digits.startswith("00005E0053") or digits == re.sub(r"[^0-9A-F]", "", original)
        elif ":" in placeholder:
            ip6 = ipaddress.IPv6Address(placeholder.split("%")[0])
            assert ip6 in ipaddress.IPv6Network("2001:db8::/32") or ip6.is_link_local or placeholder == original
        else:
            ip = ipaddress.IPv4Address(placeholder)
            assert any(ip in net for net in DOC_V4) or ip in APIPA or placeholder == original
            assert (ip in APIPA) == (ipaddress.IPv4Address(original) in APIPA)


def _valid_v6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%")[0])
    except ValueError:
        return False
    return True


# -- examples ----------------------------------------------------------------------------------------


def test_hosts_of_one_run_share_placeholders_and_get_placeholder_file_names() -> None:
    fleet = build_fleet(3, seed=11, profile="2016", subnet="10.77.5.0/24")
    raws = {f"web{i:02d}.corp.contoso.com": raw_of(h) for i, h in enumerate(fleet, 1)}
    result = redact_captures(raws)
    assert result.names == {"web01.corp.contoso.com": "host01.domain01.example",
                            "web02.corp.contoso.com": "host02.domain01.example",
                            "web03.corp.contoso.com": "host03.domain01.example"}
    gateways = {h["adapters"][0]["gateways"][0] for h in result.hosts.values()}
    assert gateways == {"192.0.2.1"}  # the shared gateway: one placeholder, the NICs' /24 first
    assert [h["adapters"][0]["ip_addresses"][0] for h in result.hosts.values()] == [
        "192.0.2.11", "192.0.2.12", "192.0.2.13"]
    assert [h["computer_name"] for h in result.hosts.values()] == ["HOST01", "HOST02", "HOST03"]
    assert redact_captures(raws).hosts == result.hosts  # deterministic


def test_a_fourth_subnet_takes_free_documentation_addresses() -> None:
    redactor = Redactor()
    nets = ["10.1.1.", "10.1.2.", "10.1.3.", "10.1.4.", "10.1.5."]
    got = [redactor.text(f"{n}{h}") for n in nets for h in (1, 11)]
    assert got[:6] == ["192.0.2.1", "192.0.2.11", "198.51.100.1", "198.51.100.11", "203.0.113.1", "203.0.113.11"]
    assert len(set(got)) == len(got)
    assert all(any(ipaddress.IPv4Address(a) in n for n in DOC_V4) for a in got)
    assert redactor.text("10.1.1.11") == "192.0.2.11"


def test_texts_keep_their_layout() -> None:
    raw = {"schema": 1, "computer_name": "WEB07", "adapters": [
        {"pnp_device_id": "VMBUS\\{F8615163-DF3E-46C5-913F-F2D2F965ED0E}\\{5C1E40D6-3B7F-4A41-9A6B-0D3E0F61A2B4}",
         "ip_addresses": ["10.9.8.7", "fe80::5efe:10.9.8.7"], "ip_subnets": ["255.255.254.0", "64"],
         "mac": "00:15:5d:0a:14:04", "gateways": ["10.9.8.1"], "dns_servers": []},
        {"pnp_device_id": "ROOT\\NET\\0000", "ip_addresses": ["10.9.8.50"], "ip_subnets": ["255.255.255.255"],
         "mac": "02:00:4C:4F:4F:50", "gateways": [], "dns_servers": [], "service_name": "msloop"}],
        "marker": {"LoopbackPnpId": "ROOT\\NET\\0000"},
        "netsh_ipv6_addresses": "Address fe80::5efe:10.9.8.7%14 Parameters\r\nAddress ::ffff:10.9.8.7 Parameters\r\n"
                                "Address 2001:DB8:0:1::A Parameters\r\n",
        "iis": {"appcmd_sites_text": 'SITE "WEB07 shop" (id:2,bindings:http/10.9.8.7:80:shop,'
                                     "https/*:443:www.contoso.com,net.tcp/808:*,msmq.formatname/localhost,"
                                     'http/[fe80::5efe:10.9.8.7]:80:,state:Started)\r\n',
                "metabase_sites": [{"id": "W3SVC/1", "name": "shop", "bindings": ["10.9.8.7:80:shop", ":80:"]}]},
        "events": [{"message": "conflict for IP address 10.9.8.50 with the system having network hardware "
                               "address 00-15-5D-0A-14-04. See web07.corp.contoso.com, log C:\\x\\web07.log."}]}
    out = redact(raw, names=["web07"])
    nic = out["adapters"][0]
    assert nic["pnp_device_id"] == (
        "VMBUS\\{F8615163-DF3E-46C5-913F-F2D2F965ED0E}\\{00000000-0000-0000-0000-000000000001}")
    assert nic["ip_addresses"] == ["192.0.2.7", "fe80::5efe:192.0.2.7"]
    assert nic["ip_subnets"] == ["255.255.254.0", "64"]
    assert nic["mac"] == "00:00:5e:00:53:01"
    assert out["adapters"][1]["mac"] == "02:00:4C:4F:4F:50"
    assert out["marker"] == {"LoopbackPnpId": "ROOT\\NET\\0000"}
    assert out["netsh_ipv6_addresses"] == ("Address fe80::5efe:192.0.2.7%14 Parameters\r\n"
                                           "Address ::ffff:192.0.2.7 Parameters\r\n"
                                           "Address 2001:DB8:0:1::1 Parameters\r\n")
    assert out["computer_name"] == "HOST01"
    assert out["iis"]["appcmd_sites_text"] == (
        'SITE "HOST01 shop" (id:2,bindings:http/192.0.2.7:80:host02,https/*:443:host03.domain01.example,'
        "net.tcp/808:*,msmq.formatname/localhost,http/[fe80::5efe:192.0.2.7]:80:,state:Started)\r\n")
    assert out["iis"]["metabase_sites"] == [{"id": "W3SVC/1", "name": "shop", "bindings": ["192.0.2.7:80:host02",
                                                                                           ":80:"]}]
    assert out["events"][0]["message"] == (
        "conflict for IP address 192.0.2.50 with the system having network hardware address 00-00-5E-00-53-01. "
        "See host01.domain02.example, log C:\\x\\host01.log.")


def test_a_host_named_like_a_netsh_label_keeps_the_texts_parseable() -> None:
    host = build_fleet(1, seed=2, profile="2012r2")[0]
    host.name = "METRIC"
    raw = raw_of(host)
    out = redact(raw, names=["metric"])
    assert parse_facts(out).to_dict()["weak_host_v4"] == parse_facts(raw).to_dict()["weak_host_v4"]


# -- capture files -----------------------------------------------------------------------------------


def test_capture_files_round_trip_and_bad_ones_are_refused(tmp_path: Path) -> None:
    raw = raw_of(build_fleet(1, seed=3, profile="2008r2")[0])
    document = capture_document(raw, captured_at="2026-01-01T00:00:00Z", redacted=False)
    path = write_capture(tmp_path, "web01", document)
    assert path.name == "web01.json"
    capture = read_capture(path)
    assert capture.facts == raw and capture.header["os_family"] == "2008r2" and not capture.redacted
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(CaptureError, match=r"broken\.json"):
        read_captures(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no capture files"):
        read_captures(tmp_path / "empty")


def test_the_raw_facts_are_read_back_from_the_host_log(tmp_path: Path) -> None:
    log = RunLog.create(tmp_path)
    logger = log.host_logger("web01")
    logger.info("facts_taken", step="facts", raw={"schema": 1, "first": True})
    logger.info("facts_taken", step="facts", raw={"schema": 1, "first": False})
    log.close()
    assert raw_facts_from_log(log.path, "web01") == {"schema": 1, "first": False}
    assert raw_facts_from_log(log.path, "web02") is None


# -- the CLI -------------------------------------------------------------------------------------------

INVENTORY = """\
all:
  vars:
    ansible_user: admin
    dsr_vips: [10.44.0.200]
  hosts:
    web01:
      ansible_host: 10.44.0.11
    web02:
      ansible_host: 10.44.0.12
"""
FLEET = build_fleet(2, seed=5, profile="2016", subnet="10.44.0.0/24")


class FakeSession:
    """Answers the facts script with the lab host of the connection's address."""

    def __init__(self, connection: Connection) -> None:
        self.host = next(h for h in FLEET if h.rip == connection.address)

    def open(self) -> None:
        pass

    def run(self, script: str, parameters: Mapping[str, Any], *, timeout: float) -> RunResult:
        return RunResult(output=[raw_of(self.host)])

    def close(self) -> None:
        pass


def capture_cli(tmp_path: Path, *extra: str) -> Any:
    inventory = tmp_path / "inv.yml"
    inventory.write_text(INVENTORY)
    return CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs"), *extra],
                              env={"DSRPREP_PASSWORD": "x"}, obj=Deps(session_factory=FakeSession))


def test_facts_capture_writes_redacted_files_named_by_placeholder(tmp_path: Path) -> None:
    result = capture_cli(tmp_path, "--capture", str(tmp_path / "caps"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["captures"] == {"web01": str(tmp_path / "caps" / "host01.json"),
                               "web02": str(tmp_path / "caps" / "host02.json")}
    first = read_capture(tmp_path / "caps" / "host01.json")
    assert first.redacted and first.header["os_family"] == "2016"
    assert first.header["dsrprep_version"] and first.header["captured_at"].endswith("Z")
    text = (tmp_path / "caps" / "host01.json").read_text()
    assert "10.44.0." not in text and "WEB01" not in text and "web01" not in text
    assert first.facts["adapters"][0]["ip_addresses"][0] == "192.0.2.11"
    assert parse_facts(first.facts).computer_name == "HOST01"


def test_facts_capture_no_redact_keeps_the_raw_object(tmp_path: Path) -> None:
    result = capture_cli(tmp_path, "--capture", str(tmp_path / "caps"), "--no-redact")
    assert result.exit_code == 0, result.output
    assert "captured web01:" in result.stdout
    capture = read_capture(tmp_path / "caps" / "web01.json")
    assert capture.facts == raw_of(FLEET[0]) and not capture.redacted


def test_no_redact_without_capture_is_bad_usage(tmp_path: Path) -> None:
    result = capture_cli(tmp_path, "--no-redact")
    assert result.exit_code == 2 and "--capture" in result.output


def test_a_large_run_overflows_into_other_unrouted_values() -> None:
    redactor = Redactor()
    macs = [redactor.text(f"00-50-56-{n >> 8:02X}-{n & 0xFF:02X}-01") for n in range(300)]
    assert len(set(macs)) == 300
    assert macs[254] == "00-00-5E-00-53-FF" and macs[255] == "02-00-5E-00-00-00"
    addresses = [redactor.text(f"10.{n >> 8}.{n & 0xFF}.7") for n in range(900)]
    assert len(set(addresses)) == 900
    allowed = [*DOC_V4, ipaddress.IPv4Network("198.18.0.0/15")]
    assert all(any(ipaddress.IPv4Address(a) in net for net in allowed) for a in addresses)
    assert addresses[:3] == ["192.0.2.7", "198.51.100.7", "203.0.113.7"]


def test_machine_identities_become_placeholders_the_same_in_every_host() -> None:
    fleet = build_fleet(3, seed=12, profile="2019")
    fleet[2].machine_uuid = fleet[0].machine_uuid  # a clone that kept its source's SMBIOS UUID
    raws = {h.name.lower(): raw_of(h) for h in fleet}
    result = redact_captures(raws)
    machines = [h["machine"] for h in result.hosts.values()]
    assert [m["uuid"] for m in machines] == ["00000000-0000-0000-0000-000000000001",
                                             "00000000-0000-0000-0000-000000000002",
                                             "00000000-0000-0000-0000-000000000001"]
    assert [m["os_serial"] for m in machines] == ["00000-000-0000000-00001", "00000-000-0000000-00002",
                                                  "00000-000-0000000-00003"]
    text = json.dumps(result.hosts)
    for host in fleet:
        assert str(host.machine_uuid) not in text and str(host.os_serial) not in text
    for redacted in result.hosts.values():
        assert parse_facts(redacted).machine is not None


def test_a_uuid_firmware_left_unset_is_kept() -> None:
    host = build_fleet(1, seed=12, profile="2019")[0]
    host.machine_uuid = "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"
    assert redact(raw_of(host), names=["web01"])["machine"]["uuid"] == "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"
