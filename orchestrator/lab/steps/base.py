"""What a step module registers: the handler that does on the lab host what the step's template
does, and the template variants it models."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.shell import DEFAULT_VARIANT

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

# (host, parameters, variant): the variant is the template file that ran ("default", "win2003").
StepHandler = Callable[["WindowsHost", dict[str, Any], str], ScriptResult]


@dataclass(frozen=True)
class LabStep:
    """One step id's behaviour on a lab host.

    variants: the template files of the step the handler models; another variant fails.
    segment:  the handler reads other hosts of the segment, so it runs without the host's lock
              and takes each host's lock itself, one at a time.
    """

    name: str
    run: StepHandler
    variants: tuple[str, ...] = (DEFAULT_VARIANT,)
    segment: bool = False
