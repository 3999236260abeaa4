"""A family only the capability table knows: the lab builds hosts of it from the lab data of the
nearest older family, answers its facts with a version that detects as that family, and runs its
steps as the variants the template catalogue picks for it. No edit of the lab is needed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from typing import Any

import pytest

from orchestrator import oscaps
from orchestrator.facts import os_family, parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.lab.common import Hashtable, RequestCounters
from orchestrator.lab.fleet import _HostHandler, template_of
from orchestrator.lab.host import WindowsHost
from orchestrator.lab.profiles import FAMILY_SPECS, family_spec, profiles
from orchestrator.templates import select_template
from orchestrator.templates import steps as template_steps

NOW = datetime(2025, 3, 14, 9, 30)
VIP = "10.20.0.200"
HOST_MASK = "255.255.255.255"

# A semi-annual channel release: 10.0 like 2016, told apart by its build, capabilities like 2016.
SAC = replace(oscaps.caps("2016"), family="2016sac", name="Windows Server, version 1709", first_build=16299)
# A made-up service release between 2008 R2 and 2012: it takes 2008 R2's lab data.
R2SP2 = replace(oscaps.caps("2008r2"), family="2008r2sp2", name="Windows Server 2008 R2 SP2", first_build=7700)


@pytest.fixture()
def sac() -> Iterator[oscaps.OsCaps]:
    with oscaps.extended(SAC) as row:
        yield row


def sac_host(seed: int = 1) -> WindowsHost:
    return build_fleet(1, seed=seed, profile="2016sac", now=NOW)[0]


def test_the_new_family_is_a_profile_and_part_of_the_mixed_rotation(sac: oscaps.OsCaps) -> None:
    assert "2016sac" in profiles()
    assert "2016sac" not in FAMILY_SPECS
    families = oscaps.families()
    hosts = build_fleet(2 * len(families), seed=3, profile="mixed", now=NOW)
    assert sorted(h.os_family for h in hosts) == sorted(2 * families)


def test_it_borrows_the_lab_data_of_the_nearest_older_family(sac: oscaps.OsCaps) -> None:
    spec, older = family_spec("2016sac"), family_spec("2016")
    assert spec.family == "2016sac"
    assert spec.builds == (("10.0.16299", 0, 1.0),)
    assert spec.caption == "Microsoft Windows Server, version 1709 {edition}"
    assert (spec.nic_hardware, spec.connection_name, spec.netsh_level) == (
        older.nic_hardware, older.connection_name, older.netsh_level
    )
    with oscaps.extended(R2SP2):
        between = family_spec("2008r2sp2")
        assert between.connection_name == "Local Area Connection"
        assert between.netsh_level == family_spec("2008r2").netsh_level
        assert build_fleet(1, seed=1, profile="2008r2sp2", now=NOW)[0].version == "6.1.7700"


def test_a_host_of_it_has_its_versions_from_the_capability_row(sac: oscaps.OsCaps) -> None:
    for host in build_fleet(6, seed=2, profile="2016sac", now=NOW):
        assert host.os_family == "2016sac" and host.caps == SAC
        assert host.version == "10.0.16299"
        assert host.powershell_version == SAC.powershell and host.iis_version == SAC.iis_version
        assert host.caption.startswith("Microsoft Windows Server, version 1709 ")


def test_its_facts_detect_as_the_new_family(sac: oscaps.OsCaps) -> None:
    host = sac_host()
    result = host.run("facts", {})
    assert result.failed is None
    raw = result.output[0]
    assert isinstance(raw, Hashtable)
    assert os_family(raw["os"]["version"]) == "2016sac"
    facts = parse_facts(raw)
    assert facts.os.family == "2016sac" and facts.computer_name == host.name
    assert raw["netsh_ipv4"] and raw["firewall"]["api"] == "advfirewall"


def test_it_runs_each_step_as_the_variant_the_catalogue_picks(sac: oscaps.OsCaps) -> None:
    host = sac_host()
    for step in template_steps():
        assert host.natural_variant(step) == select_template(step, "2016sac").variant

    # The scripts as a client sends them for this family, through the fleet's routing.
    handler = _HostHandler(host, RequestCounters())
    steps: list[tuple[str, dict[str, Any]]] = [
        ("preflight", {"Vips": [VIP]}),
        ("loopback", {"Ensure": "Present", "PnpDeviceId": "", "Vips": [VIP], "DevconPath": ""}),
        ("loopback_config", {"PnpDeviceId": "", "Name": "DSR Loopback", "Addresses": [VIP], "Masks": [HOST_MASK],
                             "Addresses6": [], "SkipAsSource": True, "FallbackMask": "", "Dhcp": False}),
        ("iis_binding", {"Ensure": "Present", "Site": "Default Web Site", "Protocol": "http", "Ip": VIP, "Port": 80,
                         "HostHeader": "", "Restart": False}),
    ]
    for step, params in steps:
        template = select_template(step, "2016sac")
        assert template_of(template.text) == (step, template.variant)
        result = handler(template.text, params)
        assert result.failed is None, (step, result.failed)
        assert not result.cut_connection
    lo = next(n for n in host.nics if n.pnp_device_id == host.marker["LoopbackPnpId"])
    assert lo.ipv4() == [(VIP, HOST_MASK)] and lo.skip_as_source == {VIP}
    assert lo.interface_index is not None and not lo.weak_host_send
    assert ("http", f"{VIP}:80:") in next(s for s in host.sites if s.name == "Default Web Site").bindings


def test_outside_the_block_the_family_is_unknown_again() -> None:
    with oscaps.extended(SAC):
        assert build_fleet(1, seed=1, profile="2016sac", now=NOW)
    assert "2016sac" not in profiles()
    with pytest.raises(ValueError, match="unknown lab profile"):
        build_fleet(1, seed=1, profile="2016sac", now=NOW)
