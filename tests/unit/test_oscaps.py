"""The OS capability table is the only list of families: everything else follows a row added to it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator import oscaps, stepdocs, steps, templates
from orchestrator.desired import Desired, NicSelector, Vip
from orchestrator.facts import FactsError, os_family, parse_facts
from orchestrator.plan import plan
from tests.unit.test_facts import raw_2008r2

ROOT = Path(__file__).resolve().parents[2]
# A semi-annual channel release between 2016 and 2019, as far as dsrprep cares a 2016.
SAC = dataclasses.replace(oscaps.caps("2016"), family="2016sac", name="Windows Server 1709", first_build=16299)


def test_families_oldest_first_with_unique_versions() -> None:
    rows = oscaps.table()
    assert oscaps.families()[0] == "2003" and oscaps.families()[-1] == "2025"
    keys = [(r.nt_version, r.first_build) for r in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("version", ["4.0.1381", "10.0.10586", "6.4.1", "x", "10.0"])
def test_versions_no_row_covers_are_refused(version: str) -> None:
    with pytest.raises(FactsError):
        os_family(version)


def test_capabilities_decide_not_names() -> None:
    assert not oscaps.caps("2003").advfirewall and oscaps.caps("win2008R2").advfirewall
    assert oscaps.caps("2008").skip_as_source is oscaps.SkipAsSource.HOTFIX
    assert oscaps.caps("2008").skip_as_source_hotfix == "KB975808"
    assert [c.family for c in oscaps.table() if c.single_firewall_profile] == ["2008"]
    assert [c.family for c in oscaps.table() if not c.host_mask_sure] == ["2003"]
    with pytest.raises(oscaps.UnknownFamily, match="known families: 2003, 2008"):
        oscaps.caps("nt4")


def test_a_new_family_needs_no_other_edit() -> None:
    raw = raw_2008r2()
    raw["os"]["version"] = "10.0.16299"
    desired = Desired(vips=(Vip("10.0.0.50", (80,), "tcp"),), nic=NicSelector("address", "10.0.0.11"),
                      iis_sites=("mailout",))
    assert os_family("10.0.16299") == "2016"
    with oscaps.extended(SAC):
        assert oscaps.families().index("2016sac") == oscaps.families().index("2016") + 1
        facts = parse_facts(raw)
        assert facts.os.family == "2016sac" and facts.os.caps is SAC
        # templates: the variant of the family it inherits from by order
        for step in ("loopback_config", "firewall_rule", "iis_binding"):
            assert templates.select_template(step, "2016sac") == templates.select_template(step, "2016")
        # plan: decided by capabilities, as for 2016
        the_plan = plan(facts, desired)
        assert not the_plan.refusals and {a.step for a in the_plan.actions} >= {"loopback_config", "weak_host"}
        assert any("2016sac" in g.families for g in stepdocs.family_groups(list(steps.ordered())))
    assert "2016sac" not in oscaps.families()
    assert parse_facts(raw).os.family == "2016"


def test_a_family_is_added_once() -> None:
    with pytest.raises(oscaps.UnknownFamily, match="already"), oscaps.extended(oscaps.caps("2016")):
        pass


def test_committed_step_tables_are_the_generated_ones() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    steps_md = (ROOT / "docs" / "steps.md").read_text(encoding="utf-8")
    assert stepdocs.replace_between(readme, stepdocs.README_MARKERS, stepdocs.readme_table(), where="README") == readme
    assert stepdocs.replace_between(steps_md, stepdocs.STEPS_MD_MARKERS, stepdocs.steps_reference(),
                                    where="steps.md") == steps_md, "run: dsrprep steps --write-docs ."
