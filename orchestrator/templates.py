"""Template choice and parameter binding: ps_templates/<step>/<variant>.ps1 -> Template -> Script.

Owns: loading the PowerShell templates shipped in the `ps_templates` package, expanding their
includes, reading their `param()` blocks with tree-sitter-powershell, choosing the variant for a
host's OS family and checking the parameters a caller binds. Pure apart from reading package
resources: values are never spliced into the script text, they travel separately as PSRP parameters.

Includes: functions several templates share live in `ps_templates/_lib/<name>.ps1` (a first line
`# dsrprep-lib: <name>`, then only function definitions). A template line `# dsrprep-include: <name>`
at the top level of the script, after `$ErrorActionPreference = 'Stop'`, is replaced by that file's
text when the template is loaded, so `Template.text` is the whole, self-contained script that is
sent. A lib includes nothing itself; a template lists every lib it needs, those its libs call too.

Variant choice, most specific first:
1. a variant covering exactly the host's family (`win2008.ps1`, or a `# dsrprep-os: 2008` header);
2. a variant covering "this family and newer" (`# dsrprep-os: 2012r2+`) with the highest lower
   bound not above the host's family;
3. `default.ps1`.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from orchestrator import oscaps
from orchestrator.errors import DsrError
from orchestrator.once import once
from orchestrator.pslint import node_text, parse, read_header, unwrap, variable_name, walk

if TYPE_CHECKING:
    from tree_sitter import Node

DEFAULT_VARIANT = "default"
# Step ids, variant and lib names appear in paths, logs and headers: keep them plain.
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
# The folder of shared functions under the templates' root; it is not a step.
LIB_FOLDER = "_lib"
# Python's bytecode cache: `ps_templates` is a package, so importing it (or pip compiling it at install)
# writes this folder beside the steps. It is not a step.
BYTECODE_FOLDER = "__pycache__"
# Any comment that names dsrprep-include is read as an include line, so a misspelt one is refused
# rather than sent as a comment.
_INCLUDE_LIKE = re.compile(r"#[ \t]*dsrprep-include\b", re.IGNORECASE)
_INCLUDE = re.compile(r"# dsrprep-include: (\S+)")
# A step's own facts: `<step>/facts.ps1`, expanded into the facts script at FRAGMENTS_LINE.
FRAGMENT_FILE = "facts.ps1"
FRAGMENTS_LINE = "# dsrprep-facts-fragments"


class TemplateError(DsrError):
    """A template is missing, malformed, or cannot take the parameters it was given."""

    error_class = "TemplateError"


@dataclass(frozen=True)
class TemplateParam:
    name: str
    type: str | None  # the type constraint as written, e.g. "string", "int[]"; None when untyped
    mandatory: bool
    has_default: bool


@dataclass(frozen=True)
class Template:
    step: str
    variant: str  # "default", "win2003", ...
    path: str  # "ps_templates/<step>/<variant>.ps1"
    text: str  # with every include expanded: the script as it is sent
    parameters: tuple[TemplateParam, ...]
    includes: tuple[str, ...] = ()  # the libs expanded into `text`, in order


@dataclass(frozen=True)
class Lib:
    """Shared functions a template pulls in with `# dsrprep-include: <name>`."""

    name: str
    path: str  # "ps_templates/_lib/<name>.ps1"
    text: str


@dataclass(frozen=True)
class Fragment:
    """The part of the facts script one step owns (`ps_templates/<step>/facts.ps1`): statements that
    add that step's keys to `$facts`, run in a scope of their own."""

    step: str
    path: str
    text: str


@dataclass(frozen=True)
class Script:
    step: str
    template_path: str
    text: str
    parameters: Mapping[str, Any]
    sha256: str


@dataclass(frozen=True)
class OsCoverage:
    """The OS families a variant is for: one family, or that family and every newer one."""

    family: str
    and_newer: bool = False

    @classmethod
    def parse(cls, spec: str) -> OsCoverage:
        """`2012r2+`, `2008`, `win2008r2` -> OsCoverage; TemplateError for anything else."""
        text = spec.strip().lower()
        and_newer = text.endswith("+")
        return cls(normalize_family(text.removesuffix("+")), and_newer)

    def covers(self, family: str) -> bool:
        if self.and_newer:
            return oscaps.order(family) >= oscaps.order(self.family)
        return family == self.family

    def __str__(self) -> str:
        return self.family + ("+" if self.and_newer else "")


def normalize_family(os_family: str) -> str:
    """`2008R2`, `win2008r2` -> `2008r2`; TemplateError naming the known families otherwise."""
    try:
        return oscaps.caps(os_family).family
    except oscaps.UnknownFamily as exc:
        raise TemplateError(str(exc)) from None


def choose_variant(coverage: Mapping[str, OsCoverage | None], os_family: str) -> str | None:
    """The variant for `os_family` among `coverage` (variant -> what it covers; None = default).

    `os_family` "default" asks for default.ps1 itself, for scripts that run before the family is
    known (facts). None when nothing fits (no default and no variant covering the family).
    """
    default = next((v for v, c in coverage.items() if c is None), None)
    if os_family.strip().lower() == DEFAULT_VARIANT:
        return default
    family = normalize_family(os_family)
    exact = [v for v, c in coverage.items() if c is not None and not c.and_newer and c.family == family]
    if exact:
        return exact[0]
    ranges = [(oscaps.order(c.family), v) for v, c in coverage.items() if c is not None and c.and_newer]
    fitting = [(low, v) for low, v in ranges if low <= oscaps.order(family)]
    if fitting:
        return max(fitting)[1]
    return default


def parse_parameters(text: str, path: str = "<script>") -> tuple[TemplateParam, ...]:
    """The parameters a script's top-level param() block declares, in order."""
    root = parse(text).root_node
    block = next((c for c in root.named_children if c.type == "param_block"), None)
    if block is None:
        return ()
    params: list[TemplateParam] = []
    for plist in (c for c in block.named_children if c.type == "parameter_list"):
        for node in (c for c in plist.named_children if c.type == "script_parameter"):
            params.append(_parameter(node, path))
    seen: set[str] = set()
    for param in params:
        # PowerShell binds names case-insensitively, so these would collide on the host.
        if param.name.lower() in seen:
            raise TemplateError(f"{path}: parameter ${param.name} is declared twice")
        seen.add(param.name.lower())
    return tuple(params)


def _parameter(node: Node, path: str) -> TemplateParam:
    variable = next(c for c in node.named_children if c.type == "variable")
    name = variable_name(variable)[1]
    type_name: str | None = None
    mandatory = False
    for attr in (a for attrs in node.named_children if attrs.type == "attribute_list"
                 for a in attrs.named_children if a.type == "attribute"):
        literal = next((c for c in attr.named_children if c.type == "type_literal"), None)
        if literal is not None:
            spec = next(c for c in literal.named_children if c.type == "type_spec")
            type_name = type_name or "".join(node_text(spec).split())
        elif _attribute_short_name(attr) == "parameter":
            mandatory = _mandatory(attr, name, path) or mandatory
    has_default = any(c.type == "script_parameter_default" for c in node.named_children)
    return TemplateParam(name=name, type=type_name, mandatory=mandatory, has_default=has_default)


def _attribute_short_name(attr: Node) -> str | None:
    """`[Parameter(...)]`, `[System.Management.Automation.ParameterAttribute(...)]` -> "parameter"."""
    attr_name = next((c for c in attr.named_children if c.type == "attribute_name"), None)
    if attr_name is None:
        return None
    return node_text(attr_name).lower().rsplit(".", 1)[-1].removesuffix("attribute")


def _mandatory(attribute: Node, param: str, path: str) -> bool:
    for arg in (d for d in walk(attribute) if d.type == "attribute_argument"):
        key = next((c for c in arg.children if c.type == "simple_name"), None)
        if key is None or node_text(key).lower() != "mandatory":
            continue
        values = [c for c in arg.named_children if c.type != "simple_name"]
        if not values:
            return True  # the 3.0 shorthand; the lint reports it, the meaning is still "mandatory"
        value = unwrap(values[-1])
        literal = node_text(value).lower()
        if literal in ("$true", "1"):
            return True
        if literal in ("$false", "0"):
            return False
        raise TemplateError(f"{path}: ${param} Mandatory={node_text(value)} is not $true or $false")
    return False


def _coverage(variant: str, text: str, path: str) -> OsCoverage | None:
    spec = read_header(text).get("os")
    if variant == DEFAULT_VARIANT:
        if spec is not None:
            raise TemplateError(f"{path}: default.ps1 covers every other family; drop `# dsrprep-os: {spec}`")
        return None
    named = None
    if variant.startswith("win") and oscaps.is_family(variant):
        named = variant.removeprefix("win")
    if spec is None:
        if named is None:
            raise TemplateError(
                f"{path}: cannot tell which OS families this variant is for; name it win<family> "
                f"({', '.join(oscaps.families())}) or add a `# dsrprep-os: <family>[+]` header line"
            )
        return OsCoverage(named)
    try:
        coverage = OsCoverage.parse(spec)
    except TemplateError as exc:
        raise TemplateError(f"{path}: `# dsrprep-os: {spec}`: {exc}") from exc
    if named is not None and coverage.family != named:
        raise TemplateError(f"{path}: the file is named for {named} but its header says {coverage}")
    return coverage


def _load_libs(folder: Traversable, prefix: str) -> dict[str, Lib]:
    libs: dict[str, Lib] = {}
    for file in sorted(folder.iterdir(), key=lambda t: t.name):
        if not (file.is_file() and file.name.endswith(".ps1")):
            continue
        name = file.name.removesuffix(".ps1")
        path = f"{prefix}/{file.name}"
        if not _NAME.fullmatch(name):
            raise TemplateError(f"{path}: a lib name is lower case letters, digits, - or _")
        text = file.read_text(encoding="utf-8-sig")
        _check_lib(text, name, path)
        libs[name] = Lib(name, path, text)
    return libs


def _check_lib(text: str, name: str, path: str) -> None:
    """A lib is its header line and function definitions only: safe to expand anywhere after the
    preamble, and nothing in it runs until a template calls it."""
    if text.split("\n", 1)[0].rstrip() != f"# dsrprep-lib: {name}":
        raise TemplateError(f"{path}: the first line must be `# dsrprep-lib: {name}`")
    root = parse(text).root_node
    for node in walk(root):
        if node.type == "comment" and _INCLUDE_LIKE.match(node_text(node)):
            raise TemplateError(
                f"{path}:{node.start_point.row + 1}: a lib cannot include another lib; "
                "the templates that need both include both"
            )
    top = [
        node
        for child in root.named_children
        for node in (child.named_children if child.type == "statement_list" else [child])
        if node.type not in ("comment", "empty_statement")
    ]
    if not any(node.type == "function_statement" for node in top):
        raise TemplateError(f"{path}: a lib defines at least one function")
    for node in top:
        if node.type != "function_statement":
            raise TemplateError(
                f"{path}:{node.start_point.row + 1}: a lib holds only function definitions, not {node.type}"
            )


def expand_includes(text: str, path: str, libs: Mapping[str, Lib]) -> tuple[str, tuple[str, ...]]:
    """`text` with each `# dsrprep-include: <name>` line replaced by that lib's text, and the names
    included, in order. TemplateError for an unknown lib, a lib included twice, or an include line
    that is not a top-level comment line after `$ErrorActionPreference = 'Stop'`."""
    root = parse(text).root_node
    body = next((c for c in root.named_children if c.type == "statement_list"), None)
    # The first statement after param(): `$ErrorActionPreference = 'Stop'` (the conventions lint
    # checks that), which must stay first and before any function a lib brings.
    first = None
    if body is not None:
        first = next((c for c in body.named_children if c.type not in ("comment", "empty_statement")), None)
    rows: dict[int, str] = {}
    for node in walk(root):
        if node.type != "comment" or not _INCLUDE_LIKE.match(node_text(node)):
            continue
        name = _include_name(node, root, first, path, libs)
        if name in rows.values():
            raise TemplateError(f"{path}:{node.start_point.row + 1}: lib {name!r} is included twice")
        rows[node.start_point.row] = name
    if not rows:
        return text, ()
    lines = text.split("\n")
    for row, name in rows.items():
        lines[row] = libs[name].text.removesuffix("\n")
    return "\n".join(lines), tuple(rows[row] for row in sorted(rows))


def _load_fragment(file: Traversable, step: str, prefix: str) -> Fragment:
    path = f"{prefix}/{step}/{FRAGMENT_FILE}"
    text = file.read_text(encoding="utf-8-sig")
    if text.split("\n", 1)[0].rstrip() != f"# dsrprep-facts: {step}":
        raise TemplateError(f"{path}: the first line must be `# dsrprep-facts: {step}`")
    if parse(text).root_node.has_error:
        raise TemplateError(f"{path}: does not parse as PowerShell")
    return Fragment(step, path, text)


def expand_fragments(text: str, path: str, fragments: Iterable[Fragment]) -> str:
    """`text` with its `# dsrprep-facts-fragments` line (if any) replaced by every fragment, each in
    a script block of its own so that their variables do not meet."""
    lines = text.split("\n")
    rows = [i for i, line in enumerate(lines) if line.rstrip() == FRAGMENTS_LINE]
    if not rows:
        return text
    if len(rows) > 1:
        raise TemplateError(f"{path}: `{FRAGMENTS_LINE}` appears {len(rows)} times")
    blocks = [f"# {f.path}\n& {{\n{f.text.rstrip()}\n}}" for f in fragments]
    lines[rows[0]] = "\n\n".join(blocks)
    return "\n".join(lines)


def _include_name(node: Node, root: Node, first: Node | None, path: str, libs: Mapping[str, Lib]) -> str:
    """The lib an include comment names, after checking that the line is well placed."""
    line = node.start_point.row + 1
    written = node_text(node).rstrip()
    match = _INCLUDE.fullmatch(written)
    if match is None or not _NAME.fullmatch(match.group(1)):
        raise TemplateError(f"{path}:{line}: `{written}`: an include line is `# dsrprep-include: <lib>`")
    name = match.group(1)
    top_level = node.parent is not None and (
        node.parent == root or (node.parent.type == "statement_list" and node.parent.parent == root)
    )
    if not top_level or node.start_point.column != 0:
        raise TemplateError(f"{path}:{line}: `{written}` must be a line of its own at the top level of the script")
    if first is None or node.start_byte < first.end_byte:
        raise TemplateError(f"{path}:{line}: `{written}` must come after $ErrorActionPreference = 'Stop'")
    if name not in libs:
        known = ", ".join(sorted(libs)) or "none"
        raise TemplateError(
            f"{path}:{line}: includes unknown lib {name!r} (there is no {LIB_FOLDER}/{name}.ps1); libs: {known}"
        )
    return name


class TemplateCatalog:
    """Every template under one root folder (the `ps_templates` package, or a folder in tests)."""

    def __init__(self, root: Traversable, prefix: str = "ps_templates") -> None:
        self._templates: dict[str, dict[str, Template]] = {}
        self._coverage: dict[str, dict[str, OsCoverage | None]] = {}
        lib_folder = root / LIB_FOLDER
        self._libs = _load_libs(lib_folder, f"{prefix}/{LIB_FOLDER}") if lib_folder.is_dir() else {}
        folders = [f for f in sorted(root.iterdir(), key=lambda t: t.name)
                   if f.is_dir() and f.name not in (LIB_FOLDER, BYTECODE_FOLDER)]
        for folder in folders:
            if not _NAME.fullmatch(folder.name):
                raise TemplateError(f"{prefix}/{folder.name}: a step id is lower case letters, digits, - or _")
        self._fragments = [_load_fragment(f / FRAGMENT_FILE, f.name, prefix) for f in folders
                           if (f / FRAGMENT_FILE).is_file()]
        for folder in folders:
            scripts = sorted(
                (f for f in folder.iterdir() if f.is_file() and f.name.endswith(".ps1") and f.name != FRAGMENT_FILE),
                key=lambda t: t.name,
            )
            if scripts:
                self._load_step(folder.name, scripts, prefix)

    def _load_step(self, step: str, scripts: Iterable[Traversable], prefix: str) -> None:
        templates: dict[str, Template] = {}
        coverage: dict[str, OsCoverage | None] = {}
        for script in scripts:
            variant = script.name.removesuffix(".ps1")
            path = f"{prefix}/{step}/{script.name}"
            if not _NAME.fullmatch(variant):
                raise TemplateError(f"{path}: a variant name is lower case letters, digits, - or _")
            # utf-8-sig: an editor's byte order mark is not part of the script.
            source = expand_fragments(script.read_text(encoding="utf-8-sig"), path, self._fragments)
            text, includes = expand_includes(source, path, self._libs)
            templates[variant] = Template(step, variant, path, text, parse_parameters(text, path), includes)
            this = _coverage(variant, text, path)
            twin = next((v for v, c in coverage.items() if c is not None and c == this), None)
            if twin is not None:
                raise TemplateError(f"{path} and {twin}.ps1 both cover {this}; keep one")
            coverage[variant] = this
        self._templates[step] = templates
        self._coverage[step] = coverage

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def steps(self) -> list[str]:
        return sorted(self._templates)

    def all_templates(self) -> list[Template]:
        return [t for step in self.steps() for _, t in sorted(self._templates[step].items())]

    def libs(self) -> list[Lib]:
        return [self._libs[name] for name in sorted(self._libs)]

    def select(self, step: str, os_family: str) -> Template:
        if step not in self._templates:
            known = ", ".join(self.steps()) or "none"
            raise TemplateError(f"no template for step {step!r}; known steps: {known}")
        variant = choose_variant(self._coverage[step], os_family)
        if variant is None:
            family = os_family.strip().lower()
            family = family if family == DEFAULT_VARIANT else normalize_family(family)
            raise TemplateError(f"step {step!r} has no default.ps1 and no variant for OS family {family}")
        return self._templates[step][variant]

    def render(self, step: str, os_family: str, params: Mapping[str, Any]) -> Script:
        template = self.select(step, os_family)
        bound = bind_parameters(template, params)
        return Script(
            step=template.step,
            template_path=template.path,
            text=template.text,
            parameters=MappingProxyType(bound),
            sha256=hashlib.sha256(template.text.encode("utf-8")).hexdigest(),
        )


def bind_parameters(template: Template, params: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy of `params` after checking them against what `template` declares."""
    declared = {p.name: p for p in template.parameters}
    names = ", ".join(f"${n}" for n in declared) or "none"
    for name in params:
        if name not in declared:
            near = [d for d in declared if d.lower() == str(name).lower()]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise TemplateError(f"{template.path} has no parameter {name!r}{hint}; it declares: {names}")
    for param in template.parameters:
        if param.mandatory and params.get(param.name) is None:
            raise TemplateError(f"{template.path} needs a value for its mandatory parameter ${param.name}")
    for name, value in params.items():
        _check_value(value, f"{template.path} parameter ${name}")
    return copy.deepcopy(dict(params))


def _check_value(value: Any, where: str) -> None:
    # What crosses PSRP here must also go into the JSONL log unchanged.
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TemplateError(f"{where}: dictionary keys must be strings, got {key!r}")
            _check_value(item, f"{where}[{key!r}]")
        return
    raise TemplateError(
        f"{where}: {type(value).__name__} is not allowed; use str, int, bool, None, list or dict"
    )


# Templates ship inside the package and do not change while the process runs: read them once, by
# the first worker thread that needs them (the others wait for it rather than each building its own).
@once
def _catalog() -> TemplateCatalog:
    return TemplateCatalog(files("ps_templates"))


def steps() -> list[str]:
    """Step ids that have templates, sorted."""
    return _catalog().steps()


def all_templates() -> list[Template]:
    """Every shipped template, by step then variant."""
    return _catalog().all_templates()


def all_fragments() -> list[Fragment]:
    """Every shipped facts fragment, by step."""
    return _catalog().fragments()


def all_libs() -> list[Lib]:
    """Every shipped lib of shared functions, by name."""
    return _catalog().libs()


def select_template(step: str, os_family: str) -> Template:
    """The template `step` runs on a host of `os_family`.

    `os_family` is a family of orchestrator.oscaps (`win` prefix and any case allowed), or "default" for default.ps1.
    """
    return _catalog().select(step, os_family)


def render(step: str, os_family: str, params: Mapping[str, Any]) -> Script:
    """The script and the checked parameters exactly as they would be sent."""
    return _catalog().render(step, os_family, params)
