"""Start-up cost: importing the CLI (what `dsrprep --help` and every command pay first) leaves the
heavy libraries to the commands that use them."""

from __future__ import annotations

import json
import subprocess
import sys

# Each costs from 10 ms (PyYAML, tree-sitter) to a third of a second (pypsrp with requests, pyspnego
# and cryptography) of CPU at import.
HEAVY = ("pypsrp", "requests", "spnego", "cryptography", "structlog", "tenacity", "yaml", "tree_sitter",
         "psrpcore", "ansible", "jsonschema", "orchestrator.transport", "orchestrator.lab")


def test_importing_the_cli_imports_no_heavy_library() -> None:
    code = ("import json, sys; import orchestrator.cli; "
            f"print(json.dumps(sorted(m for m in {list(HEAVY)!r} if m in sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == []
