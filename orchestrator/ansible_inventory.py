"""Inventories read through ansible-core's own inventory API (the optional extra `dsrprep[ansible]`),
and the choice between that loader and the built-in YAML one.

With ansible-core, an inventory means here exactly what it means to Ansible: INI files, host ranges,
`group_vars/` and `host_vars/` folders beside the inventory, vault-encrypted values (with a vault
password file), templates and lookups such as `{{ lookup('env', 'X') }}`, inventory plugins, and
`--limit` with Ansible's pattern semantics. Ansible resolves each host's variables (its precedence,
its templating); the values then go through dsrprep's one mapping of variables to a Host
(`inventory.build_inventory`: connection variables, `dsr_*` variables, validation, warnings).

Which loader reads an inventory (`--inventory-loader`): `builtin` the YAML loader of inventory.py;
`ansible` ansible-core; `auto` (the default) ansible-core for whatever the built-in loader would read
differently from Ansible (a folder, an INI or other non-YAML file, group_vars/ or host_vars/ beside
the file, an inventory plugin's configuration, vault-encrypted values, a vault password file given),
else the built-in loader. Without ansible-core, such an inventory is an error saying how to install it.

ansible is imported here only, and only when an inventory is read through it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.inventory import (
    MAX_INVENTORY_BYTES,
    Inventory,
    InventoryError,
    Problem,
    build_inventory,
    literal,
    load_inventory,
)

__all__ = [
    "INSTALL_HINT",
    "LOADERS",
    "ansible_importable",
    "choose_loader",
    "load_any",
    "load_with_ansible",
]

LOADERS = ("auto", "ansible", "builtin")
INSTALL_HINT = "pip install 'dsrprep[ansible]'"
_YAML_SUFFIXES = (".yml", ".yaml", ".json")
# What only Ansible's loader reads in a YAML file: an inventory plugin's configuration, vaulted values.
_PLUGIN_CONFIG = re.compile(r"^plugin\s*:", re.MULTILINE)
_VAULTED = re.compile(r"!vault\b")
# Variables that name values dsrprep reads; the others never reach the mapping.
_PREFIXES = ("ansible_", "dsr_")


def ansible_importable() -> bool:
    """Whether ansible-core can be imported (the `dsrprep[ansible]` extra is installed)."""
    try:
        import ansible.inventory.manager  # noqa: F401  # only whether it imports
    except ImportError:
        return False
    return True


def _ansible_reason(path: Path, vault_password_file: Path | None) -> str | None:
    """Why only Ansible's loader reads this inventory as Ansible would, or None when the built-in
    YAML loader reads it the same way."""
    if vault_password_file is not None:
        return "--vault-password-file is read by Ansible's loader"
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # the built-in loader says what is wrong with the path
    if stat.S_ISDIR(mode):
        return "a folder inventory is read by Ansible's loader"
    if not stat.S_ISREG(mode):
        return None
    if path.suffix.lower() not in _YAML_SUFFIXES:
        return "an INI (or other non-YAML) inventory is read by Ansible's loader"
    beside = [name for name in ("group_vars", "host_vars") if (path.parent / name).is_dir()]
    if beside:
        return f"{' and '.join(f'{name}/' for name in beside)} beside it are read by Ansible's loader"
    try:
        with open(path, "rb") as handle:  # a regular file: never blocks
            text = handle.read(MAX_INVENTORY_BYTES + 1).decode("utf-8", "replace")
    except OSError:
        return None
    if _PLUGIN_CONFIG.search(text):
        return "an inventory plugin's configuration is read by Ansible's loader"
    if _VAULTED.search(text):
        return "vault-encrypted values are read by Ansible's loader"
    return None


def choose_loader(
    path: Path, requested: str, *, vault_password_file: Path | None = None,
    importable: Callable[[], bool] = ansible_importable,
) -> str:
    """`ansible` or `builtin` for this inventory; InventoryError (naming the file, saying how to install
    the extra) when it needs ansible-core and that cannot be imported."""
    if requested not in LOADERS:
        raise InventoryError(path, [Problem(None, "--inventory-loader", f"{requested!r} is not one of: "
                                                                        f"{', '.join(LOADERS)}")])
    if requested == "builtin":
        if vault_password_file is not None:
            message = "is read by Ansible's loader only: leave out --inventory-loader builtin"
            raise InventoryError(path, [Problem(None, "--vault-password-file", message)])
        return "builtin"
    reason = _ansible_reason(path, vault_password_file) if requested == "auto" else "--inventory-loader ansible"
    if reason is None:
        return "builtin"
    if not importable():
        raise InventoryError(path, [Problem(None, None, f"{reason}, which is not installed: {INSTALL_HINT} "
                                                        "(ansible-core)")])
    return "ansible"


def load_with_ansible(
    path: Path, *, vault_password_file: Path | None = None, require_secrets: bool = True
) -> Inventory:
    """The inventory as Ansible reads it, through dsrprep's mapping of variables to hosts; `--limit`
    then uses Ansible's host patterns. InventoryError names the file, the host and the variable."""
    from ansible.errors import AnsibleError
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    text_path = str(path)
    if not os.path.exists(path):
        raise InventoryError(text_path, [Problem(None, None, "file not found")])
    loader = DataLoader()
    try:
        _use_vault_password(loader, vault_password_file)
        manager = _parsed_manager(loader, text_path)
        variables = VariableManager(loader=loader, inventory=manager)
        magic = set(variables.get_vars()) | {"ansible_facts"}
        problems: list[Problem] = []
        resolved = {
            host.name: _host_values(loader, variables.get_vars(host=host, include_hostvars=False), magic,
                                    Problem(host.name, None, ""), problems, require_secrets=require_secrets)
            for host in manager.get_hosts("all")
        }
    except AnsibleError as exc:
        raise InventoryError(text_path, [Problem(None, None, _one_line(exc))]) from None
    if problems:
        raise InventoryError(text_path, problems)
    if not resolved:
        raise InventoryError(text_path, [Problem(None, None, "no hosts")])
    inv = build_inventory(text_path, _tree(manager, resolved), env={}, require_secrets=require_secrets)
    return replace(inv, matcher=partial(_ansible_select, manager, text_path))


def _use_vault_password(loader: Any, vault_password_file: Path | None) -> None:
    """The vault secret of this load, or none: in the loader, and in ansible-core's process-wide
    vault context (set once per process, so a later load replaces the secrets of an earlier one)."""
    from ansible.parsing.vault import VaultSecretsContext, get_file_vault_secret

    secrets: list[tuple[str, Any]] = []
    if vault_password_file is not None:
        if not vault_password_file.is_file():
            raise InventoryError(str(vault_password_file), [Problem(None, "--vault-password-file", "file not found")])
        secret = get_file_vault_secret(filename=str(vault_password_file), vault_id="default", loader=loader)
        secret.load()
        secrets.append(("default", secret))
    loader.set_vault_secrets(secrets)
    context = VaultSecretsContext.current(optional=True)
    if context is None:
        VaultSecretsContext.initialize(VaultSecretsContext(secrets))
    else:
        context.secrets = secrets


def _parsed_manager(loader: Any, source: str) -> Any:
    """Ansible's InventoryManager over one source; InventoryError when no inventory plugin could
    parse it (Ansible itself only warns and goes on with an empty inventory)."""
    from ansible.inventory.manager import InventoryManager

    unparsed: list[str] = []

    class _Manager(InventoryManager):  # type: ignore[misc]  # ansible-core ships no type hints
        def parse_source(self, source: str, cache: bool = False) -> bool:
            parsed = bool(super().parse_source(source, cache=cache))
            if not parsed:
                unparsed.append(source)
            return parsed

    manager = _Manager(loader=loader, sources=[source])
    if unparsed:
        raise InventoryError(source, [Problem(None, None, "Ansible's inventory plugins could not parse it "
                                                          "(their messages above say why)")])
    return manager


def _host_values(
    loader: Any, all_vars: Mapping[str, Any], magic: set[str], where: Problem, problems: list[Problem], *,
    require_secrets: bool,
) -> dict[str, object]:
    """The host's ansible_* and dsr_* variables, templated by Ansible (vault values decrypted, lookups
    run) into plain values; a value that does not template is a problem naming host and variable."""
    from ansible.errors import AnsibleError
    from ansible.template import Templar

    templar = Templar(loader=loader, variables=all_vars)
    values: dict[str, object] = {}
    for key, raw in all_vars.items():
        if key in magic or not key.startswith(_PREFIXES):
            continue
        try:
            value = templar.template(raw)
        except AnsibleError as exc:
            problems.append(replace(where, field=key, message=_one_line(exc)))
            continue
        if value == "" and isinstance(raw, str) and "lookup(" in raw:
            # Ansible's env lookup gives '' for an unset variable: never an empty password or address.
            if require_secrets:
                problems.append(replace(where, field=key, message="is empty once templated: is the environment "
                                                                  "variable it looks up set?"))
            continue
        values[key] = _plain(value)
    return values


def _plain(value: object) -> object:
    """A templated value as plain Python data; text that would read as a reference or a template is
    literal (Ansible already templated it)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        text = str(value)
        return literal(text) if "{{" in text or "{%" in text or text.strip().startswith("env:") else text
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return literal(str(value))


def _tree(manager: Any, resolved: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """A tree of Ansible's YAML inventory shape: every host with its resolved variables under
    all: hosts:, and the groups as Ansible holds them (the implicit `ungrouped` left to the mapping)."""

    def node(group: Any) -> dict[str, object]:
        out: dict[str, object] = {}
        hosts = {h.name: None for h in group.hosts}
        if hosts and group.name != "all":
            out["hosts"] = hosts
        children = {c.name: node(c) for c in group.child_groups if c.name != "ungrouped"}
        if children:
            out["children"] = children
        return out

    top: dict[str, object] = {"hosts": {name: dict(values) for name, values in resolved.items()}}
    top.update(node(manager.groups["all"]))
    return {"all": top}


def _ansible_select(manager: Any, path: str, pattern: str) -> Sequence[str]:
    """Host names a `--limit` selects with Ansible's host patterns. Each term must match a host: a
    mistyped exclusion would otherwise change the very hosts it was meant to protect."""
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import split_host_pattern

    def limit_problem(message: str) -> InventoryError:
        return InventoryError(path, [Problem(None, "limit", message)])

    try:
        terms = [str(t) for t in split_host_pattern(pattern)]
        if not terms or any(t.lstrip("!&") in ("", "~") for t in terms):
            raise limit_problem(f"{pattern!r} selects nothing: a term names no host or group "
                                "(leave --limit out to act on every host)")
        unmatched = [t for t in terms if not manager.get_hosts(t.lstrip("!&"))]
        if unmatched:
            raise InventoryError(path, [Problem(None, "limit", f"{t!r} matches no host or group") for t in unmatched])
        chosen = [h.name for h in manager.get_hosts(terms)]
    except AnsibleError as exc:
        raise limit_problem(f"{pattern!r}: {_one_line(exc)}") from None
    if not chosen:
        raise limit_problem(f"{pattern!r} leaves no host selected")
    return chosen


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(getattr(exc, "message", "") or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def load_any(
    path: Path, *, loader: str = "auto", vault_password_file: Path | None = None, env: Mapping[str, str],
    require_secrets: bool = True, importable: Callable[[], bool] = ansible_importable,
) -> Inventory:
    """The inventory through the loader `choose_loader` picks, without default credentials (see
    inventory.with_credentials); InventoryError for every problem."""
    if choose_loader(path, loader, vault_password_file=vault_password_file, importable=importable) == "ansible":
        return load_with_ansible(path, vault_password_file=vault_password_file, require_secrets=require_secrets)
    return load_inventory(path, env=env, require_secrets=require_secrets)
