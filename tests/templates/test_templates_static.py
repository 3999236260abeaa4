"""Every shipped template parses, passes the PowerShell 2.0 lint, follows the conventions, and
declares the parameters Python binds; every lib of shared functions parses and passes the lint on its
own, and the templates include exactly the libs they call. The checks run on the expanded text, the
script as it is sent. New templates and libs are picked up without touching this file."""

from __future__ import annotations

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser, Query, QueryCursor

from orchestrator import oscaps, templates
from orchestrator.pslint import check_template_conventions, command_name, lint, node_text, parse, read_header, walk
from orchestrator.templates import (
    LIB_FOLDER,
    Lib,
    Template,
    all_libs,
    all_templates,
    select_template,
    steps,
)

FAMILIES = oscaps.families()

TEMPLATES = all_templates()
LIBS = all_libs()
_LANGUAGE = Language(tree_sitter_powershell.language())


def _id(template: Template) -> str:
    return f"{template.step}/{template.variant}"


def _lib_id(lib: Lib) -> str:
    return lib.name


# Templates as sent (includes expanded) and each lib on its own: both must parse and pass the lint.
SCRIPTS: list[Template | Lib] = [*TEMPLATES, *LIBS]


def _script_id(script: Template | Lib) -> str:
    return _id(script) if isinstance(script, Template) else f"{LIB_FOLDER}/{script.name}"


def _syntax_errors(text: str) -> list[str]:
    # Straight from the grammar, independent of the lint's own reporting.
    tree = Parser(_LANGUAGE).parse(text.encode("utf-8"))
    bad = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            bad.append(f"{node.type} at line {node.start_point.row + 1}")
        stack.extend(node.children)
    if tree.root_node.has_error and not bad:
        bad.append("the tree has an error")
    return bad


def _defined(text: str) -> list[str]:
    """Names of the functions `text` defines, in order, lower case (PowerShell ignores case)."""
    names = []
    for node in walk(parse(text).root_node):
        if node.type == "function_statement":
            name = next(c for c in node.named_children if c.type == "function_name")
            names.append(node_text(name).lower())
    return names


def _called(text: str) -> set[str]:
    names = set()
    for node in walk(parse(text).root_node):
        if node.type == "command":
            name = command_name(node)
            if name is not None:
                names.add(name.lower())
    return names


LIB_FUNCTIONS = {name: lib.name for lib in LIBS for name in _defined(lib.text)}


def test_there_are_templates() -> None:
    assert TEMPLATES, "ps_templates ships no templates: the checks below would prove nothing"


@pytest.mark.parametrize("script", SCRIPTS, ids=_script_id)
def test_parses_without_errors(script: Template | Lib) -> None:
    bad = _syntax_errors(script.text)
    assert not bad, f"{script.path}: {bad}"


@pytest.mark.parametrize("script", SCRIPTS, ids=_script_id)
def test_passes_the_powershell_2_lint(script: Template | Lib) -> None:
    issues = lint(script.text, script.path)
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


# -- libs of shared functions -----------------------------------------------------------------------


_TOP_LEVEL = Query(_LANGUAGE, "[(program (_) @top) (program (statement_list (_) @top))]")


@pytest.mark.parametrize("lib", LIBS, ids=_lib_id)
def test_lib_is_its_header_and_functions(lib: Lib) -> None:
    assert lib.path == f"ps_templates/_lib/{lib.name}.ps1"
    assert lib.text.splitlines()[0] == f"# dsrprep-lib: {lib.name}"
    tree = Parser(_LANGUAGE).parse(lib.text.encode("utf-8"))
    kinds = {n.type for n in QueryCursor(_TOP_LEVEL).captures(tree.root_node).get("top", [])}
    assert kinds - {"statement_list"} <= {"comment", "function_statement", "empty_statement"}, kinds
    assert _defined(lib.text), f"{lib.path} defines no function"
    assert "dsrprep-include" not in lib.text and "dsrprep-step" not in lib.text


@pytest.mark.parametrize("lib", LIBS, ids=_lib_id)
def test_every_lib_is_included_somewhere(lib: Lib) -> None:
    assert any(lib.name in t.includes for t in TEMPLATES), f"no template includes {lib.path}"


def test_libs_do_not_define_the_same_function() -> None:
    names = [name for lib in LIBS for name in _defined(lib.text)]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_template_text_is_self_contained(template: Template) -> None:
    # What is sent carries no include line, every lib it names, and each function once.
    assert "dsrprep-include" not in template.text
    for name in template.includes:
        assert next(lib for lib in LIBS if lib.name == name).text in template.text
    defined = _defined(template.text)
    assert len(defined) == len(set(defined)), f"{template.path} defines a function twice"


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_shared_functions_come_from_the_libs(template: Template) -> None:
    # A function a lib defines is never written again in a template: it includes the lib.
    included = "".join(lib.text for lib in LIBS if lib.name in template.includes)
    own = list(_defined(template.text))
    for name in _defined(included):
        own.remove(name)
    copied = {name: LIB_FUNCTIONS[name] for name in own if name in LIB_FUNCTIONS}
    assert not copied, f"{template.path} defines functions of libs it should include: {copied}"


@pytest.mark.parametrize("template", TEMPLATES, ids=_id)
def test_includes_are_the_libs_called(template: Template) -> None:
    # Every shared function called, by the template or by a lib it includes, is included (libs do
    # not include each other), and every include is called from outside that lib.
    defined = set(_defined(template.text))
    missing = {name: LIB_FUNCTIONS[name] for name in _called(template.text) if name in LIB_FUNCTIONS}
    missing = {name: lib for name, lib in missing.items() if name not in defined}
    assert not missing, f"{template.path} calls functions of libs it does not include: {missing}"
    for name in template.includes:
        lib = next(lib for lib in LIBS if lib.name == name)
        callers = template.text.replace(lib.text, "", 1)
        assert set(_defined(lib.text)) & _called(callers), f"{template.path} includes {name} but calls none of it"
