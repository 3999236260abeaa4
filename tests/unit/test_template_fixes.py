"""Windows behaviours a template must survive, each behind a lab host knob: the template and its lab
model as a pair, driven through the planner where the step's parameters come from it."""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import Facts, parse_facts
from orchestrator.lab.firewall import AdvFirewall
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.net import Nic
from orchestrator.plan import plan, rollback_plan
from orchestrator.steps.base import Action
from tests.unit.test_lab_steps import HOST_MASK, RULE, VIP, config_params, failed, find_host, ok, rule_params

VIP2 = "10.20.0.201"


def facts_of(host: WindowsHost) -> Facts:
    return parse_facts(host.facts())


def desired_for(host: WindowsHost, *vips: str) -> Desired:
    return Desired(vips=tuple(Vip(v, (80,), "tcp") for v in vips or (VIP,)), nic=NicSelector("address", host.rip))


def apply(host: WindowsHost, actions: tuple[Action, ...]) -> list[dict[str, Any]]:
    """Runs a plan's actions on the lab host as the runner would (each must succeed)."""
    return [dict(ok(host, a.step, dict(a.params))) for a in actions]


def loopbacks(host: WindowsHost) -> list[Nic]:
    return [n for n in host.nics if n.is_loopback]


def static_loopback(host: WindowsHost, *addresses: tuple[str, str]) -> Nic:
    """A loopback someone configured by hand before dsrprep came: static, these IPv4 addresses."""
    lo = next((n for n in host.nics if n.is_loopback), None)
    assert lo is not None
    lo.dhcp_enabled = False
    lo.addresses = list(addresses) + lo.ipv6()
    return lo


# --- 1. EnableStatic answers 81 on an adapter that is already static --------------------------------


def test_2003_enable_static_81_on_a_static_adapter_is_success_once_read_back() -> None:
    host = find_host("2003", lambda h: h.accepts_host_mask and not loopbacks(h))
    assert host.enable_static_on_static == "81"  # as Microsoft documents it
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    first = ok(host, "loopback_config", config_params(host, SkipAsSource=False))
    assert first["changed"] is True  # from DHCP: EnableStatic answers 0
    lo = loopbacks(host)[0]
    assert lo.ipv4() == [(VIP, HOST_MASK)] and not lo.dhcp_enabled

    # A second VIP: EnableStatic on the now static adapter answers 81 and sets both.
    second = ok(host, "loopback_config", config_params(host, SkipAsSource=False, Addresses=[VIP, VIP2],
                                                       Masks=[HOST_MASK, HOST_MASK]))
    assert second["changed"] is True and second["addresses"] == [VIP, VIP2]
    assert lo.ipv4() == [(VIP, HOST_MASK), (VIP2, HOST_MASK)]


def test_2003_rollback_restores_a_static_loopback_through_enable_static_81() -> None:
    host = find_host("2003", lambda h: h.accepts_host_mask and len(loopbacks(h)) == 1)
    # Adopted (it holds the VIP), but with a wide mask and another service's address.
    held = [(VIP, "255.255.0.0"), ("192.168.77.1", "255.255.255.0")]
    lo = static_loopback(host, *held)
    before = facts_of(host)
    desired = desired_for(host)
    apply(host, plan(before, desired).actions)
    assert loopbacks(host) == [lo] and lo.ipv4() == [(VIP, HOST_MASK), ("192.168.77.1", "255.255.255.0")]
    assert plan(facts_of(host), desired).actions == ()

    undo = rollback_plan(before, facts_of(host), desired).actions
    assert "loopback_config" in [a.step for a in undo]
    apply(host, undo)
    assert lo.ipv4() == held
    assert rollback_plan(before, facts_of(host), desired).actions == ()


def test_2003_a_genuine_81_that_set_nothing_still_fails() -> None:
    host = find_host("2003", lambda h: h.accepts_host_mask and len(loopbacks(h)) == 1)
    lo = static_loopback(host, ("192.168.77.1", "255.255.255.0"))
    host.enable_static_on_static = "81-unapplied"
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": lo.pnp_device_id, "Vips": [VIP], "DevconPath": ""})
    message = failed(host, "loopback_config", config_params(host, SkipAsSource=False, PnpDeviceId=lo.pnp_device_id))
    assert message == (
        f"EnableStatic returned 81 (Unable to configure DHCP service) and the adapter holds 192.168.77.1/"
        f"255.255.255.0, not {VIP}/{HOST_MASK}"
    )
    assert lo.ipv4() == [("192.168.77.1", "255.255.255.0")]

    host.enable_static_on_static = "0"
    assert ok(host, "loopback_config", config_params(host, SkipAsSource=False))["changed"] is True
    assert lo.ipv4() == [(VIP, HOST_MASK)]


# --- 4. the 2003 fallback: the metric first, then the subnet mask ---------------------------------


def competing_route(lo: Nic, fallback: str) -> bool:
    """The loopback holds a VIP with the NIC's subnet mask (a second route to the production subnet)
    without the highest metric that makes the NIC's route win."""
    return any(a == VIP and m == fallback for a, m in lo.ipv4()) and lo.metric != 9999


def test_2003_fallback_mask_only_after_the_metric_took() -> None:
    host = find_host("2003", lambda h: not h.accepts_host_mask and not loopbacks(h))
    ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    lo = loopbacks(host)[0]
    host.set_metric_returns = 65
    message = failed(host, "loopback_config", config_params(host, SkipAsSource=False))
    assert message == "SetIPConnectionMetric returned 65"
    assert not competing_route(lo, "255.255.255.0"), lo.ipv4()
    assert lo.dhcp_enabled and not any(a == VIP for a, _ in lo.ipv4())

    host.set_metric_returns = 0
    out = ok(host, "loopback_config", config_params(host, SkipAsSource=False))
    assert out["degraded"] is True
    assert lo.ipv4() == [(VIP, "255.255.255.0")] and lo.metric == 9999
    assert out["commands"][-3:] == [
        "Win32_NetworkAdapterConfiguration.EnableStatic(Addresses, Masks)",
        "Win32_NetworkAdapterConfiguration.SetIPConnectionMetric(9999)",
        "Win32_NetworkAdapterConfiguration.EnableStatic(Addresses, FallbackMask)",
    ]


# --- 5. firewall_rule: an error of the firewall is not "no such rule" --------------------------------


def test_firewall_rule_absent_throws_when_the_firewall_service_is_stopped() -> None:
    host = find_host("2016", lambda h: True)
    ok(host, "firewall_rule", rule_params())
    host.firewall_service_stopped = True
    message = failed(host, "firewall_rule", rule_params("Absent"))
    assert message == (
        "The Windows Firewall rules could not be read through HNetCfg.FwPolicy2: There are no more endpoints "
        "available from the endpoint mapper. (Exception from HRESULT: 0x800706D9)"
    )
    assert [r.name for r in host.firewall.rules if r.name == RULE] == [RULE]  # type: ignore[union-attr]
    assert failed(host, "firewall_rule", rule_params("Present")) == message

    host.firewall_service_stopped = False
    assert ok(host, "firewall_rule", rule_params("Present"))["changed"] is False
    assert ok(host, "firewall_rule", rule_params("Absent"))["changed"] is True
    assert ok(host, "firewall_rule", rule_params("Absent"))["changed"] is False


def test_firewall_rule_rollback_does_not_report_a_rule_removed_that_is_still_there() -> None:
    host = find_host("2012r2", lambda h: not loopbacks(h) and isinstance(h.firewall, AdvFirewall) and h.firewall.domain)
    before = facts_of(host)
    desired = desired_for(host)
    apply(host, plan(before, desired).actions)
    host.firewall_service_stopped = True
    undo = rollback_plan(before, facts_of(host), desired).actions
    rule = next(a for a in undo if a.step == "firewall_rule")
    assert host.run(rule.step, dict(rule.params)).failed is not None
    assert any(r.name == rule.params["Name"] for r in host.firewall.rules)  # type: ignore[union-attr]


# --- 2. the new loopback's driver is installed on that device only --------------------------------


def test_creating_the_loopback_leaves_another_loopback_alone() -> None:
    host = find_host("2008r2", lambda h: len(loopbacks(h)) == 1)
    (other,) = loopbacks(host)
    other.dhcp_enabled = False
    other.addresses = [("192.168.77.1", "255.255.255.0")]  # another service's loopback, in use
    out = ok(host, "loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""})
    assert out["created"] is True
    new = next(n for n in loopbacks(host) if n is not other)
    assert new.pnp_device_id == out["pnp_device_id"] and new.driver_installs == 1
    assert other.driver_installs == 0  # its driver was not reinstalled: it never went down


# --- 6. devcon: the new device is in the marker before the wait for WMI -----------------------------

DEVCON = "C:\\Tools\\devcon.exe"


def run_until_failure(host: WindowsHost, actions: tuple[Action, ...]) -> str | None:
    """Runs a plan's actions in order until one fails (as the runner stops a host): its message."""
    for a in actions:
        outcome = host.run(a.step, dict(a.params))
        if outcome.failed is not None:
            return outcome.failed
    return None


def test_devcon_loopback_late_in_wmi_is_not_duplicated_and_rollback_removes_it() -> None:
    host = find_host("2008r2", lambda h: not loopbacks(h))
    host.devcon_path = DEVCON
    host.loopback_wmi_late = 1  # the first run's 30-second wait ends before WMI lists the adapter
    desired = dataclasses.replace(desired_for(host), devcon_path=DEVCON)
    before = facts_of(host)

    message = run_until_failure(host, plan(before, desired).actions)
    assert message is not None and "no new msloop adapter appeared in WMI within 30 seconds" in message
    assert facts_of(host).loopbacks() == ()  # not in Win32_NetworkAdapter yet

    # The next run: the adapter has shown up by now; it is the one the first run created.
    assert run_until_failure(host, plan(facts_of(host), desired).actions) is None
    assert len(loopbacks(host)) == 1 and not host.pnp_only
    assert host.marker["LoopbackPnpId"] == loopbacks(host)[0].pnp_device_id
    assert host.marker["LoopbackCreated"] == "1"
    assert plan(facts_of(host), desired).actions == ()

    apply(host, rollback_plan(before, facts_of(host), desired).actions)
    assert loopbacks(host) == [] and host.marker == {}


def test_a_loopback_still_late_in_wmi_is_waited_for_again_not_created_twice() -> None:
    for devcon in (DEVCON, ""):
        host = find_host("2016", lambda h: not loopbacks(h))
        host.devcon_path = DEVCON
        host.loopback_wmi_late = 2
        params = {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": devcon}
        first = failed(host, "loopback", params)
        (device,) = host.pnp_only
        assert first == (f"A loopback device was installed ({device.pnp_device_id}) but no new msloop adapter "
                         "appeared in WMI within 30 seconds")
        assert host.marker == {"LoopbackPnpId": device.pnp_device_id, "LoopbackCreated": "1"}
        assert failed(host, "loopback", params) == (
            f"{device.pnp_device_id}, created by an earlier run, is still not listed by Win32_NetworkAdapter "
            "after 30 seconds"
        )
        out = ok(host, "loopback", params)
        assert out["pnp_device_id"] == device.pnp_device_id and out["created"] is False
        assert loopbacks(host) == [device] and host.marker["LoopbackCreated"] == "1"


# --- 3. http_listen: a failed HTTP restart is scheduled again until one succeeds --------------------


def test_http_listen_schedules_the_restart_again_after_one_failed() -> None:
    host = find_host("2012r2", lambda h: bool(h.http_listen) and not loopbacks(h))
    host.http_restart_fails = 1  # net stop http times out: http.sys never reads the edited list
    desired = desired_for(host)
    actions = plan(facts_of(host), desired).actions
    results = dict(zip([a.step for a in actions], apply(host, actions), strict=True))
    assert results["http_listen"]["restart_scheduled"] is True
    assert VIP in host.http_listen

    # The address is listed now, but the restart has not happened: the next plan restarts again.
    again = [a for a in plan(facts_of(host), desired).actions if a.step == "http_listen"]
    assert len(again) == 1 and "restart" in again[0].reason
    (out,) = apply(host, tuple(again))
    assert out["changed"] is True and out["restart_scheduled"] is True and out["restart"]["attempt"] == 2
    assert "HttpRestartPending" not in host.marker  # the restart script cleared it once HTTP was up
    assert plan(facts_of(host), desired).actions == ()


def test_a_pending_restart_is_scheduled_again_without_touching_the_list() -> None:
    host = find_host("2003", lambda h: h.httpcfg_installed and bool(h.http_listen) and h.elevated)
    listed = list(host.http_listen)
    host.marker["HttpRestartPending"] = "1"  # an earlier run's restart never completed
    desired = dataclasses.replace(desired_for(host), http_listen=False)
    (action,) = [a for a in plan(facts_of(host), desired).actions if a.step == "http_listen"]
    assert dict(action.params) == {"Ensure": "Absent", "Addresses": [VIP]}  # not listed: nothing to delete
    (out,) = apply(host, (action,))
    assert out["restart_scheduled"] is True and out["restart"]["attempt"] == 2 and out["output"] is None
    assert host.http_listen == listed and "HttpRestartPending" not in host.marker


def test_the_planner_gives_up_after_three_restarts_and_says_what_to_do() -> None:
    host = find_host("2019", lambda h: bool(h.http_listen))
    host.marker["HttpRestartPending"] = "3"
    refusals = plan(facts_of(host), desired_for(host)).refusals
    assert any("has not completed after 3 attempts" in r and "reg delete" in r for r in refusals)
