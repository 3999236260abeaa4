"""firewall_state: turns Windows Firewall profiles on or off. default.ps1 sets the named profiles
with `netsh advfirewall set <profile>profile state` after reading them through HNetCfg.FwPolicy2
(2008+); win2003.ps1 sets the current profile's operational mode with `netsh firewall set opmode`,
which on 2008+ switches every current profile (HNetCfg.FwMgr sees the current one)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import Hashtable, ScriptResult
from orchestrator.lab.firewall import DOMAIN_PROFILE, PRIVATE_PROFILE, PUBLIC_PROFILE, AdvFirewall, LegacyFirewall
from orchestrator.lab.native import fw_policy2, netsh, netsh_firewall
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, p_bool, p_list, result, text
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

_PROFILE_NAMES = ("domain", "private", "public")


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    enabled = p_bool(params, "Enabled")
    if variant == DEFAULT_VARIANT:
        return _set_profiles(host, _wanted_profiles(p_list(params, "Profiles")), enabled)
    fw = host.firewall
    if isinstance(fw, LegacyFirewall):
        return _legacy_opmode(host, fw, enabled)
    return _opmode_on_advfirewall(host, fw, enabled)


def _wanted_profiles(profiles: list[str]) -> list[str]:
    wanted: list[str] = []
    for profile in profiles:
        key = profile.strip().lower()
        if not key:
            continue
        if key not in _PROFILE_NAMES:
            raise StepFailed(f"Unknown firewall profile '{profile}'; expected domain, private or public")
        if key not in wanted:
            wanted.append(key)
    return wanted


def _set_profiles(host: WindowsHost, wanted: list[str], enabled: bool) -> ScriptResult:
    fw = fw_policy2(host)
    outputs = []
    for key in wanted:
        if getattr(fw, key) != enabled:
            netsh(host, ["advfirewall", "set", f"{key}profile", "state", "on" if enabled else "off"])
            setattr(fw, key, enabled)
            outputs.append(text(["Ok.", ""]))
    return result(bool(outputs), profiles=Hashtable({k: enabled for k in wanted}), output="".join(outputs) or None)


def _opmode_args(enabled: bool) -> list[str]:
    return ["firewall", "set", "opmode", f"mode={'ENABLE' if enabled else 'DISABLE'}"]


def _legacy_opmode(host: WindowsHost, fw: LegacyFirewall, enabled: bool) -> ScriptResult:
    attribute = f"{fw.current}_enabled"
    changed = getattr(fw, attribute) != enabled
    output = netsh_firewall(host, _opmode_args(enabled)) if changed else None
    setattr(fw, attribute, enabled)
    return result(changed, enabled=enabled, current_profile_type=0 if fw.current == "domain" else 1, output=output)


def _opmode_on_advfirewall(host: WindowsHost, fw: AdvFirewall, enabled: bool) -> ScriptResult:
    # FwMgr on 2008+ sees the current profile; set opmode switches every current one.
    current = [p for bit, p in ((DOMAIN_PROFILE, "domain"), (PRIVATE_PROFILE, "private"),
                                (PUBLIC_PROFILE, "public")) if fw.current_profiles & bit]
    changed = bool(current) and getattr(fw, current[0]) != enabled
    output = None
    if changed:
        output = netsh_firewall(host, _opmode_args(enabled))
        for profile in current:
            setattr(fw, profile, enabled)
    return result(changed, enabled=enabled, current_profile_type=0 if current[:1] == ["domain"] else 1,
                  output=output)


STEP = LabStep("firewall_state", _run, variants=(DEFAULT_VARIANT, "win2003"))
