"""What an inventory may not be: too large, not a regular file, nested too deeply, too many hosts;
VIPs that can never be VIPs; environment references that name no usable variable."""

from __future__ import annotations

import ipaddress
import os
import textwrap
import threading
from pathlib import Path

import pytest

from orchestrator import inventory as inventory_module
from orchestrator.inventory import InventoryError, load_inventory

SECRET = "Pa$$w0rd-not-shown"


def problems(path: Path, **kwargs: object) -> list[str]:
    with pytest.raises(InventoryError) as info:
        load_inventory(path, **kwargs)  # type: ignore[arg-type]
    lines = str(info.value).splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


def one_host(tmp_path: Path, host_vars: str) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  vars:\n    dsr_vips: [10.0.0.100]\n  hosts:\n    web01:\n      ansible_host: 10.0.0.11\n"
                    + textwrap.indent(host_vars, " " * 6) + "\n", encoding="utf-8")
    return path


# --- the file ---------------------------------------------------------------------------------------


def test_a_file_above_the_size_limit_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    # Not even YAML: had it been parsed, the message would be a YAML error.
    path.write_bytes(b"all: [" * (inventory_module.MAX_INVENTORY_BYTES // 6 + 1))
    assert problems(path) == ["is larger than 2 MiB, the most dsrprep reads: split the fleet into several inventories"]


def test_a_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    path = one_host(tmp_path, "")
    text = path.read_bytes()
    path.write_bytes(text + b"#" * (inventory_module.MAX_INVENTORY_BYTES - len(text)))
    assert [h.name for h in load_inventory(path).hosts] == ["web01"]


def test_dev_zero_is_refused_at_once() -> None:
    assert problems(Path("/dev/zero")) == ["is a device, pipe or socket, not an inventory file"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "inv.yml"
    os.mkfifo(fifo)
    found: list[list[str]] = []
    reader = threading.Thread(target=lambda: found.append(problems(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    if reader.is_alive():  # it blocked: let it go by opening the FIFO for writing
        with open(fifo, "wb"):
            pass
        reader.join()
        pytest.fail("reading the inventory waited for a writer on a FIFO")
    assert found == [["is a device, pipe or socket, not an inventory file"]]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path) == ["is a directory, not an inventory file"]


def test_a_nul_in_the_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (line,) = problems(tmp_path / "a\0b.yml")
    assert line.startswith("cannot read the file: ") and "null" in line


def test_text_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_bytes(b"all:\n  hosts:\n    web\xff01:\n")
    (line,) = problems(path)
    assert line.startswith("cannot read the file: not UTF-8 text")


@pytest.mark.parametrize("flow", [True, False])
def test_deep_nesting_is_refused_naming_the_line(tmp_path: Path, flow: bool) -> None:
    depth = 5000 if flow else 1500  # past Python's recursion limit, and within the size limit
    path = tmp_path / "deep.yml"
    if flow:
        path.write_text("all:\n  vars:\n    x: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
    else:
        path.write_text("all:\n" + "".join(f"{' ' * (i + 1)}k{i}:\n" for i in range(depth)), encoding="utf-8")
    (line,) = problems(path)
    assert line.startswith("line ") and line.endswith(
        f"invalid YAML: mappings and lists nested deeper than {inventory_module.MAX_NESTING} levels")


def test_nesting_at_the_limit_loads(tmp_path: Path) -> None:
    # all (1) > vars (2) > x (3) > lists up to the limit
    lists = inventory_module.MAX_NESTING - 3
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  vars:\n    dsr_vips: [10.0.0.100]\n    x: {'[' * lists}{']' * lists}\n"
                    "  hosts:\n    web01: {ansible_host: 10.0.0.11}\n", encoding="utf-8")
    assert [h.name for h in load_inventory(path).hosts] == ["web01"]


def test_more_hosts_than_the_limit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    limit = inventory_module.MAX_HOSTS
    path.write_text(f"all:\n  vars:\n    dsr_vips: [10.0.0.100]\n  hosts:\n    'a[1:{limit}]':\n    b1:\n",
                    encoding="utf-8")
    assert problems(path) == [f"more than {limit} hosts, the most dsrprep takes in one inventory: split the fleet "
                              "into several inventories"]


def test_a_range_product_is_refused_before_it_is_expanded(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  vars:\n    dsr_vips: [10.0.0.100]\n  hosts:\n    'a[0:9999]b[0:9999]c[0:9999]':\n",
                    encoding="utf-8")
    lines = problems(path)
    assert lines[0] == "group all: hosts: 'a[0:9999]b[0:9999]c[0:9999]': expands to 100000000 hosts (at most 10000)"


# --- VIPs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vip", "why"),
    [
        ("127.0.0.1", "a loopback address never leaves the host"),
        ("127.3.2.1", "a loopback address never leaves the host"),
        ("::1", "a loopback address never leaves the host"),
        ("255.255.255.255", "the limited broadcast address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("224.0.0.5", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("169.254.10.20", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("::ffff:10.0.0.100", "an IPv4-mapped IPv6 address: write the IPv4 address itself"),
    ],
)
def test_addresses_that_can_never_be_vips(tmp_path: Path, vip: str, why: str) -> None:
    path = one_host(tmp_path, f"dsr_vips: ['{vip}']")
    (line,) = problems(path)
    canonical = str(ipaddress.ip_address(vip))
    assert line.startswith(f"host web01: dsr_vips[0].address: {canonical} cannot be a VIP: {why}"), line


@pytest.mark.parametrize("vip", ["10.0.0.100", "192.0.2.10", "2001:db8::100", "100.64.0.1", "fd00::10"])
def test_unicast_vips_load(tmp_path: Path, vip: str) -> None:
    host = load_inventory(one_host(tmp_path, f"dsr_vips: ['{vip}']")).hosts[0]
    assert [v.address for v in host.desired.vips] == [vip]


# --- environment references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reference", "name"),
    [
        ("env:BAD-NAME", "BAD-NAME"),
        ("env:1ST", "1ST"),
        ("'env:'", ""),
        ("'env: WEB_PW'", " WEB_PW"),
        ("\"{{ lookup('env', 'BAD-NAME') }}\"", "BAD-NAME"),
        ("\"{{ lookup('env', '') }}\"", ""),
    ],
)
@pytest.mark.parametrize("checking", [True, False])
def test_an_invalid_variable_name_is_an_error_naming_it(
    tmp_path: Path, reference: str, name: str, checking: bool
) -> None:
    path = one_host(tmp_path, f"ansible_password: {reference}")
    env = {"BAD-NAME": SECRET, "1ST": SECRET, "WEB_PW": SECRET}
    lines = problems(path, env=env, require_secrets=not checking)
    assert lines == [f"host web01: ansible_password: refers to environment variable {name!r}, which is not a valid "
                     "name (letters, digits and _, not starting with a digit); a literal password that starts with "
                     "'env:' is tagged !unsafe"]


def test_an_unset_variable_is_an_error_never_a_literal_password(tmp_path: Path) -> None:
    path = one_host(tmp_path, "ansible_password: \"{{ lookup('env', 'NOT_SET_X') }}\"")
    assert problems(path, env={}, default_password="d") == [
        "host web01: ansible_password: refers to environment variable NOT_SET_X, which is not set: export NOT_SET_X"
    ]


def test_a_literal_password_starting_with_env_is_tagged_unsafe(tmp_path: Path) -> None:
    path = one_host(tmp_path, "ansible_password: !unsafe 'env:BAD-NAME'")
    connection = load_inventory(path).hosts[0].connection
    assert (connection.password, connection.password_source) == ("env:BAD-NAME", "inventory")


def test_the_documented_limits_are_the_enforced_ones() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    docstring = inventory_module.__doc__ or ""
    mib = inventory_module.MAX_INVENTORY_BYTES // 2**20
    hosts = f"{inventory_module.MAX_HOSTS:,}".replace(",", " ")
    for text in (readme, " ".join(docstring.split())):
        assert f"at most **{mib} MiB**" in text or f"at most {mib} MiB" in text
        assert f"at most {inventory_module.MAX_NESTING} levels deep" in " ".join(text.split())
        assert f"at most {hosts} hosts" in " ".join(text.split())


def test_each_problem_is_one_line_whatever_the_names_hold(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text('all:\n  hosts:\n    "web\\n01":\n      ansible_port: "\\e[31m"\n    "web\\u202e02":\n'
                    '      ansible_port: 0\n  children:\n    "g\\r1": {vars: "x\\ny"}\n', encoding="utf-8")
    lines = problems(path)
    assert "group 'g\\r1': vars: is not a mapping of variable: value" in lines
    assert "host 'web\\n01': ansible_port: '\\x1b[31m' is not a port (a whole number 1-65535)" in lines
    assert "host 'web\\u202e02': ansible_port: 0 is not a port (1-65535)" in lines  # a right-to-left override
    assert all(line.isprintable() for line in lines), lines


def test_a_name_inside_a_message_cannot_break_the_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text('all:\n  hosts:\n    "web\\n01": {ansible_host: 10.0.0.11, dsr_vips: [10.0.0.50]}\n'
                    '    web02: {ansible_host: 10.0.0.12, dsr_vips: [10.0.0.11]}\n', encoding="utf-8")
    assert problems(path) == ["host web02: dsr_vips[0]: 10.0.0.11 is the address of host web\\n01 (ansible_host): "
                              "a VIP must be an address no server owns"]
