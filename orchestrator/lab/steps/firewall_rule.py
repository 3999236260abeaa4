"""firewall_rule: a rule letting the VIP's port in. default.ps1 uses `netsh advfirewall firewall`
(2008+: a rule scoped to the VIP, every profile); win2003.ps1 uses `netsh firewall add|delete
portopening` (unscoped, both profiles), which 2008+ still runs as a rule of its own with a
deprecation notice (KB947709), the Standard profile standing for Private.

default.ps1 looks the rule up by name in HNetCfg.FwPolicy2's Rules, not with `netsh advfirewall
firewall show rule`, which exits 1 both for "No rules match the specified criteria." and for real
errors. With the Windows Firewall service stopped (`WindowsHost.firewall_service_stopped`; Microsoft
does not support stopping it, "Firewall Service and Driver Initialization", cc733422, but it
happens) enumerating FwPolicy2's rules throws 0x800706D9, "There are no more endpoints available
from the endpoint mapper." (falahati/WindowsFirewallHelper issue 24, INetFwRules enumeration), and
netsh advfirewall exits 1 with a service error; its wording here is recalled, not captured (the
template no longer reads it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.firewall import (
    ALL_PROFILES,
    PROFILE_TYPES,
    PROTOCOLS,
    AdvFirewall,
    FirewallRule,
    openings,
    rule_address,
    set_opening,
)
from orchestrator.lab.native import fw_policy2, netsh, netsh_firewall
from orchestrator.lab.net import is_ip
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, ensure, p_int, p_str, result, text
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    present = ensure(params)
    name = p_str(params, "Name")
    if not name:
        raise StepFailed("Name is empty")
    vip = p_str(params, "Vip")
    proto = p_str(params, "Protocol").upper()
    port = p_int(params, "Port")
    if variant == DEFAULT_VARIANT:
        return _advfirewall_rule(host, present, name, vip, proto, port)
    if proto not in PROTOCOLS:
        raise StepFailed(f"Protocol must be TCP or UDP, not '{p_str(params, 'Protocol')}'")
    if not 1 <= port <= 65535:
        raise StepFailed(f"Port {port} is out of range")
    return _port_opening(host, present, name, proto, port)


# --------------------------------------------------------------------------------------------------
# default.ps1: netsh advfirewall


def _advfirewall_rule(host: WindowsHost, present: bool, name: str, vip: str, proto: str, port: int) -> ScriptResult:
    # The rule is looked up by name through HNetCfg.FwPolicy2, which throws where netsh's `show rule`
    # would exit 1 as it does for "No rules match" (the service stopped; no advfirewall on 2003).
    try:
        fw = fw_policy2(host)
    except StepFailed as exc:
        raise StepFailed(f"The Windows Firewall rules could not be read through HNetCfg.FwPolicy2: {exc}") from None
    existing = [r for r in fw.rules if r.name.casefold() == name.casefold()]
    if present and not existing:
        return _add_rule(host, name, vip, proto, port)
    if not present and existing:
        netsh(host, ["advfirewall", "firewall", "delete", "rule", f"name={name}"])
        fw.rules = [r for r in fw.rules if all(r is not e for e in existing)]
        return result(True, name=name, output=text(["", f"Deleted {len(existing)} rule(s).", "Ok.", ""]))
    return result(False, name=name, output=None)


def _add_rule(host: WindowsHost, name: str, vip: str, proto: str, port: int) -> ScriptResult:
    number = PROTOCOLS.get(proto)
    if number is None:
        raise StepFailed(f"Protocol must be TCP or UDP, not '{proto}'")
    if not 1 <= port <= 65535:
        raise StepFailed(f"Port {port} is out of range")
    if not is_ip(vip):
        raise StepFailed(f"Vip '{vip}' is not an IP address")
    netsh(host, ["advfirewall", "firewall", "add", "rule", f"name={name}", "dir=in", "action=allow",
                 f"protocol={proto}", f"localip={vip}", f"localport={port}", "profile=any"])
    fw = host.firewall
    assert isinstance(fw, AdvFirewall)  # netsh refused the advfirewall context otherwise
    fw.rules.append(FirewallRule(name, True, 1, 1, number, rule_address(vip), str(port), ALL_PROFILES))
    return result(True, name=name, output=text(["Ok.", ""]))


# --------------------------------------------------------------------------------------------------
# win2003.ps1: netsh firewall portopening, read back through HNetCfg.FwMgr


def _port_opening(host: WindowsHost, present: bool, name: str, proto: str, port: int) -> ScriptResult:
    found = openings(host.firewall, port, proto)
    outputs: list[str] = []
    if present:
        if _opening_missing(found, name, proto, port):
            outputs.append(netsh_firewall(
                host,
                ["firewall", "add", "portopening", f"protocol={proto}", f"port={port}", f"name={name}",
                 "mode=ENABLE", "scope=ALL", "profile=ALL"],
            ))
            set_opening(host.firewall, host.caps, port, proto, name, (0, 1))
    else:
        for key, opening in found.items():
            if opening is not None and opening[0] == name:
                outputs.append(netsh_firewall(
                    host,
                    ["firewall", "delete", "portopening", f"protocol={proto}", f"port={port}",
                     f"profile={PROFILE_TYPES[key]}"],
                ))
                set_opening(host.firewall, host.caps, port, proto, None, (key,))
    return result(bool(outputs), name=name, output="".join(outputs) if outputs else None)


def _opening_missing(found: dict[int, tuple[str, bool] | None], name: str, proto: str, port: int) -> bool:
    """Whether a profile lacks an enabled opening for port/protocol; the template's refusals to
    overwrite another opening."""
    missing = False
    for key, opening in found.items():
        if opening is None:
            missing = True
            continue
        if opening[0] != name and not opening[1]:
            raise StepFailed(
                f"{port}/{proto} has a disabled port opening '{opening[0]}' in the {PROFILE_TYPES[key]} "
                "profile that dsrprep did not make; enable or remove it first"
            )
        if not opening[1]:
            missing = True
    foreign = [o for o in found.values() if o is not None and o[0] != name]
    if missing and foreign:
        raise StepFailed(
            f"{port}/{proto} is opened by '{foreign[0][0]}' in only one profile; dsrprep will not "
            "overwrite another port opening"
        )
    return missing


STEP = LabStep("firewall_rule", _run, variants=(DEFAULT_VARIANT, "win2003"))
