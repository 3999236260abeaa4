"""Benchmark: `facts` over a lab fleet through real pypsrp with NTLM and message encryption.

Run by hand (never from the test suite):  python bench/bench_facts.py --hosts 100 --forks 32
Prints wall time, hosts per second, HTTP requests per host and the process's peak memory.
Client and lab servers share this one process, so the figure is a floor for the client alone.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from orchestrator.inventory import load_inventory
from orchestrator.lab.fleet import LabFleet
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import gather_fleet_facts
from orchestrator.transport import psrp_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--forks", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with LabFleet.build(args.hosts, seed=args.seed, profile="mixed") as fleet, \
            tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lab.yml"
        fleet.write_inventory(path)
        hosts = list(load_inventory(path).hosts)
        log = RunLog.create(Path(tmp) / "runs")
        started = time.perf_counter()
        outcomes = gather_fleet_facts(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                      forks=args.forks)
        elapsed = time.perf_counter() - started
        log.close()
        requests = sum(h.counters.http_requests for h in fleet)
    ok = sum(1 for o in outcomes if o.status == "ok")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"hosts={args.hosts} forks={args.forks} ok={ok} wall={elapsed:.2f}s "
          f"hosts/s={args.hosts / elapsed:.1f} http_requests/host={requests / args.hosts:.1f} "
          f"peak_rss={peak_mib:.0f}MiB")


if __name__ == "__main__":
    main()
