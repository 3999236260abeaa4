"""Inventory loading and validation: Ansible shape, precedence, connection names, passwords, --limit."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import desired as desired_module
from orchestrator import inventory as inventory_module
from orchestrator.desired import NicSelector, Vip
from orchestrator.inventory import Inventory, InventoryError, Problem, load_inventory

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "inventories"
SECRET = "Sup3r-S3cret!pw"


def write(tmp_path: Path, text: str, name: str = "inv.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kwargs: object) -> Inventory:
    return load_inventory(write(tmp_path, text), **kwargs)  # type: ignore[arg-type]


def problems(tmp_path: Path, text: str, **kwargs: object) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path, **kwargs)  # type: ignore[arg-type]
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


def one_host(host_vars: str, *, group_vars: str = "dsr_vips: [10.0.0.100]") -> str:
    """A single host web01 at 10.0.0.11 with extra host vars (YAML lines) and all-group vars."""
    hv = textwrap.indent(textwrap.dedent(host_vars).strip(), " " * 6) if host_vars.strip() else ""
    gv = textwrap.indent(textwrap.dedent(group_vars).strip(), " " * 4)
    address = "" if "ansible_host:" in host_vars else "      ansible_host: 10.0.0.11\n"
    return f"all:\n  vars:\n{gv}\n  hosts:\n    web01:\n{address}{hv}\n"


# --- the example and the data files -----------------------------------------------------------------


def test_example_inventory_loads_with_its_env_reference() -> None:
    inv = load_inventory(REPO / "inventory" / "example.yml", env={"DSRPREP_WEB_PASSWORD": SECRET})
    assert [h.name for h in inv.hosts] == ["web01", "web02", "web03", "web04", "intra01"]
    assert inv.groups["web"] == ("web01", "web02", "web03", "web04")
    assert inv.groups["web_2003"] == ("web01", "web02")
    assert inv.host("web01").groups == ("web", "web_2003")
    assert inv.host("web01").connection.password == SECRET
    assert inv.host("web01").connection.password_source == "env DSRPREP_WEB_PASSWORD"
    assert inv.host("web01").desired.skip_as_source is False  # web_2003 overrides all
    assert inv.host("web01").desired.devcon_path == "C:\\Tools\\devcon.exe"
    web03 = inv.host("web03").connection
    assert (web03.protocol, web03.port) == ("https", 5986)
    assert inv.host("web04").desired.nic == NicSelector("mac", "00:15:5D:0A:14:04")
    assert inv.host("intra01").desired.vips == (
        Vip("10.20.30.110", (80,), "tcp"),
        Vip("10.20.30.111", (8080,), "tcp"),
    )


def test_example_inventory_without_the_env_variable_names_it() -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(REPO / "inventory" / "example.yml", env={})
    assert str(info.value) == (
        f"{REPO / 'inventory' / 'example.yml'}: group all: ansible_password: refers to environment "
        "variable DSRPREP_WEB_PASSWORD, which is not set: export DSRPREP_WEB_PASSWORD"
    )


def test_example_and_docstring_document_every_dsr_option_and_default() -> None:
    # desired.py's docstring documents the variables declared there; the steps document their own.
    example = (REPO / "inventory" / "example.yml").read_text(encoding="utf-8")
    doc = desired_module.__doc__ or ""
    own = {v.name for v in desired_module.VARIABLES}
    for key in desired_module.known_keys():
        assert key in example, key
        assert key in doc or key not in own, key
    for key, default in desired_module.defaults().items():
        forms = _spellings(default)
        if key in own:
            doc_line = next(line for line in doc.splitlines() if line.startswith(key + " "))
            assert any(form in doc_line for form in forms), (key, forms)
        assert any(f"Default: {form}" in example for form in forms), (key, forms)


def _spellings(default: object) -> set[str]:
    """How a default may be written in YAML or in the docs: plain or JSON."""
    if isinstance(default, tuple):
        return {json.dumps(list(default))}
    return {json.dumps(default), str(default)}


def test_inventory_docstring_names_every_connection_variable() -> None:
    doc = inventory_module.__doc__ or ""
    for names in inventory_module._SETTING_VARS.values():
        for name in names:
            assert name in doc, name


def test_ansible_style_inventory_loads_unchanged() -> None:
    inv = load_inventory(DATA / "ansible_style.yml", env={"WIN_ADMIN_PASSWORD": SECRET})
    names = [h.name for h in inv.hosts]
    assert names == ["iis01.corp.example.com", "iis02.corp.example.com", "iis03.corp.example.com", "legacy07"]
    iis01 = inv.host("iis01.corp.example.com")
    assert iis01.connection.auth == "ntlm"  # first entry of "ntlm,kerberos"
    assert iis01.connection.protocol == "https"
    assert iis01.connection.port == 5986
    assert iis01.connection.cert_validation is False
    assert iis01.connection.operation_timeout == 40 and iis01.connection.read_timeout == 50
    assert iis01.desired.nic == NicSelector("name", "LAN")
    assert iis01.connection.password == SECRET
    legacy = inv.host("legacy07")
    assert (legacy.connection.address, legacy.connection.port) == ("10.1.2.7", 5985)
    assert legacy.connection.protocol == "http"
    assert inv.groups["ungrouped"] == ("legacy07",)


def test_many_problems_file_reports_each_one_line() -> None:
    with pytest.raises(InventoryError) as info:
        load_inventory(DATA / "many_problems.yml", env={})
    # {known}: the declared dsr_ variables, steps' own included, as the message lists them.
    known = ", ".join(desired_module.known_keys())
    text = (DATA / "many_problems.expected").read_text(encoding="utf-8").replace("{known}", known)
    expected = text.splitlines()
    path = str(DATA / "many_problems.yml")
    assert [line.removeprefix(path + ": ") for line in str(info.value).splitlines()] == expected


# --- defaults ---------------------------------------------------------------------------------------


def test_defaults_of_a_minimal_host(tmp_path: Path) -> None:
    inv = load(tmp_path, "all:\n  hosts:\n    10.0.0.11:\n      dsr_vips: [10.0.0.100]\n")
    host = inv.hosts[0]
    c = host.connection
    assert (c.address, c.port, c.protocol, c.auth) == ("10.0.0.11", 5985, "http", "negotiate")
    assert (c.cert_validation, c.ca_cert, c.message_encryption) == (True, None, "auto")
    assert (c.connection_timeout, c.read_timeout, c.operation_timeout) == (30, 30, 20)
    assert c.configuration_name == "Microsoft.PowerShell"
    assert c.user is None and c.password is None and c.password_source is None
    assert c.url == "http://10.0.0.11:5985/wsman"
    d = host.desired
    assert d.vips == (Vip("10.0.0.100", (80,), "tcp"),)
    assert d.nic == NicSelector("address", "10.0.0.11")
    resolved = d.to_dict()
    for key, default in desired_module.defaults().items():
        field = key.removeprefix("dsr_")
        if field in resolved:
            expected = list(default) if isinstance(default, tuple) else default
            assert resolved[field] == expected, key
    assert host.groups == ("ungrouped",)
    assert dict(inv.groups) == {"all": ("10.0.0.11",), "ungrouped": ("10.0.0.11",)}


@pytest.mark.parametrize(
    ("host_vars", "protocol", "port"),
    [
        ("", "http", 5985),
        ("ansible_port: 5986", "https", 5986),
        ("ansible_port: 15985", "http", 15985),
        ("ansible_psrp_protocol: https", "https", 5986),
        ("ansible_psrp_protocol: http\nansible_port: 5986", "http", 5986),
        ("ansible_winrm_scheme: https", "https", 5986),
        ("ansible_winrm_transport: ssl", "https", 5986),
    ],
)
def test_protocol_and_port_defaults(tmp_path: Path, host_vars: str, protocol: str, port: int) -> None:
    c = load(tmp_path, one_host(host_vars)).hosts[0].connection
    assert (c.protocol, c.port) == (protocol, port)


def test_null_connection_values_mean_the_default(tmp_path: Path) -> None:
    text = one_host(
        "ansible_port:\nansible_password:", group_vars="dsr_vips: [10.0.0.100]\nansible_port: 5986"
    )
    c = load(tmp_path, text, default_password=SECRET).hosts[0].connection
    assert (c.port, c.protocol, c.password_source) == (5985, "http", "default")


def test_ipv6_address_url_has_brackets(tmp_path: Path) -> None:
    c = load(tmp_path, one_host("ansible_host: 'FD00::0011'\nansible_port: 5986")).hosts[0].connection
    assert c.address == "fd00::11"
    assert c.url == "https://[fd00::11]:5986/wsman"


# --- precedence -------------------------------------------------------------------------------------

PRECEDENCE = """
all:
  vars:
    dsr_vips: [10.0.0.100]
    dsr_metric: 1
    dsr_loopback_name: from-all
    dsr_firewall: disable
    ansible_user: all-user
  children:
    parent:
      vars:
        dsr_metric: 2
        dsr_loopback_name: from-parent
        ansible_user: parent-user
      children:
        child:
          vars:
            dsr_metric: 3
            ansible_user: child-user
          hosts:
            web01:
              ansible_host: 10.0.0.11
              dsr_metric: 4
            web02:
              ansible_host: 10.0.0.12
"""


def test_precedence_host_over_child_over_parent_over_all(tmp_path: Path) -> None:
    inv = load(tmp_path, PRECEDENCE)
    web01, web02 = inv.hosts
    assert web01.desired.metric == 4  # host
    assert web02.desired.metric == 3  # child group
    assert web02.desired.loopback_name == "from-parent"
    assert web02.desired.firewall == "disable"  # all
    assert web02.connection.user == "child-user"
    assert web01.groups == ("parent", "child")
    assert inv.groups["parent"] == ("web01", "web02")


SIBLINGS = """
all:
  vars:
    dsr_vips: [10.0.0.100]
  children:
    zeta:
      vars: {{dsr_metric: 26, dsr_loopback_name: zeta}}
      hosts: {{web01: {{ansible_host: 10.0.0.11}}}}
    alpha:
      vars: {{dsr_metric: 1, dsr_loopback_name: alpha, dsr_firewall: skip}}
      hosts: {{web01: }}
    nested:
      children:
        deep:
          vars: {{dsr_loopback_name: deep}}
          hosts: {{web01: }}
    {extra}
"""


def test_siblings_merge_alphabetically_and_deeper_groups_win(tmp_path: Path) -> None:
    desired = load(tmp_path, SIBLINGS.format(extra="")).hosts[0].desired
    assert desired.metric == 26  # zeta after alpha, whatever the file order
    assert desired.loopback_name == "deep"  # depth 2 beats depth 1
    assert desired.firewall == "skip"


def test_group_priority_reorders_siblings(tmp_path: Path) -> None:
    text = SIBLINGS.format(extra="").replace(
        "vars: {dsr_metric: 1, dsr_loopback_name: alpha, dsr_firewall: skip}",
        "vars: {dsr_metric: 1, dsr_loopback_name: alpha, dsr_firewall: skip, ansible_group_priority: 10}",
    )
    assert load(tmp_path, text).hosts[0].desired.metric == 1


def test_same_host_in_several_groups_is_one_host(tmp_path: Path) -> None:
    inv = load(tmp_path, SIBLINGS.format(extra=""))
    assert [h.name for h in inv.hosts] == ["web01"]
    assert inv.hosts[0].groups == ("zeta", "alpha", "nested", "deep")
    for group in ("zeta", "alpha", "nested", "deep", "all"):
        assert inv.groups[group] == ("web01",)


def test_host_vars_from_several_mentions_merge(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      hosts:
        web01: {dsr_metric: 7}
      children:
        g:
          hosts:
            web01: {ansible_host: 10.0.0.11, dsr_metric: 5, dsr_firewall: skip}
    """
    desired = load(tmp_path, text).hosts[0].desired
    # Ansible walks a group's children before its hosts, so the all: hosts mention comes last.
    assert desired.metric == 7
    assert desired.firewall == "skip"


def test_group_defined_in_two_places_merges(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      children:
        web:
          vars: {dsr_metric: 9}
          hosts: {web01: {ansible_host: 10.0.0.11}}
        dc1:
          children:
            web:
              vars: {dsr_firewall: skip}
              hosts: {web02: {ansible_host: 10.0.0.12}}
    """
    inv = load(tmp_path, text)
    assert inv.groups["web"] == ("web01", "web02")
    assert inv.groups["dc1"] == ("web01", "web02")  # one group: all of web is now inside dc1
    for host in inv.hosts:
        assert (host.desired.metric, host.desired.firewall) == (9, "skip")


def test_unknown_variables_are_ignored(tmp_path: Path) -> None:
    inv = load(
        tmp_path,
        one_host('ansible_shell_type: powershell\nansible_become_method: runas\napp_pool: "{{ whatever }}"'),
    )
    assert inv.hosts[0].name == "web01"


def test_host_ranges_and_port_suffix(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100], dsr_nic: {name: LAN}}
      hosts:
        web[01:03].corp:
        db[a:b]:
        app07.corp:5986:
    """
    inv = load(tmp_path, text)
    assert [h.name for h in inv.hosts] == [
        "web01.corp",
        "web02.corp",
        "web03.corp",
        "dba",
        "dbb",
        "app07.corp",
    ]
    app = inv.host("app07.corp").connection
    assert (app.port, app.protocol) == (5986, "https")


# --- winrm names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "auth", "protocol"),
    [
        ("ntlm", "ntlm", "http"),
        ("kerberos", "kerberos", "http"),
        ("credssp", "credssp", "http"),
        ("'ntlm,kerberos'", "ntlm", "http"),
        ("[kerberos, ntlm]", "kerberos", "http"),
        ("ssl", "basic", "https"),
        ("certificate", "certificate", "https"),
    ],
)
def test_winrm_transport_maps_to_auth(tmp_path: Path, transport: str, auth: str, protocol: str) -> None:
    extra = ""
    if auth == "certificate":
        extra = (
            "\nansible_winrm_scheme: https\nansible_winrm_cert_pem: c.pem\nansible_winrm_cert_key_pem: c.key"
        )
    c = load(tmp_path, one_host(f"ansible_winrm_transport: {transport}{extra}")).hosts[0].connection
    assert (c.auth, c.protocol) == (auth, protocol)


def test_winrm_plaintext_is_basic_and_needs_the_insecure_opt_in(tmp_path: Path) -> None:
    c = (
        load(
            tmp_path,
            one_host(
                "ansible_connection: winrm\nansible_winrm_transport: plaintext\n"
                "ansible_winrm_message_encryption: never\ndsr_allow_insecure_basic: yes"
            ),
        )
        .hosts[0]
        .connection
    )
    assert (c.auth, c.protocol, c.message_encryption, c.allow_insecure_basic) == (
        "basic",
        "http",
        "never",
        True,
    )


def test_winrm_names_map_to_the_same_settings(tmp_path: Path) -> None:
    c = (
        load(
            tmp_path,
            one_host(
                """
            ansible_connection: ansible.builtin.winrm
            ansible_winrm_scheme: https
            ansible_winrm_server_cert_validation: ignore
            ansible_winrm_ca_trust_path: /etc/ca.pem
            ansible_winrm_message_encryption: always
            ansible_winrm_operation_timeout_sec: 60
            ansible_winrm_read_timeout_sec: 70
            ansible_winrm_user: CORP\\admin
            """
            ),
        )
        .hosts[0]
        .connection
    )
    assert (c.protocol, c.port, c.cert_validation, c.ca_cert) == ("https", 5986, False, "/etc/ca.pem")
    assert (c.message_encryption, c.operation_timeout, c.read_timeout) == ("always", 60, 70)
    assert c.user == "CORP\\admin"


def test_psrp_names_win_over_winrm_names(tmp_path: Path) -> None:
    text = one_host(
        """
        ansible_winrm_transport: ntlm
        ansible_psrp_auth: kerberos
        ansible_winrm_scheme: https
        ansible_psrp_protocol: http
        ansible_winrm_server_cert_validation: ignore
        ansible_psrp_cert_validation: validate
        ansible_winrm_operation_timeout_sec: 60
        ansible_psrp_operation_timeout: 10
        ansible_winrm_read_timeout_sec: 70
        ansible_psrp_read_timeout: 15
        ansible_winrm_message_encryption: never
        ansible_psrp_message_encryption: always
        ansible_winrm_ca_trust_path: /winrm.pem
        ansible_psrp_ca_cert: /psrp.pem
        """
    )
    c = load(tmp_path, text).hosts[0].connection
    assert (c.auth, c.protocol, c.cert_validation) == ("kerberos", "http", True)
    assert (c.operation_timeout, c.read_timeout, c.message_encryption, c.ca_cert) == (
        10,
        15,
        "always",
        "/psrp.pem",
    )


def test_psrp_name_on_a_group_beats_winrm_name_on_the_host(tmp_path: Path) -> None:
    text = one_host(
        "ansible_winrm_transport: ntlm", group_vars="dsr_vips: [10.0.0.100]\nansible_psrp_auth: kerberos"
    )
    assert load(tmp_path, text).hosts[0].connection.auth == "kerberos"


# --- passwords --------------------------------------------------------------------------------------


def test_inventory_password_wins_over_default(tmp_path: Path) -> None:
    c = (
        load(tmp_path, one_host(f"ansible_password: '{SECRET}'"), default_password="other")
        .hosts[0]
        .connection
    )
    assert (c.password, c.password_source) == (SECRET, "inventory")


def test_default_password_fills_hosts_without_one(tmp_path: Path) -> None:
    c = load(tmp_path, one_host(""), default_password=SECRET).hosts[0].connection
    assert (c.password, c.password_source) == (SECRET, "default")


@pytest.mark.parametrize(
    "reference",
    [
        "\"{{ lookup('env', 'WEB_PW') }}\"",
        '\'{{ lookup("env", "WEB_PW") }}\'',
        "\"{{lookup('env','WEB_PW')}}\"",
        "\"{{  lookup( 'env' , 'WEB_PW' )  }}\"",
        "env:WEB_PW",
        "'env:WEB_PW'",
    ],
)
def test_password_env_references(tmp_path: Path, reference: str) -> None:
    c = load(tmp_path, one_host(f"ansible_password: {reference}"), env={"WEB_PW": SECRET}).hosts[0].connection
    assert (c.password, c.password_source) == (SECRET, "env WEB_PW")


def test_missing_env_reference_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    lines = problems(
        tmp_path, one_host("ansible_password: env:WEB_PW"), env={"OTHER": "x"}, default_password="d"
    )
    assert lines == [
        "host web01: ansible_password: refers to environment variable WEB_PW, which is not set: export WEB_PW"
    ]


def test_env_is_not_read_from_the_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEB_PW", SECRET)
    lines = problems(tmp_path, one_host("ansible_password: env:WEB_PW"))
    assert "WEB_PW" in lines[0]


def test_password_never_shows(tmp_path: Path) -> None:
    inv = load(tmp_path, one_host(f"ansible_password: '{SECRET}'\nansible_user: admin"))
    host = inv.hosts[0]
    for text in (repr(host), str(host), repr(host.connection), repr(inv), json.dumps(inv.describe())):
        assert SECRET not in text
    described = inv.describe()[0]
    assert (described["password"], described["password_source"]) == ("set", "inventory")
    assert load(tmp_path, one_host("")).describe()[0]["password"] == "not set"


def test_bad_password_values_are_not_echoed(tmp_path: Path) -> None:
    lines = problems(tmp_path, one_host("ansible_password: 012345"))
    assert lines == [
        "host web01: ansible_password: is not text: quote the password in YAML "
        "(unquoted, 0123 or yes become numbers or booleans)"
    ]
    lines = problems(tmp_path, one_host('ansible_password: "{{ vault_pw }}"'))
    assert "vault_pw" not in lines[0] and "template" in lines[0]


def test_unsafe_tagged_password_is_taken_literally(tmp_path: Path) -> None:
    c = load(tmp_path, one_host("ansible_password: !unsafe 'a{{b'")).hosts[0].connection
    assert c.password == "a{{b"


def test_vault_values_are_refused_clearly(tmp_path: Path) -> None:
    lines = problems(tmp_path, one_host("ansible_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162"))
    assert lines[0].startswith("host web01: ansible_password: is encrypted with ansible-vault")


# --- validation errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        (
            "ansible_host: 10.0.0.300",
            "ansible_host: '10.0.0.300' looks like an IP address but is not a valid one",
        ),
        (
            "ansible_host: 'fe80::zz'",
            "ansible_host: 'fe80::zz' looks like an IP address but is not a valid one",
        ),
        ("ansible_host: 'bad host!'", "ansible_host: 'bad host!' is neither an IP address nor a DNS name"),
        ("ansible_port: 70000", "ansible_port: 70000 is not a port (1-65535)"),
        ("ansible_psrp_port: 0", "ansible_psrp_port: 0 is not a port (1-65535)"),
        ("ansible_port: http", "ansible_port: 'http' is not a port (a whole number 1-65535)"),
        ("ansible_psrp_auth: digest", "ansible_psrp_auth: 'digest' is not one of: negotiate, ntlm, kerberos"),
        (
            "ansible_winrm_transport: digest",
            "ansible_winrm_transport: 'digest' is not one of: ntlm, kerberos",
        ),
        ("ansible_psrp_protocol: ftp", "ansible_psrp_protocol: 'ftp' is not one of: http, https"),
        (
            "ansible_psrp_cert_validation: maybe",
            "ansible_psrp_cert_validation: 'maybe' is not one of: validate",
        ),
        (
            "ansible_psrp_message_encryption: sometimes",
            "ansible_psrp_message_encryption: 'sometimes' is not one",
        ),
        (
            "ansible_psrp_connection_timeout: 0",
            "ansible_psrp_connection_timeout: 0 is not a timeout in seconds",
        ),
        (
            "ansible_psrp_operation_timeout: -5",
            "ansible_psrp_operation_timeout: -5 is not a timeout in seconds",
        ),
        (
            "ansible_psrp_read_timeout: 20",
            "ansible_psrp_read_timeout: 20 must be greater than the operation timeout",
        ),
        (
            "ansible_psrp_read_timeout: 30\nansible_psrp_operation_timeout: 45",
            "ansible_psrp_read_timeout: 30 must be greater than the operation timeout (45",
        ),
        ("ansible_connection: ssh", "ansible_connection: 'ssh' is not supported"),
        ("ansible_user: 42", "ansible_user: 42 is not a non-empty text value"),
        ('ansible_user: "{{ admin_user }}"', "ansible_user: '{{ admin_user }}' is a template"),
        ("dsr_vips: [10.0.0.256]", "dsr_vips[0].address: '10.0.0.256' is not an IPv4 or IPv6 address"),
        ("dsr_vips: [10.0.0.0/24]", "dsr_vips[0].address: '10.0.0.0/24' has a prefix length"),
        ("dsr_vips: []", "dsr_vips: [] is not a non-empty list of VIPs"),
        (
            "dsr_vips: [{address: 10.0.0.100, ports: [eighty]}]",
            "dsr_vips[0].ports[0]: 'eighty' is not a port",
        ),
        ("dsr_vips: [{address: 10.0.0.100, ports: eighty}]", "dsr_vips[0].ports[0]: 'eighty' is not a port"),
        (
            "dsr_vips: [{address: 10.0.0.100, protocol: icmp}]",
            "dsr_vips[0].protocol: 'icmp' is not one of: tcp",
        ),
        ("dsr_vips: [{addr: 10.0.0.100}]", "dsr_vips[0]: unknown key(s) addr"),
        ("dsr_vips: [10.0.0.100, 10.0.0.101, '10.0.0.100']", "dsr_vips[2]: 10.0.0.100 is listed twice"),
        ("dsr_vips: ['fd00::1', 'FD00:0::1']", "dsr_vips[1]: fd00::1 is listed twice"),
        ("dsr_vips: [10.0.0.11]", "dsr_vips[0]: 10.0.0.11 is this host's own address (ansible_host)"),
        ("dsr_nic: {address: 10.0.0.999}", "dsr_nic: '10.0.0.999' is not an IPv4 or IPv6 address"),
        ("dsr_nic: {address: 10.0.0.11, name: LAN}", "dsr_nic: "),
        ("dsr_nic: {mac: 00-15-5D-0A}", "dsr_nic: '00-15-5D-0A' is not a MAC address"),
        ("dsr_nic: {ifindex: 3}", "dsr_nic: unknown NIC selector 'ifindex'"),
        ("dsr_metric: 0", "dsr_metric: 0 is not an interface metric (1-9999)"),
        ("dsr_metric: 10000", "dsr_metric: 10000 is not an interface metric (1-9999)"),
        ("dsr_metric: true", "dsr_metric: True is not an interface metric"),
        ("dsr_skip_as_source: perhaps", "dsr_skip_as_source: 'perhaps' is not true or false"),
        ("dsr_firewall: off", "dsr_firewall: False is not one of: rule, disable, skip"),
        ("dsr_subnet_check: strict", "dsr_subnet_check: 'strict' is not one of: warn, error, off"),
        ("dsr_devcon_path: tools\\devcon.exe", "dsr_devcon_path: 'tools\\\\devcon.exe' is not an absolute"),
        ('dsr_devcon_path: "C:\\tools\\new.exe"', "dsr_devcon_path: 'C:\\tools\\new.exe' holds control"),
        ("dsr_iis_sites: [Default Web Site, '']", "dsr_iis_sites[1]: '' is not a non-empty text value"),
        ("dsr_verify_peer: web01", "dsr_verify_peer: names this host itself"),
        ("dsr_verify_peer: web2", "dsr_verify_peer: 'web2' is not a host of this inventory"),
        ("dsr_vip: [10.0.0.100]", "dsr_vip: unknown dsr_ variable: did you mean dsr_vips?"),
        ("dsr_loopback: X", "dsr_loopback: unknown dsr_ variable: did you mean dsr_loopback_name?"),
        (
            "dsr_nic: {name: Loop}\ndsr_loopback_name: loop",
            "dsr_loopback_name: 'loop' is also dsr_nic's name",
        ),
    ],
)
def test_validation_errors_name_file_host_and_field(tmp_path: Path, host_vars: str, expected: str) -> None:
    lines = problems(tmp_path, one_host(host_vars))
    assert any(line.startswith("host web01: " + expected) for line in lines), lines


def test_subnet_check_accepts_yaml_off(tmp_path: Path) -> None:
    assert load(tmp_path, one_host("dsr_subnet_check: off")).hosts[0].desired.subnet_check == "off"


def test_a_host_without_vip(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    web01:\n      ansible_host: 10.0.0.11\n"
    assert problems(tmp_path, text) == [
        "host web01: dsr_vips: this host has no VIP: set dsr_vips on the host or one of its groups"
    ]


def test_dns_ansible_host_needs_dsr_nic(tmp_path: Path) -> None:
    lines = problems(tmp_path, one_host("ansible_host: web01.corp.example.com"))
    assert lines == [
        "host web01: dsr_nic: ansible_host web01.corp.example.com is a DNS name, so the NIC holding the real "
        "IP is unknown: set dsr_nic to {address: <real IP>}, {mac: ...} or {name: <connection name>}"
    ]
    inv = load(tmp_path, one_host("ansible_host: web01.corp.example.com\ndsr_nic: {address: 10.0.0.11}"))
    assert inv.hosts[0].desired.nic == NicSelector("address", "10.0.0.11")


def test_vip_equal_to_another_hosts_address(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      hosts:
        web01: {ansible_host: 10.0.0.11}
        web02: {ansible_host: 10.0.0.12, dsr_vips: [10.0.0.100, 10.0.0.11]}
        web03: {ansible_host: web03.corp, dsr_nic: {address: 10.0.0.13}}
        web04: {ansible_host: 10.0.0.14, dsr_vips: ['10.0.0.13']}
    """
    assert problems(tmp_path, text) == [
        "host web02: dsr_vips[1]: 10.0.0.11 is the address of host web01 (ansible_host): "
        "a VIP must be an address no server owns",
        "host web04: dsr_vips[0]: 10.0.0.13 is the address of host web03 (dsr_nic address): "
        "a VIP must be an address no server owns",
    ]


def test_two_names_for_one_endpoint(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      hosts:
        web01: {ansible_host: 10.0.0.11}
        web01-alias: {ansible_host: 10.0.0.11, ansible_port: 5985}
        web01-https: {ansible_host: 10.0.0.11, ansible_port: 5986}
    """
    assert problems(tmp_path, text) == [
        "host web01-alias: ansible_host: 10.0.0.11:5985 is also host web01's endpoint: "
        "one server listed under two names would be prepared twice"
    ]


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        (
            "ansible_psrp_auth: basic",
            "ansible_psrp_message_encryption: 'auto' (the default) cannot work with Basic auth over http",
        ),
        (
            "ansible_psrp_auth: basic\nansible_psrp_message_encryption: always",
            "ansible_psrp_message_encryption: 'always' cannot work with basic auth",
        ),
        (
            "ansible_psrp_auth: basic\nansible_psrp_message_encryption: never",
            "dsr_allow_insecure_basic: Basic auth over http sends credentials and scripts in clear",
        ),
        (
            "ansible_psrp_auth: certificate\nansible_psrp_certificate_pem: c.pem\n"
            "ansible_psrp_certificate_key_pem: c.key",
            "ansible_psrp_protocol: certificate auth needs https",
        ),
        (
            "ansible_psrp_auth: certificate\nansible_psrp_protocol: https",
            "ansible_psrp_certificate_pem: certificate auth needs the client certificate and key files",
        ),
        (
            "ansible_winrm_transport: ssl\nansible_psrp_protocol: http",
            "ansible_psrp_protocol: is http but ansible_winrm_transport ssl means Basic over https",
        ),
    ],
)
def test_auth_encryption_combinations(tmp_path: Path, host_vars: str, expected: str) -> None:
    lines = problems(tmp_path, one_host(host_vars))
    assert any(line.startswith("host web01: " + expected) for line in lines), lines


def test_basic_over_http_with_never_and_opt_in_loads(tmp_path: Path) -> None:
    text = one_host(
        "ansible_psrp_auth: basic\nansible_psrp_message_encryption: never\ndsr_allow_insecure_basic: true"
    )
    c = load(tmp_path, text).hosts[0].connection
    assert (c.auth, c.protocol, c.message_encryption, c.allow_insecure_basic) == (
        "basic",
        "http",
        "never",
        True,
    )


def test_basic_over_https_needs_no_opt_in(tmp_path: Path) -> None:
    c = load(tmp_path, one_host("ansible_psrp_auth: basic\nansible_port: 5986")).hosts[0].connection
    assert (c.auth, c.protocol, c.allow_insecure_basic) == ("basic", "https", False)


def test_group_value_problem_is_reported_once_at_the_group(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      children:
        web:
          vars: {dsr_metric: high, ansible_port: 99999}
          hosts:
            web01: {ansible_host: 10.0.0.11}
            web02: {ansible_host: 10.0.0.12}
    """
    assert problems(tmp_path, text) == [
        "group web: dsr_metric: 'high' is not an interface metric (a whole number 1-9999)",
        "group web: ansible_port: 99999 is not a port (1-65535)",
    ]


def test_problems_are_collected_not_stopped_at_the_first(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100], dsr_bogus: 1}
      hosts:
        web01: {ansible_host: 10.0.0.300}
        web02: {ansible_host: 10.0.0.12, ansible_port: 0}
        web03: {ansible_host: 10.0.0.13, dsr_vips: [{address: 10.0.0.1, ports: [x]}]}
    """
    lines = problems(tmp_path, text)
    assert [line.split(":")[0] for line in lines] == ["group all", "host web01", "host web02", "host web03"]


def test_shape_and_variable_problems_are_reported_together(tmp_path: Path) -> None:
    text = """
    all:
      vars: {dsr_vips: [10.0.0.100]}
      children:
        web:
          dsr_metric: 5
          hosts:
            web01: {ansible_host: 10.0.0.11, ansible_port: 0}
    """
    assert problems(tmp_path, text) == [
        "group web: dsr_metric: unexpected key: a group holds only hosts:, children: and vars: "
        "(variables go under vars:)",
        "host web01: ansible_port: 0 is not a port (1-65535)",
    ]


# --- file and shape errors --------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert str(info.value) == f"{path}: file not found"
    assert info.value.problems == [Problem(None, None, "file not found")]


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    lines = problems(tmp_path, "all:\n  hosts:\n    web01: {ansible_host: 10.0.0.11\n    web02:\n")
    assert len(lines) == 1
    assert lines[0].startswith("line 4, column 10: invalid YAML"), lines


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = "all:\n  hosts:\n    web01:\n      dsr_metric: 1\n    web01:\n      dsr_metric: 2\n"
    assert problems(tmp_path, text) == [
        "line 5, column 5: invalid YAML: duplicate key 'web01' (first at line 3)"
    ]


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    text = """
    all:
      vars:
        base: &base {dsr_metric: 5, dsr_firewall: skip}
      hosts:
        web01: {<<: *base, dsr_metric: 6, ansible_host: 10.0.0.11, dsr_vips: [10.0.0.100]}
    """
    desired = load(tmp_path, text).hosts[0].desired
    assert (desired.metric, desired.firewall) == (6, "skip")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty: an inventory starts with 'all:'"),
        ("web:\n  hosts:\n    web01:\n", "the top level must be 'all:' (Ansible's YAML inventory shape)"),
        ("- all\n", "the top level must be 'all:' (Ansible's YAML inventory shape)"),
        (
            "all:\n  hosts: {web01: {dsr_vips: [10.0.0.100]}}\nweb:\n  hosts:\n",
            "top-level key(s) web outside 'all:': move them under all: children:",
        ),
        ("all:\n  vars: {dsr_vips: [10.0.0.100]}\n", "no hosts: list them under all: hosts: or a group"),
        (
            "all:\n  hosts:\n    - web01\n",
            "group all: hosts: is not a mapping of host names (end each name with ':')",
        ),
        (
            "all:\n  children:\n    web:\n      dsr_vips: [10.0.0.100]\n",
            "group web: dsr_vips: unexpected key: a group holds only hosts:, children: and vars: "
            "(variables go under vars:)",
        ),
        ("all:\n  children:\n    web: [web01]\n", "group web: ['web01'] is not a group"),
        (
            "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n            a:\n"
            "          hosts: {h1: }\n",
            "group a: children: is its own ancestor: break the children: loop",
        ),
        ("all:\n  children:\n    all:\n", "group all: children: 'all' cannot be a child group"),
        (
            "all:\n  hosts:\n    web[03:1]:\n",
            "group all: hosts: 'web[03:1]': range [03:1] has ends of different",
        ),
    ],
)
def test_shape_errors(tmp_path: Path, text: str, expected: str) -> None:
    lines = problems(tmp_path, text)
    assert any(line.startswith(expected) for line in lines), lines


# --- selection --------------------------------------------------------------------------------------

FLEET = """
all:
  vars: {dsr_vips: [10.0.0.100]}
  children:
    web:
      children:
        web_2003:
          hosts:
            web01: {ansible_host: 10.0.0.11}
            web02: {ansible_host: 10.0.0.12}
        web_2008:
          hosts:
            web03: {ansible_host: 10.0.0.13}
            web04: {ansible_host: 10.0.0.14}
    canary:
      hosts:
        web03:
        app01: {ansible_host: 10.0.0.21}
"""


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (None, ["web01", "web02", "web03", "web04", "app01"]),
        ("all", ["web01", "web02", "web03", "web04", "app01"]),
        ("web02", ["web02"]),
        ("app01,web01", ["web01", "app01"]),  # inventory order, not pattern order
        ("web_2008", ["web03", "web04"]),
        ("web", ["web01", "web02", "web03", "web04"]),
        ("web0[13]", ["web01", "web03"]),
        ("*01", ["web01", "app01"]),
        ("web:!web_2003", ["web03", "web04"]),
        ("web,!web03", ["web01", "web02", "web04"]),
        ("web:&canary", ["web03"]),
        ("!canary", ["web01", "web02", "web04"]),
        ("&web_2008", ["web03", "web04"]),
        ("~web0[24]", ["web02", "web04"]),
        (" web01 , web02 ", ["web01", "web02"]),
    ],
)
def test_select(tmp_path: Path, pattern: str | None, expected: list[str]) -> None:
    inv = load(tmp_path, FLEET)
    assert [h.name for h in inv.select(pattern)] == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("app1", "limit: 'app1' matches no host or group (did you mean app01?)"),
        ("web,!canry", "limit: 'canry' matches no host or group (did you mean canary?)"),
        ("web,!web09", "limit: 'web09' matches no host or group (did you mean web04?)"),
        ("web_2003:&canary", "limit: 'web_2003:&canary' leaves no host selected"),
        (
            "~web[",
            "limit: '~web[' is not a valid regular expression: unterminated character set at position 3",
        ),
        # Only separators, or nothing (an unset shell variable): never the whole fleet.
        ("", "limit: '' selects nothing: it names no host or group (leave --limit out to act on every host)"),
        (",", "limit: ',' selects nothing: it names no host or group (leave --limit out to act on every host)"),
        (":::", "limit: ':::' selects nothing: it names no host or group (leave --limit out to act on every host)"),
        (" , : ", "limit: ':' matches no host or group"),  # with commas, a colon is part of a term
        ("web,!", "limit: 'web,!' selects nothing: the term(s) '!' name nothing (leave --limit out to act on "
                  "every host)"),
        ("~", "limit: '~' selects nothing: the term(s) '~' name nothing (leave --limit out to act on every host)"),
    ],
)
def test_select_errors(tmp_path: Path, pattern: str, expected: str) -> None:
    inv = load(tmp_path, FLEET)
    with pytest.raises(InventoryError) as info:
        inv.select(pattern)
    assert str(info.value) == f"{inv.path}: {expected}"


def test_host_lookup(tmp_path: Path) -> None:
    inv = load(tmp_path, FLEET)
    assert inv.groups["all"] == ("web01", "web02", "web03", "web04", "app01")
    assert inv.groups["canary"] == ("web03", "app01")
    assert inv.host("web03").groups == ("web", "web_2008", "canary")
    with pytest.raises(InventoryError, match="no host named 'web3'"):
        inv.host("web3")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_select_by_names_is_the_named_subset_in_inventory_order(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    inv = _fleet(tmp_path_factory)
    names = [h.name for h in inv.hosts]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    excluded = data.draw(st.lists(st.sampled_from(chosen), unique=True, max_size=len(chosen) - 1))
    separator = data.draw(st.sampled_from([",", ":"]))
    pattern = separator.join(chosen + ["!" + n for n in excluded])
    assert [h.name for h in inv.select(pattern)] == [n for n in names if n in chosen and n not in excluded]


_FLEET_CACHE: dict[str, Inventory] = {}


def _fleet(factory: pytest.TempPathFactory) -> Inventory:
    if "fleet" not in _FLEET_CACHE:
        path = factory.mktemp("fleet") / "fleet.yml"
        path.write_text(textwrap.dedent(FLEET), encoding="utf-8")
        _FLEET_CACHE["fleet"] = load_inventory(path)
    return _FLEET_CACHE["fleet"]


# --- round trips and types --------------------------------------------------------------------------


def _usable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Addresses no VIP can be (loopback, multicast, link-local...) are refused as VIPs.
    return desired_module.vip_refusal(str(ip)) is None


addresses = st.ip_addresses().filter(_usable)


@settings(max_examples=60, deadline=None)
@given(
    host=addresses,
    vip=addresses,
    port=st.integers(1, 65535),
    vip_ports=st.lists(st.integers(1, 65535), min_size=1, max_size=5),
    upper=st.booleans(),
)
def test_address_and_port_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    host: ipaddress.IPv4Address | ipaddress.IPv6Address,
    vip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int,
    vip_ports: list[int],
    upper: bool,
) -> None:
    written_host = host.exploded.upper() if upper else str(host)
    written_vip = vip.exploded.upper() if upper else str(vip)
    text = (
        "all:\n  hosts:\n    h1:\n"
        f"      ansible_host: '{written_host}'\n      ansible_port: {port}\n"
        f"      dsr_vips: [{{address: '{written_vip}', ports: {vip_ports}}}]\n"
    )
    path = tmp_path_factory.mktemp("rt") / "inv.yml"
    path.write_text(text, encoding="utf-8")
    if vip == host:
        with pytest.raises(InventoryError, match="this host's own address"):
            load_inventory(path)
        return
    h = load_inventory(path).hosts[0]
    assert h.connection.address == str(host)
    assert h.connection.port == port
    assert h.connection.protocol == ("https" if port == 5986 else "http")
    bracketed = f"[{host}]" if host.version == 6 else str(host)
    assert h.connection.url == f"{h.connection.protocol}://{bracketed}:{port}/wsman"
    assert h.desired.vips == (Vip(str(vip), tuple(sorted(set(vip_ports))), "tcp"),)
    assert h.desired.vips[0].version == vip.version
    assert h.desired.nic == NicSelector("address", str(host))


@pytest.mark.parametrize(
    "written", ["00-15-5d-0a-14-04", "00:15:5D:0A:14:04", "00155D0A1404", "00:15:5d:0a:14:04"]
)
def test_mac_is_normalized(tmp_path: Path, written: str) -> None:
    nic = load(tmp_path, one_host(f"dsr_nic: {{mac: '{written}'}}")).hosts[0].desired.nic
    assert nic == NicSelector("mac", "00:15:5D:0A:14:04")


def test_vip_forms(tmp_path: Path) -> None:
    text = one_host(
        "dsr_vips: [10.0.0.100, {address: 10.0.0.101, ports: [443, 80, 443]}, "
        "{address: 'FD00::0100', ports: 53, protocol: UDP}]"
    )
    assert load(tmp_path, text).hosts[0].desired.vips == (
        Vip("10.0.0.100", (80,), "tcp"),
        Vip("10.0.0.101", (80, 443), "tcp"),
        Vip("fd00::100", (53,), "udp"),
    )


def test_iis_sites(tmp_path: Path) -> None:
    assert load(tmp_path, one_host("dsr_iis_sites: []")).hosts[0].desired.iis_sites == ()
    sites = load(tmp_path, one_host("dsr_iis_sites: [Shop, shop, Api]")).hosts[0].desired.iis_sites
    assert sites == ("Shop", "Api")


def test_hosts_are_frozen_and_hashable(tmp_path: Path) -> None:
    inv = load(tmp_path, one_host("ansible_password: x"))
    host = inv.hosts[0]
    assert len({host, host, dataclasses.replace(host)}) == 1
    assert hash(host.connection) == hash(dataclasses.replace(host.connection))
    with pytest.raises(dataclasses.FrozenInstanceError):
        host.connection.port = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        inv.groups["x"] = ()  # type: ignore[index]


def test_checking_tolerates_an_unset_password_variable(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(
        "all:\n  vars:\n    ansible_password: \"{{ lookup('env', 'NOT_SET_ANYWHERE_X') }}\"\n"
        "    dsr_vips: [10.0.0.50]\n  hosts:\n    web1:\n      ansible_host: 10.0.0.11\n"
    )
    with pytest.raises(InventoryError, match="NOT_SET_ANYWHERE_X"):
        load_inventory(path, env={})
    inv = load_inventory(path, env={}, require_secrets=False)
    (described,) = inv.describe()
    assert described["password"] == "not set"
    assert described["password_source"] == "env NOT_SET_ANYWHERE_X (not set)"


# --- the other transport options of Ansible's psrp plugin, and warnings ------------------------------


def test_psrp_transport_options_default_like_ansible(tmp_path: Path) -> None:
    inv = load(tmp_path, one_host(""))
    c = inv.hosts[0].connection
    assert (c.path, c.max_envelope_size, c.reconnection_retries, c.reconnection_backoff) == ("wsman", 153600, 0, 2.0)
    assert (c.proxy, c.ignore_proxy) == (None, False)
    negotiate = (c.negotiate_delegate, c.negotiate_hostname_override, c.negotiate_send_cbt, c.negotiate_service)
    assert negotiate == (False, None, True, "WSMAN")
    assert inv.warnings == () and inv.warning_lines() == []


def test_psrp_transport_options_parse(tmp_path: Path) -> None:
    host_vars = """
    ansible_psrp_path: /custom/wsman/
    ansible_psrp_max_envelope_size: "512000"
    ansible_psrp_reconnection_retries: 2
    ansible_psrp_reconnection_backoff: "0.5"
    ansible_psrp_proxy: http://proxy.corp:3128
    ansible_psrp_ignore_proxy: no
    ansible_psrp_negotiate_delegate: yes
    ansible_psrp_negotiate_hostname_override: web01.corp.example.com
    ansible_psrp_negotiate_send_cbt: false
    ansible_psrp_negotiate_service: HTTP
    """
    inv = load(tmp_path, one_host(host_vars))
    c = inv.hosts[0].connection
    assert (c.path, c.max_envelope_size, c.reconnection_retries, c.reconnection_backoff) == (
        "custom/wsman", 512000, 2, 0.5,
    )
    assert (c.proxy, c.ignore_proxy) == ("http://proxy.corp:3128", False)
    negotiate = (c.negotiate_delegate, c.negotiate_hostname_override, c.negotiate_send_cbt, c.negotiate_service)
    assert negotiate == (True, "web01.corp.example.com", False, "HTTP")
    assert c.url == "http://10.0.0.11:5985/custom/wsman"
    described = inv.describe()[0]
    assert described["endpoint"] == c.url
    assert (described["path"], described["proxy"], described["negotiate_service"]) == (
        "custom/wsman", "http://proxy.corp:3128", "HTTP",
    )
    assert inv.warnings == ()


def test_psrp_names_win_over_winrm_and_older_names_for_the_new_options(tmp_path: Path) -> None:
    host_vars = """
    ansible_winrm_path: winrm
    ansible_psrp_path: psrp
    ansible_winrm_kerberos_delegation: false
    ansible_psrp_negotiate_delegate: true
    ansible_winrm_kerberos_hostname_override: winrm.corp
    ansible_psrp_negotiate_hostname_override: psrp.corp
    ansible_winrm_send_cbt: true
    ansible_psrp_negotiate_send_cbt: false
    ansible_psrp_connection_backoff: 9
    ansible_psrp_reconnection_backoff: 1
    """
    c = load(tmp_path, one_host(host_vars)).hosts[0].connection
    assert (c.path, c.negotiate_delegate, c.negotiate_hostname_override) == ("psrp", True, "psrp.corp")
    assert (c.negotiate_send_cbt, c.reconnection_backoff) == (False, 1.0)
    older = load(tmp_path, one_host("ansible_psrp_connection_backoff: 9\nansible_winrm_path: winrm"))
    assert (older.hosts[0].connection.reconnection_backoff, older.hosts[0].connection.path) == (9.0, "winrm")


@pytest.mark.parametrize(
    ("host_vars", "expected"),
    [
        ("ansible_psrp_path: 'a b'", "ansible_psrp_path: 'a b' is not a URL path (like wsman)"),
        ("ansible_winrm_path: /", "ansible_winrm_path: '/' is not a URL path"),
        ("ansible_psrp_path: 'wsman?x=1'", "ansible_psrp_path: 'wsman?x=1' is not a URL path"),
        (
            "ansible_psrp_max_envelope_size: 1024",
            "ansible_psrp_max_envelope_size: 1024 is not an envelope size in bytes (>= 32768)",
        ),
        (
            "ansible_psrp_max_envelope_size: 150KB",
            "ansible_psrp_max_envelope_size: '150KB' is not an envelope size in bytes",
        ),
        ("ansible_psrp_reconnection_retries: -1", "ansible_psrp_reconnection_retries: -1 is not a number of retries"),
        ("ansible_psrp_reconnection_retries: true", "ansible_psrp_reconnection_retries: True is not a number"),
        (
            "ansible_psrp_reconnection_backoff: soon",
            "ansible_psrp_reconnection_backoff: 'soon' is not a backoff in seconds (a number >= 0)",
        ),
        ("ansible_psrp_reconnection_backoff: -2", "ansible_psrp_reconnection_backoff: -2 is not a backoff"),
        ("ansible_psrp_connection_backoff: .nan", "ansible_psrp_connection_backoff: nan is not a backoff"),
        (
            "ansible_psrp_proxy: proxy.corp:3128",
            "ansible_psrp_proxy: 'proxy.corp:3128' is not an http:// or https:// proxy URL",
        ),
        ("ansible_psrp_proxy: socks5://proxy:1080", "ansible_psrp_proxy: 'socks5://proxy:1080' is not an http://"),
        ("ansible_psrp_proxy: 'http://proxy:99999'", "ansible_psrp_proxy: 'http://proxy:99999' is not an http://"),
        ("ansible_psrp_proxy: 'http://'", "ansible_psrp_proxy: 'http://' is not an http://"),
        ("ansible_psrp_ignore_proxy: maybe", "ansible_psrp_ignore_proxy: 'maybe' is not true or false"),
        ("ansible_psrp_negotiate_delegate: 2", "ansible_psrp_negotiate_delegate: 2 is not true or false"),
        ("ansible_winrm_kerberos_delegation: sure", "ansible_winrm_kerberos_delegation: 'sure' is not true"),
        ("ansible_winrm_send_cbt: sometimes", "ansible_winrm_send_cbt: 'sometimes' is not true or false"),
        ("ansible_psrp_negotiate_send_cbt: ''", "ansible_psrp_negotiate_send_cbt: '' is not true or false"),
        (
            "ansible_psrp_negotiate_hostname_override: 'bad host!'",
            "ansible_psrp_negotiate_hostname_override: 'bad host!' is not a host name",
        ),
        (
            "ansible_winrm_kerberos_hostname_override: 42",
            "ansible_winrm_kerberos_hostname_override: 42 is not a non-empty text value",
        ),
        (
            "ansible_psrp_negotiate_service: HTTP/web01",
            "ansible_psrp_negotiate_service: 'HTTP/web01' is not an SPN service class",
        ),
        ("ansible_psrp_configuration_name: ''", "ansible_psrp_configuration_name: '' is not a non-empty text"),
        ('ansible_psrp_proxy: "{{ proxy_url }}"', "ansible_psrp_proxy: '{{ proxy_url }}' is a template"),
    ],
)
def test_new_option_errors_name_file_host_and_field(tmp_path: Path, host_vars: str, expected: str) -> None:
    lines = problems(tmp_path, one_host(host_vars))
    assert any(line.startswith("host web01: " + expected) for line in lines), lines


def test_a_bad_group_value_of_a_new_option_is_reported_at_the_group(tmp_path: Path) -> None:
    lines = problems(tmp_path, one_host("", group_vars="dsr_vips: [10.0.0.100]\nansible_psrp_max_envelope_size: 0"))
    assert lines == ["group all: ansible_psrp_max_envelope_size: 0 is not an envelope size in bytes (>= 32768)"]


def test_proxy_credentials_never_show(tmp_path: Path) -> None:
    inv = load(tmp_path, one_host("ansible_psrp_proxy: http://svc:hunter2@proxy.corp:3128"))
    c = inv.hosts[0].connection
    assert c.proxy == "http://svc:hunter2@proxy.corp:3128"  # pypsrp needs it whole
    assert "hunter2" not in repr(c) and "hunter2" not in repr(inv)
    assert inv.describe()[0]["proxy"] == "http://svc:***@proxy.corp:3128"
    assert "hunter2" not in json.dumps(inv.describe())
    lines = problems(tmp_path, one_host("ansible_psrp_proxy: ftp://svc:hunter2@proxy.corp:21"))
    assert lines == ["host web01: ansible_psrp_proxy: 'ftp://svc:***@proxy.corp:21' is not an http:// or https:// "
                     "proxy URL (like http://proxy.corp:3128)"]


def test_unsupported_psrp_and_winrm_variables_are_warnings_not_errors(tmp_path: Path) -> None:
    text = """
    all:
      vars:
        dsr_vips: [10.0.0.100]
        ansible_psrp_credssp_minimum_version: 5
        ansible_winrm_kinit_mode: managed
      hosts:
        web01: {ansible_host: 10.0.0.11, ansible_psrp_operation_timout: 30}
        web02: {ansible_host: 10.0.0.12, ansible_winrm_kinit_mode: ~}
    """
    inv = load(tmp_path, text)
    assert [h.name for h in inv.hosts] == ["web01", "web02"]
    assert inv.host("web01").connection.operation_timeout == 20  # the misspelt value changed nothing
    unsupported = "is not supported by dsrprep and has no effect: remove it (inventory/example.yml lists the "
    assert [line.removeprefix(f"{inv.path}: ") for line in inv.warning_lines()] == [
        f"group all: ansible_psrp_credssp_minimum_version: {unsupported}connection variables dsrprep reads)",
        f"group all: ansible_winrm_kinit_mode: {unsupported}connection variables dsrprep reads)",
        "host web01: ansible_psrp_operation_timout: is not supported by dsrprep and has no effect: "
        "did you mean ansible_psrp_operation_timeout?",
        f"host web02: ansible_winrm_kinit_mode: {unsupported}connection variables dsrprep reads)",
    ]
    assert all(w.field and w.field.startswith("ansible_") for w in inv.warnings)


def test_ansible_variables_of_other_connections_stay_silent(tmp_path: Path) -> None:
    host_vars = "ansible_shell_type: powershell\nansible_become_method: runas\nansible_python3_interpreter: x"
    assert load(tmp_path, one_host(host_vars)).warnings == ()


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("ansible_pasword", "did you mean ansible_password?"),
        ("ansible_hots", "did you mean ansible_host?"),
        ("ansible_conection", "did you mean ansible_connection?"),
        ("ansible_shel_type", "did you mean ansible_shell_type?"),
        ("ansible_facts", "inventory/example.yml lists the variables dsrprep reads"),
    ],
)
def test_unknown_ansible_variables_are_warnings_with_the_closest_name(
    tmp_path: Path, variable: str, hint: str
) -> None:
    inv = load(tmp_path, one_host(f"{variable}: x"))
    assert [line.removeprefix(f"{inv.path}: ") for line in inv.warning_lines()] == [
        f"host web01: {variable}: is not an Ansible variable dsrprep knows, and has no effect: {hint}"
    ]


def test_settings_without_effect_are_warnings(tmp_path: Path) -> None:
    host_vars = """
    ansible_psrp_protocol: https
    ansible_psrp_auth: basic
    ansible_psrp_negotiate_service: HTTP
    ansible_winrm_kerberos_delegation: true
    ansible_psrp_proxy: http://proxy.corp:3128
    ansible_psrp_ignore_proxy: true
    """
    inv = load(tmp_path, one_host(host_vars))
    assert inv.hosts[0].connection.negotiate_service == "HTTP"  # still what the user wrote
    basic = "has no effect with basic auth: it applies to negotiate, ntlm and kerberos only"
    assert [line.removeprefix(f"{inv.path}: ") for line in inv.warning_lines()] == [
        f"host web01: ansible_winrm_kerberos_delegation: {basic}",
        f"host web01: ansible_psrp_negotiate_service: {basic}",
        "host web01: ansible_psrp_ignore_proxy: has no effect: ansible_psrp_proxy is set, and that proxy is used",
    ]
    quiet = load(tmp_path, one_host("ansible_psrp_auth: kerberos\nansible_psrp_negotiate_service: HTTP"))
    assert quiet.warnings == ()


def test_inventory_check_prints_each_warning(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrator.cli import app

    path = write(tmp_path, one_host("ansible_winrm_kinit_mode: managed"))
    warning = (
        f"{path}: host web01: ansible_winrm_kinit_mode: is not supported by dsrprep and has no effect: "
        "remove it (inventory/example.yml lists the connection variables dsrprep reads)"
    )
    result = CliRunner().invoke(app, ["inventory", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"WARNING: {warning}" in result.output
    result = CliRunner().invoke(app, ["inventory", "check", "--json", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["warnings"] == [warning]
    assert f"WARNING: {warning}" in result.stderr


def test_an_operation_timeout_above_winrm_max_timeout_is_a_warning(tmp_path: Path) -> None:
    inv = load(tmp_path, one_host("ansible_psrp_operation_timeout: 61\nansible_psrp_read_timeout: 70"))
    assert inv.hosts[0].connection.operation_timeout == 61  # still used: a host may have raised MaxTimeoutms
    (warning,) = inv.warnings
    assert warning.field == "ansible_psrp_operation_timeout" and "MaxTimeoutms (60 s" in warning.message
    at_limit = load(tmp_path, one_host("ansible_psrp_operation_timeout: 60\nansible_psrp_read_timeout: 70"))
    assert at_limit.warnings == ()


def test_the_psrp_password_names_are_read_and_win_over_the_winrm_ones(tmp_path: Path) -> None:
    for name in ("ansible_psrp_pass", "ansible_psrp_password"):
        text = one_host(f"ansible_winrm_password: from-winrm\n{name}: from-psrp")
        inv = load(tmp_path, text)
        assert inv.hosts[0].connection.password == "from-psrp"
        assert inv.warnings == ()
