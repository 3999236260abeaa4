"""Benchmark: dsrprep against a hand-written pypsrp script, over a lab fleet in a separate process.

Run by hand, from the repository root, never from the test suite:

    python -m bench.run --hosts 10 100 --latency 0 20 50 --json bench-results.json

For every (hosts, latency) cell it starts `dsrprep lab serve` in its own process with that latency
added to every HTTP request, and runs, each as a child process of this one (NTLM with message
encryption, the lab's defaults): `dsrprep facts`, `dsrprep rollout --yes` of the fresh fleet, the
same rollout again (every host compliant by then). Then a fresh lab process, so that the baseline
starts from the same state: `python -m bench.baseline` (bench/baseline.py) over the same inventory.
Per run it reports wall time, the lab's HTTP requests per host (its counters, read through
`lab serve --counters-out` and SIGUSR1), the child's user+sys CPU per host and its peak RSS
(os.wait4), the ideal wall time and the longest wait of a host for a worker, read from the run's
host logs (bench/metrics.py says how both are computed). It prints a
Markdown table and, with --json, writes every run and the medians over --repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.metrics import (
    Measure,
    Need,
    ideal_rollout,
    ideal_single_phase,
    markdown_table,
    median_measure,
    start_waits,
)
from orchestrator.lab.system import HTTP_RESTART_DELAY, HTTP_RESTART_OUTAGE

READY_LINE = "Ctrl-C stops the fleet."
ROOT = Path(__file__).resolve().parents[1]  # children run in a scratch folder and import bench from here
BASELINE_WORKERS = 32


@dataclass(frozen=True)
class Child:
    exit_code: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stdout: str


def run_child(argv: Sequence[str], cwd: Path, timeout: float) -> Child:
    """Run one client process; its wall time, user+sys CPU and peak RSS from os.wait4."""
    out_path, err_path = cwd / "child.out", cwd / "child.err"
    with out_path.open("wb") as out, err_path.open("ab") as err:
        started = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    # ru_maxrss is in KiB on Linux.
    return Child(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                 out_path.read_text(encoding="utf-8", errors="replace"))


class Lab:
    """`dsrprep lab serve` in its own process: started, asked for its counters, stopped."""

    def __init__(self, hosts: int, latency_ms: int, seed: int, workdir: Path) -> None:
        self.inventory = workdir / "lab.yml"
        self.counters_file = workdir / "lab-counters.json"
        self._asked = 0
        self._log = (workdir / "lab.log").open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "lab", "serve", "--hosts", str(hosts), "--seed", str(seed),
             "--latency", str(latency_ms / 1000), "--counters-out", str(self.counters_file),
             "--inventory-out", str(self.inventory)],
            cwd=workdir, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip() == READY_LINE:
                return
        self.stop()
        raise RuntimeError(f"the lab fleet did not start: see {workdir / 'lab.log'}")

    def requests(self) -> dict[str, int]:
        """Every host's HTTP requests so far: SIGUSR1 asks the lab to write them."""
        self._asked += 1
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                document = json.loads(self.counters_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                document = {"snapshot": -1}
            if document["snapshot"] >= self._asked:
                return {name: c["http_requests"] for name, c in document["hosts"].items()}
            time.sleep(0.05)
        raise RuntimeError(f"the lab fleet did not write {self.counters_file}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


# A host whose http_listen step restarts its HTTP service is away this long (the lab's own figures).
RESTART_AWAY = HTTP_RESTART_DELAY + HTTP_RESTART_OUTAGE


def _steps(entry: dict[str, Any]) -> list[str]:
    return [a["step"] if isinstance(a, dict) else str(a) for a in entry.get("actions", [])]


def _needs(document: dict[str, Any]) -> dict[str, Need]:
    """What each host needed (the preflight check is not an action) in a rollout's or the baseline's JSON."""
    needs = {}
    for name, entry in document["hosts"].items():
        steps = [s for s in _steps(entry) if s != "preflight"]
        needs[name] = Need(len(steps), RESTART_AWAY if "http_listen" in steps else 0.0)
    return needs


def _waves(document: dict[str, Any]) -> list[list[str]]:
    waves = [list(w["hosts"]) for w in document.get("waves", [])]
    return waves or [list(document["hosts"])]


@dataclass(frozen=True)
class Cell:
    hosts: int
    latency_ms: int
    forks: int
    seed: int
    timeout: float
    waves: tuple[str, ...] = ()  # dsrprep rollout's --waves, when not its default


def _host_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every readable line of a run's host logs (a torn or foreign line is skipped)."""
    lines = []
    for path in sorted((run_dir / "hosts").glob("*.jsonl")):
        for text in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                line = json.loads(text)
            except ValueError:
                continue
            if isinstance(line, dict):
                lines.append(line)
    return lines


def _measure(cell: Cell, scenario: str, child: Child, requests: int, ideal: float,
             run_dir: Path | None = None) -> Measure:
    waits = tuple(start_waits(_host_lines(run_dir), cell.forks)) if run_dir is not None else ()
    return Measure(scenario, cell.hosts, cell.latency_ms, child.wall_s, requests / cell.hosts,
                   child.cpu_s * 1000 / cell.hosts, child.peak_rss_mib, ideal, child.exit_code,
                   max((w.max_wait_s for w in waits), default=None), waits)


def _run_dir(workdir: Path, document: dict[str, Any]) -> Path:
    """The run folder a dsrprep child's JSON names (relative to the folder it ran in)."""
    return workdir / str(document["run_dir"])


def _client(cell: Cell, lab: Lab, workdir: Path, *args: str) -> tuple[Child, int, dict[str, Any]]:
    """One client run against a running lab: the child, the HTTP requests it caused, its JSON output."""
    before = sum(lab.requests().values())
    child = run_child([sys.executable, *args], workdir, cell.timeout)
    spent = sum(lab.requests().values()) - before
    try:
        document = json.loads(child.stdout)
    except ValueError:
        tail = (workdir / "child.err").read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(args[:3])} printed no JSON (exit {child.exit_code}); its stderr ends:\n"
                           + tail) from None
    if child.exit_code != 0:
        _say_why(args, child.exit_code, document)
    return child, spent, document


def _say_why(args: Sequence[str], exit_code: int, document: dict[str, Any]) -> None:
    """On stderr: the hosts of a client run that did not end ok or changed, and why."""
    print(f"{' '.join(args[1:3])} exited {exit_code}: {document.get('summary', '')}", file=sys.stderr)
    for name, entry in document.get("hosts", {}).items():
        if entry.get("status") not in ("ok", "changed"):
            print(f"  {name}: {entry.get('status')}: {entry.get('error', '')}", file=sys.stderr)


def dsrprep_runs(cell: Cell, workdir: Path) -> list[Measure]:
    """facts, rollout and the rollout again, over one lab fleet."""
    lat = cell.latency_ms / 1000
    lab = Lab(cell.hosts, cell.latency_ms, cell.seed, workdir)
    try:
        inv, forks = str(lab.inventory), str(cell.forks)
        child, spent, doc = _client(cell, lab, workdir, "-m", "orchestrator", "facts", inv, "--json",
                                    "--forks", forks, "--runs-dir", "runs")
        ideal = ideal_single_phase(dict.fromkeys(doc["hosts"], Need()), lat, cell.forks)
        measures = [_measure(cell, "facts", child, spent, ideal, _run_dir(workdir, doc))]
        for scenario in ("rollout", "rollout-again"):
            child, spent, doc = _client(cell, lab, workdir, "-m", "orchestrator", "rollout", inv, "--yes", "--json",
                                        "--forks", forks, "--runs-dir", "runs", *cell.waves)
            ideal = ideal_rollout(_waves(doc), _needs(doc), lat, cell.forks)
            measures.append(_measure(cell, scenario, child, spent, ideal, _run_dir(workdir, doc)))
    finally:
        lab.stop()
    return measures


def baseline_run(cell: Cell, workdir: Path) -> Measure:
    """The hand-written script over a fresh lab fleet of the same seed."""
    lab = Lab(cell.hosts, cell.latency_ms, cell.seed, workdir)
    try:
        child, spent, doc = _client(cell, lab, workdir, "-m", "bench.baseline", str(lab.inventory),
                                    "--workers", str(BASELINE_WORKERS))
    finally:
        lab.stop()
    ideal = ideal_single_phase(_needs(doc), cell.latency_ms / 1000, BASELINE_WORKERS)
    return _measure(cell, "baseline", child, spent, ideal)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[10, 100],
                        help="fleet sizes (at most 2000, what `dsrprep lab serve --hosts` takes)")
    parser.add_argument("--latency", type=int, nargs="+", default=[0, 20, 50], help="ms added per request")
    parser.add_argument("--forks", type=int, default=32, help="dsrprep's --forks (the baseline keeps 32 threads)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each cell; the table shows medians")
    parser.add_argument("--seed", type=int, default=1, help="seed of the lab fleet")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before a client run is killed")
    parser.add_argument("--waves", help="dsrprep rollout's --waves (default: its own, canary first); 100%% puts "
                                         "every host but the canary in one wave, as the baseline does")
    parser.add_argument("--no-baseline", action="store_true", help="dsrprep only")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every run and the medians here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    runs: list[Measure] = []
    for hosts in args.hosts:
        for latency in args.latency:
            waves = ("--waves", args.waves) if args.waves else ()
            cell = Cell(hosts, latency, args.forks, args.seed, args.timeout, waves)
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="dsrprep-bench-") as tmp:
                    runs += dsrprep_runs(cell, Path(tmp))
                if not args.no_baseline:
                    with tempfile.TemporaryDirectory(prefix="dsrprep-bench-") as tmp:
                        runs.append(baseline_run(cell, Path(tmp)))
                print(f"done: {hosts} hosts, {latency} ms", file=sys.stderr, flush=True)
    groups: dict[tuple[int, int, str], list[Measure]] = {}
    for m in runs:
        groups.setdefault(m.key, []).append(m)
    medians = [median_measure(g) for g in groups.values()]
    print(markdown_table(medians), end="")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "runs": [asdict(m) for m in runs], "medians": [asdict(m) for m in medians]}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
