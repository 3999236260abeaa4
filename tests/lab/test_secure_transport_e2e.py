"""Secure transport defaults, through dsrprep's own transport (PsrpSession) and command line against
the lab: NTLM over HTTPS validated against the fleet's CA with channel binding, a certificate that is
not trusted refused with a clear message, an ignored certificate check said as a warning, Basic over
plain http refused without the explicit opt-in, and an auth whose optional library is missing named."""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.errors import AuthError, Unreachable
from orchestrator.inventory import Connection, load_inventory
from orchestrator.lab.build import build_fleet
from orchestrator.lab.fleet import LabFleet
from orchestrator.runner import facts_script
from orchestrator.transport import PsrpSession

pytestmark = pytest.mark.lab


@pytest.fixture
def https_fleet(tmp_path: Path) -> Iterator[tuple[LabFleet, Path]]:
    with LabFleet(build_fleet(1, seed=4, profile="2019"), base_octet=80, https=True) as fleet:
        path = tmp_path / "lab.yml"
        fleet.write_inventory(path)
        yield fleet, path


def rewrite(path: Path, **variables: Any) -> Path:
    """The inventory at `path` with `variables` set for all hosts (None removes one)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, value in variables.items():
        if value is None:
            data["all"]["vars"].pop(name, None)
        else:
            data["all"]["vars"][name] = value
    out = path.with_name(f"{path.stem}-{len(list(path.parent.glob('*.yml')))}.yml")
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def connection(path: Path) -> Connection:
    return load_inventory(path).hosts[0].connection


def run_facts(conn: Connection) -> Any:
    session = PsrpSession(conn)
    try:
        script = facts_script()
        return session.run(script.text, script.parameters, timeout=30).output
    finally:
        session.close()


def test_ntlm_over_https_with_the_fleet_ca_sends_channel_binding(https_fleet: tuple[LabFleet, Path]) -> None:
    fleet, path = https_fleet
    conn = connection(rewrite(path, ansible_psrp_auth="ntlm"))
    assert (conn.auth, conn.protocol, conn.cert_validation, conn.negotiate_send_cbt) == ("ntlm", "https", True, True)
    assert conn.ca_cert == str(fleet.ca_file)
    assert run_facts(conn)
    counters = fleet.hosts[0].counters
    assert counters.auth_failures == 0 and counters.shells_open == 0
    # The host checks the binding to its certificate: the same client without it is refused.
    with pytest.raises(AuthError):
        run_facts(dataclasses.replace(conn, negotiate_send_cbt=False))
    assert counters.auth_failures >= 1


def test_a_certificate_that_is_not_trusted_is_refused_clearly(https_fleet: tuple[LabFleet, Path]) -> None:
    _fleet, path = https_fleet
    conn = connection(rewrite(path, ansible_psrp_ca_cert=None))  # validate against the system's store
    assert conn.cert_validation and conn.ca_cert is None
    with pytest.raises(Unreachable) as refused:
        PsrpSession(conn).open()
    message = str(refused.value)
    assert "the host's certificate is not trusted" in message and "ansible_psrp_ca_cert" in message


def test_a_certificate_for_another_name_is_refused_clearly(tmp_path: Path) -> None:
    # A host on 127.0.0.1, reached as "localhost": a name its certificate (web01, 127.0.0.1) does not hold.
    with LabFleet(build_fleet(1, seed=4, profile="2019"), base_octet=1, https=True) as fleet:
        path = tmp_path / "lab.yml"
        fleet.write_inventory(path)
        conn = dataclasses.replace(connection(path), address="localhost")
        with pytest.raises(Unreachable) as refused:
            PsrpSession(conn).open()
    assert "does not name the address dsrprep connects to" in str(refused.value), str(refused.value)


def test_an_ignored_certificate_check_works_with_a_warning(https_fleet: tuple[LabFleet, Path], tmp_path: Path) -> None:
    _fleet, path = https_fleet
    inventory = rewrite(path, ansible_psrp_ca_cert=None, ansible_psrp_cert_validation="ignore")
    done = CliRunner().invoke(app, ["facts", str(inventory), "--runs-dir", str(tmp_path / "runs")])
    assert done.exit_code == 0, done.output
    warning = "host web01: ansible_psrp_cert_validation: ignore: the host's certificate is not checked"
    assert f"WARNING: {inventory}: {warning}" in " ".join(done.stderr.split())


def test_basic_over_http_needs_the_explicit_opt_in(tmp_path: Path) -> None:
    with LabFleet(build_fleet(1, seed=4, profile="2016"), base_octet=85) as fleet:
        handle = fleet.hosts[0]
        handle.winrm.basic = handle.winrm.allow_unencrypted = True  # the host allows it: the client must not
        path = tmp_path / "lab.yml"
        fleet.write_inventory(path)
        basic = rewrite(path, ansible_psrp_auth="basic", ansible_psrp_message_encryption="never")
        runner = CliRunner()
        refused = runner.invoke(app, ["facts", str(basic), "--runs-dir", str(tmp_path / "runs")])
        assert refused.exit_code == 2
        assert "dsr_allow_insecure_basic: Basic auth over http sends credentials and scripts in clear" in \
            " ".join(refused.stderr.split())
        assert sum(handle.counters.wsman.values()) == 0  # nothing was sent
        # The transport refuses such a connection too, wherever it comes from.
        conn = connection(rewrite(basic, dsr_allow_insecure_basic=True))
        with pytest.raises(AuthError, match="dsr_allow_insecure_basic"):
            PsrpSession(dataclasses.replace(conn, allow_insecure_basic=False)).open()
        opted_in = runner.invoke(app, ["facts", str(rewrite(basic, dsr_allow_insecure_basic=True)),
                                       "--runs-dir", str(tmp_path / "runs")])
        assert opted_in.exit_code == 0, opted_in.output


@pytest.mark.skipif(importlib.util.find_spec("gssapi") is not None, reason="Kerberos support is installed")
def test_kerberos_without_its_library_says_what_to_install(tmp_path: Path) -> None:
    with LabFleet(build_fleet(1, seed=4, profile="2016"), base_octet=88) as fleet:
        path = tmp_path / "lab.yml"
        fleet.write_inventory(path)
        conn = connection(rewrite(path, ansible_psrp_auth="kerberos"))
        with pytest.raises(AuthError) as refused:
            PsrpSession(conn).open()
    assert "pip install 'dsrprep[kerberos]'" in str(refused.value)
