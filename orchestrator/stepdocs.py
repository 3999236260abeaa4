"""The step tables of the README, docs/steps.md and `dsrprep steps`, generated from the step registry.

Pure: the registry, the template catalogue and the capability table in, rows and Markdown out
(the CLI reads and writes the files).
The same goes for the README's and inventory/example.yml's lists of the `dsr_*` variables, which
come from their declarations (orchestrator/desired.py and each step's `variables`). The committed
documents hold the generated text between marker comments; a test fails when they
differ from what this module generates (`dsrprep steps --write-docs` rewrites them).
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator import desired, oscaps, steps
from orchestrator.steps.base import Step
from orchestrator.templates import all_fragments, all_templates, select_template

NOT_APPLICABLE = "not applicable"
README_MARKERS = ("<!-- step-table:start -->", "<!-- step-table:end -->")
STEPS_MD_MARKERS = ("<!-- steps:start -->", "<!-- steps:end -->")
EXAMPLE_MARKERS = ("    # step-variables:start", "    # step-variables:end")
VARIABLES_MARKERS = ("<!-- dsr-variables:start -->", "<!-- dsr-variables:end -->")


@dataclass(frozen=True)
class FamilyGroup:
    """Consecutive OS families for which every step runs the same command."""

    families: tuple[str, ...]

    @property
    def title(self) -> str:
        first, last = oscaps.caps(self.families[0]), oscaps.caps(self.families[-1])
        return first.name if first == last else f"{first.name} to {last.family}"


def command(step: Step, family: str) -> str:
    """What `step` runs on a host of `family`, in a phrase."""
    caps = oscaps.caps(family)
    if step.docs.not_on is not None and step.docs.not_on(caps):
        return NOT_APPLICABLE
    variant = select_template(step.name, family).variant
    return step.docs.commands.get(variant, step.docs.commands.get("default", ""))


def family_groups(rows: Sequence[Step]) -> list[FamilyGroup]:
    """The families, oldest first, merged where no step's command differs."""
    groups: list[list[str]] = []
    for family in oscaps.families():
        if groups and all(command(s, family) == command(s, groups[-1][-1]) for s in rows):
            groups[-1].append(family)
        else:
            groups.append([family])
    return [FamilyGroup(tuple(g)) for g in groups]


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|") or "-"


def table_rows() -> tuple[list[str], list[list[str]]]:
    """The head and rows of the step table: per step, the command per group of OS families, what
    checks it, what undoes it. A command like the one of the older families before it reads "same"."""
    rows = list(steps.ordered())
    groups = family_groups(rows)
    head = ["step", *(g.title for g in groups), "checked by (facts)", "rolled back by"]
    body = []
    for step in rows:
        commands = [command(step, g.families[0]) for g in groups]
        shown = [c if i == 0 or c != commands[i - 1] else "same" for i, c in enumerate(commands)]
        body.append([step.name, *shown, step.docs.checked_by or "-", step.docs.undone_by or "-"])
    return head, body


def readme_table() -> str:
    """The README's step table, in Markdown."""
    head, body = table_rows()
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def _parameters(step: Step) -> str:
    names: dict[str, str] = {}
    for template in all_templates():
        if template.step == step.name:
            for p in template.parameters:
                names.setdefault(p.name, f"`{p.name}`" + (f" [{p.type}]" if p.type else ""))
    return ", ".join(names.values()) or "-"


def _variants(step: Step) -> str:
    found = sorted(t.variant for t in all_templates() if t.step == step.name)
    return ", ".join(found) or "-"


def steps_reference() -> str:
    """docs/steps.md's reference: one section per step, in rollout order."""
    fragments = {f.step: f.path for f in all_fragments()}
    out = []
    for step in steps.ordered():
        facts = f"`{fragments[step.name]}` ({', '.join(f'`{k}`' for k in step.facts.keys)})" if step.facts else "-"
        out += [
            f"### `{step.name}`",
            "",
            f"- order: {step.order}; planned by a rollout: {'yes' if step.plan else 'no'}; "
            f"undone by rollback: {'yes' if step.undo else 'no'}; "
            f"can cut the management connection: {'yes' if step.cuts_connection else 'no'}",
            f"- variants: {_variants(step)}",
            f"- parameters: {_parameters(step)}",
            f"- reads: {', '.join(f'`{v}`' for v in step.reads) or '-'}",
            f"- own facts: {facts}",
            "",
            " ".join(step.description.split()),
            "",
        ]
    return "\n".join(out)


def example_variables() -> str:
    """inventory/example.yml's block of the variables steps declare: help, default, and the line."""
    lines = []
    for step in steps.ordered():
        for v in step.variables:
            lines += [f"    # {line}" for line in textwrap.wrap(f"{v.help} (the {step.name} step).", 92)]
            lines += [f"    # Default: {v.default_text}.", f"    # {v.name}: {json.dumps(v.example)}", "    #"]
    return "\n".join(lines[:-1]) + "\n" if lines else ""


def replace_between(text: str, markers: tuple[str, str], body: str, *, where: str) -> str:
    """`text` with what stands between the two marker lines replaced by `body`."""
    start, end = markers
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(end), re.DOTALL)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{where}: expected one {start} ... {end} block")
    return pattern.sub(lambda _m: f"{start}\n{body}{end}", text)


GENERATED_FILES = ("README.md", "docs/steps.md", "inventory/example.yml")


def regenerate(texts: Mapping[str, str]) -> dict[str, str]:
    """The files of GENERATED_FILES (path -> text) with their generated parts written anew."""
    parts = {
        "README.md": ((README_MARKERS, readme_table()), (VARIABLES_MARKERS, desired.variables_markdown() + "\n")),
        "docs/steps.md": ((STEPS_MD_MARKERS, steps_reference()),),
        "inventory/example.yml": ((EXAMPLE_MARKERS, example_variables()),),
    }
    out = {}
    for rel, text in texts.items():
        for markers, body in parts[rel]:
            text = replace_between(text, markers, body, where=rel)
        out[rel] = text
    return out
