"""Choosing a template variant for an OS family, reading param() blocks, and binding parameters."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import oscaps, templates
from orchestrator.templates import (
    OsCoverage,
    TemplateCatalog,
    TemplateError,
    TemplateParam,
    choose_variant,
    normalize_family,
    parse_parameters,
)

FAMILIES = oscaps.families()

# The `write_catalog` fixture (conftest.py): files below a fresh root -> the catalog they make.
WriteCatalog = Callable[[dict[str, str]], TemplateCatalog]


def _template(step: str, *, params: str = "", extra_header: str = "", body: str = "") -> str:
    return (
        f"# dsrprep-step: {step}\n{extra_header}# Test template.\n"
        f"param(\n{params}\n)\n$ErrorActionPreference = 'Stop'\n{body}@{{ ok = $true }}\n"
    )


# -- the pure choice ---------------------------------------------------------------------------------

COVERAGE = {
    "default": None,
    "win2003": OsCoverage("2003"),
    "win2008": OsCoverage("2008"),
    "modern": OsCoverage("2012", and_newer=True),
    "win2012r2": OsCoverage("2012r2", and_newer=True),
    "win2016": OsCoverage("2016"),
}


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        ("2003", "win2003"),
        ("2008", "win2008"),
        ("2008r2", "default"),
        ("2012", "modern"),
        ("2012r2", "win2012r2"),
        ("2016", "win2016"),
        ("2019", "win2012r2"),
        ("2022", "win2012r2"),
        ("WIN2003", "win2003"),
        ("win2008R2", "default"),
    ],
)
def test_choose_variant(family: str, variant: str) -> None:
    assert choose_variant(COVERAGE, family) == variant


def test_choose_variant_without_default() -> None:
    coverage = {"win2012": OsCoverage("2012", and_newer=True)}
    assert choose_variant(coverage, "2008") is None
    assert choose_variant(coverage, "2019") == "win2012"
    assert choose_variant(coverage, "default") is None


def test_default_family_asks_for_default_ps1() -> None:
    # The facts script runs before the host's family is known.
    assert choose_variant(COVERAGE, "default") == "default"
    assert choose_variant(COVERAGE, " Default ") == "default"


@pytest.mark.parametrize("family", ["2030", "", "2008 R2", "nt4", "2012r2+"])
def test_unknown_family(family: str) -> None:
    with pytest.raises(TemplateError, match="known families: 2003, 2008"):
        choose_variant(COVERAGE, family)


def test_normalize_family() -> None:
    assert normalize_family(" Win2008R2 ") == "2008r2"
    assert [normalize_family(f) for f in FAMILIES] == list(FAMILIES)


@pytest.mark.parametrize(
    ("spec", "coverage"),
    [
        ("2012r2+", OsCoverage("2012r2", True)),
        ("2008", OsCoverage("2008")),
        ("win2016 +", OsCoverage("2016", True)),
    ],
)
def test_os_coverage_parse(spec: str, coverage: OsCoverage) -> None:
    assert OsCoverage.parse(spec) == coverage
    assert OsCoverage.parse(str(coverage)) == coverage


def test_os_coverage_covers() -> None:
    newer = OsCoverage("2012r2", and_newer=True)
    assert [f for f in FAMILIES if newer.covers(f)] == ["2012r2", "2016", "2019", "2022", "2025"]
    assert [f for f in FAMILIES if OsCoverage("2008").covers(f)] == ["2008"]


_coverages = st.dictionaries(
    st.sampled_from(["a", "b", "c", "d", "e", "default"]),
    st.one_of(st.none(), st.builds(OsCoverage, st.sampled_from(FAMILIES), st.booleans())),
    max_size=6,
)


@given(_coverages, st.sampled_from(FAMILIES))
def test_choice_is_the_most_specific_cover(coverage: dict[str, OsCoverage | None], family: str) -> None:
    chosen = choose_variant(coverage, family)
    exact = {v for v, c in coverage.items() if c is not None and not c.and_newer and c.family == family}
    ranges = {v: FAMILIES.index(c.family) for v, c in coverage.items() if c is not None and c.and_newer}
    fitting = {v: low for v, low in ranges.items() if low <= FAMILIES.index(family)}
    if exact:
        assert chosen in exact
    elif fitting:
        assert chosen is not None and fitting[chosen] == max(fitting.values())
    elif any(c is None for c in coverage.values()):
        assert chosen is not None and coverage[chosen] is None
    else:
        assert chosen is None


# -- catalogs on disk --------------------------------------------------------------------------------


def test_catalog_selects_by_file_name_and_header(write_catalog: WriteCatalog, tmp_path: Path) -> None:
    catalog = write_catalog(
        {
            "adapter/default.ps1": _template("adapter"),
            "adapter/win2003.ps1": _template("adapter"),
            "adapter/win2012r2.ps1": _template("adapter", extra_header="# dsrprep-os: 2012r2+\n"),
            "adapter/netcim.ps1": _template("adapter", extra_header="# dsrprep-os: 2016\n"),
            "weak-host/default.ps1": _template("weak-host"),
            "notes/readme.txt": "not a template",
        },
    )
    assert catalog.steps() == ["adapter", "weak-host"]
    chosen = {f: catalog.select("adapter", f).variant for f in FAMILIES}
    assert chosen == {
        "2003": "win2003",
        "2008": "default",
        "2008r2": "default",
        "2012": "default",
        "2012r2": "win2012r2",
        "2016": "netcim",
        "2019": "win2012r2",
        "2022": "win2012r2",
        "2025": "win2012r2",
    }
    template = catalog.select("adapter", "2003")
    assert template.path == "ps_templates/adapter/win2003.ps1"
    assert template.text == (tmp_path / "adapter/win2003.ps1").read_text(encoding="utf-8")
    assert [t.path for t in catalog.all_templates()] == [
        "ps_templates/adapter/default.ps1",
        "ps_templates/adapter/netcim.ps1",
        "ps_templates/adapter/win2003.ps1",
        "ps_templates/adapter/win2012r2.ps1",
        "ps_templates/weak-host/default.ps1",
    ]


def test_unknown_step_names_the_known_ones(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog({"facts/default.ps1": _template("facts"), "iis/default.ps1": _template("iis")})
    with pytest.raises(TemplateError, match=r"'loopback'.*known steps: facts, iis"):
        catalog.select("loopback", "2008")


def test_unknown_step_in_the_shipped_templates() -> None:
    with pytest.raises(TemplateError, match=r"no template for step 'no-such-step'; known steps: "):
        templates.select_template("no-such-step", "2008")


def test_no_default_and_no_cover(write_catalog: WriteCatalog) -> None:
    catalog = write_catalog({"netcfg/win2012.ps1": _template("netcfg", extra_header="# dsrprep-os: 2012+\n")})
    assert catalog.select("netcfg", "2019").variant == "win2012"
    with pytest.raises(TemplateError, match=r"no default\.ps1 and no variant for OS family 2008"):
        catalog.select("netcfg", "2008")
    with pytest.raises(TemplateError, match=r"no default\.ps1 and no variant for OS family default"):
        catalog.select("netcfg", "default")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"s/extra.ps1": _template("s")}, "cannot tell which OS families"),
        ({"s/win2008.ps1": _template("s", extra_header="# dsrprep-os: 2012+\n")}, "named for 2008"),
        ({"s/default.ps1": _template("s", extra_header="# dsrprep-os: 2012+\n")}, "drop `# dsrprep-os"),
        ({"s/x.ps1": _template("s", extra_header="# dsrprep-os: vista\n")}, "unknown OS family"),
        (
            {
                "s/win2012.ps1": _template("s", extra_header="# dsrprep-os: 2012+\n"),
                "s/modern.ps1": _template("s", extra_header="# dsrprep-os: 2012+\n"),
            },
            "both cover 2012+",
        ),
        (
            {
                "s/win2008.ps1": _template("s"),
                "s/old.ps1": _template("s", extra_header="# dsrprep-os: 2008\n"),
            },
            "both cover 2008",
        ),
        ({"Bad Step/default.ps1": _template("x")}, "a step id is"),
        ({"s/Default.ps1": _template("s")}, "a variant name is"),
        ({"s/default.ps1": _template("s", params="$A,\n$a")}, r"\$a is declared twice"),
        (
            {"s/default.ps1": _template("s", params="[Parameter(Mandatory=$x)]$A")},
            r"\$A Mandatory=\$x is not \$true or \$false",
        ),
    ],
)
def test_malformed_catalogs_are_refused(write_catalog: WriteCatalog, files: dict[str, str], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        write_catalog(files)


def test_byte_order_mark_is_not_part_of_the_text(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s/default.ps1").write_bytes(b"\xef\xbb\xbf" + _template("s").encode())
    assert TemplateCatalog(tmp_path).select("s", "2008").text == _template("s")


# -- param() blocks ----------------------------------------------------------------------------------


def test_parse_parameters() -> None:
    text = _template(
        "s",
        params=(
            "    [Parameter(Mandatory=$true)][string]$Vip,\n"
            "    [int[]]$Ports = @(80),\n"
            "    [Parameter(Position=0, Mandatory = $false)] [System.Collections.Hashtable] $Options,\n"
            "    [switch]$DryRun,\n"
            "    [Parameter(Mandatory)]$Shorthand,\n"
            "    [ValidateNotNullOrEmpty()][Alias('Nic')][Parameter(Mandatory=1)][int]$InterfaceIndex,\n"
            "    $Untyped = 'x'"
        ),
        body="function Inner {\n    param([Parameter(Mandatory=$true)]$NotTopLevel)\n    1\n}\n",
    )
    assert parse_parameters(text) == (
        TemplateParam("Vip", "string", mandatory=True, has_default=False),
        TemplateParam("Ports", "int[]", mandatory=False, has_default=True),
        TemplateParam("Options", "System.Collections.Hashtable", mandatory=False, has_default=False),
        TemplateParam("DryRun", "switch", mandatory=False, has_default=False),
        TemplateParam("Shorthand", None, mandatory=True, has_default=False),
        TemplateParam("InterfaceIndex", "int", mandatory=True, has_default=False),
        TemplateParam("Untyped", None, mandatory=False, has_default=True),
    )


def test_parse_parameters_of_empty_and_missing_blocks() -> None:
    assert parse_parameters(_template("s")) == ()
    assert parse_parameters("$x = 1\n") == ()


# -- render ------------------------------------------------------------------------------------------

PARAMS = "    [Parameter(Mandatory=$true)][string]$Vip,\n    [int[]]$Ports = @(80),\n    [hashtable]$Options"


@pytest.fixture
def catalog(write_catalog: WriteCatalog) -> TemplateCatalog:
    return write_catalog(
        {
            "vip/default.ps1": _template("vip", params=PARAMS),
            "vip/win2003.ps1": _template("vip", params=PARAMS, body="# 2003 way\n"),
        },
    )


def test_render(catalog: TemplateCatalog, tmp_path: Path) -> None:
    ports = [80, 443]
    script = catalog.render("vip", "2003", {"Vip": "10.0.0.50", "Ports": ports})
    text = (tmp_path / "vip/win2003.ps1").read_text(encoding="utf-8")
    assert script.step == "vip"
    assert script.template_path == "ps_templates/vip/win2003.ps1"
    assert script.text == text
    assert script.sha256 == hashlib.sha256(text.encode()).hexdigest()
    assert dict(script.parameters) == {"Vip": "10.0.0.50", "Ports": [80, 443]}
    ports.append(8080)  # the caller's list is not the script's
    assert script.parameters["Ports"] == [80, 443]
    with pytest.raises(TypeError):
        script.parameters["Vip"] = "10.0.0.51"  # type: ignore[index]
    # What the rollout log records of the parameters survives JSON unchanged.
    assert json.loads(json.dumps(dict(script.parameters))) == {"Vip": "10.0.0.50", "Ports": [80, 443]}
    assert catalog.render("vip", "2019", {"Vip": "10.0.0.50"}).template_path == "ps_templates/vip/default.ps1"


def test_render_accepts_nested_json_values(catalog: TemplateCatalog) -> None:
    options = {"sites": ["Default Web Site"], "restart": False, "limit": None, "nested": {"k": [1, "two"]}}
    script = catalog.render("vip", "2008", {"Vip": "10.0.0.50", "Options": options})
    assert script.parameters["Options"] == options


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"Vip": "10.0.0.50", "Port": 80},
            r"has no parameter 'Port'; it declares: \$Vip, \$Ports, \$Options",
        ),
        ({"vip": "10.0.0.50"}, r"has no parameter 'vip' \(did you mean 'Vip'\?\)"),
        ({}, r"needs a value for its mandatory parameter \$Vip"),
        ({"Vip": None}, r"mandatory parameter \$Vip"),
        ({"Vip": "x", "Ports": [80, 1.5]}, r"parameter \$Ports\[1\]: float is not allowed"),
        ({"Vip": "x", "Ports": (80, 443)}, r"parameter \$Ports: tuple is not allowed"),
        ({"Vip": "x", "Ports": {80}}, "set is not allowed"),
        ({"Vip": b"10.0.0.50"}, "bytes is not allowed"),
        ({"Vip": "x", "Options": {1: "a"}}, "dictionary keys must be strings"),
        ({"Vip": "x", "Options": {"a": [object()]}}, r"\$Options\['a'\]\[0\]: object is not allowed"),
    ],
)
def test_render_refuses_bad_parameters(
    catalog: TemplateCatalog, params: dict[str, object], message: str
) -> None:
    with pytest.raises(TemplateError, match=message) as caught:
        catalog.render("vip", "2008", params)
    assert "ps_templates/vip/default.ps1" in str(caught.value)


def test_template_error_is_a_dsr_error() -> None:
    from orchestrator.errors import DsrError, ErrorInfo

    error = TemplateError("x")
    assert isinstance(error, DsrError)
    assert ErrorInfo.of(error).error_class == "TemplateError"
