"""The fault matrix: for each kind of the lab's random faults alone, then all of them together, a
rollout of a mixed lab fleet whose requests are faulted at a rate; per row the hosts compliant at
the end, the retries the logs show and the time taken. Run by hand (it takes minutes), never by the
test suite:

    python -m tests.fault_matrix --hosts 40 --rate 0.15

The fleet, its timeouts and the rollout's options are the fault suite's (tests/faultsuite.py).
Prints a Markdown table (README "Faults").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from orchestrator.lab.common import FAULT_KINDS
from tests.faultsuite import Setting, kinds_of, matrix_row

HEADER = ("| fault kind | rate (set / served) | faults | hosts compliant | retries | time (slowest host) |\n"
          "|---|---|---|---|---|---|")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hosts", type=int, default=40)
    parser.add_argument("--rate", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--kinds", default=",".join(FAULT_KINDS),
                        help="the kinds to run alone, comma separated (the row of all kinds comes last)")
    args = parser.parse_args()
    settings = [Setting(args.hosts, args.rate, (kind,), seed=args.seed) for kind in kinds_of(args.kinds.split(","))]
    settings.append(Setting(args.hosts, args.rate, FAULT_KINDS, seed=args.seed))
    print(HEADER, flush=True)
    for setting in settings:
        with tempfile.TemporaryDirectory(prefix="dsrprep-faults-") as tmp:
            row = matrix_row(setting, Path(tmp))
        # Cuts strike runs of network steps, not requests: they have no share of the requests.
        served = "-" if row["kind"] == "cut" else f"{row['served']:.1%}"
        print(f"| {row['kind']} | {row['rate']:.0%} / {served} | {row['faults']} | "
              f"{row['compliant']} of {row['hosts']} | {row['retries']} | {row['seconds']:.0f} s "
              f"({row['slowest_host']:.0f} s) |", flush=True)


if __name__ == "__main__":
    main()
