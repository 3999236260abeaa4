"""Benchmark: a full DSR rollout over a lab fleet through real pypsrp with NTLM and message encryption.

Run by hand (never from the test suite):  python bench/bench_rollout.py --hosts 100 --forks 32
Prints wall time of the rollout and of a second (idempotent) rollout, hosts per second, HTTP
requests per host and the process's peak memory. Client and lab servers share this one process.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

from orchestrator.inventory import load_inventory
from orchestrator.lab.fleet import LabFleet
from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import RunLog
from orchestrator.runner import rollout_fleet
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
        inv = load_inventory(path)
        hosts = list(inv.hosts)
        peers = {h.name: h for h in hosts}
        for label in ("rollout", "second rollout"):
            log = RunLog.create(Path(tmp) / "runs")
            before = sum(h.counters.http_requests for h in fleet)
            started = time.perf_counter()
            outcomes = rollout_fleet(hosts, session_factory=psrp_session, log=log, policy=RetryPolicy(),
                                     peers=peers, forks=args.forks)
            elapsed = time.perf_counter() - started
            log.close()
            requests = sum(h.counters.http_requests for h in fleet) - before
            statuses = {str(k): v for k, v in Counter(o.status for o in outcomes).items()}
            print(f"{label}: hosts={args.hosts} forks={args.forks} statuses={statuses} wall={elapsed:.2f}s "
                  f"hosts/s={args.hosts / elapsed:.1f} http_requests/host={requests / args.hosts:.1f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak_rss={peak_mib:.0f}MiB")


if __name__ == "__main__":
    main()
