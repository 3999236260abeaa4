"""Inventories read through ansible-core, the choice of loader, `--limit @file`, and credentials
precedence (--user, the default password, Kerberos)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
from ansible.parsing.vault import VaultLib, VaultSecret
from typer.testing import CliRunner

from orchestrator.ansible_inventory import INSTALL_HINT, choose_loader, load_any, load_with_ansible
from orchestrator.cli import app
from orchestrator.inventory import (
    Inventory,
    InventoryError,
    expand_limit_files,
    load_inventory,
    takes_default_password,
    with_credentials,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "ansible"
INI = DATA / "ini" / "hosts.ini"
YAML = DATA / "fleet.yml"
VAULT_PASSWORD = "vault-Pa55"
SECRET = "Db-Secret-9"


def by_name(inv: Inventory) -> dict[str, object]:
    return {h.name: h for h in inv.hosts}


def test_ini_with_group_and_host_vars_and_a_range_equals_the_yaml_fleet() -> None:
    ini = load_any(INI, env={})
    yaml = load_inventory(YAML)
    assert choose_loader(INI, "auto") == "ansible"
    assert choose_loader(YAML, "auto") == "builtin"
    assert [h.name for h in ini.hosts] == ["web01", "web02", "web03", "db01"]
    assert by_name(ini) == by_name(yaml)
    assert dict(ini.groups) == dict(yaml.groups)
    assert ini.host("web02").desired.metric == 100
    assert ini.host("db01").connection.auth == "kerberos"


def test_the_yaml_fleet_reads_the_same_through_ansible() -> None:
    assert by_name(load_with_ansible(YAML)) == by_name(load_inventory(YAML))


def vaulted(text: str) -> str:
    return VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))]).encrypt(text).decode()


def copy_fleet(tmp_path: Path) -> Path:
    folder = tmp_path / "fleet"
    for source in (DATA / "ini").rglob("*"):
        target = folder / source.relative_to(DATA / "ini")
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source.read_text())
    return folder / "hosts.ini"


def test_a_vault_encrypted_password_needs_the_vault_password_file(tmp_path: Path) -> None:
    inventory = copy_fleet(tmp_path)
    (inventory.parent / "host_vars" / "db01.yml").write_text(
        "ansible_host: 192.0.2.21\nansible_password: !vault |\n" + textwrap.indent(vaulted(SECRET), "  ")
    )
    password_file = tmp_path / "vault.txt"
    password_file.write_text(VAULT_PASSWORD + "\n")
    inv = load_any(inventory, vault_password_file=password_file, env={})
    assert inv.host("db01").connection.password == SECRET
    assert inv.host("web01").connection.password == "Fleet-Pa55"
    with pytest.raises(InventoryError) as raised:
        load_any(inventory, env={})  # no vault password: a problem naming the host and the variable
    assert f"{inventory}: host db01: ansible_password: " in str(raised.value)
    assert SECRET not in str(raised.value)
    password_file.write_text("not-the-vault-password\n")
    with pytest.raises(InventoryError, match="host db01: ansible_password"):
        load_any(inventory, vault_password_file=password_file, env={})


def test_lookup_env_is_ansibles_and_an_unset_variable_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = copy_fleet(tmp_path)
    (inventory.parent / "group_vars" / "db.yml").write_text(
        "ansible_psrp_auth: ntlm\ndsr_iis_sites: []\nansible_password: \"{{ lookup('env', 'DB_PASSWORD') }}\"\n"
    )
    monkeypatch.setenv("DB_PASSWORD", SECRET)
    assert load_any(inventory, env={}).host("db01").connection.password == SECRET
    monkeypatch.delenv("DB_PASSWORD")
    with pytest.raises(InventoryError, match="host db01: ansible_password: is empty once templated"):
        load_any(inventory, env={})
    checked = load_any(inventory, env={}, require_secrets=False).host("db01").connection
    assert checked.password is None


@pytest.mark.parametrize(
    ("pattern", "chosen"),
    [
        ("web*:&prod:!web03", ["web01", "web02"]),
        ("web*:&prod:!web02", ["web01"]),
        ("prod:!db", ["web01", "web02"]),
        ("web[0:1]", ["web01", "web02"]),  # Ansible's subscripts: not a glob range
        ("~web0[13]", ["web01", "web03"]),
        ("db01,web03", ["web03", "db01"]),
    ],
)
def test_limit_uses_ansible_patterns(pattern: str, chosen: list[str]) -> None:
    assert [h.name for h in load_any(INI, env={}).select(pattern)] == chosen


@pytest.mark.parametrize("pattern", ["web*:!wbe03", "nosuch", "prod:&db:&web", "!"])
def test_an_ansible_limit_that_names_nothing_or_leaves_nothing_is_an_error(pattern: str) -> None:
    with pytest.raises(InventoryError, match="limit"):
        load_any(INI, env={}).select(pattern)


def test_limit_files_hold_one_pattern_a_line(tmp_path: Path) -> None:
    retry = tmp_path / "retry"
    retry.write_text("web01\n\nweb03:&prod\n")
    pattern = expand_limit_files(f"@{retry},db01", lambda name: Path(name).read_text())
    assert pattern == "web01,web03,&prod,db01"
    for inv in (load_any(INI, env={}), load_inventory(YAML)):
        assert [h.name for h in inv.select(pattern)] == ["web01", "db01"]
    with pytest.raises(InventoryError, match="missing: --limit @file: file not found"):
        expand_limit_files("@missing", lambda name: Path(tmp_path / name).read_text())


def test_a_missing_limit_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["facts", str(YAML), "--limit", f"@{tmp_path / 'gone.txt'}"])
    assert result.exit_code == 2
    assert f"{tmp_path / 'gone.txt'}: --limit @file: file not found" in result.output


@pytest.mark.parametrize(
    ("make", "loader", "needs"),
    [
        (lambda d: d / "hosts.ini", "auto", True),
        (lambda d: d, "auto", True),  # a folder inventory
        (lambda d: d / "fleet.yml", "auto", False),
        (lambda d: d / "fleet.yml", "ansible", True),
        (lambda d: d / "fleet.yml", "builtin", False),
    ],
)
def test_without_the_extra_only_what_needs_ansible_says_how_to_install_it(
    tmp_path: Path, make: object, loader: str, needs: bool
) -> None:
    (tmp_path / "hosts.ini").write_text("[web]\nweb01\n")
    (tmp_path / "fleet.yml").write_text(YAML.read_text())
    path = make(tmp_path)  # type: ignore[operator]
    if not needs:
        assert choose_loader(path, loader, importable=lambda: False) == "builtin"
        return
    with pytest.raises(InventoryError) as raised:
        choose_loader(path, loader, importable=lambda: False)
    assert str(raised.value).startswith(str(path)) and INSTALL_HINT in str(raised.value)
    assert len(str(raised.value).splitlines()) == 1


def test_auto_sends_yaml_with_group_vars_or_vault_to_ansible(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(YAML.read_text())
    assert choose_loader(path, "auto", vault_password_file=tmp_path / "v") == "ansible"
    (tmp_path / "group_vars").mkdir()
    assert choose_loader(path, "auto") == "ansible"
    with pytest.raises(InventoryError, match="group_vars/ beside it are read by Ansible's loader"):
        choose_loader(path, "auto", importable=lambda: False)
    assert choose_loader(path, "builtin") == "builtin"


def test_an_ini_inventory_without_ansible_installed_is_one_line_and_exit_2() -> None:
    code = (
        "import sys; sys.modules['ansible'] = None\n"
        "from orchestrator.cli import main\n"
        f"sys.argv = ['dsrprep', 'inventory', 'check', {str(INI)!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{INI}: an INI (or other non-YAML) inventory is read by Ansible's loader, which is not installed: "
        f"{INSTALL_HINT} (ansible-core)"
    ]


# --- credentials precedence ---------------------------------------------------------------------


def test_the_inventory_user_wins_over_user_which_fills_the_others(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(YAML.read_text().replace("    ansible_user: admin\n", "").replace(
        "web02: {ansible_host: 192.0.2.12,", "web02: {ansible_host: 192.0.2.12, ansible_user: own,"))
    inv = with_credentials(load_inventory(path), user="cli-user")
    assert inv.host("web01").connection.user == "cli-user"
    assert inv.host("web02").connection.user == "own"
    assert load_inventory(path, default_user="cli-user").host("web02").connection.user == "own"


def test_the_default_password_fills_only_hosts_without_one_and_never_kerberos(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yml"
    path.write_text(YAML.read_text().replace("    ansible_password: Fleet-Pa55\n", "").replace(
        "web02: {ansible_host: 192.0.2.12,", "web02: {ansible_host: 192.0.2.12, ansible_password: own-pass,"))
    bare = load_inventory(path)
    assert [takes_default_password(h.connection) for h in bare.hosts] == [True, False, True, False]
    inv = with_credentials(bare, password="typed")
    web01, web02, db01 = (inv.host(n).connection for n in ("web01", "web02", "db01"))
    assert (web01.password, web01.password_source) == ("typed", "default")
    assert (web02.password, web02.password_source) == ("own-pass", "inventory")
    assert (db01.auth, db01.password, db01.password_source) == ("kerberos", None, None)  # the ticket cache
    certificate = replace(web01, auth="certificate", password=None, password_source=None)
    assert not takes_default_password(certificate)


def test_ask_pass_does_not_prompt_when_no_host_takes_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.cli import _default_password

    path = tmp_path / "fleet.yml"
    path.write_text(YAML.read_text().replace("    ansible_password: Fleet-Pa55\n", "").replace(
        "ansible_psrp_protocol: http\n", "ansible_psrp_protocol: http\n    ansible_psrp_auth: kerberos\n"))
    monkeypatch.setenv("DSRPREP_PASSWORD", "from-env")
    kerberos_only = load_inventory(path)
    assert _default_password(True, kerberos_only) is None  # no prompt: there is no terminal to answer it
    assert _default_password(False, kerberos_only) == "from-env"
    assert with_credentials(kerberos_only, password="from-env").host("web01").connection.password is None
