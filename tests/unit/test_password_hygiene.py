"""No password in an error: an ansible_host URL is refused without quoting its password, and an
exception that escapes the command line is shown without the frames' local variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.cli import app
from orchestrator.inventory import InventoryError, load_inventory


@pytest.mark.parametrize("address", [
    "http://admin:Pw-in-URL#9@10.0.0.5:5985/wsman",
    "https://admin:Pw-in-URL#9@web01.corp:5986",
    "admin:Pw-in-URL#9@10.0.0.5",
    "http://admin:Pw-in-URL#9@[::1",  # does not parse as a URL
])
def test_an_ansible_host_url_is_refused_without_its_password(tmp_path: Path, address: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    web01:\n      ansible_host: '{address}'\n      dsr_vips: [10.0.0.50]\n",
                    encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    text = str(info.value)
    assert "Pw-in-URL" not in text and "Pw-in-URL%239" not in text
    assert f"{path}: host web01: ansible_host: " in text
    assert "the account in ansible_user and ansible_password" in text


@pytest.mark.parametrize("proxy", ["ftp://svc:Pw-in-URL@proxy.corp:21", "http://svc:Pw-in-URL#9@proxy.corp:3128"])
def test_a_bad_proxy_url_is_refused_without_its_password(tmp_path: Path, proxy: str) -> None:
    path = tmp_path / "inv.yml"
    path.write_text(f"all:\n  hosts:\n    web01:\n      ansible_host: 10.0.0.5\n      ansible_psrp_proxy: '{proxy}'\n"
                    "      dsr_vips: [10.0.0.50]\n", encoding="utf-8")
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    assert "ansible_psrp_proxy" in str(info.value) and "Pw-in-URL" not in str(info.value)


def test_the_app_never_shows_locals_in_a_traceback() -> None:
    assert app.pretty_exceptions_show_locals is False
    script = textwrap.dedent("""
        import sys
        from orchestrator.cli import app

        @app.command("crash")
        def crash() -> None:
            password = "".join(["Loc4l", "-secret"])  # built here: the source line does not hold it
            raise RuntimeError("a bug, " + str(len(password)))

        sys.argv = ["dsrprep", "crash"]
        app()
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "RuntimeError" in done.stderr and "a bug, 12" in done.stderr
    assert "Loc4l-secret" not in done.stdout + done.stderr
