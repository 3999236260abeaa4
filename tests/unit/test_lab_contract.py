"""The lab answers each step as its template does, in the shape its step module parses.

For every step and every OS family: the keys of the lab's result object are exactly the keys of
the result hashtable the template emits (read from the template's text), and the step's output
parser reads only keys that are there (it parses the answer, and every key it asks for exists).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import oscaps, steps
from orchestrator.desired import Desired, NicSelector, Vip, step_variables
from orchestrator.facts import parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.steps import STEPS as LAB_STEPS
from orchestrator.plan import plan
from orchestrator.steps import skip_as_source, verify
from orchestrator.templates import Template, all_templates, select_template

VIP = "10.20.0.200"
FAMILIES = oscaps.families()


def output_keys(template: Template, opening: str = "@{") -> set[str]:
    """The keys of every result hashtable the template emits: a line that is `@{` alone (or
    `opening`), up to its closing `}` at the same indentation; nested hashtables' keys are not the
    result's."""
    keys: set[str] = set()
    lines = template.text.splitlines()
    for start, line in enumerate(lines):
        if line.strip() != opening:
            continue
        indent = len(line) - len(line.lstrip())
        for inner in lines[start + 1:]:
            if inner.strip() == "}" and len(inner) - len(inner.lstrip()) == indent:
                break
            key = re.match(r"(\s*)([a-z_0-9]+) = ", inner)
            if key and len(key.group(1)) == indent + 4:
                keys.add(key.group(2))
    return keys


class Recording(dict[str, Any]):
    """A result object that remembers which keys a parser asked for."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def desired_for(host: WindowsHost, **changes: Any) -> Desired:
    """What a rollout would want, with every variable a step declares set to its example value."""
    options = tuple(sorted((v.name, v.example) for v in step_variables()))
    return Desired(vips=(Vip(VIP, (80,), "tcp"),), nic=NicSelector("address", host.rip),
                   skip_as_source=host.os_family != "2008" or "KB975808" in host.hotfixes, options=options,
                   **changes)


def answers(host: WindowsHost) -> Iterator[tuple[str, str, Any]]:
    """(step, variant, result object) for each step a rollout (and its checks) sends to `host`."""
    family = host.os_family
    facts = parse_facts(host.facts())
    desired = desired_for(host)
    jobs = [(a.step, dict(a.params)) for a in plan(facts, desired_for(host, firewall="disable")).actions
            if a.step == "firewall_state"]
    jobs += [(a.step, dict(a.params)) for a in plan(facts, desired).actions]
    for step, params in jobs:
        yield run(host, step, params)
    after = parse_facts(host.facts())
    loopback = after.dsr_loopback([VIP])
    if desired.skip_as_source and skip_as_source.supported(after) and loopback is not None:
        # Planned only for a VIP that lost its flag; its rollback form is the same call.
        yield run(host, "skip_as_source", {"PnpDeviceId": loopback.pnp_device_id, "Address": VIP,
                                           "Mask": "255.255.255.255", "Enabled": False})
    yield run(host, "verify", verify.params(after, desired))
    yield run(host, "arp_check", {"Address": VIP})
    yield run(host, "marker", {"Ensure": "Absent", "Values": {}})
    assert family == host.os_family


def run(host: WindowsHost, step: str, params: dict[str, Any]) -> tuple[str, str, Any]:
    variant = select_template(step, host.os_family).variant
    result = host.run(step, params, variant=variant)
    assert result.failed is None, (host.os_family, step, result.failed)
    assert len(result.output) == 1, (host.os_family, step)
    return step, variant, result.output[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_lab_answers_have_the_template_shape_and_parse(family: str) -> None:
    templates = {(t.step, t.variant): t for t in all_templates()}
    seen: set[str] = set()
    for host in build_fleet(12, seed=5, profile=family):
        if host.elevated is False or host.powershell_version.startswith("1."):
            continue
        for step, variant, raw in answers(host):
            expected = output_keys(templates[(step, variant)])
            assert set(raw) == expected, (family, step, variant, set(raw) ^ expected)
            recording = Recording(dict(raw))
            steps.parse_output(step, recording)
            assert recording.asked <= expected, (family, step, recording.asked - expected)
            seen.add(step)
    never = {"weak_host", "skip_as_source"} if not oscaps.caps(family).weak_host else set()
    planned = {s.name for s in steps.ordered()} - never
    assert planned <= seen, (family, planned - seen)


def facts_script_keys(family: str) -> set[str]:
    """The keys of the facts object: the common part's `$facts = @{` and each fragment's `$facts['k'] =`."""
    script = select_template("facts", family)
    fragments = set(re.findall(r"^\$facts\['([a-z0-9_]+)'\] =", script.text, re.MULTILINE))
    return output_keys(script, "$facts = @{") | fragments


@pytest.mark.parametrize("family", FAMILIES)
def test_lab_facts_have_the_facts_script_shape(family: str) -> None:
    expected = facts_script_keys(family)
    assert {"schema", "adapters", "firewall", "netsh_ipv4", "iis", "events"} <= expected
    for host in build_fleet(3, seed=2, profile=family):
        assert set(host.facts()) == expected
        parse_facts(host.facts())


def test_the_lab_models_every_step_and_nothing_else() -> None:
    assert set(LAB_STEPS) == {*steps.names(), "facts"}


def test_the_template_shape_reader_reads_nested_tables_apart() -> None:
    preflight = select_template("preflight", "2016")
    assert output_keys(preflight) == {"changed", "checks"}
