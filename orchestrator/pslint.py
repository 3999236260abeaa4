"""PowerShell parsing (tree-sitter-powershell), the PowerShell 2.0 lint and the template conventions.

Owns: `parse` (one real grammar for every caller), `lint` (what a Windows Server 2003/2008 host with
WMF 2.0 cannot run), `check_template_conventions` (the shape every ps_templates script follows) and
`read_header` (the `# dsrprep-<key>: <value>` lines at the top of a template).

Checks walk the parse tree; regular expressions are used only on text the grammar keeps opaque
(comment bodies). Out of scope, because a static look cannot decide them: member-access enumeration
(`$list.Name` is fine on one object and 3.0-only on a collection), C# language versions inside
`Add-Type` source strings, and "exactly one result object" per template.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tree-sitter is imported by the first parse: `dsrprep --help` does without it
    from tree_sitter import Language, Node, Tree

RULES: dict[str, str] = {
    "PS2000": "syntax error",
    "PS2001": "[ordered] (3.0)",
    "PS2002": "[pscustomobject] (3.0)",
    "PS2003": "-in / -notin (3.0)",
    "PS2004": "$PSItem (3.0)",
    "PS2005": "ConvertTo-Json / ConvertFrom-Json (3.0)",
    "PS2006": "CIM cmdlets (3.0)",
    "PS2007": "Windows Server 2012+ networking module cmdlets",
    "PS2008": "simplified Where-Object / ForEach-Object syntax (3.0)",
    "PS2009": "attribute argument without a value, e.g. [Parameter(Mandatory)] (3.0)",
    "PS2010": "[NullString] (3.0)",
    "PS2011": "$PSScriptRoot / $PSCommandPath outside modules (3.0)",
    "PS2012": "Invoke-WebRequest / Invoke-RestMethod (3.0)",
    "PS2013": "Get-Content -Raw (3.0)",
    "PS2014": "Export-Csv -Append (3.0)",
    "PS2015": "class / enum / using (5.0)",
    "PS2016": "::new() (5.0)",
    "PS2017": "workflow (3.0)",
    "PS2018": "-PipelineVariable (4.0)",
    "PS2019": "Register-ArgumentCompleter (5.0)",
    "PS2020": "PowerShellGet / PackageManagement cmdlets (5.0)",
    "PS2021": "Write-Host in a template",
    "PS2022": "pipeline chain operators && / || (7.0)",
    "PS2101": "template header `# dsrprep-step: <id>` on the first line",
    "PS2102": "template param() block as the first statement",
    "PS2103": "template `$ErrorActionPreference = 'Stop'` right after param()",
}


@dataclass(frozen=True)
class LintIssue:
    path: str
    line: int  # 1-based
    column: int  # 1-based, in characters
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.rule} {self.message}"


@functools.cache
def _language() -> Language:
    import tree_sitter_powershell
    from tree_sitter import Language

    return Language(tree_sitter_powershell.language())


def parse(text: str) -> Tree:
    """Parse PowerShell source with tree-sitter-powershell."""
    # A Parser is cheap to make and must not be shared between threads; the Language can be.
    from tree_sitter import Parser

    return Parser(_language()).parse(text.encode("utf-8"))


def walk(node: Node) -> Iterator[Node]:
    """Every node under `node` (itself included), in source order, without recursion limits."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def node_text(node: Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")


# Grammar wrappers that carry a single expression down the precedence ladder.
_WRAPPERS = frozenset(
    {
        "pipeline",
        "pipeline_chain",
        "logical_expression",
        "bitwise_expression",
        "comparison_expression",
        "additive_expression",
        "multiplicative_expression",
        "format_expression",
        "range_expression",
        "array_literal_expression",
        "unary_expression",
        "logical_argument_expression",
        "bitwise_argument_expression",
        "comparison_argument_expression",
        "additive_argument_expression",
        "multiplicative_argument_expression",
        "format_argument_expression",
        "range_argument_expression",
        "argument_expression",
    }
)


def unwrap(node: Node) -> Node:
    """The expression a chain of single-child precedence wrappers stands for."""
    while node.type in _WRAPPERS and node.named_child_count == 1:
        node = node.named_children[0]
    return node


def variable_name(node: Node) -> tuple[str, str]:
    """(scope, name) of a `variable` node as written: `${global:PSItem}` -> ("global", "PSItem")."""
    text = node_text(node)
    text = text[1:] if text[:1] in "$@" else text
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    scope, _, name = text.rpartition(":")
    return scope, name


def command_name(command: Node) -> str | None:
    """The command name without a module qualifier; None when only known at run time."""
    for child in command.children:
        if child.type == "command_name":
            name = node_text(child)
            break
        if child.type == "command_name_expr":
            inner = unwrap(child.named_children[0]) if child.named_child_count else child
            if inner.type != "string_literal" or any(c.type == "variable" for c in walk(inner)):
                return None
            name = node_text(inner)[1:-1]
            break
    else:
        return None
    # `Microsoft.PowerShell.Utility\ConvertTo-Json` names the same cmdlet.
    return name.rsplit("\\", 1)[-1]


def _elements(command: Node) -> list[Node]:
    for child in command.children:
        if child.type == "command_elements":
            return list(child.children)
    return []


def _parameter_name(node: Node) -> str:
    return node_text(node).lstrip("-").rstrip(":").lower()


def _abbreviates(token: str, full: str, min_len: int) -> bool:
    # PowerShell binds any unambiguous prefix of a parameter name.
    return len(token) >= min_len and full.startswith(token)


_CIM_CMDLETS = frozenset(
    {
        "get-ciminstance",
        "get-cimassociatedinstance",
        "get-cimclass",
        "get-cimsession",
        "invoke-cimmethod",
        "new-ciminstance",
        "new-cimsession",
        "new-cimsessionoption",
        "register-cimindicationevent",
        "remove-ciminstance",
        "remove-cimsession",
        "set-ciminstance",
        "export-binarymilog",
        "import-binarymilog",
        "gcim",
        "gcai",
        "gcls",
        "gcms",
        "icim",
        "ncim",
        "ncms",
        "ncso",
        "rcie",
        "rcim",
        "rcms",
        "scim",
    }
)

# Nouns of the NetTCPIP, NetAdapter, NetSecurity, NetConnection, NetLbfo, NetNat, NetQos and
# DnsClient modules that arrived with Windows Server 2012 (Test-NetConnection with 2012 R2).
_NET_NOUN_PREFIXES = (
    "netadapter",
    "netip",
    "netroute",
    "netneighbor",
    "netfirewall",
    "nettcp",
    "netudp",
    "netconnection",
    "netcompartment",
    "netlbfo",
    "netnat",
    "netqos",
    "netoffload",
    "netprefixpolicy",
    "nettransport",
    "netnetworkadapter",
    "netswitchteam",
    "netipsec",
    "netgpo",
    "neteventsession",
    "dnsclient",
)
_NET_CMDLETS = frozenset({"resolve-dnsname", "test-netconnection", "tnc"})

_JSON_CMDLETS = frozenset({"convertto-json", "convertfrom-json", "test-json"})
_WEB_CMDLETS = frozenset({"invoke-webrequest", "invoke-restmethod", "iwr", "irm"})
_POWERSHELLGET_CMDLETS = frozenset(
    {
        "install-module",
        "find-module",
        "save-module",
        "update-module",
        "publish-module",
        "install-script",
        "save-script",
        "find-script",
        "register-psrepository",
        "set-psrepository",
        "install-package",
        "install-packageprovider",
        "find-package",
        "register-packagesource",
    }
)
_GET_CONTENT = frozenset({"get-content", "gc", "cat", "type"})
_EXPORT_CSV = frozenset({"export-csv", "epcsv"})
_WHERE = frozenset({"where-object", "where", "?"})
_FOREACH = frozenset({"foreach-object", "foreach", "%"})

# What 2.0 knows of Where-Object / ForEach-Object, plus the common parameters and their aliases.
_COMMON_PARAMETERS = (
    "verbose",
    "debug",
    "erroraction",
    "warningaction",
    "errorvariable",
    "warningvariable",
    "outvariable",
    "outbuffer",
)
_COMMON_ALIASES = frozenset({"vb", "db", "ea", "wa", "ev", "wv", "ov", "ob"})
_SWITCHES = ("verbose", "debug")
_SWITCH_ALIASES = frozenset({"vb", "db"})
_PS2_PARAMETERS = {
    "where": ("filterscript", "inputobject", *_COMMON_PARAMETERS),
    "foreach": ("process", "begin", "end", "inputobject", *_COMMON_PARAMETERS),
}
# Arguments that can only be a property name or a literal, never a script block.
_LITERAL_ARGUMENTS = frozenset({"generic_token", "string_literal", "integer_literal", "real_literal"})

_TYPE_RULES = {
    "ordered": ("PS2001", "use New-Object System.Collections.Specialized.OrderedDictionary"),
    "pscustomobject": ("PS2002", "use New-Object PSObject -Property @{...}"),
    "system.management.automation.pscustomobject": ("PS2002", "use New-Object PSObject -Property @{...}"),
    "nullstring": ("PS2010", "handle null inside C# instead"),
    "system.management.automation.language.nullstring": ("PS2010", "handle null inside C# instead"),
}
_VARIABLE_SCOPES = frozenset({"", "global", "local", "script", "private"})
_IN_OPERATORS = frozenset({"-in", "-iin", "-cin", "-notin", "-inotin", "-cnotin"})


# Commands that PowerShell 2.0 (or a 2008-era server) does not have: (matches the lower-case name,
# rule, message with {shown} for the name as written).
_COMMAND_RULES: tuple[tuple[Callable[[str], bool], str, str], ...] = (
    (lambda n: n in _JSON_CMDLETS, "PS2005",
     "{shown} needs PowerShell 3.0; return the object and let PSRP serialize it"),
    (lambda n: n in _CIM_CMDLETS, "PS2006", "{shown} needs PowerShell 3.0; use Get-WmiObject / [wmiclass]"),
    (lambda n: n in _NET_CMDLETS or _is_net_module_cmdlet(n), "PS2007",
     "{shown} comes with Windows Server 2012+ modules; use WMI Win32_NetworkAdapter"
     "[Configuration], netsh or HNetCfg.FwPolicy2, or a win2012+ variant of the template"),
    (lambda n: n in _WEB_CMDLETS, "PS2012", "{shown} needs PowerShell 3.0; use System.Net.WebClient"),
    (lambda n: n == "register-argumentcompleter", "PS2019", "Register-ArgumentCompleter needs PowerShell 5.0"),
    (lambda n: n in _POWERSHELLGET_CMDLETS, "PS2020", "{shown} needs PowerShellGet (5.0); ship the code inline"),
    (lambda n: n == "write-host", "PS2021", "Write-Host in a template; put what matters in the result object"),
    (lambda n: n == "using", "PS2015", "using needs PowerShell 5.0; write full type names"),
)


class _Linter:
    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.lines = text.encode("utf-8").split(b"\n")
        self.issues: list[LintIssue] = []
        self.own_functions: frozenset[str] = frozenset()

    def add(self, node: Node, rule: str, message: str, *, at_end: bool = False) -> None:
        row, col = node.end_point if at_end else node.start_point
        line = self.lines[row] if row < len(self.lines) else b""
        column = len(line[:col].decode("utf-8", errors="replace")) + 1
        self.issues.append(LintIssue(self.path, row + 1, column, rule, message))

    def run(self, root: Node) -> list[LintIssue]:
        # A script may define its own helper under a cmdlet's name (a hand-rolled ConvertTo-Json
        # for 2.0, say); calls to it are not calls to the cmdlet.
        self.own_functions = frozenset(
            node_text(name).rpartition(":")[2].lower()
            for node in walk(root)
            if node.type == "function_statement"
            for name in node.children
            if name.type == "function_name"
        )
        for node in walk(root):
            check = _CHECKS.get(node.type)
            if node.is_missing:
                self.missing(node)
            elif node.is_error:
                self.error(node)
            elif check is not None:
                check(self, node)
        return sorted(self.issues, key=lambda i: (i.line, i.column, i.rule))

    # -- syntax -------------------------------------------------------------------------------------

    def error(self, node: Node) -> None:
        # Report the innermost ERROR only: an outer one spans a whole statement and says less.
        if any(d.is_error for child in node.children for d in walk(child)):
            return
        snippet = " ".join(node_text(node).split())[:40]
        message = f"syntax error: cannot parse `{snippet}`" if snippet else "syntax error"
        self.add(node, "PS2000", message + self._hint(node))

    def missing(self, node: Node) -> None:
        self.add(node, "PS2000", f"syntax error: missing `{node.type}`" + self._hint(node))

    def _hint(self, node: Node) -> str:
        # Valid PowerShell that tree-sitter-powershell cannot read; the suggested form suits both.
        line = self.lines[node.start_point.row].decode("utf-8", errors="replace")
        if node_text(node).startswith("param"):
            return " (end param(...) with a newline or ; before the next statement)"
        if re.search(r"\{\s*\}", line):
            return " (write an empty script block as { ; })"
        if re.search(r"\s[\w.-]+=[\"']", line):
            return ' (quote a whole native argument: "name=value with spaces")'
        return ""

    # -- nodes --------------------------------------------------------------------------------------

    def type_literal(self, node: Node) -> None:
        spec = next((c for c in node.children if c.type == "type_spec"), None)
        if spec is None:
            return
        name = "".join(node_text(spec).split()).lower()
        if name in _TYPE_RULES:
            rule, instead = _TYPE_RULES[name]
            self.add(node, rule, f"[{node_text(spec)}] needs PowerShell 3.0; {instead}")

    def comparison_operator(self, node: Node) -> None:
        op = node_text(node).lower()
        if op in _IN_OPERATORS:
            fix = "-notcontains" if "not" in op else "-contains"
            self.add(node, "PS2003", f"{op} needs PowerShell 3.0; use $list {fix} $item")

    def variable(self, node: Node) -> None:
        scope, name = (part.lower() for part in variable_name(node))
        if scope not in _VARIABLE_SCOPES:
            return
        if name == "psitem":
            self.add(node, "PS2004", "$PSItem needs PowerShell 3.0; use $_")
        elif name in ("psscriptroot", "pscommandpath"):
            self.add(
                node,
                "PS2011",
                f"{node_text(node)} is empty outside modules before PowerShell 3.0; "
                "use Split-Path $MyInvocation.MyCommand.Path",
            )

    def attribute(self, node: Node) -> None:
        for args in (c for c in node.children if c.type == "attribute_arguments"):
            for arg in (c for c in args.children if c.type == "attribute_argument"):
                kids = arg.children
                if len(kids) == 1 and kids[0].type == "simple_name":
                    name = node_text(kids[0])
                    message = f"{name} without a value needs PowerShell 3.0; write {name}=$true"
                    self.add(arg, "PS2009", message)

    def class_statement(self, node: Node) -> None:
        self.add(node, "PS2015", "class needs PowerShell 5.0; use Add-Type (C# 3.0) or New-Object PSObject")

    def enum_statement(self, node: Node) -> None:
        self.add(node, "PS2015", "enum needs PowerShell 5.0; use Add-Type with C# 3.0 or constants")

    def static_member(self, node: Node) -> None:
        if not any(c.type == "::" for c in node.children):
            return
        member = next((c for c in node.children if c.type == "member_name"), None)
        if member is not None and node_text(member).lower() == "new":
            self.add(member, "PS2016", "::new() needs PowerShell 5.0; use New-Object")

    def function_statement(self, node: Node) -> None:
        if node.children and node.children[0].type == "workflow":
            self.add(node, "PS2017", "workflows need PowerShell 3.0 and are not available remotely on 2.0")

    def pipeline_chain_tail(self, node: Node) -> None:
        op = node_text(node).strip()
        self.add(node, "PS2022", f"{op} needs PowerShell 7; use if ($?) {{ ... }}")

    def command(self, node: Node) -> None:
        shown = command_name(node)
        if shown is None:
            return
        name = shown.lower()
        if name in self.own_functions:
            return
        elements = _elements(node)
        parameters = [(_parameter_name(e), e) for e in elements if e.type == "command_parameter"]
        rule = next((r for r in _COMMAND_RULES if r[0](name)), None)
        if rule is not None:
            self.add(node, rule[1], rule[2].format(shown=shown))
        else:
            self._parameter_rules(name, node, elements, parameters)
        for param, element in parameters:
            if param == "pv" or _abbreviates(param, "pipelinevariable", 3):
                message = "-PipelineVariable needs PowerShell 4.0; assign a variable inside the loop"
                self.add(element, "PS2018", message)

    def _parameter_rules(self, name: str, node: Node, elements: list[Node],
                         parameters: list[tuple[str, Node]]) -> None:
        """Commands that exist in 2.0 but not with some of their parameters or syntax."""
        if name in _GET_CONTENT:
            for param, element in parameters:
                if _abbreviates(param, "raw", 2):
                    message = "Get-Content -Raw needs PowerShell 3.0; use [IO.File]::ReadAllText()"
                    self.add(element, "PS2013", message)
        elif name in _EXPORT_CSV:
            for param, element in parameters:
                if _abbreviates(param, "append", 1):
                    message = "Export-Csv -Append needs PowerShell 3.0; use Out-File -Append"
                    self.add(element, "PS2014", message)
        elif name in _WHERE or name in _FOREACH:
            self._simplified_syntax(node, "where" if name in _WHERE else "foreach", elements)

    def _simplified_syntax(self, node: Node, kind: str, elements: list[Node]) -> None:
        known = _PS2_PARAMETERS[kind]
        shown = node_text(node.children[0])
        example = "{ $_.Name -eq 'x' }" if kind == "where" else "{ $_.Name }"
        fix = f"use a script block: {shown} {example}"
        expect_value = False
        for element in elements:
            if element.type == "command_argument_sep":
                if node_text(element) == ":":
                    expect_value = True
                continue
            if element.type == "redirection":
                continue
            if element.type == "command_parameter":
                param = _parameter_name(element)
                if param not in _COMMON_ALIASES and not any(_abbreviates(param, p, 1) for p in known):
                    message = f"{shown} {node_text(element)} is 3.0 simplified syntax; {fix}"
                    self.add(element, "PS2008", message)
                    return
                expect_value = param not in _SWITCH_ALIASES and not any(
                    _abbreviates(param, s, 2) for s in _SWITCHES
                )
                continue
            if expect_value:
                expect_value = False
                continue
            if unwrap(element).type in _LITERAL_ARGUMENTS:
                self.add(element, "PS2008", f"{shown} {node_text(element)} is 3.0 simplified syntax; {fix}")
                return


def _is_net_module_cmdlet(name: str) -> bool:
    verb, dash, noun = name.partition("-")
    return bool(dash) and verb.isalpha() and noun.startswith(_NET_NOUN_PREFIXES)


_CHECKS = {
    "type_literal": _Linter.type_literal,
    "comparison_operator": _Linter.comparison_operator,
    "variable": _Linter.variable,
    "attribute": _Linter.attribute,
    "class_statement": _Linter.class_statement,
    "enum_statement": _Linter.enum_statement,
    "invokation_expression": _Linter.static_member,
    "member_access": _Linter.static_member,
    "function_statement": _Linter.function_statement,
    "pipeline_chain_tail": _Linter.pipeline_chain_tail,
    "command": _Linter.command,
}


def lint(text: str, path: str = "<script>") -> list[LintIssue]:
    """Everything in `text` that PowerShell 2.0 cannot parse or run, sorted by position."""
    return _Linter(text, path).run(parse(text).root_node)


# -- templates --------------------------------------------------------------------------------------

# Comment bodies are opaque to the grammar, hence a regular expression for the header lines.
_HEADER_LINE = re.compile(r"#[ \t]*dsrprep-([a-z]+)[ \t]*:[ \t]*(.*?)[ \t]*")
_STEP_ID = re.compile(r"[a-z0-9][a-z0-9_-]*")


def _leading_comments(root: Node) -> list[Node]:
    comments = []
    for child in root.children:
        if child.type != "comment":
            break
        comments.append(child)
    return comments


def read_header(text: str) -> dict[str, str]:
    """The `# dsrprep-<key>: <value>` lines among the comments before the first statement."""
    header: dict[str, str] = {}
    for comment in _leading_comments(parse(text).root_node):
        match = _HEADER_LINE.fullmatch(node_text(comment))
        if match:
            header.setdefault(match.group(1).lower(), match.group(2))
    return header


def check_template_conventions(text: str, path: str = "<script>") -> list[LintIssue]:
    """The header line, the param() block first and `$ErrorActionPreference = 'Stop'` right after."""
    linter = _Linter(text, path)
    root = parse(text).root_node
    if not _has_step_header(root):
        message = "the first line must be `# dsrprep-step: <step id>` (lower case, digits, - or _)"
        linter.add(root, "PS2101", message)

    statements = [c for c in root.named_children if c.type != "comment"]
    if not statements or statements[0].type != "param_block":
        at = statements[0] if statements else root
        linter.add(at, "PS2102", "the first statement must be a param() block (it may be empty)")
        return linter.issues

    body = statements[1] if len(statements) > 1 and statements[1].type == "statement_list" else None
    first_statement = None
    if body is not None:
        first_statement = next(
            (c for c in body.named_children if c.type not in ("comment", "empty_statement")), None
        )
    if first_statement is None or not _is_stop_preference(first_statement):
        at = first_statement if first_statement is not None else statements[0]
        linter.add(
            at,
            "PS2103",
            "the statement right after param() must be $ErrorActionPreference = 'Stop'",
            at_end=first_statement is None,
        )
    return linter.issues


def _has_step_header(root: Node) -> bool:
    comments = _leading_comments(root)
    first = comments[0] if comments else None
    match = _HEADER_LINE.fullmatch(node_text(first)) if first is not None else None
    return (first is not None and first.start_point == (0, 0) and match is not None
            and match.group(1).lower() == "step" and _STEP_ID.fullmatch(match.group(2)) is not None)


def _is_stop_preference(statement: Node) -> bool:
    assignment = unwrap(statement)
    if assignment.type != "assignment_expression":
        return False
    left, op, right = (
        next((c for c in assignment.children if c.type == kind), None)
        for kind in ("left_assignment_expression", "assignement_operator", "pipeline")
    )
    if left is None or op is None or right is None or node_text(op) != "=":
        return False
    target = unwrap(left.named_children[0]) if left.named_child_count == 1 else left
    value = unwrap(right)
    return (
        target.type == "variable"
        and variable_name(target)[0] == ""
        and variable_name(target)[1].lower() == "erroractionpreference"
        and value.type == "string_literal"
        and node_text(value)[1:-1].lower() == "stop"
    )
