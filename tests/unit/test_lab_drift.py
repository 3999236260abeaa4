"""Drift behind dsrprep's back on a lab host: an IIS binding of an address removed, as Remove-WebBinding does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrator.facts import parse_facts
from orchestrator.lab.build import build_fleet
from orchestrator.steps import iis_binding


@pytest.mark.parametrize("profile", ["2003", "2016"])  # the IIS 6 metabase and appcmd
def test_remove_bindings_takes_only_that_address_from_every_site(profile: str) -> None:
    [host] = build_fleet(1, seed=2, profile=profile, now=datetime(2024, 1, 1, tzinfo=UTC))
    host.sites[0].bindings = [("http", "10.20.0.200:80:"), ("http", f"{host.rip}:80:"),
                              ("http", "10.20.0.200:80:www.example.com")]
    before = {s.name: list(s.bindings) for s in host.sites[1:]}
    assert host.remove_bindings("10.20.0.200") == 2
    sites = {s.name: [(b.ip, b.port, b.host) for b in s.bindings]
             for s in iis_binding.iis(parse_facts(host.facts())).sites}
    assert sites["Default Web Site"] == [(host.rip, 80, "")]
    assert {s.name: s.bindings for s in host.sites[1:]} == before
    assert host.remove_bindings("10.20.0.200") == 0
