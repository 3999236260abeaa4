"""What a step module registers: the handler that does on the lab host what the step's template
does, and the template variants it models."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.shell import DEFAULT_VARIANT

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

# (host, parameters, variant): the variant is the template file that ran ("default", "win2003").
StepHandler = Callable[["WindowsHost", dict[str, Any], str], ScriptResult]
# The keys the step's facts fragment (ps_templates/<step>/facts.ps1) adds to the facts object, as
# this host's Windows would answer them. Called with the host's lock held.
FactsAnswer = Callable[["WindowsHost"], Mapping[str, Any]]


@dataclass(frozen=True)
class LabStep:
    """One step id's behaviour on a lab host.

    variants: the template files of the step the handler models; another variant fails.
    segment:  the handler reads other hosts of the segment, so it runs without the host's lock
              and takes each host's lock itself, one at a time.
    facts:    the answer to the step's own facts fragment, when it has one.
    """

    name: str
    run: StepHandler
    variants: tuple[str, ...] = (DEFAULT_VARIANT,)
    segment: bool = False
    facts: FactsAnswer | None = None
