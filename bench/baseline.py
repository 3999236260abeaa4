"""The baseline: what an admin would write by hand instead of dsrprep, over the same inventory.

pypsrp's `Client` per host and, for every script, what `Client.execute_ps` does: a new runspace
pool, one PowerShell pipeline, invoke, close the pool. execute_ps itself wraps the script in
Invoke-Expression | Out-String, which leaves no way to bind parameters and no objects to read back,
so this runs the same code path with the template's parameters bound (execute_ps's docstring offers
itself as the reference implementation for such variants). Hosts go through a ThreadPoolExecutor
of 32, each in turn: facts, plan, the planned templates (rendered by dsrprep's planner and renderer,
so both clients send the same scripts), facts again on a fresh pool (the plan must be empty), and
the verify template. After the HTTP service restart a step schedules, it waits the same time
dsrprep waits and retries a call up to 5 times, 2 s apart, as a careful script would. Not done:
the peer ARP check, the rollout log, waves and gates.

    python -m bench.baseline INVENTORY [--workers 32]

Prints one JSON object: per host its status and actions run. Exit 0 when every host is compliant.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import Any

from pypsrp.client import Client
from pypsrp.powershell import PowerShell, RunspacePool

from orchestrator.facts import Facts, parse_facts
from orchestrator.inventory import Host, load_inventory
from orchestrator.plan import plan
from orchestrator.runner import facts_script
from orchestrator.steps import parse_output, preflight, verify
from orchestrator.templates import Script, render
from orchestrator.transport import pool_kwargs, to_plain, wsman_kwargs

TRIES, PAUSE = 5, 2.0
MAX_PASSES = 4


class HandScript:
    """One host's client, made anew after a failed call (its connection may be gone)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.client = Client(**wsman_kwargs(host.connection))

    def execute(self, script: Script) -> Any:
        """Client.execute_ps's code path with parameters bound: a new pool for this one script."""
        for attempt in range(1, TRIES + 1):
            try:
                with RunspacePool(self.client.wsman, **pool_kwargs(self.host.connection)) as pool:
                    ps = PowerShell(pool)
                    ps.add_script(script.text)
                    ps.add_parameters(dict(script.parameters))
                    output = ps.invoke()
                    if ps.had_errors and not output:
                        raise RuntimeError(f"{script.template_path}: {[str(e) for e in ps.streams.error]}")
                    return to_plain(output[0])
            except Exception:
                if attempt == TRIES:
                    raise
                with suppress(Exception):
                    self.client.close()
                time.sleep(PAUSE)
                self.client = Client(**wsman_kwargs(self.host.connection))
        raise AssertionError("unreachable")

    def facts(self) -> Facts:
        return parse_facts(self.execute(facts_script()))

    def apply(self) -> tuple[Facts, list[str]]:
        """Facts, plan, the planned scripts; again while a step says the state moved. The steps run."""
        done: list[str] = []
        facts = self.facts()
        for passes in range(MAX_PASSES):
            the_plan = plan(facts, self.host.desired)
            if the_plan.refusals:
                raise RuntimeError("; ".join(the_plan.refusals))
            actions = [a for a in the_plan.actions if passes == 0 or a.step != preflight.NAME]
            if not actions:
                return facts, done
            for action in actions:
                raw = self.execute(render(action.step, facts.os.family, action.params))
                output = parse_output(action.step, raw)
                done.append(action.step)
                wait = output.restart_wait()
                if wait is not None:
                    time.sleep(wait)
                if wait is not None or output.state_moved():
                    break
            facts = self.facts()
        return facts, done

    def rollout(self) -> dict[str, Any]:
        desired = self.host.desired
        _, done = self.apply()
        after = self.facts()  # a fresh pool, as every call
        left = plan(after, desired)
        if left.actions or left.refusals:
            return {"status": "failed", "actions": done, "error": "still to change after apply"}
        if not done:
            return {"status": "ok", "actions": done}
        answer = self.execute(render("verify", after.os.family, verify.params(after, desired)))
        problems = verify.judge(verify.parse(answer), after, desired)
        return {"status": "failed" if problems else "changed", "actions": done, "error": "; ".join(problems)}


def one_host(host: Host) -> dict[str, Any]:
    script = None
    try:
        script = HandScript(host)
        return script.rollout()
    except Exception as exc:  # a hand-written script reports and goes on with the other hosts
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:
        if script is not None:
            with suppress(Exception):
                script.client.close()


def run(hosts: Mapping[str, Host], workers: int) -> dict[str, dict[str, Any]]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one_host, hosts.values()))
    return dict(zip(hosts, results, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--workers", type=int, default=32)
    args = parser.parse_args()
    inventory = load_inventory(args.inventory)
    results = run({h.name: h for h in inventory.hosts}, args.workers)
    json.dump({"hosts": results}, sys.stdout, indent=1)
    sys.exit(0 if all(r["status"] in ("ok", "changed") for r in results.values()) else 1)


if __name__ == "__main__":
    main()
