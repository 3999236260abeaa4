"""Measure: hosts spread over several dsrprep processes, against one process with all of them.

Run by hand, from the repository root, never from the test suite:

    python -m bench.spread --hosts 100 --processes 1 2 --forks 32 --latency 20

For each process count P it starts a fresh lab fleet (`dsrprep lab serve`, same seed, its own
process) and runs P `dsrprep rollout --yes` processes at once, each over its share of the hosts
(`--limit`, the hosts dealt in turn) with `--forks` divided among them, every one a canary and one
wave (`--waves 100%`), so that the work is the same whatever P. Per P it reports the wall time (the
slowest process), the clients' user+sys CPU (summed, os.wait4), the lab process's user+sys CPU over
the same span (/proc/<pid>/stat) and how busy that kept the machine's cores. When the clients' CPU
per host stays the same and the wall time does not fall with P, one process is not what bounds a
rollout on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.run import Child, Lab, run_child
from orchestrator.inventory import load_inventory

CLIENT_TIMEOUT = 3600.0


def lab_cpu_s(pid: int) -> float:
    """User+sys CPU seconds of a running process, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def host_names(inventory: Path) -> list[str]:
    """The inventory's hosts in its order, as dsrprep reads them."""
    return [host.name for host in load_inventory(inventory).hosts]


def deal(names: Sequence[str], processes: int) -> list[list[str]]:
    """The hosts dealt in turn to `processes` shares (every OS family in each share)."""
    return [list(names[i::processes]) for i in range(processes)]


def spread_run(hosts: int, processes: int, forks: int, latency_ms: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dsrprep-spread-") as scratch:
        workdir = Path(scratch)
        lab = Lab(hosts, latency_ms, seed, workdir)
        try:
            shares = deal(host_names(lab.inventory), processes)
            children: list[Child | None] = [None] * processes
            lab_before, started = lab_cpu_s(lab.proc.pid), time.perf_counter()

            def one(i: int) -> None:
                cwd = workdir / f"p{i}"
                cwd.mkdir()
                children[i] = run_child(
                    [sys.executable, "-m", "orchestrator", "rollout", str(lab.inventory), "--yes", "--json",
                     "--waves", "100%", "--forks", str(max(1, forks // processes)), "--limit", ",".join(shares[i]),
                     "--runs-dir", str(cwd / "runs")], cwd, CLIENT_TIMEOUT)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(processes)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            lab_cpu = lab_cpu_s(lab.proc.pid) - lab_before
            requests = sum(lab.requests().values())
        finally:
            lab.stop()
    done = [c for c in children if c is not None]
    client_cpu = sum(c.cpu_s for c in done)
    return {
        "hosts": hosts, "processes": processes, "forks": forks, "latency_ms": latency_ms,
        "exit_codes": [c.exit_code for c in done], "wall_s": round(wall, 2),
        "client_cpu_ms_per_host": round(client_cpu * 1000 / hosts), "lab_cpu_s": round(lab_cpu, 1),
        "client_cpu_s": round(client_cpu, 1), "requests_per_host": round(requests / hosts, 1),
        "cores_busy": round((client_cpu + lab_cpu) / wall, 2), "cores": os.cpu_count(),
        "peak_rss_mib": max(round(c.peak_rss_mib) for c in done),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.spread", description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--forks", type=int, default=32)
    parser.add_argument("--latency", type=int, default=20, help="ms added to every request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the runs here")
    args = parser.parse_args(argv)
    runs = [spread_run(args.hosts, p, args.forks, args.latency, args.seed) for p in args.processes]
    columns = ["processes", "exit_codes", "wall_s", "client_cpu_s", "client_cpu_ms_per_host", "lab_cpu_s",
               "cores_busy", "requests_per_host", "peak_rss_mib"]
    print(f"{args.hosts} hosts, forks {args.forks} in all, {args.latency} ms added, {os.cpu_count()} cores")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for run in runs:
        print("| " + " | ".join(str(run[c]) for c in columns) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    return 0 if all(code == 0 for run in runs for code in run["exit_codes"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
