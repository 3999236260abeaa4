"""Facts: the raw-dict validation and the parsers of Windows outputs, on captured real texts."""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.facts import (
    Address,
    Facts,
    FactsError,
    os_family,
    parse_facts,
    parse_firewall_opmode,
    parse_portopenings,
)
from orchestrator.steps import http_listen, iis_binding, skip_as_source, verify, weak_host
from orchestrator.steps.http_listen import parse_http_listen
from orchestrator.steps.iis_binding import Binding, parse_appcmd_sites, parse_binding_information, parse_metabase_sites
from orchestrator.steps.skip_as_source import parse_netsh_ipaddresses
from orchestrator.steps.weak_host import (
    WeakHost,
    netsh_interface_index,
    netsh_interface_present,
    parse_netsh_interface,
)

DATA = Path(__file__).resolve().parents[1] / "data"


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# netsh interface ipv4|ipv6 show interface
# --------------------------------------------------------------------------------------------

# file -> (IfIndex, label of the weak host send line, label of the receive line)
NETSH_SAMPLES = {
    "netsh/ipv4_show_interface_vista_kb949589_en.txt": (9, "Weak Host Sends", "Weak Host Receives"),
    "netsh/ipv4_show_interface_win10_wsl_en.txt": (39, "Weak Host Sends", "Weak Host Receives"),
    "netsh/ipv4_show_interface_win10_zh-CN.txt": (5, "弱主机发送", "弱主机接收"),
    "netsh/ipv6_show_interface_win10_en.txt": (24, "Weak Host Sends", "Weak Host Receives"),
}


def test_every_netsh_capture_is_in_the_table() -> None:
    on_disk = {f"netsh/{p.name}" for p in (DATA / "netsh").glob("*_show_interface_*.txt")}
    assert on_disk == set(NETSH_SAMPLES)


def set_line(sample: str, label: str, value: str) -> str:
    """The sample with the value of the line starting with `label` replaced, layout kept."""
    out, hits = [], 0
    for line in sample.splitlines(keepends=True):
        if line.startswith(label):
            head, sep, old = line.partition(": ")
            line = head + sep + old.replace(old.strip(), value, 1)
            hits += 1
        out.append(line)
    assert hits == 1, f"{label!r} found {hits} times"
    return "".join(out)


@pytest.mark.parametrize("name", sorted(NETSH_SAMPLES))
def test_captured_netsh_interface_parses(name: str) -> None:
    sample = text(name)
    index, _, _ = NETSH_SAMPLES[name]
    assert netsh_interface_present(sample)
    assert netsh_interface_index(sample) == index
    # every capture is of a stock interface: strong host both ways
    assert parse_netsh_interface(sample) == WeakHost(send=False, receive=False)


@pytest.mark.parametrize("name", sorted(NETSH_SAMPLES))
@pytest.mark.parametrize(("send", "receive"), [(True, False), (False, True), (True, True)])
def test_weak_host_values_are_read_from_their_own_lines(name: str, send: bool, receive: bool) -> None:
    _, send_label, receive_label = NETSH_SAMPLES[name]
    sample = set_line(text(name), send_label, "enabled" if send else "disabled")
    sample = set_line(sample, receive_label, "enabled" if receive else "disabled")
    assert parse_netsh_interface(sample) == WeakHost(send=send, receive=receive)


GERMAN_LABELS = {  # hypothetical translations: only their position may be relied on
    "Weak Host Sends": "Schwacher Host sendet",
    "Weak Host Receives": "Schwacher Host empfängt",
    "Forwarding": "Weiterleitung",
    "Other Stateful Configuration": "Andere statusbehaftete Konfiguration",
}


@pytest.mark.parametrize(
    "name",
    [n for n, (_, send_label, _) in NETSH_SAMPLES.items() if send_label == "Weak Host Sends"],
)
def test_position_rule_agrees_with_the_english_labels(name: str) -> None:
    """Labels renamed as a localized build would: the layout rule must find the same lines."""
    sample = set_line(text(name), "Weak Host Sends", "enabled")
    for english, german in GERMAN_LABELS.items():
        sample = "\n".join(
            german + line[len(english) :] if line.startswith(english + " ") else line
            for line in sample.splitlines()
        )
    assert "Weak Host" not in sample
    assert parse_netsh_interface(sample) == WeakHost(send=True, receive=False)


def test_localized_values_are_refused_by_name() -> None:
    sample = set_line(text("netsh/ipv4_show_interface_win10_zh-CN.txt"), "弱主机发送", "已启用")
    with pytest.raises(FactsError, match="已启用"):
        parse_netsh_interface(sample)


def test_unknown_english_value_is_refused() -> None:
    sample = set_line(text("netsh/ipv4_show_interface_win10_wsl_en.txt"), "Weak Host Receives", "maybe")
    with pytest.raises(FactsError, match=r"Weak Host Receives.*maybe"):
        parse_netsh_interface(sample)


@pytest.mark.parametrize("output", ["Element not found.\n\n", "", "The parameter is incorrect.\n"])
def test_netsh_error_text_is_not_an_interface(output: str) -> None:
    assert not netsh_interface_present(output)
    with pytest.raises(FactsError, match="no interface parameter block"):
        parse_netsh_interface(output)


def test_truncated_netsh_output_is_refused() -> None:
    lines = text("netsh/ipv4_show_interface_win10_zh-CN.txt").splitlines()
    cut = "\n".join(
        ln for ln in lines if not ln.startswith(("弱主机", "使用自动", "忽略", "播发的", "播发默认"))
    )
    with pytest.raises(FactsError):
        parse_netsh_interface(cut[: cut.index("当前跃点限制")])


# --------------------------------------------------------------------------------------------
# netsh interface ipv4 show ipaddresses / ipv6 show addresses, level=verbose (SkipAsSource)
# --------------------------------------------------------------------------------------------

# file -> the flags it shows
IPADDRESS_SAMPLES = {
    "netsh/ipv6_show_addresses_win10_en.txt": {
        "2a03:7220:8083:c4c4::1014": False,
        "fe80::bca3:1bf5:75db:1c7d": False,
    },
    "netsh/ipv4_show_ipaddresses_constructed.txt": {
        "10.0.0.11": False,
        "10.0.0.50": True,
        "10.0.0.51": False,
        "127.0.0.1": False,
    },
}


def test_every_ipaddresses_capture_is_in_the_table() -> None:
    on_disk = {f"netsh/{p.name}" for p in (DATA / "netsh").glob("*_show_*addresses_*.txt")}
    assert on_disk == set(IPADDRESS_SAMPLES)


@pytest.mark.parametrize("name", sorted(IPADDRESS_SAMPLES))
def test_captured_netsh_ipaddresses_parse(name: str) -> None:
    sample = text(name)
    assert dict(parse_netsh_ipaddresses(sample)) == IPADDRESS_SAMPLES[name]
    # Windows ends lines with CRLF; the captures were stored with LF
    assert dict(parse_netsh_ipaddresses(sample.replace("\n", "\r\n"))) == IPADDRESS_SAMPLES[name]


def localize(sample: str) -> str:
    """Hypothetical German labels and titles: only the layout and the values may be relied on."""
    replacements = {
        "Interface Luid": "Schnittstellen-LUID",
        "Scope Id": "Bereichs-ID",
        "Valid Lifetime": "Gültige Gültigkeitsdauer",
        "Preferred Lifetime": "Bevorzugte Gültigkeitsdauer",
        "DAD State": "DAD-Status",
        "Address Type": "Adresstyp",
        "Skip as Source": "Als Quelle überspringen",
        "Parameters": "Parameter",
        "Address ": "Adresse ",
    }
    for english, german in replacements.items():
        sample = sample.replace(english, german)
    assert "Skip" not in sample
    return sample


@pytest.mark.parametrize("name", sorted(IPADDRESS_SAMPLES))
def test_ipaddresses_layout_rule_agrees_with_the_english_label(name: str) -> None:
    assert dict(parse_netsh_ipaddresses(localize(text(name)))) == IPADDRESS_SAMPLES[name]


def test_ipaddresses_title_in_another_language_and_interface_named_true() -> None:
    name = "netsh/ipv4_show_ipaddresses_constructed.txt"
    sample = text(name).replace("Address 10.0.0.50 Parameters", "地址 10.0.0.50 参数")
    sample = sample.replace("Local Area Connection", "true")
    assert dict(parse_netsh_ipaddresses(localize(sample))) == IPADDRESS_SAMPLES[name]


def test_flag_not_reported_leaves_the_address_out() -> None:
    """Before KB975808 (2008 SP2) netsh has no skipassource at all."""
    lines = text("netsh/ipv4_show_ipaddresses_constructed.txt").splitlines()
    sample = "\n".join(line for line in lines if "Skip as Source" not in line)
    assert dict(parse_netsh_ipaddresses(sample)) == {}
    assert dict(parse_netsh_ipaddresses(localize(sample))) == {}


def test_same_address_on_two_interfaces_skips_only_when_both_say_so() -> None:
    sample = text("netsh/ipv4_show_ipaddresses_constructed.txt").replace("10.0.0.51", "10.0.0.50")
    assert parse_netsh_ipaddresses(sample)["10.0.0.50"] is False
    both = sample.replace("Skip as Source     : false", "Skip as Source     : true")
    assert parse_netsh_ipaddresses(both)["10.0.0.50"] is True


def test_ipaddresses_addresses_are_normalized() -> None:
    name = "netsh/ipv6_show_addresses_win10_en.txt"
    sample = text(name).replace("2a03:7220:8083:c4c4::1014", "2A03:7220:8083:C4C4:0:0:0:1014")
    assert set(parse_netsh_ipaddresses(sample)) == set(IPADDRESS_SAMPLES[name])


@pytest.mark.parametrize("output", ["", "\r\n\r\n"])
def test_empty_ipaddresses_output_is_no_address(output: str) -> None:
    assert dict(parse_netsh_ipaddresses(output)) == {}


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("The following command was not found: interface ipv4 show ipaddresses level=verbose.\n", "no address block"),
        # the redacted address of a published sample: a title without a usable address
        (
            "Address XXXX::XXXX:XXXX:XXXX:XXXX%11 Parameters\n" + "-" * 57 + "\nInterface Luid     : x\n",
            "expected one IP address",
        ),
        ("Address 10.0.0.1 10.0.0.2\n" + "-" * 57 + "\nSkip as Source     : true\n", "expected one IP address"),
        (
            "Address 10.0.0.50 Parameters\n" + "-" * 57 + "\nInterface Luid     : x\nSkip as Source     : maybe\n",
            r"address 10.0.0.50: 'Skip as Source' has value 'maybe'",
        ),
        (
            "Adresse 10.0.0.50\n" + "-" * 57 + "\nSchnittstelle : x\nA : true\nB : false\n",
            "2 true/false fields",
        ),
    ],
)
def test_bad_ipaddresses_output_raises(output: str, message: str) -> None:
    with pytest.raises(FactsError, match=message):
        parse_netsh_ipaddresses(output)


@settings(max_examples=300)
@given(st.text(max_size=300), st.sampled_from(sorted(IPADDRESS_SAMPLES)))
def test_ipaddresses_parser_only_raises_facts_error(junk: str, sample: str) -> None:
    spliced = text(sample)[: len(junk)] + junk
    for candidate in (junk, spliced):
        with contextlib.suppress(FactsError):
            parse_netsh_ipaddresses(candidate)


# --------------------------------------------------------------------------------------------
# netsh firewall (2003)
# --------------------------------------------------------------------------------------------


def test_opmode_with_current_profile_marker() -> None:
    opmode = parse_firewall_opmode(text("firewall/show_opmode_xp_en.txt"))
    assert opmode.current == "standard"
    assert set(opmode.profiles) == {"domain", "standard"}
    assert opmode.current_mode is not None
    assert opmode.current_mode.operational is True
    assert opmode.current_mode.exceptions is True
    assert dict(opmode.interfaces) == {"Local Area Connection": True}


def test_opmode_without_marker_uses_agreeing_profiles() -> None:
    opmode = parse_firewall_opmode(text("firewall/show_opmode_getcountermeasure_en.txt"))
    assert opmode.current is None
    assert opmode.current_mode is not None
    assert opmode.current_mode.operational is False
    assert dict(opmode.interfaces) == {"Local Area Connection 6": False}


def test_opmode_without_marker_and_disagreeing_profiles_is_unknown() -> None:
    sample = text("firewall/show_opmode_getcountermeasure_en.txt")
    first = sample.index("Operational mode                  = Disable")
    sample = sample[:first] + sample[first:].replace("Disable", "Enable", 1)
    opmode = parse_firewall_opmode(sample)
    assert opmode.profiles["domain"].operational is True
    assert opmode.profiles["standard"].operational is False
    assert opmode.current_mode is None


def test_opmode_from_2008r2_show_config_skips_the_log_section() -> None:
    opmode = parse_firewall_opmode(text("firewall/show_config_2008r2_excerpt_en.txt"))
    assert opmode.current == "standard"
    assert set(opmode.profiles) == {"domain", "standard"}
    assert dict(opmode.interfaces) == {}


def test_opmode_by_layout_with_foreign_labels() -> None:
    sample = (
        text("firewall/show_opmode_xp_en.txt")
        .replace("Operational mode", "Betriebsmodus")
        .replace("Exception mode", "Ausnahmemodus")
        .replace("Standard profile configuration (current)", "Standardprofilkonfiguration (aktuell)")
    )
    opmode = parse_firewall_opmode(sample)
    assert opmode.current == "Standardprofilkonfiguration"
    assert opmode.current_mode is not None
    assert opmode.current_mode.operational is True


def test_opmode_refuses_unknown_values() -> None:
    sample = text("firewall/show_opmode_xp_en.txt").replace("= Enable", "= Aktiv")
    # no section whose first value is Enable/Disable is left: not a firewall opmode output
    with pytest.raises(FactsError):
        parse_firewall_opmode(sample)
    partial = text("firewall/show_opmode_xp_en.txt").replace(
        "Exception mode                    = Enable", "Exception mode = Aktiv", 1
    )
    with pytest.raises(FactsError, match="Aktiv"):
        parse_firewall_opmode(partial)


@pytest.mark.parametrize("output", ["", "The following command was not found: firewall show opmode.\n"])
def test_opmode_of_an_error_message_raises(output: str) -> None:
    with pytest.raises(FactsError):
        parse_firewall_opmode(output)


def test_portopenings_2003_layout() -> None:
    rows = parse_portopenings(text("firewall/show_portopening_xp_en.txt"))
    assert len(rows) == 9
    assert [r.profile for r in rows].count("domain") == 4
    assert [r.profile for r in rows].count("standard") == 5
    first = rows[0]
    assert (first.port, first.protocol, first.mode, first.name, first.profile) == (
        139,
        "TCP",
        "Enable",
        "NetBIOS Session Service",
        "domain",
    )
    assert first.enabled and first.direction is None and first.scope is None
    assert ("UDP", 138, "NetBIOS Datagram Service") in {(r.protocol, r.port, r.name) for r in rows}
    assert any(r.name == "Service Firewall" and r.profile == "standard" for r in rows)


def test_portopenings_vista_layout_with_direction_column() -> None:
    rows = parse_portopenings(text("firewall/show_config_2008r2_excerpt_en.txt"))
    assert [(r.profile, r.port, r.protocol, r.mode, r.direction, r.name) for r in rows] == [
        ("domain", 8500, "TCP", "Enable", "Inbound", "CF"),
        ("standard", 8500, "TCP", "Enable", "Inbound", "CF"),
    ]


def test_portopenings_disable_row_in_the_narrow_vista_columns() -> None:
    sample = text("firewall/show_config_2008r2_excerpt_en.txt").replace(
        "8500   TCP       Enable  Inbound               CF",
        "8500   TCP       Disable Inbound               CF",
        1,
    )
    rows = parse_portopenings(sample)
    assert (rows[0].mode, rows[0].direction, rows[0].enabled) == ("Disable", "Inbound", False)


def test_portopenings_with_empty_tables() -> None:
    sample = text("firewall/show_portopening_xp_en.txt")
    empty = "\n".join(ln for ln in sample.splitlines() if not ln[:1].isdigit())
    assert parse_portopenings(empty) == ()


def test_portopenings_of_an_error_message_raises() -> None:
    with pytest.raises(FactsError, match="no port table"):
        parse_portopenings("The following command was not found: firewall show portopening.\n")
    with pytest.raises(FactsError, match="no port table"):
        parse_portopenings(text("firewall/show_opmode_xp_en.txt"))


def test_portopenings_refuse_unknown_mode() -> None:
    sample = text("firewall/show_portopening_xp_en.txt").replace(
        "139    TCP       Enable ", "139    TCP       Aktiv  ", 1
    )
    with pytest.raises(FactsError, match="Aktiv"):
        parse_portopenings(sample)


# --------------------------------------------------------------------------------------------
# IIS
# --------------------------------------------------------------------------------------------


def test_appcmd_multi_site_capture() -> None:
    sites = parse_appcmd_sites(text("appcmd/list_site_multi_zh-TW.txt"))
    assert [s.id for s in sites] == ["1", "2", "3", "4", "6", "7", "8", "9", "10", "11", "12"]
    default = sites[0]
    assert (default.name, default.state) == ("Default Web Site", "Started")
    assert default.bindings == (Binding("http", "*", 80, ""), Binding("https", "*", 443, ""))
    assert all(b.is_all_unassigned for b in default.bindings)
    assert sites[1].name == "轉學考新版2012_transs" and sites[1].state == "Stopped"
    assert sites[-1].bindings == (
        Binding("http", "*", 80, "highschool.ncut.edu.tw"),
        Binding("https", "*", 443, "highschool.ncut.edu.tw"),
    )


def test_appcmd_non_http_bindings_are_skipped() -> None:
    (site,) = parse_appcmd_sites(text("appcmd/list_site_default_nettcp_en.txt"))
    assert site.bindings == (Binding("http", "*", 80, ""),)
    assert site.state == "Started"


def test_appcmd_host_header_and_all_unassigned_on_one_site() -> None:
    sites = {s.name: s for s in parse_appcmd_sites(text("appcmd/list_site_7digital_en.txt"))}
    assert set(sites) == {"territoriesApi", "7digital.com", "SevenDigital.Web.Stores", "mailout"}
    stores = sites["SevenDigital.Web.Stores"]
    assert [b.host for b in stores.bindings] == ["stores.7digital.local", ""]
    assert sites["7digital.com"].bindings == (Binding("http", "*", 80, "sevenspace.local"),)


def test_appcmd_ipv6_bindings() -> None:
    sites = parse_appcmd_sites(text("appcmd/list_site_ipv6_constructed.txt"))
    assert sites[1].bindings == (
        Binding("http", "10.0.0.50", 80, "shop.example.com"),
        Binding("http", "fe80::1", 80, ""),
        Binding("https", "2001:db8::50", 443, "shop.example.com"),
    )


def test_appcmd_site_without_bindings_and_blank_lines() -> None:
    sites = parse_appcmd_sites('\r\nSITE "Empty" (id:7,bindings:,state:Stopped)\r\n\r\n')
    assert len(sites) == 1 and sites[0].bindings == () and sites[0].state == "Stopped"
    assert parse_appcmd_sites("") == ()


@pytest.mark.parametrize(
    "line",
    [
        'ERROR ( message:Cannot find SITE object with identifier "x". )',
        'SITE "A" (id:1,bindings:http/*:eighty:,state:Started)',
        'SITE "A" (id:1,bindings:http/10.0.0.300:80:,state:Started)',
        'SITE "A" (id:1,bindings:http*:80:,state:Started)',
        'SITE "A" (bindings:http/*:80:,state:Started)',
    ],
)
def test_appcmd_malformed_lines_raise(line: str) -> None:
    with pytest.raises(FactsError):
        parse_appcmd_sites(line + "\n")


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (":80:", Binding("http", "*", 80, "")),
        ("*:80:", Binding("http", "*", 80, "")),
        ("10.0.0.11:80:www", Binding("http", "10.0.0.11", 80, "www")),
        (":8080:www.example.com", Binding("http", "*", 8080, "www.example.com")),
        ("[fe80::1]:80:", Binding("http", "fe80::1", 80, "")),
        ("[2001:db8::1]:443:a.example", Binding("http", "2001:db8::1", 443, "a.example")),
    ],
)
def test_binding_information(info: str, expected: Binding) -> None:
    assert parse_binding_information("HTTP", info) == expected


@pytest.mark.parametrize(
    "info", ["", "80", ":0:", ":65536:", "a:80:", "[fe80::1:80:", "[fe80::1]80:", ":8o:"]
)
def test_bad_binding_information(info: str) -> None:
    with pytest.raises(FactsError):
        parse_binding_information("http", info)


def test_metabase_sites() -> None:
    sites = parse_metabase_sites(
        [
            {"id": "W3SVC/1", "name": "Default Web Site", "bindings": [":80:", "10.0.0.11:80:www"]},
            {"id": "W3SVC/2", "name": "Empty", "bindings": []},
        ]
    )
    assert sites[0].bindings == (Binding("http", "*", 80, ""), Binding("http", "10.0.0.11", 80, "www"))
    assert sites[0].state is None and sites[1].bindings == ()
    with pytest.raises(FactsError, match=r"metabase_sites\[0\]\.bindings\[0\]"):
        parse_metabase_sites([{"id": "W3SVC/1", "name": "x", "bindings": ["nonsense"]}])
    with pytest.raises(FactsError, match=r"metabase_sites\[0\]\.name: missing"):
        parse_metabase_sites([{"id": "W3SVC/1", "bindings": []}])


# --------------------------------------------------------------------------------------------
# http.sys listen list
# --------------------------------------------------------------------------------------------

HTTP_SAMPLES = {
    "http/netsh_http_show_iplisten_en.txt": ("192.168.33.1", "127.0.0.0", "127.0.0.1"),
    "http/netsh_http_show_iplisten_empty_constructed.txt": (),
    "http/httpcfg_query_iplisten_empty_en.txt": (),
    "http/httpcfg_query_iplisten_constructed.txt": ("10.0.0.11", "10.0.0.50"),
}


def test_every_http_capture_is_in_the_table() -> None:
    assert {f"http/{p.name}" for p in (DATA / "http").glob("*.txt")} == set(HTTP_SAMPLES)


@pytest.mark.parametrize("name", sorted(HTTP_SAMPLES))
def test_http_listen_samples(name: str) -> None:
    assert parse_http_listen(text(name)) == HTTP_SAMPLES[name]


def test_http_listen_ipv6_entries() -> None:
    netsh = text("http/netsh_http_show_iplisten_en.txt").replace("127.0.0.0", "::", 1)
    assert parse_http_listen(netsh) == ("192.168.33.1", "::", "127.0.0.1")
    assert parse_http_listen("IP         :fe80::1\n" + "-" * 78 + "\n") == ("fe80::1",)


@pytest.mark.parametrize(
    "output",
    [
        "",
        "HttpQueryServiceConfiguration completed with 5.\n",
        "The requested operation requires elevation (Run as administrator).\n",
        "\nIP addresses present in the IP listen list:\n-------\n\n    not-an-address\n",
    ],
)
def test_http_listen_errors_raise(output: str) -> None:
    with pytest.raises(FactsError):
        parse_http_listen(output)


# --------------------------------------------------------------------------------------------
# OS family
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "family"),
    [
        ("5.2.3790", "2003"),
        ("6.0.6001", "2008"),
        ("6.0.6002", "2008"),
        ("6.1.7600", "2008r2"),
        ("6.1.7601", "2008r2"),
        ("6.2.9200", "2012"),
        ("6.3.9600", "2012r2"),
        ("10.0.14393", "2016"),
        ("10.0.16299", "2016"),
        ("10.0.17763", "2019"),
        ("10.0.19041", "2019"),
        ("10.0.20348", "2022"),
        ("10.0.25000", "2022"),
        ("10.0.26100", "2025"),
        ("10.0.26200", "2025"),
    ],
)
def test_os_family(version: str, family: str) -> None:
    assert os_family(version) == family


@pytest.mark.parametrize(
    "version", ["5.1.2600", "6.4.9841", "10.0.10240", "10.0.14392", "10.0", "11.0.1", "", "six"]
)
def test_unknown_os_versions_raise(version: str) -> None:
    with pytest.raises(FactsError):
        os_family(version)


# --------------------------------------------------------------------------------------------
# Whole facts
# --------------------------------------------------------------------------------------------


def adapter(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "index": 7,
        "interface_index": 9,
        "connection_id": "Local Area Connection",
        "description": "Intel(R) PRO/1000 MT Network Connection",
        "service_name": "E1G60",
        "pnp_device_id": "PCI\\VEN_8086&DEV_100F&SUBSYS_075015AD&REV_01\\4&3AD87E0A&0&0888",
        "mac": "00:50:56:8A:12:34",
        "ip_enabled": True,
        "ip_addresses": ["10.0.0.11", "fe80::a1b5:7d4b:16a6:e7ad"],
        "ip_subnets": ["255.255.255.0", "64"],
        "dhcp_enabled": False,
        "gateways": ["10.0.0.1"],
        "dns_servers": ["10.0.0.2"],
        "metric": 20,
        "dns_registration": True,
        "domain_dns_registration": False,
        "netbios": 0,
    }
    base.update(over)
    return base


def raw_2008r2() -> dict[str, Any]:
    """A 2008 R2 web server before DSR prep, with a loopback already installed (no VIP yet)."""
    return {
        "schema": 1,
        "computer_name": "WEB01",
        "os": {
            "version": "6.1.7601",
            "caption": "Microsoft Windows Server 2008 R2 Enterprise ",
            "service_pack": 1,
            "architecture": "64-bit",
            "hotfixes": ["KB975808", "kb968930"],
        },
        "powershell_version": "2.0",
        "elevated": True,
        "process_64bit": True,
        "adapters": [
            adapter(),
            adapter(
                index=12,
                interface_index=39,
                connection_id="Loopback-VIP",
                description="Microsoft Loopback Adapter",
                service_name="msloop",
                pnp_device_id="ROOT\\NET\\0000",
                mac="02:00:4C:4F:4F:50",
                ip_addresses=["169.254.12.7"],
                ip_subnets=["255.255.0.0"],
                dhcp_enabled=True,
                gateways=[],
                dns_servers=[],
                metric=None,
                netbios=None,
            ),
            adapter(
                index=14,
                interface_index=24,
                connection_id="Local Area Connection 2",
                mac=None,
                ip_enabled=False,
                ip_addresses=[],
                ip_subnets=[],
                gateways=[],
                dns_servers=[],
                metric=None,
            ),
        ],
        "netsh_ipv4": {
            "9": text("netsh/ipv4_show_interface_vista_kb949589_en.txt"),
            "39": text("netsh/ipv4_show_interface_win10_wsl_en.txt"),
            "24": "Element not found.\r\n\r\n",
        },
        "netsh_ipv6": {
            "9": "Element not found.\r\n\r\n",
            "39": "Element not found.\r\n\r\n",
            "24": text("netsh/ipv6_show_interface_win10_en.txt"),
        },
        "netsh_ipv4_addresses": text("netsh/ipv4_show_ipaddresses_constructed.txt"),
        "netsh_ipv6_addresses": text("netsh/ipv6_show_addresses_win10_en.txt"),
        "firewall": {
            "api": "advfirewall",
            "opmode_text": None,
            "portopening_text": None,
            "profiles": {"domain": True, "private": True, "public": False},
            "current_profiles": 1,
            "rules": [
                {
                    "name": "dsrprep VIP 10.0.0.50 TCP 80",
                    "enabled": True,
                    "direction": 1,
                    "action": 1,
                    "protocol": 6,
                    "local_addresses": "10.0.0.50/255.255.255.255",
                    "local_ports": "80",
                    "profiles": 2147483647,
                }
            ],
        },
        "iis": {
            "version": "7.5",
            "appcmd_sites_text": text("appcmd/list_site_7digital_en.txt"),
            "metabase_sites": None,
        },
        "http_listen_text": text("http/netsh_http_show_iplisten_en.txt"),
        "events": [
            {
                "event_id": 4199,
                "source": "Tcpip",
                "time": "2026-11-20T10:00:00",
                "message": "The system detected an address conflict for IP address 10.0.0.50 ...",
            }
        ],
        "marker": {"LoopbackPnpId": "ROOT\\NET\\0000"},
    }


def raw_2003() -> dict[str, Any]:
    """A 2003 SP2 web server: no interface index, netsh firewall, IIS 6 metabase, no httpcfg."""
    return {
        "schema": 1,
        "computer_name": "LEGACY01",
        "os": {
            "version": "5.2.3790",
            "caption": "Microsoft(R) Windows(R) Server 2003, Standard Edition",
            "service_pack": 2,
            "architecture": "32-bit",
            "hotfixes": ["KB968930", "Q147222"],
        },
        "powershell_version": "2.0",
        "elevated": True,
        "process_64bit": False,
        "adapters": [
            adapter(
                index=1,
                interface_index=None,
                service_name="E100B",
                ip_addresses=["10.0.0.21"],
                ip_subnets=["255.255.255.0"],
                netbios=0,
            )
        ],
        "netsh_ipv4": {},
        "netsh_ipv6": {},
        "netsh_ipv4_addresses": None,
        "netsh_ipv6_addresses": None,
        "firewall": {
            "api": "netsh-firewall",
            "opmode_text": text("firewall/show_opmode_xp_en.txt"),
            "portopening_text": text("firewall/show_portopening_xp_en.txt"),
            "profiles": None,
            "current_profiles": None,
            "rules": [],
        },
        "iis": {
            "version": "6.0",
            "appcmd_sites_text": None,
            "metabase_sites": [
                {"id": "W3SVC/1", "name": "Default Web Site", "bindings": [":80:"]},
                {"id": "W3SVC/2", "name": "shop", "bindings": ["10.0.0.21:80:shop.example.com"]},
            ],
        },
        "http_listen_text": None,
        "events": [],
        "marker": {},
    }


def test_parse_facts_2008r2() -> None:
    facts = parse_facts(raw_2008r2())
    assert facts.os.family == "2008r2" and facts.os.is_64bit and facts.os.caps.weak_host
    assert facts.os.hotfixes == frozenset({"KB975808", "KB968930"})
    table = weak_host.table(facts)
    assert dict(table.v4) == {9: WeakHost(False, False), 39: WeakHost(False, False)}
    assert dict(table.v6) == {24: WeakHost(False, False)}
    assert weak_host.flags(facts, 39) == WeakHost(False, False) and weak_host.flags(facts, 24) is None

    nic, loop, spare = facts.adapters
    assert facts.loopbacks() == (loop,) and loop.is_loopback and not nic.is_loopback
    assert facts.physical_adapters() == (nic, spare)
    assert nic.addresses == (
        Address("10.0.0.11", "255.255.255.0"),
        Address("fe80::a1b5:7d4b:16a6:e7ad", "64"),
    )
    assert [(a.version, a.prefix_length) for a in nic.addresses] == [(4, 24), (6, 64)]
    assert loop.metric is None and loop.netbios is None and spare.mac is None and spare.addresses == ()

    assert facts.adapter_by_mac("02-00-4c-4f-4f-50") is loop
    assert facts.adapter_by_connection_id("local area connection") is nic
    assert facts.adapter_by_pnp_id("root\\net\\0000") is loop
    assert facts.adapters_with_address("10.0.0.11") == (nic,)
    assert facts.adapters_with_address("FE80::A1B5:7D4B:16A6:E7AD") == (nic,)
    assert facts.adapters_with_address("10.0.0.50") == ()
    assert facts.nic("address", "10.0.0.11") is nic and facts.nic("mac", "02-00-4c-4f-4f-50") is None
    assert facts.nic("name", "LOCAL AREA CONNECTION") is nic
    assert facts.dsr_loopback(["10.0.0.99"]) is loop  # through the marker
    assert nic.ipv4() == Address("10.0.0.11", "255.255.255.0")

    fw = facts.firewall
    assert (fw.api, fw.enabled, fw.current_profiles) == ("advfirewall", True, 1)
    assert dict(fw.profiles or {}) == {"domain": True, "private": True, "public": False}
    assert fw.rules[0].local_addresses == "10.0.0.50/255.255.255.255" and fw.port_openings == ()

    iis = iis_binding.iis(facts)
    assert iis.installed and iis.sites_known and len(iis.sites) == 4
    assert http_listen.listen_list(facts) == ("192.168.33.1", "127.0.0.0", "127.0.0.1")
    assert verify.events(facts)[0].event_id == 4199
    assert dict(facts.marker) == {"LoopbackPnpId": "ROOT\\NET\\0000"}


def test_parse_facts_2003() -> None:
    facts = parse_facts(raw_2003())
    assert facts.os.family == "2003" and not facts.os.caps.weak_host and not facts.os.is_64bit
    assert dict(weak_host.table(facts).v4) == {} and dict(weak_host.table(facts).v6) == {}
    (nic,) = facts.adapters
    assert nic.interface_index is None and facts.loopbacks() == ()

    fw = facts.firewall
    assert (fw.api, fw.enabled, fw.exceptions_enabled, fw.current_profiles) == (
        "netsh-firewall",
        True,
        True,
        None,
    )
    assert dict(fw.profiles or {}) == {"domain": True, "standard": True}
    assert dict(fw.interface_modes) == {"Local Area Connection": True}
    assert len(fw.port_openings) == 9 and fw.rules == ()

    assert iis_binding.iis(facts).version == "6.0"
    assert [s.bindings for s in iis_binding.iis(facts).sites] == [
        (Binding("http", "*", 80, ""),),
        (Binding("http", "10.0.0.21", 80, "shop.example.com"),),
    ]
    assert http_listen.listen_list(facts) is None


def test_iis_installed_but_unreadable_is_not_an_empty_site_list() -> None:
    raw = raw_2003()
    raw["iis"]["metabase_sites"] = None
    iis = iis_binding.iis(parse_facts(raw))
    assert iis.installed and not iis.sites_known and iis.sites == ()
    raw["iis"]["version"] = None
    assert iis_binding.iis(parse_facts(raw)).sites_known


def test_to_dict_is_json() -> None:
    for raw in (raw_2008r2(), raw_2003()):
        out = parse_facts(raw).to_dict()
        again = json.loads(json.dumps(out))
        assert again == out
    out = parse_facts(raw_2008r2()).to_dict()
    assert out["os"]["family"] == "2008r2"
    assert out["weak_host_v4"]["39"] == {"send": False, "receive": False}
    assert out["adapters"][1]["is_loopback"] is True
    assert out["iis"]["sites"][0]["bindings"][0]["is_all_unassigned"] is True
    assert out["os"]["hotfixes"] == ["KB968930", "KB975808"]


def set_path(raw: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    target: Any = raw
    for key in path[:-1]:
        target = target[key]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return raw


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("schema",), 2, "schema: expected 1, got 2"),
        (("os", "caption"), DELETE, "os.caption: missing"),
        (("os", "service_pack"), "1", "os.service_pack: expected an integer, got a string"),
        (("os", "service_pack"), True, "os.service_pack: expected an integer, got a boolean"),
        (("os", "version"), "6.4.9841", "os.version: unsupported Windows version"),
        (("os", "hotfixes"), ["KB1", 2], r"os.hotfixes\[1\]: expected a string, got an integer"),
        (("adapters", 2, "ip_addresses"), "10.0.0.1", r"adapters\[2\].ip_addresses: expected a list"),
        (("adapters", 0, "ip_subnets"), ["255.255.255.0"], r"adapters\[0\].ip_subnets: has 1 entries for 2"),
        (("adapters", 0, "ip_addresses"), ["10.0.0.300", "fe80::1"], r"adapters\[0\].ip_addresses\[0\]"),
        (("adapters", 0, "ip_subnets"), ["255.0.255.0", "64"], r"adapters\[0\].ip_subnets\[0\]"),
        (
            ("adapters", 1, "interface_index"),
            "39",
            r"adapters\[1\].interface_index: expected an integer or null",
        ),
        (("adapters", 1, "ip_enabled"), None, r"adapters\[1\].ip_enabled: expected a boolean, got null"),
        (("adapters",), {"0": {}}, "adapters: expected a list, got a map"),
        (
            ("netsh_ipv4", "9"),
            "Weak Host Sends : perhaps\nIfLuid : x\nIfIndex : 9\n",
            r"netsh_ipv4\['9'\]: .*perhaps",
        ),
        (("netsh_ipv4", "nine"), "x", r"netsh_ipv4\['nine'\]: key must be an interface index"),
        (
            ("netsh_ipv4", "39"),
            text("netsh/ipv4_show_interface_vista_kb949589_en.txt"),
            r"netsh_ipv4\['39'\]: netsh output is for IfIndex 9",
        ),
        (("netsh_ipv6",), None, "netsh_ipv6: expected a map, got null"),
        (("firewall", "api"), "ipfw", "firewall.api: expected 'netsh-firewall' or 'advfirewall'"),
        (("firewall", "profiles"), {"domain": True}, "firewall.profiles.private: missing"),
        (("firewall", "rules", 0, "protocol"), "TCP", r"firewall.rules\[0\].protocol: expected an integer"),
        (
            ("iis", "appcmd_sites_text"),
            "ERROR ( message:denied )\n",
            "iis.appcmd_sites_text: unexpected appcmd line",
        ),
        (("http_listen_text",), "Access is denied.\n", "http_listen_text: unexpected line"),
        (("events", 0, "event_id"), None, r"events\[0\].event_id: expected an integer, got null"),
        (("marker",), {"LoopbackPnpId": 3}, r"marker\['LoopbackPnpId'\]: expected a string"),
    ],
)
def test_malformed_facts_name_the_key_path(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(FactsError, match=message):
        parse_facts(set_path(raw_2008r2(), path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("firewall", "opmode_text"), None, "firewall.opmode_text: expected a string, got null"),
        (("firewall", "opmode_text"), "Ok.\n", "firewall.opmode_text: no firewall profile section"),
        (("firewall", "portopening_text"), "", "firewall.portopening_text: no port table"),
        (
            ("iis", "metabase_sites", 1, "bindings", 0),
            "shop:80",
            r"iis.metabase_sites\[1\].bindings\[0\]: malformed",
        ),
    ],
)
def test_malformed_2003_facts_name_the_key_path(path: tuple[Any, ...], value: Any, message: str) -> None:
    with pytest.raises(FactsError, match=message):
        parse_facts(set_path(raw_2003(), path, value))


def test_non_mapping_input() -> None:
    junk_inputs: list[Any] = [None, [], "facts", 3]  # what a broken transport could hand over
    for junk in junk_inputs:
        with pytest.raises(FactsError, match="facts: expected a map"):
            parse_facts(junk)


# --------------------------------------------------------------------------------------------
# Junk never escapes as anything but FactsError
# --------------------------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=20) | st.floats()
junk_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
facts_keys = st.sampled_from([*sorted(raw_2008r2().keys()), "extra"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(facts_keys, junk_values, max_size=14))
def test_junk_dicts_only_raise_facts_error(raw: dict[str, Any]) -> None:
    with contextlib.suppress(FactsError):
        parse_facts(raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


BASES = {"2008r2": raw_2008r2(), "2003": raw_2003()}
PATHS = {name: _paths(raw) for name, raw in BASES.items()}


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(BASES)), st.data(), junk_values)
def test_one_corrupted_field_only_raises_facts_error(base: str, data: st.DataObject, junk: Any) -> None:
    path = data.draw(st.sampled_from(PATHS[base]))
    raw = set_path(BASES[base], path, junk)
    try:
        parse_facts(raw)
    except FactsError as exc:
        assert str(exc)


@settings(max_examples=300)
@given(
    st.text(max_size=300), st.sampled_from([*sorted(NETSH_SAMPLES), "firewall/show_portopening_xp_en.txt"])
)
def test_text_parsers_only_raise_facts_error(junk: str, sample: str) -> None:
    spliced = text(sample)[: len(junk)] + junk
    for parser in (
        parse_netsh_interface,
        parse_firewall_opmode,
        parse_portopenings,
        parse_appcmd_sites,
        parse_http_listen,
    ):
        for candidate in (junk, spliced):
            with contextlib.suppress(FactsError):
                parser(candidate)


def test_label_as_wide_as_the_column_touches_the_colon() -> None:
    """The KB article prints its first example with a 32-wide column, so one label meets the colon."""
    lines = text("netsh/ipv4_show_interface_vista_kb949589_en.txt").splitlines()
    narrow = lines[:2] + [
        f"{ln.partition(':')[0].rstrip():<32}: {ln.partition(':')[2].strip()}" for ln in lines[2:]
    ]
    assert any(ln.startswith("Neighbor Unreachability Detecion:") for ln in narrow)
    sample = "\n".join(narrow).replace("Weak Host Sends", "Schwacher Host sendet")
    sample = sample.replace("Weak Host Receives", "Schwacher Host empfängt")
    assert parse_netsh_interface(set_line(sample, "Schwacher Host empfängt", "enabled")) == WeakHost(
        False, True
    )


# --------------------------------------------------------------------------------------------
# SkipAsSource in the whole facts
# --------------------------------------------------------------------------------------------


def test_skip_as_source_merges_ipv4_and_ipv6() -> None:
    facts = parse_facts(raw_2008r2())
    assert dict(skip_as_source.skip_flags(facts).flags) == {
        **IPADDRESS_SAMPLES["netsh/ipv4_show_ipaddresses_constructed.txt"],
        **IPADDRESS_SAMPLES["netsh/ipv6_show_addresses_win10_en.txt"],
    }
    assert skip_as_source.skip_flags(facts).of("10.0.0.50") is True
    assert skip_as_source.skip_flags(facts).of("2A03:7220:8083:C4C4::1014") is False
    assert skip_as_source.skip_flags(facts).of("fe80::bca3:1bf5:75db:1c7d%72") is False
    assert skip_as_source.skip_flags(facts).of("10.0.0.99") is None
    assert facts.to_dict()["skip_as_source"]["10.0.0.50"] is True


def test_skip_as_source_is_empty_on_2003() -> None:
    assert dict(skip_as_source.skip_flags(parse_facts(raw_2003())).flags) == {}


@pytest.mark.parametrize("key", ["netsh_ipv4_addresses", "netsh_ipv6_addresses"])
def test_skip_as_source_keys_may_be_missing(key: str) -> None:
    """Facts from a facts script that predates these keys read as null."""
    raw = raw_2008r2()
    del raw[key]
    flags = dict(skip_as_source.skip_flags(parse_facts(raw)).flags)
    assert ("10.0.0.50" in flags) == (key != "netsh_ipv4_addresses")
    raw = raw_2008r2()
    raw[key] = None
    assert dict(skip_as_source.skip_flags(parse_facts(raw)).flags) == flags


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("netsh_ipv4_addresses", 3, "netsh_ipv4_addresses: expected a string or null, got an integer"),
        ("netsh_ipv6_addresses", "Access is denied.\r\n", "netsh_ipv6_addresses: no address block"),
        (
            "netsh_ipv4_addresses",
            "Address 10.0.0.50 Parameters\n" + "-" * 57 + "\nInterface Luid : x\nSkip as Source : yes\n",
            r"netsh_ipv4_addresses: address 10.0.0.50: 'Skip as Source' has value 'yes'",
        ),
    ],
)
def test_malformed_address_listings_name_the_key(key: str, value: Any, message: str) -> None:
    with pytest.raises(FactsError, match=message):
        parse_facts(set_path(raw_2008r2(), (key,), value))


def _two_loopbacks(marker: dict[str, str]) -> Facts:
    """The 2008 R2 capture with a second loopback that holds the VIP, and `marker`."""
    raw = raw_2008r2()
    raw["adapters"].append(adapter(index=15, interface_index=44, connection_id="Old VIP", service_name="msloop",
                                   pnp_device_id="ROOT\\NET\\0001", ip_addresses=["10.0.0.50"],
                                   ip_subnets=["255.255.255.255"]))
    raw["marker"] = marker
    return parse_facts(raw)


@pytest.mark.parametrize(
    ("marker", "chosen"),
    [
        ({"LoopbackPnpId": "ROOT\\NET\\0000"}, "ROOT\\NET\\0000"),  # the marker wins over a VIP holder
        ({"LoopbackPnpId": "root\\net\\0000"}, "ROOT\\NET\\0000"),  # in any case
        ({}, "ROOT\\NET\\0001"),  # no marker: the loopback holding a VIP
        ({"LoopbackPnpId": "ROOT\\NET\\0009"}, "ROOT\\NET\\0001"),  # a marker naming a gone device
        # a marker naming a physical adapter is not a loopback: ignored
        ({"LoopbackPnpId": "PCI\\VEN_8086&DEV_100F&SUBSYS_075015AD&REV_01\\4&3AD87E0A&0&0888"}, "ROOT\\NET\\0001"),
    ],
)
def test_dsr_loopback_prefers_the_marker(marker: dict[str, str], chosen: str) -> None:
    found = _two_loopbacks(marker).dsr_loopback(["10.0.0.50"])
    assert found is not None and found.pnp_device_id == chosen


def test_created_loopback_needs_the_created_flag() -> None:
    assert _two_loopbacks({"LoopbackPnpId": "ROOT\\NET\\0000"}).created_loopback() is None
    made = _two_loopbacks({"LoopbackPnpId": "ROOT\\NET\\0000", "LoopbackCreated": "1"}).created_loopback()
    assert made is not None and made.pnp_device_id == "ROOT\\NET\\0000"
