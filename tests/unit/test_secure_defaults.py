"""Secure defaults of the transport: message encryption on over http for the negotiate family, Basic
over http refused without the opt-in, weakened settings warned about, missing auth libraries named."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pypsrp.wsman import WSMan

from orchestrator.errors import AuthError
from orchestrator.inventory import Connection, load_inventory
from orchestrator.transport import map_error, wsman_kwargs


def connection(tmp_path: Path, **variables: str) -> tuple[Connection, list[str]]:
    lines = "".join(f"      {k}: {v}\n" for k, v in variables.items())
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    web01:\n      ansible_host: 10.0.0.5\n      ansible_user: admin\n"
                    f"      ansible_password: pw\n      dsr_vips: [10.0.0.50]\n{lines}", encoding="utf-8")
    inv = load_inventory(path)
    return inv.hosts[0].connection, inv.warning_lines()


@pytest.mark.parametrize("auth", ["negotiate", "ntlm", "kerberos", "credssp"])
def test_messages_are_encrypted_over_http_by_default(tmp_path: Path, auth: str) -> None:
    conn, warnings = connection(tmp_path, ansible_psrp_auth=auth)
    assert (conn.protocol, conn.message_encryption, warnings) == ("http", "auto", [])
    assert WSMan(**wsman_kwargs(conn)).transport.wrap_required is True
    over_https = dataclasses.replace(conn, protocol="https", port=5986)
    assert WSMan(**wsman_kwargs(over_https)).transport.wrap_required is False  # TLS protects it there


def test_clear_text_over_http_is_a_warning(tmp_path: Path) -> None:
    conn, warnings = connection(tmp_path, ansible_psrp_message_encryption="never")
    assert conn.message_encryption == "never"
    assert warnings == [f"{tmp_path / 'inv.yml'}: host web01: ansible_psrp_message_encryption: never: over http "
                        "every script and its output crosses the network in clear (and WinRM refuses that "
                        "unless AllowUnencrypted is on): keep auto"]


def test_https_validates_certificates_against_the_ca_given(tmp_path: Path) -> None:
    conn, warnings = connection(tmp_path, ansible_port="5986", ansible_winrm_ca_trust_path="/etc/dsr/ca.pem")
    assert (conn.protocol, warnings) == ("https", [])
    assert wsman_kwargs(conn)["cert_validation"] == "/etc/dsr/ca.pem"
    system, _ = connection(tmp_path, ansible_port="5986")
    assert wsman_kwargs(system)["cert_validation"] is True


def test_an_ignored_certificate_check_is_a_warning(tmp_path: Path) -> None:
    conn, warnings = connection(tmp_path, ansible_port="5986", ansible_psrp_cert_validation="ignore",
                                ansible_psrp_ca_cert="/etc/dsr/ca.pem")
    assert wsman_kwargs(conn)["cert_validation"] is False
    assert len(warnings) == 1 and "ansible_psrp_cert_validation: ignore: the host's certificate is not checked" \
        in warnings[0]


def test_basic_over_http_without_the_opt_in_never_reaches_pypsrp(tmp_path: Path) -> None:
    conn, _ = connection(tmp_path, ansible_psrp_auth="basic", ansible_psrp_message_encryption="never",
                         dsr_allow_insecure_basic="true")
    assert wsman_kwargs(conn)["auth"] == "basic"
    with pytest.raises(AuthError, match="dsr_allow_insecure_basic: true"):
        wsman_kwargs(dataclasses.replace(conn, allow_insecure_basic=False))


@pytest.mark.parametrize(("error", "wanted"), [
    (ImportError("GSSAPIProxy requires the Python gssapi library: No module named 'gssapi'"),
     "pip install 'dsrprep[kerberos]'"),
    (ImportError("Cannot use CredSSP auth as requests-credssp is not installed: No module named 'requests_credssp'"),
     "pip install 'dsrprep[credssp]'"),
])
def test_an_auth_whose_library_is_missing_says_what_to_install(error: ImportError, wanted: str) -> None:
    mapped = map_error(error, phase="connect")
    assert isinstance(mapped, AuthError) and wanted in str(mapped)


def test_a_kerberos_library_error_is_an_auth_error_with_what_to_check() -> None:
    krb5_error = type("Krb5Error", (Exception,), {"__module__": "krb5._exceptions"})
    mapped = map_error(krb5_error("Configuration file does not specify default realm -1765328160"), phase="connect")
    assert isinstance(mapped, AuthError)
    assert "Kerberos: Krb5Error: Configuration file does not specify default realm" in str(mapped)
    assert "/etc/krb5.conf" in str(mapped) and "kinit" in str(mapped)
