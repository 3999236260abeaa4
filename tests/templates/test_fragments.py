"""The facts script is assembled from the steps' fragments: each fragment and its step module agree."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator import steps
from orchestrator.pslint import lint, parse
from orchestrator.templates import FRAGMENTS_LINE, Fragment, TemplateCatalog, TemplateError, all_fragments, render

FRAGMENTS = all_fragments()
_ASSIGNED = re.compile(r"^\$facts\['(?P<key>[a-z0-9_]+)'\]\s*=", re.MULTILINE)


def test_every_step_with_facts_has_a_fragment_and_back() -> None:
    with_facts = {s.name for s in steps.ordered() if s.facts is not None}
    assert {f.step for f in FRAGMENTS} == with_facts


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f.step)
def test_fragment_sets_exactly_the_keys_its_parser_reads(fragment: Fragment) -> None:
    part = steps.get(fragment.step).facts
    assert part is not None
    assert sorted(_ASSIGNED.findall(fragment.text)) == sorted(part.keys)


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=lambda f: f.step)
def test_fragment_parses_and_passes_the_lint(fragment: Fragment) -> None:
    assert not parse(fragment.text).root_node.has_error
    assert lint(fragment.text) == []


def test_the_facts_script_holds_every_fragment_once_in_a_scope_of_its_own() -> None:
    text = render("facts", "default", {}).text
    assert f"\n{FRAGMENTS_LINE}\n" not in text
    for fragment in FRAGMENTS:
        assert text.count(fragment.text.rstrip()) == 1
        assert f"# {fragment.path}\n& {{\n" in text


def test_a_fragment_must_name_its_step(tmp_path: Path) -> None:
    (tmp_path / "facts").mkdir()
    (tmp_path / "facts" / "default.ps1").write_text("# dsrprep-step: facts\nparam()\n", encoding="utf-8")
    (tmp_path / "iis").mkdir()
    (tmp_path / "iis" / "facts.ps1").write_text("# dsrprep-facts: other\n$facts['x'] = 1\n", encoding="utf-8")
    with pytest.raises(TemplateError, match="first line must be `# dsrprep-facts: iis`"):
        TemplateCatalog(tmp_path)
