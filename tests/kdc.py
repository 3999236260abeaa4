"""A throwaway MIT Kerberos KDC for the tests: a realm in a temporary directory, served by `krb5kdc`
in the foreground as a child process on 127.0.0.1 and a free port, stopped (killed if it must be)
when the block ends.

`kerberos_realm()` yields a `Kdc` whose `env` (KRB5_CONFIG, KRB5_KDC_PROFILE, KRB5_KTNAME,
KRB5CCNAME, KRB5RCACHEDIR) points every Kerberos library of a process at it: the client (pypsrp
through pyspnego and gssapi) and the lab's acceptor alike. krb5.conf turns off DNS and reverse DNS
(`rdns = false`, `dns_canonicalize_hostname = false`), so a service's host name needs no DNS or
/etc/hosts entry: the name in the SPN is the name the client was given.

`missing()` names what this machine lacks to run one (the KDC programs, python-gssapi), so a test
can skip with that exact reason.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REALM = "LAB.TEST"
# krb5-kdc has krb5kdc and kdb5_util, krb5-admin-server kadmin.local, krb5-user kinit (Debian 12).
_PROGRAMS = ("krb5kdc", "kdb5_util", "kadmin.local")
_START_WAIT = 15.0  # seconds for the KDC to listen; a bound wait, not a measurement
_STOP_WAIT = 5.0


def missing() -> str | None:
    """Why a KDC-backed test cannot run here, or None."""
    absent = [p for p in _PROGRAMS if _program(p) is None]
    if absent:
        return (f"{', '.join(absent)} not found: install the Debian packages krb5-kdc and krb5-admin-server "
                "(.ci/run does, as root with apt-get)")
    if importlib.util.find_spec("gssapi") is None:
        return "python-gssapi is not importable: pip install -e '.[kerberos]' (it builds against libkrb5-dev)"
    return None


def _program(name: str) -> str | None:
    # kdb5_util and friends live in /usr/sbin, which an unprivileged PATH may lack.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")


@dataclass
class Kdc:
    """A running realm: add principals with `add_user` and `add_service`, tickets with `kinit`."""

    realm: str
    directory: Path
    port: int
    env: dict[str, str]
    keytab: Path
    _run_env: dict[str, str] = field(repr=False)
    _services: set[str] = field(default_factory=set, repr=False)

    def kadmin(self, query: str) -> None:
        _run([_need("kadmin.local"), "-r", self.realm, "-q", query], self._run_env)

    def add_user(self, name: str, password: str) -> str:
        """Adds `name@REALM` with `password`; returns the principal."""
        principal = f"{name}@{self.realm}"
        self.kadmin(f"addprinc -pw {password} {principal}")
        return principal

    def add_service(self, service: str, host: str) -> str:
        """Adds `service/host@REALM` with a random key, written to the keytab (`env['KRB5_KTNAME']`)."""
        principal = f"{service}/{host}@{self.realm}"
        if principal not in self._services:
            self.kadmin(f"addprinc -randkey {principal}")
            self.kadmin(f"ktadd -k {self.keytab} {principal}")
            self._services.add(principal)
        return principal

    def kinit(self, principal: str, password: str) -> Path:
        """A ticket cache for `principal`, made by MIT's kinit from its password: the cache
        `env['KRB5CCNAME']` names."""
        cache = Path(self.env["KRB5CCNAME"].removeprefix("FILE:"))
        _run([_need("kinit"), principal], self._run_env, stdin=password + "\n")
        return cache


def _need(name: str) -> str:
    path = _program(name)
    if path is None:
        raise RuntimeError(f"{name} not found: {missing()}")
    return path


def _run(argv: list[str], env: dict[str, str], stdin: str | None = None) -> None:
    done = subprocess.run(argv, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({done.returncode}): {done.stderr.strip()}")


def _free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP both (the KDC listens on both)."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for TCP and UDP on 127.0.0.1")


def _write_config(directory: Path, realm: str, port: int) -> None:
    (directory / "krb5.conf").write_text(
        "[libdefaults]\n"
        f"  default_realm = {realm}\n"
        "  dns_lookup_kdc = false\n"
        "  dns_lookup_realm = false\n"
        "  rdns = false\n"
        "  dns_canonicalize_hostname = false\n"
        "  udp_preference_limit = 1\n"  # TCP: the tests' tickets carry no size surprises
        "[realms]\n"
        f"  {realm} = {{\n    kdc = 127.0.0.1:{port}\n  }}\n"
        "[domain_realm]\n"
        f"  .{realm.lower()} = {realm}\n",
        encoding="utf-8",
    )
    (directory / "kdc.conf").write_text(
        "[kdcdefaults]\n"
        f"  kdc_listen = 127.0.0.1:{port}\n"
        f"  kdc_tcp_listen = 127.0.0.1:{port}\n"
        "[realms]\n"
        f"  {realm} = {{\n"
        f"    database_name = {directory}/principal\n"
        f"    key_stash_file = {directory}/stash\n"
        f"    acl_file = {directory}/kadm5.acl\n"
        f"    kdc_listen = 127.0.0.1:{port}\n"
        f"    kdc_tcp_listen = 127.0.0.1:{port}\n"
        "    max_life = 1h\n"
        "  }\n"
        "[logging]\n"
        f"  kdc = FILE:{directory}/kdc.log\n"
        f"  admin_server = FILE:{directory}/kadmin.log\n",
        encoding="utf-8",
    )
    (directory / "kadm5.acl").write_text("", encoding="utf-8")


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + _START_WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            raise RuntimeError(f"krb5kdc exited with {proc.returncode}: {text[-2000:]}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(0.5)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"krb5kdc did not listen on 127.0.0.1:{port} within {_START_WAIT:.0f} s")


@contextmanager
def kerberos_realm(realm: str = REALM) -> Iterator[Kdc]:
    """A new realm with its KDC running on 127.0.0.1; everything is removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix="dsrprep-kdc-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        port = _free_port()
        _write_config(directory, realm, port)
        env = {
            "KRB5_CONFIG": str(directory / "krb5.conf"),
            "KRB5_KDC_PROFILE": str(directory / "kdc.conf"),
            "KRB5_KTNAME": f"FILE:{directory}/service.keytab",
            "KRB5CCNAME": f"FILE:{directory}/ccache",
            "KRB5RCACHEDIR": str(directory),
        }
        run_env = {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", **env}
        _run([_need("kdb5_util"), "create", "-s", "-r", realm, "-P", secrets.token_urlsafe(16)], run_env)
        proc = subprocess.Popen([_need("krb5kdc"), "-n", "-r", realm], env=run_env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_listening(proc, port, directory / "kdc.log")
        yield Kdc(realm=realm, directory=directory, port=port, env=env,
                  keytab=directory / "service.keytab", _run_env=run_env)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(_STOP_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_STOP_WAIT)
        shutil.rmtree(directory, ignore_errors=True)
