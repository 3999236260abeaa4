"""Every capture under tests/data/captures (dsrprep facts --capture) parses and plans, and a redacted
one holds no address outside the documentation ranges. A capture dropped in that folder is tested
by being there; tests/data/captures/README.md says how to make one."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.capture import Capture, os_family_of, read_capture, redact
from orchestrator.desired import Desired, parse_dsr_value, variable
from orchestrator.facts import parse_facts
from orchestrator.lab.build import capture_inventory_vars, host_from_capture
from orchestrator.plan import Plan, plan

CAPTURES = Path(__file__).resolve().parents[1] / "data" / "captures"
FILES = sorted(CAPTURES.glob("*.json"))
# The documentation ranges, and the benchmarking range a large capture run overflows into.
DOC_V4 = [ipaddress.IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15")]
KEPT_V4 = [ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4",
                                               "240.0.0.0/4")]
V4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
V6 = re.compile(r"(?<![\w.:%])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?")
MAC = re.compile(r"(?<![\w:-])[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}(?![\w:-])")


def desired_from(variables: dict[str, Any]) -> Desired:
    fields = {}
    for name, value in variables.items():
        declared = variable(name)
        assert declared is not None, name
        fields[declared.field] = parse_dsr_value(name, value)
    return Desired(**fields)


@pytest.fixture(params=FILES, ids=[p.name for p in FILES])
def capture(request: pytest.FixtureRequest) -> Capture:
    path: Path = request.param
    return read_capture(path)


def test_there_is_a_capture_of_every_family_the_lab_has() -> None:
    families = {os_family_of(read_capture(p).facts) for p in FILES}
    assert {"2003", "2008", "2008r2", "2012", "2012r2", "2016", "2019", "2022", "2025"} <= families


def test_the_capture_parses_and_its_header_agrees(capture: Capture) -> None:
    facts = parse_facts(capture.facts)
    assert capture.header["os_family"] == facts.os.family
    assert isinstance(capture.header["redacted"], bool)


def test_the_capture_plans(capture: Capture) -> None:
    """Against the desired state `lab serve --from-capture` would give it: the NIC by its RIP, a VIP
    of its subnet (or the ones its loopback holds), the sites that serve port 80."""
    the_plan = plan_of(capture)
    assert all(a.reason for a in the_plan.actions)
    assert all(r.strip() for r in (*the_plan.refusals, *the_plan.warnings))


def plan_of(capture: Capture) -> Plan:
    model = host_from_capture(capture.facts)
    avoid = {a for nic in model.nics for a, _ in nic.addresses}
    return plan(parse_facts(capture.facts), desired_from(capture_inventory_vars(model, avoid)))


def test_the_lab_captures_plan_what_their_hosts_need() -> None:
    """The constructed captures: the 2022 host was rolled out before it was captured."""
    for path in FILES:
        if not path.name.startswith("lab-"):
            continue
        the_plan = plan_of(read_capture(path))
        steps = {a.step for a in the_plan.actions}
        assert the_plan.refusals == (), path.name
        if path.name.startswith("lab-2022-"):
            assert steps == set(), path.name
        else:
            assert {"preflight", "loopback_config"} <= steps, path.name


def test_the_lab_host_built_from_it_answers_its_facts(capture: Capture) -> None:
    model = host_from_capture(capture.facts)
    served = model.run("facts", {})
    assert served.failed is None
    # A capture made before the facts held the machine's identity is served with the lab host's own.
    machine = {"uuid": model.machine_uuid, "os_serial": model.os_serial}
    assert machine["uuid"] and machine["os_serial"]
    expected = {"machine": machine, **capture.facts}
    assert json.loads(json.dumps(served.output[0])) == expected
    own = parse_facts(json.loads(json.dumps(model.facts())))  # what it answers once a step changed it
    if capture.name.startswith("lab-"):
        # made from a lab host: the model rebuilt from the facts says the same (the texts differ only
        # in what netsh makes up per interface, such as its Reachable Time)
        assert own.to_dict() == parse_facts(expected).to_dict()


def test_a_redacted_capture_holds_only_placeholders(capture: Capture) -> None:
    if not capture.redacted:
        pytest.skip("not redacted")
    text = json.dumps(capture.facts)
    for token in V4.findall(text):
        ip = ipaddress.IPv4Address(token)
        assert any(ip in net for net in DOC_V4 + KEPT_V4), token
    for token in V6.findall(text):
        try:
            ip6 = ipaddress.IPv6Address(token)
        except ValueError:
            continue
        assert (ip6 in ipaddress.IPv6Network("2001:db8::/32") or ip6.is_link_local or ip6.is_loopback
                or ip6.is_unspecified or ip6.is_multicast), token
    for match in MAC.finditer(text):
        digits = re.sub(r"[^0-9A-F]", "", match.group(0).upper())
        assert digits.startswith(("00005E0053", "02005E")) or digits in {"02004C4F4F50", "FFFFFFFFFFFF"}, match.group(0)
    # redacting it again changes nothing a parser reads
    assert parse_facts(redact(capture.facts)).to_dict().keys() == parse_facts(capture.facts).to_dict().keys()
