"""Kerberos end to end against a real MIT KDC (tests/kdc.py): the CLI, unmodified pypsrp through
pyspnego and python-gssapi, lab hosts that accept Kerberos with the keys of a keytab, WinRM message
encryption over plain HTTP with the Kerberos session key.

The realm's KDC runs as a child process on 127.0.0.1; krb5.conf turns DNS off, so each host is known
by the name in its SPNs (`ansible_psrp_negotiate_hostname_override`, written by the fleet) and the
client connects to its 127.0.0.x address. Kerberos variables are set for each test only.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import spnego
import yaml
from pypsrp.encryption import WinRMEncryption
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LAB_PASSWORD, LAB_USER, LabFleet
from orchestrator.lab.sealing import KERBEROS_PROTOCOL, SPNEGO_PROTOCOL
from tests import kdc as kdc_module
from tests.clijson import cli
from tests.kdc import Kdc, kerberos_realm

MISSING = kdc_module.missing()
pytestmark = [pytest.mark.lab, pytest.mark.skipif(MISSING is not None, reason=str(MISSING))]

# The service classes under which a Windows host is known in its domain: HTTP (pywinrm, Windows'
# own client), WSMAN (the inventory's default negotiate_service, as Ansible's psrp plugin's).
SERVICES = ("HTTP", "WSMAN")


INTRUDER = "intruder"  # another user of the realm, with the lab's password


@pytest.fixture(scope="module")
def realm() -> Iterator[Kdc]:
    with kerberos_realm() as kdc:
        kdc.add_user(LAB_USER, LAB_PASSWORD)
        kdc.add_user(INTRUDER, LAB_PASSWORD)
        yield kdc


@pytest.fixture
def kdc(realm: Kdc, monkeypatch: pytest.MonkeyPatch) -> Kdc:
    """The realm, with this test's process pointed at it (client and lab hosts alike)."""
    for name, value in realm.env.items():
        monkeypatch.setenv(name, value)
    return realm


def kerberos_fleet(kdc: Kdc, count: int = 1, *, seed: int = 31) -> LabFleet:
    """Lab hosts in the realm; each host's SPNs are known to the KDC and its keys are in the keytab."""
    fleet = LabFleet(build_fleet(count, seed=seed, profile="2016"), base_octet=150, kerberos_realm=kdc.realm)
    for handle in fleet:
        assert handle.kerberos_name is not None
        for service in SERVICES:
            kdc.add_service(service, handle.kerberos_name)
    return fleet


def edit(path: Path, host: str | None = None, **variables: Any) -> Path:
    """The inventory at `path` with `variables` set for all hosts, or for `host` only (None removes one)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if host is None:
        target = data["all"]["vars"]
    else:
        target = next(g["hosts"][host] for g in data["all"]["children"].values() if host in g["hosts"])
    for name, value in variables.items():
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    out = path.with_name(f"{path.stem}-{len(list(path.parent.glob('*.yml')))}.yml")
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def written(fleet: LabFleet, tmp_path: Path) -> Path:
    path = tmp_path / "lab.yml"
    fleet.write_inventory(path)
    return path


@pytest.mark.parametrize("auth", ["kerberos", "negotiate"])
def test_facts_over_kerberos_with_a_password(kdc: Kdc, tmp_path: Path, auth: str) -> None:
    """The user's password gets the ticket (pyspnego asks the KDC itself; no kinit); negotiate auth
    picks Kerberos too when the realm knows the user. Every request after the handshake is sealed
    with the Kerberos key, and NTLM never authenticated anything."""
    with kerberos_fleet(kdc) as fleet:
        inventory = edit(written(fleet, tmp_path), ansible_psrp_auth=auth)
        code, doc = cli("facts", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"))
        handle = fleet.hosts[0]
        assert code == 0, doc
        assert doc["hosts"][handle.name]["status"] == "ok"
        assert doc["hosts"][handle.name]["facts"]["computer_name"] == handle.model.name
        counters = handle.counters
        assert set(counters.authentications) == {"kerberos"}
        assert set(counters.sealed) == {"kerberos"}
        assert counters.sealed["kerberos"] == sum(counters.wsman.values()) > 0
        # pypsrp answers the Negotiate offer (the first it knows of) and seals as SPNEGO.
        assert set(counters.sealed_protocols) == {SPNEGO_PROTOCOL}
        assert counters.auth_failures == 0


def test_rollout_over_kerberos(kdc: Kdc, tmp_path: Path) -> None:
    with kerberos_fleet(kdc) as fleet:
        inventory = written(fleet, tmp_path)
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(tmp_path / "runs"))
        handle = fleet.hosts[0]
        assert code == 0, doc
        assert doc["hosts"][handle.name]["status"] == "changed"
        assert handle.counters.steps["loopback"] == 1
        assert set(handle.counters.authentications) == {"kerberos"}
        assert handle.counters.sealed["kerberos"] == sum(handle.counters.wsman.values())


def test_a_host_that_offers_only_the_kerberos_scheme(kdc: Kdc, tmp_path: Path) -> None:
    """Negotiate turned off on the host: pypsrp authenticates with the Kerberos scheme and seals
    as application/HTTP-Kerberos-session-encrypted."""
    fleet = kerberos_fleet(kdc)
    fleet.hosts[0].auth = frozenset({"kerberos"})
    with fleet:
        code, doc = cli("facts", str(written(fleet, tmp_path)), "--json", "--runs-dir", str(tmp_path / "runs"))
        counters = fleet.hosts[0].counters
        assert code == 0, doc
        assert set(counters.sealed_protocols) == {KERBEROS_PROTOCOL}
        assert counters.sealed["kerberos"] == sum(counters.wsman.values()) > 0


def test_facts_with_a_ticket_from_kinit_and_no_password(kdc: Kdc, tmp_path: Path) -> None:
    kdc.kinit(f"{LAB_USER}@{kdc.realm}", LAB_PASSWORD)
    with kerberos_fleet(kdc) as fleet:
        inventory = edit(written(fleet, tmp_path), ansible_password=None)
        code, doc = cli("facts", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs"))
        assert code == 0, doc
        assert set(fleet.hosts[0].counters.authentications) == {"kerberos"}


REFUSED_BY_THE_HOST = ("ticket for another host", "another user of the realm", "host outside the realm")


@pytest.mark.parametrize("case", ["wrong password", "SPN unknown to the KDC", *REFUSED_BY_THE_HOST])
def test_kerberos_refusals_fail_the_host_clearly(kdc: Kdc, tmp_path: Path, case: str) -> None:
    """Each is an authentication error of that host (exit 1, never retried, no traceback). A ticket
    for another host's SPN, or for another user than the host's, is refused by the lab host itself
    (its keytab holds every lab host's keys: Windows could not open the first at all), and so is a
    ticket offered under Negotiate to a host that is not in the realm."""
    fleet = kerberos_fleet(kdc, 2)
    victim, other = fleet.hosts
    if case == "host outside the realm":
        victim.auth = frozenset({"negotiate", "ntlm"})  # its SPN's key is in the keytab all the same
    with fleet:
        assert other.kerberos_name is not None
        changes: dict[str, Any] = {
            "wrong password": {"ansible_password": "Not-The-Password-1"},
            "ticket for another host": {"ansible_psrp_negotiate_hostname_override": other.kerberos_name},
            "SPN unknown to the KDC": {"ansible_psrp_negotiate_hostname_override": "nobody.lab.test"},
            "another user of the realm": {"ansible_user": f"{INTRUDER}@{kdc.realm}"},
            "host outside the realm": {},
        }[case]
        inventory = edit(written(fleet, tmp_path), victim.name, **changes)
        result = CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs")])
        code, doc = cli("facts", str(inventory), "--json", "--runs-dir", str(tmp_path / "runs-json"))
        assert result.exit_code == code == 1, result.output
        assert "Traceback" not in result.output
        assert victim.name in result.output
        entry = doc["hosts"][victim.name]
        assert entry["status"] == "failed"
        assert entry["error"]["class"] == "AuthError"
        assert entry["attempts"] == 1
        assert doc["hosts"][other.name]["status"] == "ok"
        assert not victim.counters.authentications
        # Two runs; the KDC refuses the first two cases before the host sees a token.
        assert victim.counters.auth_failures == (2 if case in REFUSED_BY_THE_HOST else 0)


def test_the_kerberos_scheme_takes_only_kerberos_sealed_messages(kdc: Kdc) -> None:
    """At the protocol level, with pyspnego and pypsrp's own sealing: after a handshake under the
    Kerberos scheme, a body sealed and named as Kerberos is opened and answered sealed, and the next
    one, sealed with the same key but named as SPNEGO, is refused (HTTP 400)."""
    fleet = kerberos_fleet(kdc)
    fleet.hosts[0].auth = frozenset({"kerberos"})
    with fleet, requests.Session() as http:
        handle = fleet.hosts[0]
        offered = http.post(handle.url, data=b"")
        assert offered.status_code == 401 and offered.headers["WWW-Authenticate"] == "Kerberos"
        context = spnego.client(f"{LAB_USER}@{kdc.realm}", LAB_PASSWORD, hostname=str(handle.kerberos_name),
                                service="WSMAN", protocol="kerberos", options=spnego.NegotiateOptions.wrapping_winrm)
        token = base64.b64encode(context.step() or b"").decode()
        accepted = http.post(handle.url, data=b"", headers={"Authorization": f"Kerberos {token}"})
        assert accepted.status_code == 200
        context.step(base64.b64decode(accepted.headers["WWW-Authenticate"].split()[1]))
        assert context.complete
        answers = []
        for protocol in (KERBEROS_PROTOCOL, SPNEGO_PROTOCOL):
            kind, body = WinRMEncryption(context, protocol).wrap_message(b"<not-soap/>")
            answers.append(http.post(handle.url, data=body, headers={
                "Content-Type": f'{kind};protocol="{protocol}";boundary="Encrypted Boundary"'}))
        opened, refused = answers
        # The SOAP fault for a body that is no envelope, sealed back as Kerberos.
        assert opened.status_code == 500
        assert opened.headers["Content-Type"].startswith(f'multipart/encrypted;protocol="{KERBEROS_PROTOCOL}"')
        assert refused.status_code == 400 and not refused.content
        assert handle.counters.sealed_protocols == {KERBEROS_PROTOCOL: 1}
