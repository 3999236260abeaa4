"""The fault suite: a mixed fleet rolled out while 10-20 % of its requests are faulted, by every kind
of the lab's random faults (orchestrator.lab.common.FAULT_KINDS), a few hosts hanging for good.

Checked: every host ends in a terminal status within its deadline; every host that could be made
compliant is (every host but the hung ones ends changed or ok, within its fault budget: retry.py);
the hosts called changed or ok are compliant (a fault-free plan changes nothing there); no host got
a second loopback adapter; every line of every log parses; the summary, run.json and the host logs
agree; a host that failed names the failure that really happened to it (a fault it met), never a
state that kept moving. Then, with the faults gone, a rollout of the hung hosts brings each to
compliance: what the faults left behind is a state dsrprep goes on from. Every shell ends
(tests/conftest.py audits it).

100 hosts by default (README "Faults" has the time measured); DSRPREP_FAULT_HOSTS sets another
count. The seed is DSRPREP_FAULT_SEED (default 1).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.retry import RetryPolicy
from orchestrator.rolloutlog import Event, read_run
from orchestrator.runner import STEP_TIMEOUT
from tests.faultsuite import COMPLIANT, Faulted, Run, Setting, cli, faulted_fleet, host_logs, rollout

pytestmark = pytest.mark.lab

HOSTS = int(os.environ.get("DSRPREP_FAULT_HOSTS", "100"))
SEED = int(os.environ.get("DSRPREP_FAULT_SEED", "1"))
RATE = 0.15
TERMINAL = {"ok", "changed", "failed", "unreachable"}

# The fault kinds each error class can come from: a failed host's error must be one of these, and it
# must have met one of them. Nothing here explains AuthError (a 401 mid-session is no bad password),
# ProtocolError, ScriptError or NotConverging.
CAUSES: dict[str, set[str]] = {
    # a connection closed, a session whose authentication or pipeline close went wrong
    "ConnectionLost": {"drop", "cut", "http_401", "http_503", "slow", "hang"},
    "Timeout": {"slow", "hang"},
    # HTTP 503, or a connection lost while connecting
    "Unreachable": {"http_503", "drop", "http_401", "cut"},
    # OperationTimeout past what an opening tolerates, a shell gone, a quota: injected, or the
    # real one that shells left by slow Creates reach on WinRM 2.0 (5 shells)
    "RemoteFault": {"timeout", "shell_gone", "quota", "slow", "hang"},
}
# A read timeout needs no injected fault: the client and every lab host share the machine's two
# cores, and a host that answered late has timed out for real. Its message must still say so.
READ_TIMEOUT_WORDS = "no answer within the read timeout"
# What the message of each class says about its cause.
WORDING = {
    "ConnectionLost": ("connection lost", "authentication (HTTP 401)", "closing the previous pipeline failed"),
    "Timeout": (READ_TIMEOUT_WORDS,),  # never a script's deadline: no output is lost
    "Unreachable": ("HTTP 503", "cannot connect"),
    "RemoteFault": ("WSMan fault 2150858793", "WSMan fault 2150858843", "WSMan fault 2150859173"),
}


def _check_causes(faulted: Faulted, run: Run) -> None:
    """Every host that did not end compliant met a fault, and its error names one it met."""
    wrong = []
    for handle in faulted.fleet.hosts:
        entry = run.doc["hosts"][handle.name]
        if entry["status"] in COMPLIANT:
            continue
        met = set(faulted.injected(handle)) | ({"hang"} if handle.faults.hang else set())
        error = entry.get("error") or {}
        cls, message = error.get("class", ""), error.get("message", "")
        explained = bool(met & CAUSES.get(cls, set())) or (cls in CAUSES and READ_TIMEOUT_WORDS in message)
        if not explained or not any(w in message for w in WORDING.get(cls, ())):
            wrong.append(f"{handle.name}: {entry['status']} {cls}: {message[:300]} (met {sorted(met)})")
        if "state still moving" in message:
            wrong.append(f"{handle.name}: says the state kept moving: {message[:300]}")
    assert not wrong, "\n".join(wrong)


def _check_log(faulted: Faulted, run: Run) -> None:
    """Every line parses; every host's last event is its terminal status, as the summary counts it."""
    logs = host_logs(run.run_dir)
    statuses = run.statuses()
    assert set(logs) == set(statuses)
    for name, events in logs.items():
        done = [e for e in events if e["event"] == Event.HOST_DONE]
        assert done and done[-1] is events[-1] and done[-1]["status"] == statuses[name], (name, events[-1])
    counts = Counter(statuses.values())
    assert run.doc["summary"] == dict(counts)
    assert sum(counts.values()) == faulted.setting.hosts
    recorded = read_run(run.run_dir)
    assert recorded["summary"] == dict(counts) and recorded["outcomes"] == statuses


def test_a_faulted_fleet_ends_accounted_for_and_named(tmp_path: Path) -> None:
    setting = Setting(hosts=HOSTS, rate=RATE, seed=SEED, hung=max(1, HOSTS // 40))
    with faulted_fleet(setting, tmp_path) as faulted:
        run = rollout(faulted, tmp_path / "runs")
        statuses = run.statuses()
        assert set(statuses) == {h.name for h in faulted.fleet.hosts}
        assert set(statuses.values()) <= TERMINAL, Counter(statuses.values())
        assert run.exit_code == (0 if set(statuses.values()) <= set(COMPLIANT) else 1), run.output[-2000:]
        served = faulted.served()
        assert 0.10 <= served <= 0.20, served
        kinds_met = set().union(*(faulted.injected(h) for h in faulted.fleet.hosts))
        assert kinds_met == set(setting.kinds), kinds_met
        hung = {handle.name for handle in faulted.hung()}
        assert all(statuses[name] in ("failed", "unreachable") for name in hung)
        lost = {name: run.doc["hosts"][name].get("error") for name, status in statuses.items()
                if status not in COMPLIANT and name not in hung}
        assert not lost, lost
        # A host gives up at its deadline at the latest; what it was doing then ends within a step's time.
        assert max(entry["duration"] for entry in run.doc["hosts"].values()) < RetryPolicy().deadline + STEP_TIMEOUT
        _check_log(faulted, run)
        _check_causes(faulted, run)
        assert all(faulted.loopbacks_created(h) <= 1 for h in faulted.fleet.hosts)

        faulted.stop_faults()
        compliant = sorted(name for name, status in statuses.items() if status in COMPLIANT)
        assert compliant, "no host got through"
        check = cli("plan", str(faulted.inventory), "--json", "--limit", ",".join(compliant),
                    "--runs-dir", str(tmp_path / "runs"))
        assert check.exit_code == 0, check.output[-2000:]
        assert set(check.statuses().values()) == {"compliant"}, check.statuses()

        # With the faults gone, what they left is a state a new rollout of those hosts finishes from:
        # every host compliant, still with one loopback at most. (`rerun --failed` would keep the
        # first run's --canary, a host that is not among them, and refuse.)
        rest = sorted(set(statuses) - set(compliant))
        if rest:
            again = cli("rollout", str(faulted.inventory), "--yes", "--json", "--limit", ",".join(rest),
                        "--canary", "1", "--waves", "100%", "--forks", str(setting.forks),
                        "--runs-dir", str(tmp_path / "runs"))
            assert again.exit_code == 0, again.output[-3000:]
            assert set(again.statuses().values()) <= set(COMPLIANT), again.statuses()
        assert all(faulted.loopbacks_created(h) <= 1 for h in faulted.fleet.hosts)
        # The fault-free runs deleted every shell they opened (tests/conftest.py checks each host).
