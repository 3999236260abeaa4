"""The DSR runbook end to end: CLI, real pypsrp with NTLM + encryption, lab hosts of every OS family."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator import oscaps
from orchestrator.cli import app
from orchestrator.facts import parse_facts
from orchestrator.lab.fleet import LabFleet
from orchestrator.rolloutlog import read_host_log
from tests.clijson import cli
from tests.shells import let_idle_shells_expire

pytestmark = pytest.mark.lab

FAMILIES = oscaps.families()


def parsed(fleet: LabFleet) -> dict[str, dict[str, Any]]:
    return {h.name: parse_facts(h.model.facts()).to_dict() for h in fleet}


def apply_steps(fleet: LabFleet) -> dict[str, dict[str, int]]:
    return {h.name: {k: v for k, v in h.counters.steps.items() if k not in ("facts", "verify", "arp_check",
                                                                          "preflight")} for h in fleet}


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def _fleet(profile: str, count: int = 3, seed: int = 11) -> LabFleet:
    fleet = LabFleet.build(count, seed=seed, profile=profile)
    for handle in fleet:
        # SkipAsSource needs KB975808 on 2008; the lab draws it per host, the test wants the full runbook.
        if handle.model.os_family == "2008":
            handle.model.hotfixes.add("KB975808")
    return fleet


@pytest.mark.parametrize("profile", FAMILIES)
def test_rollout_verify_idempotence_and_rollback(profile: str, workdir: Path) -> None:
    with _fleet(profile) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        runs = str(workdir / "runs")
        original = parsed(fleet)

        code, planned = cli("plan", str(inventory), "--json", "--runs-dir", runs)
        assert code == 0, planned
        assert all(h["status"] == "changes" and h["actions"] for h in planned["hosts"].values())
        assert parsed(fleet) == original, "plan changed a host"
        assert all(not steps for steps in apply_steps(fleet).values()), "plan sent an apply step"

        code, first = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(first, indent=1)[:4000]
        assert {h["status"] for h in first["hosts"].values()} == {"changed"}

        code, after = cli("plan", str(inventory), "--json", "--runs-dir", runs)
        assert code == 0
        assert {n: h["actions"] for n, h in after["hosts"].items()} == {n: [] for n in after["hosts"]}
        assert {h["status"] for h in after["hosts"].values()} == {"compliant"}

        sent_before = apply_steps(fleet)
        code, second = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0
        assert {h["status"] for h in second["hosts"].values()} == {"ok"}
        assert apply_steps(fleet) == sent_before, "a second rollout sent apply steps"

        code, undone = cli("rollback", first["run_dir"], "--yes", "--json", "--runs-dir", runs)
        assert code == 0, json.dumps(undone, indent=1)[:4000]
        assert {h["status"] for h in undone["hosts"].values()} == {"rolled_back"}
        assert parsed(fleet) == original


def test_plan_json_shape_and_reasons(workdir: Path) -> None:
    with _fleet("mixed", count=7, seed=3) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        code, doc = cli("plan", str(inventory), "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 0
        for name, host in doc["hosts"].items():
            assert host["status"] == "changes", name
            for action in host["actions"]:
                assert set(action) >= {"step", "reason"} and action["reason"]
        counters = {h.name: dict(h.counters.steps) for h in fleet}
        assert all(set(c) == {"facts"} for c in counters.values()), counters


def test_non_elevated_host_fails_preflight_with_nothing_changed(workdir: Path) -> None:
    with _fleet("2012r2", count=2) as fleet:
        victim = fleet.hosts[0]
        victim.model.elevated = False
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        before = parse_facts(victim.model.facts()).to_dict()
        # By default a preflight failure stops the rollout before any change, anywhere.
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 3 and doc["ending"] == "aborted"
        assert doc["hosts"][fleet.hosts[1].name]["status"] == "aborted"
        assert set(fleet.hosts[1].counters.steps) == {"facts"}
        # Within --max-failures the other host goes ahead; the run exits 1.
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(workdir / "runs"),
                        "--max-failures", "1")
        assert code == 1
        entry = doc["hosts"][victim.name]
        assert entry["status"] == "failed" and entry["failed_step"] == "preflight"
        assert "not elevated" in entry["error"]["message"]
        assert parse_facts(victim.model.facts()).to_dict() == before
        assert set(victim.counters.steps) == {"facts"}
        assert doc["hosts"][fleet.hosts[1].name]["status"] == "changed"


def test_render_prints_scripts_and_parameters(workdir: Path) -> None:
    with _fleet("2003", count=1) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        name = fleet.hosts[0].name
        result = CliRunner().invoke(app, ["render", str(inventory), "--host", name, "--step", "loopback_config"])
        assert result.exit_code == 0, result.output
        assert "ps_templates/loopback_config/win2003.ps1" in result.output
        assert '"Addresses": [' in result.output and "10.20.0.200" in result.output
        assert "# dsrprep-step: loopback_config" in result.output
        assert set(fleet.hosts[0].counters.steps) == {"facts"}


@pytest.fixture()
def partial(workdir: Path) -> Iterator[tuple[LabFleet, Path]]:
    with _fleet("2008r2", count=2, seed=5) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        yield fleet, inventory


def test_a_rollout_reads_facts_at_preflight_and_verification_only(workdir: Path) -> None:
    # A wave plans on the preflight's fresh facts: facts are read again only where the state moved
    # under a step or a service restarted (a re-plan), and every session but the wave's starts with
    # them. A re-plan that leaves nothing to do is where verification runs, on its facts.
    with _fleet("mixed", count=len(FAMILIES), seed=11) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 0, json.dumps(doc, indent=1)[:4000]
        verified_after_a_replan = []
        for handle in fleet:
            events = read_host_log(Path(doc["run_dir"]) / "hosts" / f"{handle.name}.jsonl").events
            replans = [e for e in events if e.get("event") == "replanned"]
            settled = 1 if replans and not replans[-1]["actions"] else 0
            verified_after_a_replan += [handle.name] * settled
            sessions = 3 + len(replans) - settled
            assert handle.counters.steps["facts"] == sessions - 1, (handle.name, dict(handle.counters.steps))
            assert handle.counters.wsman["Create"] == sessions, (handle.name, dict(handle.counters.wsman))
            # Every pipeline is closed but each session's last, which the Delete of its shell ends.
            wsman = handle.counters.wsman
            assert wsman["Signal"] == wsman["Command"] - sessions, (handle.name, dict(wsman))
            if not any(r["actions"] for r in replans):
                # README "Performance": 9 for the preflight, 7 + 3n - 1 for the wave's session (n
                # scripts: the in-session preflight check and the steps), 12 to verify.
                n = sum(1 for e in events if e.get("event") == "step_start")
                assert handle.counters.http_requests == 3 * n + 27, (handle.name, n, dict(wsman))
        assert verified_after_a_replan  # the fleet has hosts whose last step restarts the HTTP service


def test_partially_configured_host_gets_only_the_missing_actions(workdir: Path) -> None:
    with _fleet("2008r2", count=2, seed=5) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        runs = str(workdir / "runs")
        code, _doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0
        # Make host 0 look configured by hand: loopback with the VIP, site bound, firewall open, but
        # no marker, weak host left strong on the NIC, loopback metric and NetBIOS left as created.
        handle = fleet.hosts[0]
        model = handle.model
        model.marker.clear()
        nic = next(n for n in model.nics if n.addresses and n.addresses[0][0] == model.rip)
        assert model.run("weak_host", {"InterfaceIndex": nic.interface_index, "IpVersion": 4, "Receive": False,
                                       "Send": False}).failed is None
        loopback = next(n for n in model.nics if n.service_name == "msloop" and any(
            a == "10.20.0.200" for a, _m in n.addresses))
        assert model.run("adapter_settings", {"PnpDeviceId": loopback.pnp_device_id, "Metric": 20,
                                              "DnsRegistration": False, "NetBios": 0}).failed is None
        partial_state = parse_facts(model.facts()).to_dict()
        code, doc = cli("plan", str(inventory), "--json", "--runs-dir", runs)
        assert code == 0
        steps = [a["step"] for a in doc["hosts"][handle.name]["actions"]]
        assert steps == ["preflight", "adapter_settings", "weak_host"], doc["hosts"][handle.name]
        reasons = " ".join(a["reason"] for a in doc["hosts"][handle.name]["actions"])
        assert "metric 20 -> 254" in reasons and "weak host receive off" in reasons
        assert doc["hosts"][fleet.hosts[1].name]["actions"] == []
        code, again = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", runs)
        assert code == 0 and again["hosts"][handle.name]["status"] == "changed"
        changed = [s["step"] for s in again["hosts"][handle.name]["steps"] if s["status"] == "changed"]
        assert changed == ["adapter_settings", "weak_host"]
        # Rolling that run back returns to the hand-made state: the loopback it did not create stays.
        code, undone = cli("rollback", again["run_dir"], "--yes", "--json", "--limit", handle.name,
                           "--runs-dir", runs)
        assert code == 0, undone
        steps = [a["step"] for a in undone["hosts"][handle.name]["actions"]]
        assert "loopback" not in steps and {"adapter_settings", "weak_host"} <= set(steps)
        restored = parse_facts(handle.model.facts()).to_dict()
        assert restored["adapters"] == partial_state["adapters"]
        assert restored["weak_host_v4"] == partial_state["weak_host_v4"]


def test_connection_cut_mid_step_is_recovered_from_fresh_facts(workdir: Path) -> None:
    with _fleet("2012r2", count=1, seed=8) as fleet:
        handle = fleet.hosts[0]
        handle.model.cut_on_step = "loopback_config"
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        entry = doc["hosts"][handle.name]
        assert entry["status"] == "changed"
        lost = [s for s in entry["steps"] if s["status"] == "failed"]
        assert [s["error"]["class"] for s in lost] == ["ConnectionLost"]
        assert lost[0]["step"] == "loopback_config"
        # The change had happened: fresh facts left loopback_config out of the new plan.
        assert handle.counters.steps["loopback_config"] == 1
        assert handle.counters.wsman["Create"] >= 3  # first pool, the one after the cut, verify's fresh one
        # The cut shell could not be deleted on any connection: logged, then ended by the idle timeout.
        events = read_host_log(Path(doc["run_dir"]) / "hosts" / f"{handle.name}.jsonl").events
        assert [len(e["shell_ids"]) for e in events if e["event"] == "shells_left"] == [1]
        let_idle_shells_expire(handle, left=1)


def test_wrong_order_on_2008_cuts_the_session_and_right_order_does_not(workdir: Path) -> None:
    from orchestrator.errors import ConnectionLost
    from orchestrator.inventory import load_inventory
    from orchestrator.templates import render
    from orchestrator.transport import PsrpSession

    with _fleet("2008", count=2, seed=21) as fleet:
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        inv = load_inventory(inventory)
        for handle in fleet:
            handle.model.firewall.public = True  # the profile the 2008 flip lands in blocks WinRM
        vip = "10.20.0.200"
        create = {"Ensure": "Present", "PnpDeviceId": "", "Vips": [vip], "DevconPath": ""}
        config = {"PnpDeviceId": "", "Name": "DSR Loopback", "Addresses": [vip], "Masks": ["255.255.255.255"],
                  "Addresses6": [], "SkipAsSource": False, "FallbackMask": "255.255.255.0", "Dhcp": False}
        rule = {"Ensure": "Present", "Name": f"dsrprep {vip} TCP 80", "Vip": vip, "Protocol": "TCP", "Port": 80}

        wrong, right = fleet.hosts
        session = PsrpSession(inv.host(wrong.name).connection)
        try:
            session.run(render("loopback", "2008", create).text, create, timeout=60)
            with pytest.raises(ConnectionLost):
                session.run(render("loopback_config", "2008", config).text, config, timeout=60)
        finally:
            session.close()

        session = PsrpSession(inv.host(right.name).connection)
        try:
            for step, params in (("firewall_rule", rule), ("loopback", create), ("loopback_config", config)):
                session.run(render(step, "2008", params).text, params, timeout=60)
        finally:
            session.close()
        let_idle_shells_expire(wrong, left=1)


def test_peer_arp_check_from_the_inventory(workdir: Path) -> None:
    import yaml

    with _fleet("2016", count=2, seed=2) as fleet:
        inventory = workdir / "lab.yml"
        data = fleet.inventory()
        first, peer = fleet.hosts
        data["all"]["children"]["win2016"]["hosts"][first.name]["dsr_verify_peer"] = peer.name
        inventory.write_text(yaml.safe_dump(data))
        code, doc = cli("rollout", str(inventory), "--yes", "--limit", first.name, "--json",
                        "--runs-dir", str(workdir / "runs"))
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        assert doc["hosts"][first.name]["status"] == "changed"
        assert peer.counters.steps["arp_check"] == 1
        log = (Path(doc["run_dir"]) / "hosts" / f"{first.name}.jsonl").read_text()
        assert '"event": "peer_arp"' in log and "00-0C-29-4C-42-01" in log.upper()


def test_hosts_sharing_a_verify_peer_ask_it_one_at_a_time(workdir: Path) -> None:
    import yaml

    with _fleet("2008r2", count=6, seed=4) as fleet:
        data = fleet.inventory()
        peer, *others = fleet.hosts
        for group in data["all"]["children"].values():
            for name, host_vars in group["hosts"].items():
                if name != peer.name:
                    host_vars["dsr_verify_peer"] = peer.name
        inventory = workdir / "lab.yml"
        inventory.write_text(yaml.safe_dump(data))
        names = ",".join(h.name for h in others)
        code, doc = cli("rollout", str(inventory), "--yes", "--limit", names, "--forks", "5", "--waves", "100%",
                        "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 0, json.dumps(doc, indent=1)[:3000]
        assert peer.counters.steps["arp_check"] == len(others)
        assert peer.counters.shells_peak == 1  # never more than one dsrprep shell on the peer
        assert peer.counters.shells_open == 0


def test_2008_without_winrm_on_public_is_refused_before_the_profile_flip(workdir: Path) -> None:
    with _fleet("2008", count=1, seed=11) as fleet:
        model = fleet.hosts[0].model
        model.nics = [n for n in model.nics if n.service_name != "msloop"]
        model.firewall.public = True
        model.firewall.current_profiles = 1  # domain network: the flip is still to come
        for rule in model.firewall.rules:
            if rule.local_ports == "5985":
                rule.profiles = 1 | 2  # what `winrm quickconfig` leaves: Domain and Private only
        inventory = workdir / "lab.yml"
        fleet.write_inventory(inventory)
        before = parse_facts(model.facts()).to_dict()
        code, doc = cli("rollout", str(inventory), "--yes", "--json", "--runs-dir", str(workdir / "runs"))
        assert code == 3  # a refused host is a preflight failure: beyond the default --max-failures 0
        entry = doc["hosts"][fleet.hosts[0].name]
        assert entry["status"] == "failed" and entry["failed_step"] == "preflight"
        assert "Public firewall profile" in entry["error"]["message"]
        assert parse_facts(model.facts()).to_dict() == before
