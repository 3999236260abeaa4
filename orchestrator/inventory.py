"""Loads and validates inventories into frozen `Host` / `Inventory` objects; owns `--limit` host
selection and the resolved per-host view (`describe`) behind `inventory check`.

The file has Ansible's YAML inventory shape, so an Ansible inventory of Windows hosts loads as is::

    all:
      vars: {...}                        # variables for every host
      hosts: {name: {vars...} | null}    # Ansible ranges (web[01:20]) and a name:port suffix work
      children:
        group: {vars: ..., hosts: ..., children: ...}

A host may be listed in several groups. Variable precedence is Ansible's: `all`, then groups by
depth (parents before children; groups of the same depth by `ansible_group_priority`, then by name,
later wins), then host variables. Variables that are neither connection nor `dsr_*` variables
(application variables, Ansible's own such as ansible_shell_type or ansible_become_method) are
ignored; `dsr_*` variables are described in desired.py. Any other `ansible_*` variable (one not in
the table below: `ansible_pasword`, an `ansible_psrp_*` setting dsrprep does not honour) is ignored
too, but never silently: each one is a warning in `Inventory.warnings` (shown by `inventory
check`) naming the closest variable dsrprep knows.

Limits: the file is a regular file of at most 2 MiB (MAX_INVENTORY_BYTES; checked before parsing,
and never more than that is read, so a device or a FIFO is refused at once), mappings and lists nest
at most 64 levels deep (MAX_NESTING), and it names at most 10 000 hosts (MAX_HOSTS). A 1 MiB file of
20 000 terse hosts already takes seconds to load.

Connection variables. Each setting may come from several names; when more than one is set, the psrp
name wins over the winrm name, which wins over the generic one:

=====================  ===========================================  ===================================
setting                names (winning last)                         default
=====================  ===========================================  ===================================
connection plugin      ansible_connection                           psrp (winrm also accepted)
address                ansible_host, ansible_winrm_host,            the inventory host name
                       ansible_psrp_host
port                   ansible_port, ansible_winrm_port,            5985 for http, 5986 for https
                       ansible_psrp_port
user                   ansible_user, ansible_winrm_user,            none
                       ansible_psrp_user
password               ansible_password, ansible_winrm_pass,        --ask-pass / DSRPREP_PASSWORD
                       ansible_winrm_password, ansible_psrp_pass,
                       ansible_psrp_password
auth                   ansible_winrm_transport, ansible_psrp_auth   negotiate
protocol               ansible_winrm_scheme, ansible_psrp_protocol  https when the port is 5986, else
                                                                    http
cert validation        ansible_winrm_server_cert_validation,        validate
                       ansible_psrp_cert_validation
CA bundle              ansible_winrm_ca_trust_path,                 system store
                       ansible_psrp_cert_trust_path,
                       ansible_psrp_ca_cert
client certificate     ansible_winrm_cert_pem,                      none (needed by certificate auth)
                       ansible_psrp_certificate_pem
client key             ansible_winrm_cert_key_pem,                  none (needed by certificate auth)
                       ansible_psrp_certificate_key_pem
connection timeout     ansible_winrm_connection_timeout,            30 s
                       ansible_psrp_connection_timeout
read timeout           ansible_winrm_read_timeout_sec,              30 s, must exceed operation timeout
                       ansible_psrp_read_timeout
operation timeout      ansible_winrm_operation_timeout_sec,         20 s, a warning above WinRM's MaxTimeoutms (60 s)
                       ansible_psrp_operation_timeout
message encryption     ansible_winrm_message_encryption,            auto (encrypt over http)
                       ansible_psrp_message_encryption
PowerShell endpoint    ansible_psrp_configuration_name              Microsoft.PowerShell
URL path               ansible_winrm_path, ansible_psrp_path        wsman
max envelope size      ansible_psrp_max_envelope_size               153600 bytes (150 KiB: the default
                                                                    limit of Windows 2008 R2 and older)
reconnection retries   ansible_psrp_reconnection_retries            0 (TCP connects only)
reconnection backoff   ansible_psrp_connection_backoff,             2.0 s, doubled on each retry
                       ansible_psrp_reconnection_backoff
proxy                  ansible_psrp_proxy                           the environment's (HTTP_PROXY ...)
ignore proxy           ansible_psrp_ignore_proxy                    false; true ignores the environment
Kerberos delegation    ansible_winrm_kerberos_delegation,           false
                       ansible_psrp_negotiate_delegate
Kerberos SPN host      ansible_winrm_kerberos_hostname_override,    the address
                       ansible_psrp_negotiate_hostname_override
channel binding (CBT)  ansible_winrm_send_cbt,                      true (used over https)
                       ansible_psrp_negotiate_send_cbt
Kerberos SPN service   ansible_psrp_negotiate_service               WSMAN
=====================  ===========================================  ===================================

auth is negotiate, ntlm, kerberos, credssp, basic or certificate. ansible_winrm_transport may be a
list or a comma-separated string (the first entry counts); pywinrm's `plaintext` means basic and
`ssl` means basic over https. Basic auth cannot encrypt messages: over plain http it needs
`ansible_psrp_message_encryption: never` and the explicit opt-in `dsr_allow_insecure_basic: true`,
because the credentials and every script then cross the network in clear. The proxy is an
http:// or https:// URL (requests has no SOCKS support without PySocks); credentials in it are
never shown. The four Kerberos/negotiate settings act with negotiate, ntlm and kerberos auth only:
set with another auth, each is a warning, and so is ignore proxy next to a proxy (the proxy wins).
transport.wsman_kwargs and transport.pool_kwargs map every setting to pypsrp's keyword arguments.

Credentials: the inventory's user and password for the host win (host variables, then group
variables), else `default_user` and `default_password` (the CLI fills them from --user, and from
--ask-pass or DSRPREP_PASSWORD): see `with_credentials`. Kerberos and certificate auth never take
the default password: Kerberos without a password uses the ticket cache (kinit).
An inventory value may refer to an environment variable instead of
holding the secret: `"{{ lookup('env', 'NAME') }}"` or `"env:NAME"`. `load_inventory` never reads
the process environment itself; the caller passes the mapping to resolve such references against.
A reference must name a valid variable (letters, digits and _, not starting with a digit), and
that variable must be set when a command connects: either way, it is an error naming the variable,
never a literal password (a literal password that starts with `env:` is tagged `!unsafe`). A
password never appears in a repr, a message or `describe()`.
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import re
import stat
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, cast

from orchestrator import desired as ds
from orchestrator.desired import Desired, FieldError, FieldErrors, NicSelector, Vip
from orchestrator.errors import DsrError
from orchestrator.once import once

if TYPE_CHECKING:  # PyYAML is imported by the first inventory read: `dsrprep --help` does without it
    import yaml

__all__ = [
    "CONNECTION_DEFAULTS",
    "MAX_HOSTS",
    "MAX_INVENTORY_BYTES",
    "MAX_NESTING",
    "Connection",
    "Desired",
    "Host",
    "Inventory",
    "InventoryError",
    "NicSelector",
    "Problem",
    "Vip",
    "build_inventory",
    "expand_limit_files",
    "literal",
    "load_inventory",
    "takes_default_password",
    "with_credentials",
]

HTTP_PORT = 5985
HTTPS_PORT = 5986
# WinRM's MaxTimeoutms default (winrm/config, every version): the longest OperationTimeout a host honours.
WINRM_MAX_TIMEOUT_MS = 60_000
AUTHS = ("negotiate", "ntlm", "kerberos", "credssp", "basic", "certificate")
PROTOCOLS = ("http", "https")
CERT_VALIDATIONS = ("validate", "ignore")
ENCRYPTIONS = ("auto", "always", "never")
CONNECTION_PLUGINS = ("psrp", "winrm")
# pywinrm transport names -> (auth, protocol the transport implies)
WINRM_TRANSPORTS: Mapping[str, tuple[str, str | None]] = MappingProxyType(
    {
        "ntlm": ("ntlm", None),
        "kerberos": ("kerberos", None),
        "credssp": ("credssp", None),
        "basic": ("basic", None),
        "certificate": ("certificate", None),
        "plaintext": ("basic", None),
        "ssl": ("basic", "https"),
    }
)

CONNECTION_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "connection": "psrp",
        "auth": "negotiate",
        "cert_validation": "validate",
        "connection_timeout": 30,
        "read_timeout": 30,
        "operation_timeout": 20,
        "message_encryption": "auto",
        "configuration_name": "Microsoft.PowerShell",
        "path": "wsman",
        "max_envelope_size": 153600,
        "reconnection_retries": 0,
        "reconnection_backoff": 2.0,
        "ignore_proxy": False,
        "negotiate_delegate": False,
        "negotiate_send_cbt": True,
        "negotiate_service": "WSMAN",
    }
)

# setting -> variable names, lowest priority first
_SETTING_VARS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "connection": ("ansible_connection",),
        "address": ("ansible_host", "ansible_winrm_host", "ansible_psrp_host"),
        "port": ("ansible_port", "ansible_winrm_port", "ansible_psrp_port"),
        "user": ("ansible_user", "ansible_winrm_user", "ansible_psrp_user"),
        "password": ("ansible_password", "ansible_winrm_pass", "ansible_winrm_password", "ansible_psrp_pass",
                     "ansible_psrp_password"),
        "auth": ("ansible_winrm_transport", "ansible_psrp_auth"),
        "protocol": ("ansible_winrm_scheme", "ansible_psrp_protocol"),
        "cert_validation": ("ansible_winrm_server_cert_validation", "ansible_psrp_cert_validation"),
        "ca_cert": ("ansible_winrm_ca_trust_path", "ansible_psrp_cert_trust_path", "ansible_psrp_ca_cert"),
        "certificate_pem": ("ansible_winrm_cert_pem", "ansible_psrp_certificate_pem"),
        "certificate_key_pem": ("ansible_winrm_cert_key_pem", "ansible_psrp_certificate_key_pem"),
        "connection_timeout": ("ansible_winrm_connection_timeout", "ansible_psrp_connection_timeout"),
        "read_timeout": ("ansible_winrm_read_timeout_sec", "ansible_psrp_read_timeout"),
        "operation_timeout": ("ansible_winrm_operation_timeout_sec", "ansible_psrp_operation_timeout"),
        "message_encryption": ("ansible_winrm_message_encryption", "ansible_psrp_message_encryption"),
        "configuration_name": ("ansible_psrp_configuration_name",),
        "path": ("ansible_winrm_path", "ansible_psrp_path"),
        "max_envelope_size": ("ansible_psrp_max_envelope_size",),
        "reconnection_retries": ("ansible_psrp_reconnection_retries",),
        # Ansible reads both names; the first is the older one.
        "reconnection_backoff": ("ansible_psrp_connection_backoff", "ansible_psrp_reconnection_backoff"),
        "proxy": ("ansible_psrp_proxy",),
        "ignore_proxy": ("ansible_psrp_ignore_proxy",),
        "negotiate_delegate": ("ansible_winrm_kerberos_delegation", "ansible_psrp_negotiate_delegate"),
        "negotiate_hostname_override": (
            "ansible_winrm_kerberos_hostname_override",
            "ansible_psrp_negotiate_hostname_override",
        ),
        "negotiate_send_cbt": ("ansible_winrm_send_cbt", "ansible_psrp_negotiate_send_cbt"),
        "negotiate_service": ("ansible_psrp_negotiate_service",),
    }
)
# Settings that only negotiate, ntlm and kerberos auth read (pypsrp passes them to its Negotiate auth).
_NEGOTIATE_SETTINGS = ("negotiate_delegate", "negotiate_hostname_override", "negotiate_send_cbt", "negotiate_service")
# Variable families of Ansible's Windows connection plugins: a name of these not in _SETTING_VARS is
# a setting dsrprep does not honour, which the user hears about.
_CONNECTION_PREFIXES = ("ansible_psrp_", "ansible_winrm_")
# Ansible's own variables that mean nothing to dsrprep (Ansible's "behavioral inventory parameters",
# docs.ansible.com .../intro_inventory.html, and those its Windows guides set: shell type, become):
# an Ansible inventory of Windows hosts carries them, so they load silently. Any other ansible_*
# name (ansible_pasword) is a warning naming the closest variable dsrprep knows.
_ANSIBLE_IGNORED = (
    "ansible_become", "ansible_become_method", "ansible_become_user", "ansible_become_password",
    "ansible_become_pass", "ansible_become_exe", "ansible_become_flags", "ansible_shell_type",
    "ansible_shell_executable", "ansible_python_interpreter", "ansible_ssh_private_key_file",
    "ansible_private_key_file", "ansible_ssh_common_args", "ansible_sftp_extra_args", "ansible_scp_extra_args",
    "ansible_ssh_extra_args", "ansible_ssh_pipelining", "ansible_pipelining", "ansible_ssh_executable",
    "ansible_ssh_host", "ansible_ssh_port", "ansible_ssh_user", "ansible_ssh_pass", "ansible_network_os",
)

_MAX_RANGE_HOSTS = 10_000
# Limits that keep a load fast and small whatever the file holds (a 1 MiB inventory of 20 000 terse
# hosts already takes seconds to load): the file's size, read before parsing and never more than
# this plus one byte; how deeply mappings and lists nest; how many hosts in all.
MAX_INVENTORY_BYTES = 2 * 1024 * 1024
MAX_NESTING = 64
MAX_HOSTS = 10_000


# --- public types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an inventory, located by host (or group) and variable."""

    host: str | None
    field: str | None
    message: str
    group: str | None = None

    def render(self, path: str) -> str:
        """One line: the file, the host or group, the variable, the message."""
        parts = [path]
        if self.host is not None:
            parts.append(f"host {_shown_name(self.host)}")
        elif self.group is not None:
            parts.append(f"group {_shown_name(self.group)}")
        if self.field:
            parts.append(_shown_name(self.field))
        parts.append(self.message)
        return ": ".join(parts).replace("\n", "\\n").replace("\r", "\\r")


def _shown_name(name: str) -> str:
    """A name as written, or quoted with its escapes when it holds a character that would hide or
    break the line (a newline, an escape sequence, a blank at an end)."""
    plain = name.isprintable() and name == name.strip() and name != ""
    return name if plain else repr(name)


class InventoryError(DsrError):
    """Every problem found in one inventory, one line each when printed."""

    error_class = "InventoryError"

    def __init__(self, path: str | os.PathLike[str], problems: Sequence[Problem]) -> None:
        self.path = str(path)
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render(self.path) for p in self.problems)


@dataclass(frozen=True)
class Connection:
    address: str
    port: int
    user: str | None
    password: str | None = field(repr=False)
    auth: str
    protocol: str
    cert_validation: bool
    ca_cert: str | None
    connection_timeout: int
    read_timeout: int
    operation_timeout: int
    message_encryption: str
    configuration_name: str
    # Where the password came from: "inventory", "env NAME", "default" or None (no password).
    password_source: str | None = None
    certificate_pem: str | None = None
    certificate_key_pem: str | None = None
    allow_insecure_basic: bool = False
    path: str = "wsman"
    max_envelope_size: int = 153600
    reconnection_retries: int = 0
    reconnection_backoff: float = 2.0
    proxy: str | None = field(default=None, repr=False)  # a proxy URL may carry credentials
    ignore_proxy: bool = False
    negotiate_delegate: bool = False
    negotiate_hostname_override: str | None = None
    negotiate_send_cbt: bool = True
    negotiate_service: str = "WSMAN"

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol}://{host}:{self.port}/{self.path}"


@dataclass(frozen=True)
class Host:
    name: str
    connection: Connection
    desired: Desired
    groups: tuple[str, ...]

    @property
    def address(self) -> str:
        return self.connection.address


@dataclass(frozen=True)
class Inventory:
    path: str
    hosts: tuple[Host, ...]
    groups: Mapping[str, tuple[str, ...]]
    # What loads but deserves a look (a connection variable dsrprep ignores); never a reason to stop.
    warnings: tuple[Problem, ...] = ()
    # The hosts a `--limit` selects, by name, when the loader brings its own pattern semantics
    # (Ansible's InventoryManager); None: the built-in matcher of `select`.
    matcher: Callable[[str], Sequence[str]] | None = field(default=None, compare=False, repr=False)

    def warning_lines(self) -> list[str]:
        """Each warning as one line: file, host or group, variable, message."""
        return [w.render(self.path) for w in self.warnings]

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise InventoryError(
            self.path, [Problem(None, None, f"no host named {name!r}{_guess(name, self._names())}")]
        )

    def select(self, pattern: str | None) -> tuple[Host, ...]:
        """Hosts matching an Ansible `--limit` pattern, in inventory order.

        Terms are separated by commas (or colons); a term is a host name, a group name or a glob
        (fnmatch) over host and group names, `~regex` for a regular expression; `&term` intersects,
        `!term` excludes. A term that matches nothing is an error, not a warning: a mistyped
        exclusion would otherwise change the very hosts it was meant to protect.
        """
        if pattern is None:
            return self.hosts
        chosen = set(self.matcher(pattern)) if self.matcher is not None else self._chosen(pattern)
        return tuple(h for h in self.hosts if h.name in chosen)

    def _chosen(self, pattern: str) -> set[str]:
        """The names the built-in matcher selects (see `select`)."""
        terms = self._terms(pattern)
        if terms == ["all"]:
            return {h.name for h in self.hosts}
        regular = [t for t in terms if t[0] not in "!&"]
        intersect = [t[1:] for t in terms if t[0] == "&"]
        exclude = [t[1:] for t in terms if t[0] == "!"]
        problems: list[Problem] = []

        def matches(term: str) -> set[str]:
            if term.startswith("~"):
                try:
                    re.compile(term[1:])
                except re.error as exc:
                    problems.append(
                        Problem(None, "limit", f"{term!r} is not a valid regular expression: {exc}")
                    )
                    return set()
            found = self._match(term)
            if not found:
                problems.append(
                    Problem(None, "limit", f"{term!r} matches no host or group{_guess(term, self._names())}")
                )
            return found

        chosen: set[str] = set()
        for term in regular or ["all"]:
            chosen |= matches(term)
        for term in intersect:
            chosen &= matches(term)
        for term in exclude:
            chosen -= matches(term)
        if not problems and not chosen:
            problems.append(Problem(None, "limit", f"{pattern!r} leaves no host selected"))
        if problems:
            raise InventoryError(self.path, problems)
        return chosen

    def _terms(self, pattern: str) -> list[str]:
        """The terms of a `--limit`; InventoryError when it is empty, only separators, or has a term
        that is only an operator (`!`, `&`, `~`): such a limit must never mean every host."""
        terms = _split_pattern(pattern)
        bare = [t for t in terms if t in ("!", "&", "~", "!~", "&~")]
        if not terms or bare:
            what = f"the term(s) {', '.join(map(repr, bare))} name nothing" if bare else "it names no host or group"
            raise InventoryError(self.path, [Problem(None, "limit", f"{pattern!r} selects nothing: {what} "
                                                                    "(leave --limit out to act on every host)")])
        return terms

    def describe(self) -> list[dict[str, object]]:
        """The resolved settings of every host, flat and JSON-able; the password only as set / not set."""
        out: list[dict[str, object]] = []
        for host in self.hosts:
            c = host.connection
            item: dict[str, object] = {
                "name": host.name,
                "groups": list(host.groups),
                "endpoint": c.url,
                "address": c.address,
                "port": c.port,
                "protocol": c.protocol,
                "auth": c.auth,
                "user": c.user,
                "password": "set" if c.password is not None else "not set",
                "password_source": c.password_source,
                "cert_validation": "validate" if c.cert_validation else "ignore",
                "ca_cert": c.ca_cert,
                "certificate_pem": c.certificate_pem,
                "certificate_key_pem": c.certificate_key_pem,
                "connection_timeout": c.connection_timeout,
                "read_timeout": c.read_timeout,
                "operation_timeout": c.operation_timeout,
                "message_encryption": c.message_encryption,
                "configuration_name": c.configuration_name,
                "allow_insecure_basic": c.allow_insecure_basic,
                "path": c.path,
                "max_envelope_size": c.max_envelope_size,
                "reconnection_retries": c.reconnection_retries,
                "reconnection_backoff": c.reconnection_backoff,
                "proxy": _redact_url(c.proxy) if c.proxy else None,
                "ignore_proxy": c.ignore_proxy,
                "negotiate_delegate": c.negotiate_delegate,
                "negotiate_hostname_override": c.negotiate_hostname_override,
                "negotiate_send_cbt": c.negotiate_send_cbt,
                "negotiate_service": c.negotiate_service,
            }
            item.update(host.desired.to_dict())
            out.append(item)
        return out

    def _names(self) -> list[str]:
        return [h.name for h in self.hosts] + list(self.groups)

    def _match(self, term: str) -> set[str]:
        # Ansible's rules: a term matching a group name selects the group's hosts; host names are
        # tried when no group matched or the term is a pattern.
        if term.startswith("~"):
            try:
                regex = re.compile(term[1:])
            except re.error:
                return set()

            def hit(name: str) -> bool:
                return regex.match(name) is not None

        else:

            def hit(name: str) -> bool:
                return name == term or fnmatch.fnmatchcase(name, term)

        found: set[str] = set()
        groups = [g for g in self.groups if hit(g)]
        for group in groups:
            found.update(self.groups[group])
        if not groups or term.startswith("~") or any(c in term for c in ".?*["):
            found.update(h.name for h in self.hosts if hit(h.name))
        return found


def load_inventory(
    path: str | os.PathLike[str],
    *,
    default_password: str | None = None,
    env: Mapping[str, str] | None = None,
    require_secrets: bool = True,
    default_user: str | None = None,
) -> Inventory:
    """Read and validate one inventory file; raise InventoryError listing every problem found.

    `env` resolves password references (`env:NAME`, `{{ lookup('env', 'NAME') }}`); when None, no
    reference resolves. `default_user` and `default_password` go to the hosts whose inventory sets
    none (see `with_credentials`). With `require_secrets=False` (checking an inventory, connecting
    nowhere) a reference to an unset variable is reported as such in `describe()` instead of being
    an error.
    """
    text_path = str(path)
    text = _read_text(path)
    import yaml

    try:
        data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InventoryError(
            text_path, [Problem(None, None, f"{where}invalid YAML: {exc.problem or exc.context}")]
        ) from None
    except yaml.YAMLError as exc:
        raise InventoryError(text_path, [Problem(None, None, f"invalid YAML: {exc}")]) from None
    inv = build_inventory(text_path, data, env=env or {}, require_secrets=require_secrets)
    return with_credentials(inv, user=default_user, password=default_password)


def build_inventory(path: str, data: object, *, env: Mapping[str, str], require_secrets: bool = True) -> Inventory:
    """An Inventory from a tree of Ansible's YAML inventory shape, already parsed (from the file, or
    made from what another loader resolved): the one mapping of variables to hosts."""
    return _Builder(path, env, require_secrets).build(data)


# Auths that never take the default password: Kerberos without a password in the inventory uses the
# ticket cache (kinit), certificate auth uses its key.
_NO_DEFAULT_PASSWORD_AUTHS = ("kerberos", "certificate")


def takes_default_password(connection: Connection) -> bool:
    """Whether the default password (--ask-pass, DSRPREP_PASSWORD) goes to this host: the inventory
    gives it none (not even a reference to an unset variable) and its auth uses passwords."""
    return (
        connection.password is None
        and connection.password_source is None
        and connection.auth not in _NO_DEFAULT_PASSWORD_AUTHS
    )


def with_credentials(inv: Inventory, *, user: str | None = None, password: str | None = None) -> Inventory:
    """The inventory with `user` for the hosts that name no user and `password` for the hosts that
    take the default password; what the inventory says (host, then group variables) always wins."""

    def filled(host: Host) -> Host:
        c = host.connection
        secret, source = (password, "default") if password is not None and takes_default_password(c) else (
            c.password, c.password_source)
        named = c.user if c.user is not None or user is None else user
        return replace(host, connection=replace(c, user=named, password=secret, password_source=source))

    if user is None and password is None:
        return inv
    return replace(inv, hosts=tuple(filled(h) for h in inv.hosts))


def literal(text: str) -> str:
    """Text that the inventory mapping takes as it is, never as a reference or a template (what
    Ansible's `!unsafe` says, and what a value another loader already templated is)."""
    return _Unsafe(text)


def expand_limit_files(pattern: str, read: Callable[[str], str]) -> str:
    """A `--limit` with each `@file` term replaced by the file's patterns, one a line (Ansible's
    `--limit @retry_file`); `read` gives a file's text (OSError when it cannot). InventoryError
    names a file that cannot be read."""
    terms: list[str] = []
    for term in _split_pattern(pattern) if "@" in pattern else [pattern]:
        if not term.startswith("@"):
            terms.append(term)
            continue
        name = term[1:]
        try:
            text = read(name)
        except (OSError, ValueError) as exc:
            reason = "file not found" if isinstance(exc, FileNotFoundError) else f"cannot read it: {exc}"
            raise InventoryError(name, [Problem(None, "--limit @file", reason)]) from None
        lines = [t for line in text.splitlines() for t in _split_pattern(line)]
        if not lines:
            raise InventoryError(name, [Problem(None, "--limit @file", "names no host or group")])
        terms.extend(lines)
    return ",".join(terms)


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(1 << 20, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _read_text(path: str | os.PathLike[str]) -> str:
    """The file's text: a regular file of at most MAX_INVENTORY_BYTES, read without blocking on a
    FIFO and without reading more than the limit allows (/dev/zero never ends)."""
    text_path = str(path)

    def refuse(message: str) -> InventoryError:
        return InventoryError(text_path, [Problem(None, None, message)])

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once
    except FileNotFoundError:
        raise refuse("file not found") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        raise refuse(f"cannot read the file: {exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
            raise refuse(f"is {kind}, not an inventory file")
        data = _read_at_most(fd, MAX_INVENTORY_BYTES + 1)
    except OSError as exc:
        raise refuse(f"cannot read the file: {exc}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_INVENTORY_BYTES:
        raise refuse(f"is larger than {MAX_INVENTORY_BYTES // (1024 * 1024)} MiB, the most dsrprep reads: "
                     "split the fleet into several inventories")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise refuse(f"cannot read the file: not UTF-8 text ({exc})") from None


# --- YAML loading -----------------------------------------------------------------------------------


class _Vaulted:
    """A `!vault` value: Ansible-encrypted, which dsrprep does not decrypt."""


class _Unsafe(str):
    """A `!unsafe` string: Ansible's marker for text that must not be templated."""

    __slots__ = ()


@once
def _yaml_loader() -> type[yaml.SafeLoader]:
    import yaml

    class _YamlLoader(yaml.SafeLoader):
        """Safe loading, deep nesting refused while composing (which, like constructing, recurses once
        per level: a few thousand levels would exhaust Python's stack)."""

        _depth = 0

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            self._depth += 1
            try:
                if self._depth > MAX_NESTING:
                    event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in PyYAML's stubs
                    raise yaml.composer.ComposerError(
                        None, None, f"mappings and lists nested deeper than {MAX_NESTING} levels", event.start_mark
                    )
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    _YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
    _YamlLoader.add_constructor("!vault", _construct_vault)
    _YamlLoader.add_constructor("!unsafe", _construct_unsafe)
    return _YamlLoader


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[object, object]:
    # PyYAML lets a repeated key silently replace the first; in an inventory that loses a host's vars.
    import yaml

    seen: dict[object, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        except TypeError:  # unhashable key: construct_mapping reports it
            pass
    return loader.construct_mapping(node, deep=True)


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> _Vaulted:
    return _Vaulted()


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    import yaml

    if isinstance(node, yaml.ScalarNode):
        return _Unsafe(loader.construct_scalar(node))
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return _construct_mapping(loader, cast(yaml.MappingNode, node))




# --- connection value parsers ------------------------------------------------------------------------

_IPV4_LIKE = re.compile(r"\d+(\.\d+)+")
_HOSTNAME = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
# A reference to an environment variable, whatever the name it holds (checked apart, so that a bad
# name is an error naming it, never the password itself).
_ENV_LOOKUP = re.compile(r"""\{\{\s*lookup\(\s*(['"])env\1\s*,\s*(['"])(?P<name>.*?)\2\s*\)\s*\}\}""", re.DOTALL)
_ENV_PREFIX = re.compile(r"env:(?P<name>.*)", re.DOTALL)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _parse_address(value: object) -> str:
    text = ds.parse_text(value)
    if "://" in text or "@" in text:
        # Never quoted as written: a URL can carry a password (http://user:password@host/wsman).
        shown = "is a URL" if "://" in text else "holds a user name (user@host)"
        raise FieldError(f"{shown}: give the host name or IP address alone; the scheme, port and path go in "
                         "ansible_psrp_protocol, ansible_port and ansible_psrp_path, the account in "
                         "ansible_user and ansible_password")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text or _IPV4_LIKE.fullmatch(text):
        try:
            return ds.parse_ip(text)
        except FieldError:
            raise FieldError(f"{text!r} looks like an IP address but is not a valid one") from None
    if not _HOSTNAME.fullmatch(text):
        raise FieldError(f"{text!r} is neither an IP address nor a DNS name")
    return text


def _parse_connection_plugin(value: object) -> str:
    text = ds.parse_text(value).lower()
    # Fully qualified names (ansible.builtin.psrp, ansible.legacy.winrm) name the same plugins.
    short = text.rsplit(".", 1)[-1] if text.startswith(("ansible.builtin.", "ansible.legacy.")) else text
    if short not in CONNECTION_PLUGINS:
        raise FieldError(
            f"{text!r} is not supported: dsrprep speaks PowerShell Remoting only (psrp or winrm); "
            "remove the variable or set it to psrp"
        )
    return short


def _parse_transport(value: object) -> tuple[str, str | None]:
    items = value if isinstance(value, list) else str(value).split(",") if isinstance(value, str) else None
    if not items:
        raise FieldError(f"{ds.show(value)} is not a transport name or list of names")
    first = str(items[0]).strip().lower()
    if first not in WINRM_TRANSPORTS:
        raise FieldError(f"{first!r} is not one of: {', '.join(WINRM_TRANSPORTS)}")
    return WINRM_TRANSPORTS[first]


def _parse_auth(value: object) -> tuple[str, str | None]:
    return ds.parse_choice(value, AUTHS), None


def _parse_timeout(value: object) -> int:
    return ds.parse_int(value, 1, None, "a timeout in seconds")


def _parse_cert_validation(value: object) -> str:
    return ds.parse_choice(value, CERT_VALIDATIONS)


_URL_SEGMENT = r"[A-Za-z0-9._~%!$&'()*+,;=:@-]+"
_URL_PATH = re.compile(rf"{_URL_SEGMENT}(?:/{_URL_SEGMENT})*")
_SPN_SERVICE = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")
PROXY_SCHEMES = ("http", "https")
# WinRM's smallest MaxEnvelopeSizekb is 32 ([MS-WSMV] 2.2.4.10 ConfigType).
MIN_ENVELOPE_SIZE = 32 * 1024


def _parse_path(value: object) -> str:
    # pypsrp builds the endpoint as scheme://host:port/<path>: a leading slash would double it.
    text = ds.parse_text(value).strip("/")
    if not _URL_PATH.fullmatch(text):
        raise FieldError(f"{ds.show(value)} is not a URL path (like wsman)")
    return text


def _parse_envelope_size(value: object) -> int:
    return ds.parse_int(value, MIN_ENVELOPE_SIZE, None, "an envelope size in bytes")


def _parse_retries(value: object) -> int:
    return ds.parse_int(value, 0, None, "a number of retries")


def _parse_backoff(value: object) -> float:
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise FieldError(f"{ds.show(value)} is not a backoff in seconds (a number >= 0)")
    return number


def _redact_url(url: str) -> str:
    """The URL without the password it may carry (proxy://user:password@host)."""
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            # An unencoded '#', '?' or '/' in a password ends the netloc before its '@'.
            return "<a URL that does not parse>" if "@" in url and "@" not in parts.netloc else url
    except ValueError:
        return "<a URL that does not parse>" if "@" in url else url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _parse_proxy(value: object) -> str:
    # Messages show the URL without its password.
    text = ds.parse_text(value)
    try:
        parts = urllib.parse.urlsplit(text)
        usable = parts.scheme.lower() in PROXY_SCHEMES and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        usable = False
    if not usable:
        raise FieldError(
            f"{_redact_url(text)!r} is not an http:// or https:// proxy URL (like http://proxy.corp:3128)"
        )
    return text


def _parse_spn_host(value: object) -> str:
    text = ds.parse_text(value)
    if not _HOSTNAME.fullmatch(text):
        raise FieldError(f"{text!r} is not a host name (the name in the server's Kerberos SPN)")
    return text


def _parse_spn_service(value: object) -> str:
    text = ds.parse_text(value)
    if not _SPN_SERVICE.fullmatch(text):
        raise FieldError(f"{text!r} is not an SPN service class (like WSMAN or HTTP)")
    return text


_VALUE_PARSERS: Mapping[str, Callable[[object], object]] = MappingProxyType(
    {
        "connection": _parse_connection_plugin,
        "address": _parse_address,
        "port": ds.parse_port,
        "user": ds.parse_text,
        "protocol": lambda v: ds.parse_choice(v, PROTOCOLS),
        "cert_validation": _parse_cert_validation,
        "ca_cert": ds.parse_text,
        "certificate_pem": ds.parse_text,
        "certificate_key_pem": ds.parse_text,
        "connection_timeout": _parse_timeout,
        "read_timeout": _parse_timeout,
        "operation_timeout": _parse_timeout,
        "message_encryption": lambda v: ds.parse_choice(v, ENCRYPTIONS),
        "configuration_name": ds.parse_text,
        "path": _parse_path,
        "max_envelope_size": _parse_envelope_size,
        "reconnection_retries": _parse_retries,
        "reconnection_backoff": _parse_backoff,
        "proxy": _parse_proxy,
        "ignore_proxy": ds.parse_bool,
        "negotiate_delegate": ds.parse_bool,
        "negotiate_hostname_override": _parse_spn_host,
        "negotiate_send_cbt": ds.parse_bool,
        "negotiate_service": _parse_spn_service,
    }
)

_VAR_SETTING: Mapping[str, str] = MappingProxyType(
    {name: setting for setting, names in _SETTING_VARS.items() for name in names}
)
# Every ansible_* name that loads without a warning (and Ansible's ansible_<language>_interpreter).
_KNOWN_ANSIBLE = [*_VAR_SETTING, "ansible_group_priority", *_ANSIBLE_IGNORED]
_INTERPRETER = re.compile(r"ansible_\w+_interpreter")


@dataclass(frozen=True)
class _Secret:
    value: str | None = field(repr=False)  # None: a reference to an unset variable, allowed when checking
    source: str


def _parse_password(value: object, env: Mapping[str, str], *, require: bool = True) -> _Secret:
    # Messages here never quote the value: it is a secret.
    if not isinstance(value, str):
        raise FieldError(
            "is not text: quote the password in YAML (unquoted, 0123 or yes become numbers or booleans)"
        )
    if not isinstance(value, _Unsafe):
        match = _ENV_LOOKUP.fullmatch(value.strip()) or _ENV_PREFIX.fullmatch(value.strip())
        if match:
            name = match.group("name")
            if not _ENV_NAME.fullmatch(name):
                raise FieldError(
                    f"refers to environment variable {name!r}, which is not a valid name (letters, digits and _, "
                    "not starting with a digit); a literal password that starts with 'env:' is tagged !unsafe"
                )
            if not env.get(name):
                if not require:
                    return _Secret(None, f"env {name} (not set)")
                raise FieldError(f"refers to environment variable {name}, which is not set: export {name}")
            return _Secret(env[name], f"env {name}")
        if "{{" in value or "{%" in value:
            raise FieldError(
                "is a template dsrprep cannot evaluate: write \"{{ lookup('env', 'NAME') }}\" or "
                "\"env:NAME\" (or tag a literal password that contains '{{' with !unsafe)"
            )
    return _Secret(str(value), "inventory")


# --- building ----------------------------------------------------------------------------------------

_INVALID = object()  # a value that failed to parse (already reported)


@dataclass(frozen=True)
class _Where:
    host: str | None = None
    group: str | None = None

    def problem(self, field_name: str | None, message: str) -> Problem:
        return Problem(self.host, field_name, message, None if self.host else self.group)


@dataclass
class _Group:
    name: str
    parents: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    listed: set[str] = field(default_factory=set)  # `hosts` as a set: a look-up per host stays cheap
    var_defs: list[tuple[tuple[int, ...], dict[object, object]]] = field(default_factory=list)


_Merged = dict[str, tuple[object, _Where]]


class _Builder:
    """One load: walks the YAML tree, parses each variable where it is defined, resolves per host."""

    def __init__(self, path: str, env: Mapping[str, str], require_secrets: bool = True) -> None:
        self.path = path
        self.env = env
        self.require_secrets = require_secrets
        self.problems: dict[Problem, None] = {}  # insertion-ordered set: group values repeat per host
        self.warnings: dict[Problem, None] = {}  # the same, for what loads but deserves a look
        self.groups: dict[str, _Group] = {}
        self.host_mentions: dict[str, list[tuple[tuple[int, ...], dict[object, object]]]] = {}
        self.too_many = False  # more than MAX_HOSTS hosts: the rest were not taken

    def report(self, problem: Problem) -> None:
        self.problems.setdefault(problem)

    def warn(self, problem: Problem) -> None:
        self.warnings.setdefault(problem)

    def fail(self) -> InventoryError:
        return InventoryError(self.path, list(self.problems))

    def build(self, data: object) -> Inventory:
        # Shape problems are reported together with variable problems, unless the tree itself is
        # unusable (no `all:`, a children loop, no host at all).
        if not self._walk_top(data):
            raise self.fail()
        if self.too_many:
            self.report(Problem(None, None, f"more than {MAX_HOSTS} hosts, the most dsrprep takes in one inventory: "
                                            "split the fleet into several inventories"))
            raise self.fail()
        depths = self._depths()
        if depths is None:
            raise self.fail()
        if not self.host_mentions:
            self.report(Problem(None, None, "no hosts: list them under all: hosts: or a group"))
            raise self.fail()

        memberships = self._memberships()
        resolved = self._resolve_hosts(depths, memberships)
        self._cross_checks(resolved)
        if self.problems:
            raise self.fail()
        group_hosts = self._group_hosts(memberships)
        # Each host's groups in group order, in one pass (a look-up per host and group is quadratic).
        host_groups: dict[str, list[str]] = {name: [] for name in self.host_mentions}
        for group, members in group_hosts.items():
            for member in members if group != "all" else ():
                host_groups[member].append(group)
        hosts: list[Host] = []
        for r in resolved:
            if r.connection is None or r.desired is None:  # pragma: no cover - every cause is reported
                raise AssertionError(f"host {r.name} did not resolve, yet no problem was reported")
            groups = tuple(host_groups[r.name])
            hosts.append(Host(name=r.name, connection=r.connection, desired=r.desired, groups=groups))
        return Inventory(
            path=self.path, hosts=tuple(hosts), groups=MappingProxyType(group_hosts), warnings=tuple(self.warnings)
        )

    def _resolve_hosts(self, depths: dict[str, int], memberships: dict[str, set[str]]) -> list[_Resolved]:
        """Each host's variables merged by precedence (host > child group > parent group > all)."""
        group_vars = {
            g.name: self._parse_vars(_merge_defs(g.var_defs), _Where(group=g.name))
            for g in self.groups.values()
        }
        priority = {name: self._priority(group_vars[name]) for name in self.groups}
        resolved: list[_Resolved] = []
        for name, mentions in self.host_mentions.items():
            host_vars = self._parse_vars(_merge_defs(mentions), _Where(host=name))
            ordered = sorted(memberships[name], key=lambda g: (depths[g], priority[g], g))
            merged: _Merged = {}
            for group in ordered:
                for key, value in group_vars[group].items():
                    merged[key] = (value, _Where(group=group))
            for key, value in host_vars.items():
                merged[key] = (value, _Where(host=name))
            resolved.append(self._resolve_host(name, merged))
        return resolved

    def _group_hosts(self, memberships: dict[str, set[str]]) -> dict[str, tuple[str, ...]]:
        """Group -> its hosts in inventory order, with Ansible's implicit `all` and `ungrouped`."""
        group_hosts: dict[str, tuple[str, ...]] = {"all": tuple(self.host_mentions)}
        for group in self.groups:
            if group != "all":
                group_hosts[group] = tuple(h for h in self.host_mentions if group in memberships[h])
        if "ungrouped" not in group_hosts:
            loose = tuple(h for h in self.host_mentions if memberships[h] == {"all"})
            if loose:
                group_hosts["ungrouped"] = loose
        return group_hosts

    # --- the tree ---

    def _walk_top(self, data: object) -> bool:
        if data is None:
            self.report(Problem(None, None, "the file is empty: an inventory starts with 'all:'"))
            return False
        if not isinstance(data, dict) or "all" not in data:
            self.report(Problem(None, None, "the top level must be 'all:' (Ansible's YAML inventory shape)"))
            return False
        extra = [str(k) for k in data if k != "all"]
        if extra:
            self.report(
                Problem(
                    None,
                    None,
                    f"top-level key(s) {', '.join(extra)} outside 'all:': move them under all: children:",
                )
            )
        self._walk_group("all", data["all"], None, ())
        return True

    def _walk_group(self, name: str, data: object, parent: str | None, order: tuple[int, ...]) -> None:
        group = self.groups.setdefault(name, _Group(name))
        if parent is not None and parent not in group.parents:
            group.parents.append(parent)
        where = _Where(group=name)
        if data is None:
            return
        if not isinstance(data, dict):
            self.report(
                where.problem(None, f"{ds.show(data)} is not a group: expected hosts:, children: or vars:")
            )
            return
        # Ansible applies a group's vars, then its children, then its hosts: `order` keys replay that.
        for key, value in data.items():
            if key == "vars":
                if isinstance(value, dict):
                    group.var_defs.append(((*order, 0), value))
                elif value is not None:
                    self.report(where.problem("vars", "is not a mapping of variable: value"))
            elif key == "children":
                if isinstance(value, dict):
                    for index, (child, child_data) in enumerate(value.items()):
                        if str(child) == "all":
                            self.report(where.problem("children", "'all' cannot be a child group"))
                        else:
                            self._walk_group(str(child), child_data, name, (*order, 1, index))
                elif value is not None:
                    self.report(
                        where.problem("children", "is not a mapping of group names (end each name with ':')")
                    )
            elif key == "hosts":
                if isinstance(value, dict):
                    for index, (pattern, host_vars) in enumerate(value.items()):
                        self._add_hosts(group, str(pattern), host_vars, (*order, 2, index))
                elif value is not None:
                    self.report(
                        where.problem("hosts", "is not a mapping of host names (end each name with ':')")
                    )
            else:
                hint = " (variables go under vars:)" if str(key).startswith(("dsr_", "ansible_")) else ""
                self.report(
                    where.problem(
                        str(key), f"unexpected key: a group holds only hosts:, children: and vars:{hint}"
                    )
                )

    def _add_hosts(self, group: _Group, pattern: str, host_vars: object, order: tuple[int, ...]) -> None:
        try:
            names, port = _expand_host_pattern(pattern)
        except FieldError as exc:
            self.report(_Where(group=group.name).problem("hosts", f"{pattern!r}: {exc.message}"))
            return
        if host_vars is not None and not isinstance(host_vars, dict):
            for name in names:
                self.report(
                    _Where(host=name).problem(None, f"{ds.show(host_vars)} is not a mapping of variables")
                )
            return
        mention: dict[object, object] = {} if port is None else {"ansible_port": port}
        mention.update(host_vars or {})
        if len(self.host_mentions) + sum(n not in self.host_mentions for n in names) > MAX_HOSTS:
            self.too_many = True
            return
        for name in names:
            if name not in group.listed:
                group.listed.add(name)
                group.hosts.append(name)
            self.host_mentions.setdefault(name, []).append((order, mention))

    def _depths(self) -> dict[str, int] | None:
        # Ansible's group depth: one more than the deepest parent, so a group nested at two places
        # sorts after everything above either of them.
        depths: dict[str, int] = {}
        visiting: set[str] = set()

        def depth(name: str) -> int:
            if name in depths:
                return depths[name]
            if name in visiting:
                raise _CycleError(name)
            visiting.add(name)
            parents = self.groups[name].parents
            value = 0 if name == "all" else 1 + max((depth(p) for p in parents), default=0)
            visiting.discard(name)
            depths[name] = value
            return value

        for name in self.groups:
            try:
                depth(name)
            except _CycleError as exc:
                self.report(
                    _Where(group=exc.group).problem(
                        "children", "is its own ancestor: break the children: loop"
                    )
                )
                return None
        return depths

    def _memberships(self) -> dict[str, set[str]]:
        def ancestors(name: str, acc: set[str]) -> set[str]:
            if name not in acc:
                acc.add(name)
                for parent in self.groups[name].parents:
                    ancestors(parent, acc)
            return acc

        result: dict[str, set[str]] = {name: {"all"} for name in self.host_mentions}
        for group in self.groups.values():
            for host in group.hosts:
                ancestors(group.name, result[host])
        return result

    # --- variables ---

    def _priority(self, parsed: Mapping[str, object]) -> int:
        value = parsed.get("ansible_group_priority", 1)
        return value if isinstance(value, int) else 1

    def _parse_vars(self, raw: Mapping[object, object], where: _Where) -> dict[str, object]:
        """Parse the variables we know, where they are written, so a bad group value is reported once."""
        parsed: dict[str, object] = {}
        for key_obj, value in raw.items():
            key = str(key_obj)
            if key.startswith("dsr_") and ds.variable(key) is None:
                self.report(where.problem(key, ds.unknown_key_message(key)))
                continue
            if key.startswith("ansible_") and key not in _KNOWN_ANSIBLE and not _INTERPRETER.fullmatch(key):
                self.warn(where.problem(key, _unsupported_message(key)))
                continue
            if not (key.startswith("dsr_") or key in _VAR_SETTING or key == "ansible_group_priority"):
                continue
            if value is None and (key in _VAR_SETTING or key == "ansible_group_priority"):
                parsed[key] = None  # an explicit null falls back to the default
                continue
            try:
                parsed[key] = self._parse_value(key, value, where)
            except FieldError as exc:
                self.report(where.problem(exc.field or key, exc.message))
                parsed[key] = _INVALID
            except FieldErrors as exc:
                for error in exc.errors:
                    self.report(where.problem(error.field or key, error.message))
                parsed[key] = _INVALID
        return parsed

    def _parse_value(self, key: str, value: object, where: _Where) -> object:
        if isinstance(value, _Vaulted):
            raise FieldError(
                "is encrypted with ansible-vault, which dsrprep does not decrypt: "
                "use \"{{ lookup('env', 'NAME') }}\" or \"env:NAME\" for secrets"
            )
        setting = _VAR_SETTING.get(key)
        if setting == "password":
            return _parse_password(value, self.env, require=self.require_secrets)
        if isinstance(value, str) and not isinstance(value, _Unsafe) and ("{{" in value or "{%" in value):
            raise FieldError(
                f"{value!r} is a template; dsrprep does not evaluate templates: write the value itself"
            )
        if key == "ansible_group_priority":
            if where.host is not None:
                return None
            return ds.parse_int(value, 1, None, "a group priority")
        if setting == "auth":
            return _parse_transport(value) if key == "ansible_winrm_transport" else _parse_auth(value)
        if setting is not None:
            return _VALUE_PARSERS[setting](value)
        return ds.parse_dsr_value(key, value)

    def _setting(self, merged: _Merged, setting: str) -> tuple[str, object]:
        """The variable that provides `setting` and its value; ("<preferred name>", None) when unset."""
        names = _SETTING_VARS[setting]
        for name in reversed(names):
            if name in merged and merged[name][0] is not None:
                return name, merged[name][0]
        return names[-1], None

    # --- one host ---

    def _resolve_host(self, name: str, merged: _Merged) -> _Resolved:
        here = _Where(host=name)
        settings = {s: self._setting(merged, s) for s in _SETTING_VARS}
        connection, address, port = self._connection(name, settings, merged)
        dsr_values = {k: v for k, (v, _) in merged.items() if k.startswith("dsr_") and v is not _INVALID}
        invalid = {k for k, (v, _) in merged.items() if k.startswith("dsr_") and v is _INVALID}
        if address is None:
            invalid.add("dsr_nic")  # the NIC default needs the address, whose problem is reported
        desired, errors = ds.build_desired(dsr_values, host_address=address or "", invalid=frozenset(invalid))
        for error in errors:
            self.report(here.problem(error.field, error.message))
        peer = dsr_values.get("dsr_verify_peer")
        if isinstance(peer, str):
            if peer == name:
                self.report(here.problem("dsr_verify_peer", "names this host itself: name another server"))
            elif peer not in self.host_mentions:
                self.report(
                    merged["dsr_verify_peer"][1].problem(
                        "dsr_verify_peer",
                        f"{peer!r} is not a host of this inventory{_guess(peer, list(self.host_mentions))}",
                    )
                )
        # The cross-host checks use whatever parsed, so one bad value does not hide a conflict.
        nic = dsr_values.get("dsr_nic")
        if isinstance(nic, NicSelector):
            nic_address = nic.value if nic.by == "address" else None
        else:
            nic_address = address if address is not None and ds.is_ip(address) else None
        vips = dsr_values.get("dsr_vips")
        return _Resolved(
            name=name,
            address_var=settings["address"][0],
            address=address,
            port=port,
            nic_address=nic_address,
            vips=cast("tuple[Vip, ...]", vips) if isinstance(vips, tuple) else (),
            connection=connection,
            desired=desired,
        )

    def _connection(
        self, name: str, settings: Mapping[str, tuple[str, object]], merged: _Merged
    ) -> tuple[Connection | None, str | None, int | None]:
        """The host's Connection (None when something is wrong), its address and port (None when unknown).

        Checks that combine settings run only when every setting they read parsed, so one typo
        does not produce a second, misleading complaint.
        """
        here = _Where(host=name)
        before = len(self.problems)
        s = _Settings.of(settings)

        address = _address_or_none(s.given("address"))
        if address is None and "address" not in s.bad:
            try:
                address = _parse_address(name)
            except FieldError as exc:
                self.report(here.problem("ansible_host", f"not set, and the host name {exc.message}"))

        auth, protocol, port = self._endpoint(here, s)
        insecure = merged.get("dsr_allow_insecure_basic", (ds.defaults()["dsr_allow_insecure_basic"], here))[0]
        allow_insecure_basic = insecure is True
        self._check_encryption(here, s, auth, protocol, opt_in=True if insecure is _INVALID else insecure is True)
        self._check_certificate_auth(here, s, auth, protocol)
        self._check_timeouts(here, s)
        self._warn_ineffective(here, s, auth, protocol)

        secret = s.given("password")

        if (
            s.bad
            or address is None
            or len(self.problems) > before
            or not (secret is None or isinstance(secret, _Secret))
        ):
            return None, address, None if s.bad & {"port", "protocol", "auth"} else port
        connection = _make_connection(
            s, address=address, port=port, auth=auth, protocol=protocol, secret=secret,
            allow_insecure_basic=allow_insecure_basic,
        )
        return connection, address, port

    def _endpoint(self, here: _Where, s: _Settings) -> tuple[str, str, int]:
        """Auth, protocol and port; ansible_winrm_transport ssl implies https, port 5986 too."""
        auth_value = s.given("auth")
        auth, implied_protocol = (
            cast("tuple[str, str | None]", auth_value)
            if isinstance(auth_value, tuple)
            else (cast(str, CONNECTION_DEFAULTS["auth"]), None)
        )
        protocol = cast("str | None", s.get("protocol"))
        port = cast("int | None", s.get("port"))
        if implied_protocol is not None and protocol is not None and protocol != implied_protocol:
            self.report(
                here.problem(
                    s.var("protocol"), f"is {protocol} but ansible_winrm_transport ssl means Basic over https"
                )
            )
        protocol = protocol or implied_protocol or ("https" if port == HTTPS_PORT else "http")
        if port is None:
            port = HTTPS_PORT if protocol == "https" else HTTP_PORT
        return auth, protocol, port

    def _check_encryption(self, here: _Where, s: _Settings, auth: str, protocol: str, *, opt_in: bool) -> None:
        """Message encryption against auth and protocol; `opt_in` is dsr_allow_insecure_basic (or unknown)."""
        encryption = cast(str, s.get("message_encryption"))
        if not s.bad & {"auth", "message_encryption"} and auth in ("basic", "certificate") and encryption == "always":
            self.report(
                here.problem(
                    s.var("message_encryption"),
                    f"'always' cannot work with {auth} auth, which has no message encryption: "
                    "use https with 'auto'",
                )
            )
        if s.bad & {"auth", "protocol", "port", "message_encryption"} or auth != "basic" or protocol != "http":
            return
        if encryption != "never":
            self.report(
                here.problem(
                    s.var("message_encryption"),
                    f"{encryption!r}{'' if s.given('message_encryption') else ' (the default)'} "
                    "cannot work with Basic auth over http, which has no message encryption: use https "
                    "(or negotiate auth), or accept clear text with "
                    "ansible_psrp_message_encryption: never and dsr_allow_insecure_basic: true",
                )
            )
        elif not opt_in:
            self.report(
                here.problem(
                    "dsr_allow_insecure_basic",
                    "Basic auth over http sends credentials and scripts in clear: use https "
                    "(or negotiate auth), or set dsr_allow_insecure_basic: true to accept that",
                )
            )

    def _check_certificate_auth(self, here: _Where, s: _Settings, auth: str, protocol: str) -> None:
        if s.bad & {"auth", "protocol", "port"} or auth != "certificate":
            return
        if protocol != "https":
            self.report(
                here.problem(s.var("protocol"), "certificate auth needs https: set ansible_psrp_protocol: https")
            )
        for setting in ("certificate_pem", "certificate_key_pem"):
            if s.given(setting) is None:
                self.report(
                    here.problem(s.var(setting), "certificate auth needs the client certificate and key files")
                )

    def _check_timeouts(self, here: _Where, s: _Settings) -> None:
        read_timeout = cast(int, s.get("read_timeout"))
        operation_timeout = cast(int, s.get("operation_timeout"))
        if not s.bad & {"read_timeout", "operation_timeout"} and read_timeout <= operation_timeout:
            # A WSMan receive long-polls for operation_timeout; a read deadline no longer than that
            # cuts healthy polls off.
            self.report(
                here.problem(
                    s.var("read_timeout"),
                    f"{read_timeout} must be greater than the operation timeout ({operation_timeout}, "
                    f"{s.var('operation_timeout')})",
                )
            )
        if "operation_timeout" not in s.bad and operation_timeout * 1000 > WINRM_MAX_TIMEOUT_MS:
            # WinRM answers a longer OperationTimeout as if it were MaxTimeoutms ([MS-WSMV] 3.1.4.1.7).
            self.warn(
                here.problem(
                    s.var("operation_timeout"),
                    f"{operation_timeout} s is above WinRM's MaxTimeoutms ({WINRM_MAX_TIMEOUT_MS // 1000} s by "
                    "default): hosts at the default wait at most that long per request",
                )
            )

    def _warn_ineffective(self, here: _Where, s: _Settings, auth: str, protocol: str) -> None:
        """Settings that parse but that pypsrp would ignore for this host, and settings that weaken its
        security: warnings, not errors."""
        if "auth" not in s.bad and auth not in ("negotiate", "ntlm", "kerberos"):
            for setting in _NEGOTIATE_SETTINGS:
                if s.given(setting) not in (None, _INVALID):
                    self.warn(
                        here.problem(
                            s.var(setting),
                            f"has no effect with {auth} auth: it applies to negotiate, ntlm and kerberos only",
                        )
                    )
        if protocol == "https" and s.given("cert_validation") == "ignore":
            self.warn(
                here.problem(
                    s.var("cert_validation"),
                    "ignore: the host's certificate is not checked, so whoever sits between this machine and "
                    "the host can pose as it and take the credentials: give its CA in ansible_psrp_ca_cert instead",
                )
            )
        if protocol == "http" and auth != "basic" and s.get("message_encryption") == "never":
            self.warn(
                here.problem(
                    s.var("message_encryption"),
                    "never: over http every script and its output crosses the network in clear (and WinRM "
                    "refuses that unless AllowUnencrypted is on): keep auto",
                )
            )
        if s.given("ignore_proxy") is True and s.given("proxy") not in (None, _INVALID):
            self.warn(
                here.problem(
                    s.var("ignore_proxy"), f"has no effect: {s.var('proxy')} is set, and that proxy is used"
                )
            )

    # --- the whole fleet ---

    def _cross_checks(self, resolved: Sequence[_Resolved]) -> None:
        endpoints: dict[tuple[str, int], str] = {}
        owners: dict[str, tuple[str, str]] = {}  # IP -> (host, which variable gives it)
        for r in resolved:
            if r.address is not None and r.port is not None:
                key = (r.address.lower(), r.port)
                if key in endpoints:
                    self.report(
                        _Where(host=r.name).problem(
                            r.address_var,
                            f"{r.address}:{r.port} is also host {endpoints[key]}'s endpoint: "
                            "one server listed under two names would be prepared twice",
                        )
                    )
                else:
                    endpoints[key] = r.name
            if r.address is not None and ds.is_ip(r.address):
                owners.setdefault(r.address, (r.name, "ansible_host"))
            if r.nic_address is not None:
                owners.setdefault(r.nic_address, (r.name, "dsr_nic address"))

        for r in resolved:
            own: dict[str | None, str] = {r.address: "ansible_host"}
            own.setdefault(r.nic_address, "dsr_nic address")
            for index, vip in enumerate(r.vips):
                if vip.address in own:
                    whose = f"this host's own address ({own[vip.address]})"
                elif vip.address in owners:
                    owner, how = owners[vip.address]
                    whose = f"the address of host {owner} ({how})"
                else:
                    continue
                self.report(
                    _Where(host=r.name).problem(
                        f"dsr_vips[{index}]",
                        f"{vip.address} is {whose}: a VIP must be an address no server owns",
                    )
                )


@dataclass(frozen=True)
class _Settings:
    """One host's connection settings: setting -> (the variable that gives it, its parsed value).

    An unset setting has the variable that would win and the value None; one that failed to parse
    (already reported) has _INVALID and is in `bad`.
    """

    found: Mapping[str, tuple[str, object]]
    bad: frozenset[str]

    @classmethod
    def of(cls, found: Mapping[str, tuple[str, object]]) -> _Settings:
        return cls(found, frozenset(setting for setting, (_, value) in found.items() if value is _INVALID))

    def given(self, setting: str) -> object:
        """The parsed value as written: None when unset, _INVALID when it did not parse."""
        return self.found[setting][1]

    def get(self, setting: str) -> object:
        """The value in effect: the written one, else the default (None when there is none)."""
        value = self.found[setting][1]
        return CONNECTION_DEFAULTS.get(setting) if value is None or value is _INVALID else value

    def var(self, setting: str) -> str:
        return self.found[setting][0]


def _make_connection(
    s: _Settings, *, address: str, port: int, auth: str, protocol: str, secret: _Secret | None,
    allow_insecure_basic: bool,
) -> Connection:
    """The Connection of a host whose every setting parsed and passed the checks."""
    return Connection(
        address=address,
        port=port,
        user=cast("str | None", s.given("user")),
        password=secret.value if secret else None,  # None also for an unset reference when checking
        auth=auth,
        protocol=protocol,
        cert_validation=s.get("cert_validation") == "validate",
        ca_cert=cast("str | None", s.given("ca_cert")),
        connection_timeout=cast(int, s.get("connection_timeout")),
        read_timeout=cast(int, s.get("read_timeout")),
        operation_timeout=cast(int, s.get("operation_timeout")),
        message_encryption=cast(str, s.get("message_encryption")),
        configuration_name=cast(str, s.get("configuration_name")),
        password_source=secret.source if secret else None,
        certificate_pem=cast("str | None", s.given("certificate_pem")),
        certificate_key_pem=cast("str | None", s.given("certificate_key_pem")),
        allow_insecure_basic=allow_insecure_basic,
        path=cast(str, s.get("path")),
        max_envelope_size=cast(int, s.get("max_envelope_size")),
        reconnection_retries=cast(int, s.get("reconnection_retries")),
        reconnection_backoff=cast(float, s.get("reconnection_backoff")),
        proxy=cast("str | None", s.get("proxy")),
        ignore_proxy=cast(bool, s.get("ignore_proxy")),
        negotiate_delegate=cast(bool, s.get("negotiate_delegate")),
        negotiate_hostname_override=cast("str | None", s.get("negotiate_hostname_override")),
        negotiate_send_cbt=cast(bool, s.get("negotiate_send_cbt")),
        negotiate_service=cast(str, s.get("negotiate_service")),
    )


@dataclass(frozen=True)
class _Resolved:
    """What one host resolved to; the parts that parsed feed the cross-host checks."""

    name: str
    address_var: str
    address: str | None
    port: int | None
    nic_address: str | None
    vips: tuple[Vip, ...]
    connection: Connection | None
    desired: Desired | None


class _CycleError(Exception):
    def __init__(self, group: str) -> None:
        super().__init__(group)
        self.group = group


def _unsupported_message(key: str) -> str:
    if key.startswith(_CONNECTION_PREFIXES):
        close = difflib.get_close_matches(key, list(_VAR_SETTING), n=1, cutoff=0.85)
        hint = (
            f"did you mean {close[0]}?"
            if close
            else "remove it (inventory/example.yml lists the connection variables dsrprep reads)"
        )
        return f"is not supported by dsrprep and has no effect: {hint}"
    close = difflib.get_close_matches(key, _KNOWN_ANSIBLE, n=1, cutoff=0.8)
    hint = f"did you mean {close[0]}?" if close else "inventory/example.yml lists the variables dsrprep reads"
    return f"is not an Ansible variable dsrprep knows, and has no effect: {hint}"


def _address_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _merge_defs(defs: Iterable[tuple[tuple[int, ...], Mapping[object, object]]]) -> dict[object, object]:
    merged: dict[object, object] = {}
    for _, values in sorted(defs, key=lambda d: d[0]):
        merged.update(values)
    return merged


# --- host patterns -----------------------------------------------------------------------------------

_RANGE = re.compile(r"\[([0-9]*|[a-zA-Z]):([0-9]+|[a-zA-Z])(?::([0-9]+))?\]")
_BRACKETED_IP = re.compile(r"\[([0-9A-Fa-f:.%]+)\](?::(\d+))?")
_NAME_PORT = re.compile(r"(.+):(\d+)")


def _expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Ansible host keys: `name`, `name:port`, `[v6addr]:port`, ranges like `web[01:20].corp`."""
    text = pattern.strip()
    if not text:
        raise FieldError("is an empty host name")
    bracketed = _BRACKETED_IP.fullmatch(text)
    if bracketed and ds.is_ip(bracketed.group(1)):
        port = bracketed.group(2)
        return [bracketed.group(1)], ds.parse_port(port) if port else None
    if ds.is_ip(text):
        return [text], None
    port_value: int | None = None
    with_port = _NAME_PORT.fullmatch(text)
    if with_port and ":" not in _RANGE.sub("", with_port.group(1)):
        text, port_value = with_port.group(1), ds.parse_port(with_port.group(2))
    names = _expand_ranges(text)
    if len(names) > _MAX_RANGE_HOSTS:
        raise FieldError(f"expands to {len(names)} hosts (at most {_MAX_RANGE_HOSTS})")
    return names, port_value


def _expand_ranges(text: str) -> list[str]:
    match = _RANGE.search(text)
    if not match:
        return [text]
    head, tail = text[: match.start()], text[match.end() :]
    begin, end, step_text = match.group(1) or "0", match.group(2), match.group(3)
    step = int(step_text) if step_text else 1
    if step < 1:
        raise FieldError("has a range step below 1")
    if begin.isdigit() != end.isdigit():
        raise FieldError(f"range [{begin}:{end}] mixes digits and letters")
    if begin.isdigit():
        width = len(begin) if len(begin) > 1 and begin.startswith("0") else 0
        if width and len(end) != width:
            raise FieldError(f"range [{begin}:{end}] has ends of different widths")
        values = [str(i).zfill(width) for i in range(int(begin), int(end) + 1, step)]
    else:
        values = [chr(c) for c in range(ord(begin), ord(end) + 1, step)]
    if not values:
        raise FieldError(f"range [{begin}:{end}] is empty")
    if len(values) > _MAX_RANGE_HOSTS:
        raise FieldError(f"range [{begin}:{end}] has more than {_MAX_RANGE_HOSTS} values")
    rest = _expand_ranges(tail)
    if len(values) * len(rest) > _MAX_RANGE_HOSTS:  # checked before the names are made
        raise FieldError(f"expands to {len(values) * len(rest)} hosts (at most {_MAX_RANGE_HOSTS})")
    return [head + value + suffix for value in values for suffix in rest]


def _split_pattern(pattern: str) -> list[str]:
    # Ansible: commas separate terms; without commas, colons do (unless the whole thing is an address).
    text = pattern.strip()
    if "," in text:
        parts = text.split(",")
    elif ds.is_ip(text.strip("[]")):
        parts = [text.strip("[]")]
    else:
        parts = text.split(":")
    return [p.strip() for p in parts if p.strip()]


def _guess(word: str, candidates: Sequence[str]) -> str:
    close = difflib.get_close_matches(word.lstrip("!&~"), list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
