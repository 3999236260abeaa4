"""Every shipped template parses, passes the PowerShell 2.0 lint, follows the conventions, and
declares the parameters Python binds. New templates are picked up without touching this file."""

from __future__ import annotations

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser, Query, QueryCursor

from orchestrator import templates
from orchestrator.pslint import check_template_conventions, lint, read_header
from orchestrator.templates import FAMILIES, Template, all_templates, select_template, steps

TEMPLATES = all_templates()
_LANGUAGE = Language(tree_sitter_powershell.language())


def _id(template: Template) -> str:
    return f"{template.step}/{template.variant}"


def test_there_are_templates() -> None:
    assert TEMPLATES, "ps_templates ships no templates: the checks below would prove nothing"


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_parses_without_errors(template: Template) -> None:
    # Straight from the grammar, independent of the lint's own reporting.
    tree = Parser(_LANGUAGE).parse(template.text.encode("utf-8"))
    bad = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            bad.append(f"{node.type} at line {node.start_point.row + 1}")
        stack.extend(node.children)
    assert not tree.root_node.has_error and not bad, f"{template.path}: {bad}"


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_passes_the_powershell_2_lint(template: Template) -> None:
    issues = lint(template.text, template.path)
    assert issues == [], "\n".join(str(i) for i in issues)


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_follows_the_template_conventions(template: Template) -> None:
    issues = check_template_conventions(template.text, template.path)
    assert issues == [], "\n".join(str(i) for i in issues)


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_header_names_its_folder(template: Template) -> None:
    assert template.path == f"ps_templates/{template.step}/{template.variant}.ps1"
    assert read_header(template.text).get("step") == template.step


_PARAMS = Query(
    _LANGUAGE,
    "(program (param_block (parameter_list (script_parameter (variable) @name))))",
)


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_declared_parameters_are_what_python_binds(template: Template) -> None:
    tree = Parser(_LANGUAGE).parse(template.text.encode("utf-8"))
    captures = QueryCursor(_PARAMS).captures(tree.root_node).get("name", [])
    declared = [(n.text or b"").decode().lstrip("$") for n in sorted(captures, key=lambda n: n.start_byte)]
    assert [p.name for p in template.parameters] == declared
    for param in template.parameters:
        # PowerShell ignores a default on a mandatory parameter: one of the two is a mistake.
        assert not (param.mandatory and param.has_default), f"{template.path}: ${param.name}"


@pytest.mark.parametrize("step", steps())
def test_every_step_has_a_default(step: str) -> None:
    assert select_template(step, "default").variant == "default"


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_every_variant_is_chosen_for_some_family(template: Template) -> None:
    chosen_for = [f for f in FAMILIES if select_template(template.step, f) == template]
    assert chosen_for, f"{template.path} is never selected: another variant shadows it"


def test_templates_are_loaded_once() -> None:
    assert templates.all_templates() == TEMPLATES
    assert all(a is b for a, b in zip(templates.all_templates(), TEMPLATES, strict=True))
