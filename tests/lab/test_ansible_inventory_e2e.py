"""`dsrprep facts` on an INI inventory read through ansible-core: group_vars/ holds the connection
settings and the password (vault-encrypted), host_vars/ each host's address, through real pypsrp."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.vault import VaultLib, VaultSecret

from orchestrator.lab.fleet import LabFleet
from tests.clijson import cli

pytestmark = pytest.mark.lab

VAULT_PASSWORD = "lab-vault-Pa55"


@pytest.fixture(scope="module")
def fleet() -> Iterator[LabFleet]:
    with LabFleet.build(3, seed=7, profile="mixed") as running:
        yield running


def write_ini(fleet: LabFleet, folder: Path) -> Path:
    """The fleet's inventory as INI: groups in the INI file, `all` variables in group_vars/all.yml
    (the password vault-encrypted), each host's variables in host_vars/."""
    document: dict[str, Any] = fleet.inventory()["all"]
    all_vars = dict(document["vars"])
    password = all_vars.pop("ansible_password")
    vault = VaultLib([("default", VaultSecret(VAULT_PASSWORD.encode()))]).encrypt(password).decode()
    (folder / "group_vars").mkdir(parents=True)
    (folder / "host_vars").mkdir()
    (folder / "group_vars" / "all.yml").write_text(
        yaml.safe_dump(all_vars) + "ansible_password: !vault |\n" + textwrap.indent(vault, "  ")
    )
    lines: list[str] = []
    for group, body in document["children"].items():
        lines.append(f"[{group}]")
        for name, host_vars in body["hosts"].items():
            lines.append(name)
            (folder / "host_vars" / f"{name}.yml").write_text(yaml.safe_dump(host_vars))
        lines.append("")
    inventory = folder / "hosts.ini"
    inventory.write_text("\n".join(lines))
    return inventory


def test_facts_on_an_ini_inventory_with_a_vaulted_password(fleet: LabFleet, tmp_path: Path) -> None:
    inventory = write_ini(fleet, tmp_path / "inventory")
    password_file = tmp_path / "vault-password"
    password_file.write_text(VAULT_PASSWORD + "\n")
    runs = str(tmp_path / "runs")
    code, doc = cli("facts", str(inventory), "--vault-password-file", str(password_file), "--json", "--runs-dir", runs)
    assert code == 0, doc
    assert set(doc["hosts"]) == {h.name for h in fleet}
    for handle in fleet:
        entry = doc["hosts"][handle.name]
        assert entry["status"] == "ok", entry
        assert entry["facts"]["computer_name"] == handle.model.name
