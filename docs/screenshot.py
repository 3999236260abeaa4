"""Regenerate docs/report.png: the HTML report of a rollout of a mixed lab fleet of 20 hosts on
127.0.0.0/8 in which one host's HTTP service restart keeps failing (the lab's `http_restart_fails`),
taken by headless Chromium (Debian: apt-get install chromium).

    python docs/screenshot.py      # from the source folder, dsrprep installed
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.lab.fleet import LabFleet


def dsrprep(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code not in (0, 1):
        sys.exit(f"dsrprep {' '.join(args)}: exit {result.exit_code}\n{result.output}")
    return result.stdout


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dsrprep-screenshot-") as tmp:
        work = Path(tmp)
        inventory, runs = work / "lab.yml", work / "runs"
        with LabFleet.build(20, seed=7, profile="mixed") as fleet:
            fleet.write_inventory(inventory)
            plan = json.loads(dsrprep("plan", str(inventory), "--json", "--runs-dir", str(runs)))
            needing = [name for name, host in plan["hosts"].items()
                       if any(a["step"] == "http_listen" for a in host["actions"])]
            fleet.host(needing[-1]).model.http_restart_fails = 9  # more than the runner's attempts
            rolled = json.loads(dsrprep("rollout", str(inventory), "--yes", "--json", "--waves", "2,50%",
                                        "--max-failures", "1", "--runs-dir", str(runs)))
        page = work / "report.html"
        dsrprep("report", rolled["run_dir"], "--format", "html", "--output", str(page))
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        "--window-size=1280,1400", f"--screenshot={Path('docs/report.png').resolve()}",
                        page.as_uri()], check=True, capture_output=True)
    print("docs/report.png")


if __name__ == "__main__":
    main()
