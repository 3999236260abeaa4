"""`# dsrprep-include: <lib>`: shared functions in ps_templates/_lib, expanded into the templates when
they are loaded, so that everything downstream sees the script that is sent."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator import templates
from orchestrator.lab.fleet import template_of
from orchestrator.templates import LIB_FOLDER, TemplateCatalog, TemplateError, TemplateParam, expand_includes

ROOT = Path(__file__).resolve().parents[2]
# The `write_catalog` fixture (conftest.py): files below a fresh root -> the catalog they make.
WriteCatalog = Callable[[dict[str, str]], TemplateCatalog]

NATIVE = "# dsrprep-lib: native\n# Runs a tool.\nfunction Invoke-Tool([string]$Path) {\n    & $Path\n}\n"
IP = (
    "# dsrprep-lib: ip\nfunction ConvertTo-Ip([string]$Text) {\n    $Text.Trim()\n}\n\n"
    "function Test-Ip([string]$Text) {\n    $null -ne (ConvertTo-Ip $Text)\n}\n"
)
HEAD = "# dsrprep-step: s\n# Test template.\nparam(\n    [string]$Address\n)\n$ErrorActionPreference = 'Stop'\n"
TAIL = "\n$ip = ConvertTo-Ip $Address\n@{ changed = $false; address = $ip }\n"


def _libs(**extra: str) -> dict[str, str]:
    return {f"{LIB_FOLDER}/native.ps1": NATIVE, f"{LIB_FOLDER}/ip.ps1": IP} | extra


def test_include_lines_are_replaced_by_the_lib_text(write_catalog: WriteCatalog) -> None:
    source = HEAD + "\n# dsrprep-include: ip\n# dsrprep-include: native\n" + TAIL
    catalog = write_catalog(_libs(**{"s/default.ps1": source}))
    template = catalog.select("s", "2019")
    assert template.text == HEAD + "\n" + IP + NATIVE + TAIL
    assert template.includes == ("ip", "native")
    assert template.parameters == (TemplateParam("Address", "string", mandatory=False, has_default=False),)

    script = catalog.render("s", "2019", {"Address": " 10.0.0.1 "})
    assert script.text == template.text
    assert script.sha256 == hashlib.sha256(template.text.encode("utf-8")).hexdigest()


def test_a_template_without_includes_is_read_as_it_is(write_catalog: WriteCatalog) -> None:
    source = HEAD + "# dsrprep-included: this is only a comment\n" + TAIL
    catalog = write_catalog(_libs(**{"s/default.ps1": HEAD + TAIL}))
    assert catalog.select("s", "2019").text == HEAD + TAIL
    assert catalog.select("s", "2019").includes == ()
    assert expand_includes(source, "t.ps1", {}) == (source, ())


def test_lib_is_not_a_step(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog(_libs(**{"s/default.ps1": HEAD + "# dsrprep-include: ip\n" + TAIL}))
    assert catalog.steps() == ["s"]
    assert [t.path for t in catalog.all_templates()] == ["ps_templates/s/default.ps1"]
    assert [(lib.name, lib.path) for lib in catalog.libs()] == [
        ("ip", "ps_templates/_lib/ip.ps1"),
        ("native", "ps_templates/_lib/native.ps1"),
    ]
    with pytest.raises(TemplateError, match=r"no template for step '_lib'; known steps: s$"):
        catalog.select(LIB_FOLDER, "2019")


def test_shipped_libs_are_not_steps() -> None:
    assert LIB_FOLDER not in templates.steps()
    assert all(t.step != LIB_FOLDER for t in templates.all_templates())
    shipped = sorted(p.stem for p in (ROOT / "ps_templates" / LIB_FOLDER).glob("*.ps1"))
    assert shipped and [lib.name for lib in templates.all_libs()] == shipped


def test_a_here_string_is_not_an_include(write_catalog: WriteCatalog) -> None:
    source = HEAD + "$text = @'\n# dsrprep-include: ip\n'@\n@{ changed = $false }\n"
    catalog = write_catalog(_libs(**{"s/default.ps1": source}))
    assert catalog.select("s", "2019").text == source


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            HEAD + "# dsrprep-include: dns\n" + TAIL,
            r"ps_templates/s/default\.ps1:7: includes unknown lib 'dns' \(there is no _lib/dns\.ps1\); "
            r"libs: ip, native",
        ),
        (HEAD + "# dsrprep-include: ip\n# dsrprep-include: ip\n" + TAIL, r":8: lib 'ip' is included twice"),
        (HEAD + "#dsrprep-include:ip\n" + TAIL, r":7: `#dsrprep-include:ip`: an include line is `# dsrprep-include: "),
        (HEAD + "# dsrprep-include: IP\n" + TAIL, r"an include line is `# dsrprep-include: <lib>`"),
        (HEAD + "# dsrprep-include: ip extra\n" + TAIL, r"an include line is `# dsrprep-include: <lib>`"),
        (HEAD + "    # dsrprep-include: ip\n" + TAIL, r":7: .* must be a line of its own at the top level"),
        (HEAD + "$x = 1 # dsrprep-include: ip\n" + TAIL, r"must be a line of its own at the top level"),
        (HEAD + "function F {\n# dsrprep-include: ip\n}\n" + TAIL, r":8: .* at the top level of the script"),
        (HEAD + "if ($true) {\n# dsrprep-include: ip\n}\n" + TAIL, r"at the top level of the script"),
        (
            "# dsrprep-step: s\n# dsrprep-include: ip\nparam()\n$ErrorActionPreference = 'Stop'\n" + TAIL,
            r":2: .* must come after \$ErrorActionPreference = 'Stop'",
        ),
        (
            "# dsrprep-step: s\nparam()\n# dsrprep-include: ip\n$ErrorActionPreference = 'Stop'\n" + TAIL,
            r":3: .* must come after \$ErrorActionPreference = 'Stop'",
        ),
    ],
)
def test_bad_include_lines_are_refused(write_catalog: WriteCatalog, source: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        write_catalog(_libs(**{"s/default.ps1": source}))


def test_unknown_include_without_any_lib(write_catalog: WriteCatalog) -> None:
    with pytest.raises(TemplateError, match=r"ps_templates/s/default\.ps1:7: includes unknown lib 'ip'.*libs: none"):
        write_catalog({"s/default.ps1": HEAD + "# dsrprep-include: ip\n" + TAIL})


@pytest.mark.parametrize(
    ("lib", "message"),
    [
        (
            "# dsrprep-lib: nested\n# dsrprep-include: ip\nfunction F { 1 }\n",
            r"ps_templates/_lib/nested\.ps1:2: a lib cannot include another lib",
        ),
        (
            "# dsrprep-lib: nested\nfunction F {\n    # dsrprep-include: ip\n    1\n}\n",
            r"_lib/nested\.ps1:3: a lib cannot include another lib",
        ),
        ("# dsrprep-lib: other\nfunction F { 1 }\n", r"_lib/nested\.ps1: the first line must be `# dsrprep-lib: nes"),
        ("function F { 1 }\n", r"the first line must be `# dsrprep-lib: nested`"),
        ("# dsrprep-lib: nested\nfunction F { 1 }\n$x = 1\n", r"_lib/nested\.ps1:3: a lib holds only function def"),
        ("# dsrprep-lib: nested\nparam($A)\nfunction F { 1 }\n", r":2: a lib holds only function definitions"),
        ("# dsrprep-lib: nested\n# nothing here\n", r"a lib defines at least one function"),
    ],
)
def test_malformed_libs_are_refused(write_catalog: WriteCatalog, lib: str, message: str) -> None:
    files = _libs(**{f"{LIB_FOLDER}/nested.ps1": lib, "s/default.ps1": HEAD + TAIL})
    with pytest.raises(TemplateError, match=message):
        write_catalog(files)


def test_lib_names_are_plain(write_catalog: WriteCatalog) -> None:
    with pytest.raises(TemplateError, match=r"_lib/Net\.ps1: a lib name is"):
        write_catalog({f"{LIB_FOLDER}/Net.ps1": "# dsrprep-lib: Net\nfunction F { 1 }\n"})


def test_the_bytecode_cache_beside_the_steps_is_not_a_step(write_catalog: WriteCatalog) -> None:
    # Importing the ps_templates package, or pip compiling it at install, writes __pycache__ there.
    catalog = write_catalog(_libs(**{"s/default.ps1": HEAD + "# dsrprep-include: ip\n" + TAIL,
                                     "__pycache__/__init__.cpython-311.pyc": ""}))
    assert catalog.steps() == ["s"]


def test_other_folders_starting_with_an_underscore_are_still_refused(write_catalog: WriteCatalog) -> None:
    with pytest.raises(TemplateError, match="a step id is"):
        write_catalog({"_libs/default.ps1": HEAD + TAIL})


def test_shipped_templates_are_expanded_from_their_files() -> None:
    # Template.text is the file with its facts fragments and each include line expanded, nothing else.
    libs = {lib.name: lib for lib in templates.all_libs()}
    fragments = templates.all_fragments()
    for template in templates.all_templates():
        source = (ROOT / template.path).read_text(encoding="utf-8-sig")
        with_fragments = templates.expand_fragments(source, template.path, fragments)
        assert expand_includes(with_fragments, template.path, libs) == (template.text, template.includes)
        lines = [line for line in source.splitlines() if line.startswith("# dsrprep-include: ")]
        assert tuple(line.removeprefix("# dsrprep-include: ") for line in lines) == template.includes


def test_the_lab_recognises_the_expanded_script_only() -> None:
    # The lab hosts tell which template ran by its text: the expanded script is a shipped template,
    # the file with its include lines is not (on a real host it would lack its functions).
    included = [t for t in templates.all_templates() if t.includes]
    assert included
    for template in included:
        assert template_of(template.text) == (template.step, template.variant)
        source = (ROOT / template.path).read_text(encoding="utf-8-sig")
        assert template_of(source) == (template.step, None)
