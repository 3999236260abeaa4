"""The steps a lab host executes, one module per step id (docs/steps.md), each registering a
`LabStep` under that id in `STEPS`.

Each handler does what its template under ps_templates/ does on the host's Windows version,
command for command, with the template's result keys and its throws ("<command> failed (exit N):
<output>" for a native command). A variant meant for another family fails the way its commands
fail there (orchestrator.lab.native lists how). Also modelled, in the modules of the steps that
meet them: EnableStatic's 66 for /32 on 2003 and the fallback (loopback_config), refusals without
elevation, ERROR_IN_WOW64 when creating the loopback (loopback), NLA: a loopback's first real
address makes its network unidentified (Public), which on 2008 is the one profile of the whole
machine; when that flip happens with the Public profile on and no dsrprep rule for the address,
the result asks the server to cut the session (`ScriptResult.cut_connection`), the change staying
made (loopback_config). `WindowsHost.cut_on_step` cuts any one step on demand.

Adding a step: its module here, named as the step, with a `STEP`; `STEPS` finds it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from orchestrator.lab.steps.base import LabStep

_NOT_STEPS = frozenset({"base"})


def _discover() -> Mapping[str, LabStep]:
    found: dict[str, LabStep] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _NOT_STEPS:
            continue
        step = getattr(importlib.import_module(f"{__name__}.{info.name}"), "STEP", None)
        if not isinstance(step, LabStep) or step.name != info.name:
            raise ImportError(f"{__name__}.{info.name} must define STEP = LabStep({info.name!r}, ...)")
        found[step.name] = step
    return MappingProxyType(found)


STEPS: Mapping[str, LabStep] = _discover()
