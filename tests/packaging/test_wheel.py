"""The built wheel carries the package, the console script and every PowerShell template and lib."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

LIST_TEMPLATES = """
import importlib.resources, json
root = importlib.resources.files("ps_templates")
found = sorted(f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir()
               for f in d.iterdir() if f.name.endswith(".ps1"))
print(json.dumps({"templates": found, "origin": str(root)}))
"""


def test_wheel_installs_templates_into_a_fresh_venv(tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheel_dir),
         str(ROOT)],
        check=True, cwd=tmp_path,
    )
    wheels = list(wheel_dir.glob("dsrprep-*.whl"))
    assert len(wheels) == 1

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # --no-deps: the point is what the wheel itself carries, not the dependencies.
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheels[0])], check=True)

    result = subprocess.run([str(python), "-c", LIST_TEMPLATES], check=True, capture_output=True, text=True,
                            cwd=tmp_path)
    listed = json.loads(result.stdout)
    assert str(env_dir) in listed["origin"]
    expected = sorted(f"{p.parent.name}/{p.name}" for p in (ROOT / "ps_templates").glob("*/*.ps1"))
    assert expected and listed["templates"] == expected
    # The templates' include lines are expanded from _lib when they are loaded: the libs must ship.
    assert any(t.startswith("_lib/") for t in expected)
    assert (env_dir / "bin" / "dsrprep").exists()
