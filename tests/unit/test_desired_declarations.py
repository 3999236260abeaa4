"""The `dsr_*` declarations in desired.py are the only source: everything that repeats them is checked here.

Copies checked: desired.py's docstring table, the README's variable list, the comments of
inventory/example.yml, the `Desired` dataclass (fields, types, defaults) and its dict form.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from types import UnionType
from typing import Any, Literal, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator import desired as ds
from orchestrator.desired import VARIABLES, Desired, NicSelector, Variable, Vip

REPO = Path(__file__).resolve().parents[2]
DESIRED_VARIABLES = [v for v in VARIABLES if v.desired]
ALL_VARIABLES = ds.all_variables()
KNOWN_KEYS = ds.known_keys()


# --- the docs ---------------------------------------------------------------------------------------


def test_docstring_table_is_the_generated_one() -> None:
    assert ds.variables_table() in (ds.__doc__ or ""), (
        "desired.py's variable table differs from the declarations: paste orchestrator.desired.variables_table()"
    )


def test_readme_variable_list_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- dsr-variables:start -->\n(.*?)\n<!-- dsr-variables:end -->", readme, re.DOTALL)
    assert found, "README.md has no <!-- dsr-variables:start --> ... <!-- dsr-variables:end --> section"
    assert found.group(1) == ds.variables_markdown(), (
        "README.md's dsr_ variable list differs from the declarations: paste orchestrator.desired.variables_markdown()"
    )


def example_blocks() -> tuple[dict[str, str], set[str]]:
    """Per variable, the comment block above its first line in example.yml (`dsr_x: ...` or
    `# dsr_x: ...`); and every dsr_ name the file mentions anywhere."""
    lines = (REPO / "inventory" / "example.yml").read_text(encoding="utf-8").splitlines()
    blocks: dict[str, str] = {}
    for index, line in enumerate(lines):
        key = re.match(r"\s*(?:#\s*)?(dsr_\w+):", line)
        if key is None or key.group(1) in blocks:
            continue
        start = index
        while start > 0 and lines[start - 1].strip().startswith("#"):
            start -= 1
        blocks[key.group(1)] = "\n".join(text.strip().lstrip("#").strip() for text in lines[start:index])
    mentioned = set(re.findall(r"\bdsr_\w+", "\n".join(lines)))
    return blocks, mentioned


def test_example_documents_exactly_the_declared_variables() -> None:
    blocks, mentioned = example_blocks()
    assert sorted(mentioned - set(KNOWN_KEYS)) == [], "documented in example.yml but not declared"
    assert sorted(set(KNOWN_KEYS) - set(blocks)) == [], "declared but not documented in example.yml"


@pytest.mark.parametrize("variable", ALL_VARIABLES, ids=lambda v: v.name)
def test_example_shows_the_declared_default(variable: Variable) -> None:
    block = example_blocks()[0][variable.name]
    shown = [m.group(1) for m in re.finditer(r"Default: (.*)", block)]
    assert shown, f"example.yml: the comment above {variable.name} does not say 'Default: {variable.default_text}'"
    for text in shown:
        assert re.match(re.escape(variable.default_text) + r"(?!\w)", text), (variable.name, text)


def test_markdown_and_docstring_list_every_declared_variable_once() -> None:
    markdown_names = re.findall(r"^\| `(dsr_\w+)` \|", ds.variables_markdown(), re.MULTILINE)
    table_names = re.findall(r"^(dsr_\w+) ", ds.variables_table(), re.MULTILINE)
    assert markdown_names == list(KNOWN_KEYS)
    assert table_names == [v.name for v in VARIABLES]  # the docstring shows desired.py's own


# --- the declarations and what is derived from them -------------------------------------------------


def test_every_variable_is_declared_once_with_a_parser_and_help() -> None:
    assert len(KNOWN_KEYS) == len(set(KNOWN_KEYS))
    for v in ALL_VARIABLES:
        assert v.name.startswith("dsr_") and v.help and callable(v.parse), v.name
        assert (v.default is ds.NO_DEFAULT) == (v.shown_default is not None), v.name
        assert ds.variable(v.name) is v
    assert dict(ds.defaults()) == {v.name: v.default for v in ALL_VARIABLES if v.default is not ds.NO_DEFAULT}
    assert ALL_VARIABLES[: len(VARIABLES)] == VARIABLES
    for v in ds.step_variables():
        assert v.default is not ds.NO_DEFAULT, f"{v.name}: a step's variable needs a default"
        assert v.example is not ds.NO_DEFAULT and v.example != v.default, f"{v.name}: and an example"
        assert v.parse(v.example) == v.example, v.name


def test_desired_has_one_field_per_declared_variable_with_its_type() -> None:
    hints = get_type_hints(Desired)
    assert [f.name for f in dataclasses.fields(Desired)] == [v.field for v in DESIRED_VARIABLES] + ["options"]
    for v in DESIRED_VARIABLES:
        assert hints[v.field] == v.type, v.name


def test_defaults_parse_to_themselves() -> None:
    # A default must be a value the inventory could hold: the parser leaves it as it is.
    for v in ALL_VARIABLES:
        if v.default is not ds.NO_DEFAULT:
            raw = list(v.default) if isinstance(v.default, tuple) else v.default
            assert v.parse(raw) == v.default, v.name


def test_desired_takes_the_declared_defaults() -> None:
    vips = (Vip("10.0.0.100", (80,), "tcp"),)
    desired = Desired(vips=vips)
    for v in DESIRED_VARIABLES:
        if v.default is not ds.NO_DEFAULT:
            assert getattr(desired, v.field) == v.default, v.name
    built, errors = ds.build_desired({"dsr_vips": vips}, host_address="10.0.0.11")
    assert errors == []
    assert built == dataclasses.replace(desired, nic=NicSelector("address", "10.0.0.11"))


def test_unknown_variable_message_lists_the_declared_names() -> None:
    message = ds.unknown_key_message("dsr_metrik")
    assert message.startswith("unknown dsr_ variable: did you mean dsr_metric? known: dsr_vips, dsr_iis_sites, ")
    assert message.endswith(", ".join(KNOWN_KEYS))


# --- to_dict / from_dict ----------------------------------------------------------------------------


def values_of(kind: object) -> st.SearchStrategy[Any]:
    """Any value of a declared type (the decoder checks shape and types, not meaning)."""
    simple: dict[object, st.SearchStrategy[Any]] = {bool: st.booleans(), int: st.integers(), str: st.text()}
    if kind in simple:
        return simple[kind]
    origin, args = get_origin(kind), get_args(kind)
    if origin is UnionType:
        return st.one_of([st.none() if a is type(None) else values_of(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        return st.lists(values_of(args[0]), max_size=4).map(tuple)
    assert isinstance(kind, type) and dataclasses.is_dataclass(kind), kind
    return st.builds(kind, **{name: values_of(hint) for name, hint in get_type_hints(kind).items()})


desireds = st.builds(Desired, **{v.field: values_of(v.type) for v in DESIRED_VARIABLES})


@given(desireds)
def test_to_dict_round_trips_through_json(desired: Desired) -> None:
    data = desired.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert Desired.from_dict(json.loads(json.dumps(data))) == desired


def test_to_dict_shape() -> None:
    desired = Desired(vips=(Vip("10.0.0.100", (80, 443), "tcp"),), nic=NicSelector("mac", "00:15:5D:0A:14:04"))
    data = desired.to_dict()
    assert list(data) == [v.field for v in DESIRED_VARIABLES] + ["options"]
    assert data["vips"] == [{"address": "10.0.0.100", "ports": [80, 443], "protocol": "tcp"}]
    assert data["nic"] == {"by": "mac", "value": "00:15:5D:0A:14:04"}
    assert data["iis_sites"] == ["Default Web Site"]
    assert desired.to_dict() == data


def _good() -> dict[str, Any]:
    return Desired(vips=(Vip("10.0.0.100", (80,), "tcp"),), nic=NicSelector("address", "10.0.0.11")).to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": True}, "desired state field metric: True is not a whole number"),
        ({"metric": "254"}, "desired state field metric: '254' is not a whole number"),
        ({"skip_as_source": 1}, "desired state field skip_as_source: 1 is not true or false"),
        ({"devcon_path": 7}, "desired state field devcon_path: 7 is not text"),
        ({"iis_sites": "Default Web Site"}, "desired state field iis_sites: 'Default Web Site' is not a list"),
        ({"iis_sites": ["a", None]}, "desired state field iis_sites[1]: null (no value) is not text"),
        ({"vips": [{"address": "10.0.0.1", "ports": [80, "x"], "protocol": "tcp"}]},
         "desired state field vips[0].ports[1]: 'x' is not a whole number"),
        ({"vips": [{"address": "10.0.0.1"}]},
         "desired state field vips[0]: {'address': '10.0.0.1'} is not a mapping of address, ports, protocol"),
        ({"nic": {"by": "guid", "value": "x"}}, "desired state field nic.by: 'guid' is not one of: address, mac, name"),
        ({"nic": None}, "desired state field nic: null (no value) is not a mapping of by, value"),
        ({"colour": "blue"}, "desired state: unknown field(s) colour"),
    ],
)
def test_from_dict_names_the_bad_field(change: dict[str, Any], message: str) -> None:
    data = _good() | change
    with pytest.raises(ValueError) as info:
        Desired.from_dict(data)
    assert str(info.value) == message


def test_from_dict_refuses_missing_fields_and_non_mappings() -> None:
    data = _good()
    del data["nic"], data["metric"]
    with pytest.raises(ValueError) as info:
        Desired.from_dict(data)
    assert str(info.value) == "desired state: missing field(s) nic, metric"
    with pytest.raises(ValueError) as info:
        Desired.from_dict([1, 2])
    assert str(info.value) == "desired state: [1, 2] is not a mapping of fields"
