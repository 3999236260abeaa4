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

Adding a step: its module here with a `STEP`, and a line in `STEPS` below.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from orchestrator.lab.steps import (
    adapter_settings,
    arp_check,
    facts,
    firewall_rule,
    firewall_state,
    http_listen,
    iis_binding,
    loopback,
    loopback_config,
    marker,
    preflight,
    skip_as_source,
    verify,
    weak_host,
)
from orchestrator.lab.steps.base import LabStep

STEPS: Mapping[str, LabStep] = MappingProxyType({
    step.name: step
    for step in (
        facts.STEP,
        preflight.STEP,
        firewall_rule.STEP,
        firewall_state.STEP,
        loopback.STEP,
        loopback_config.STEP,
        adapter_settings.STEP,
        skip_as_source.STEP,
        weak_host.STEP,
        http_listen.STEP,
        iis_binding.STEP,
        marker.STEP,
        verify.STEP,
        arp_check.STEP,
    )
})
