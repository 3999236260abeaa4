"""What Python binds is exactly what each template declares, for every action plan() can produce."""

from __future__ import annotations

import pytest

from orchestrator.desired import NicSelector, Vip
from orchestrator.facts import parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.plan import Action, plan, rollback_plan
from orchestrator.steps import verify
from orchestrator.templates import render, select_template
from tests.unit.test_plan import desired_for


def assert_binds_exactly(action: Action, family: str) -> None:
    template = select_template(action.step, family)
    declared = {p.name for p in template.parameters}
    assert set(action.params) == declared, (action.step, template.path, sorted(action.params), sorted(declared))
    script = render(action.step, family, action.params)  # also checks types and mandatory parameters
    assert dict(script.parameters) == dict(action.params)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_planned_action_binds_the_declared_parameters(seed: int) -> None:
    seen: set[tuple[str, str]] = set()
    for host in build_fleet(40, seed=seed, profile="mixed"):
        facts = parse_facts(host.facts())
        variants = [
            desired_for(host, skip_as_source=False),
            desired_for(host, firewall="disable", vips=(Vip("10.20.0.200", (80, 443), "tcp"),
                                                        Vip("fd00::200", (80,), "tcp"))),
            desired_for(host, nic=NicSelector("address", host.rip), weakhost_send_on_nic=True),
        ]
        for desired in variants:
            for action in plan(facts, desired).actions:
                assert_binds_exactly(action, facts.os.family)
                seen.add((action.step, facts.os.family))
            params = verify.params(facts, desired)
            assert_binds_exactly(Action("verify", params, "verify"), facts.os.family)
    steps = {step for step, _family in seen}
    assert {"preflight", "loopback", "loopback_config", "adapter_settings", "weak_host", "firewall_rule",
            "firewall_state"} <= steps


def test_rollback_actions_bind_the_declared_parameters() -> None:
    seen: set[str] = set()
    for host in build_fleet(21, seed=9, profile="mixed"):
        host.hotfixes.add("KB975808")
        before = parse_facts(host.facts())
        desired = desired_for(host, firewall="disable" if host.rip.endswith("5") else "rule")
        family = before.os.family
        # Apply the plan to the model directly (no network): the state a rollout leaves behind.
        for action in plan(before, desired).actions:
            variant = select_template(action.step, family).variant
            result = host.run(action.step, dict(action.params), variant=variant)
            assert result.failed is None, (action.step, result.failed)
        after = parse_facts(host.facts())
        undo = rollback_plan(before, after, desired)
        assert undo.actions
        for action in undo.actions:
            assert_binds_exactly(action, family)
            seen.add(action.step)
    assert {"loopback", "weak_host", "firewall_rule", "firewall_state", "marker"} <= seen
