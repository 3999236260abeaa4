"""iis_binding: adds (or removes) a site binding for the VIP and restarts a started site to pick it
up. default.ps1 runs `%windir%\\system32\\inetsrv\\appcmd.exe set site /+bindings.[...]` (IIS 7+);
win2003.ps1 rewrites the site's ServerBindings through WMI's root\\MicrosoftIISv2 (IIS 6: http
only, never the last binding). The API is the family's (`oscaps.caps(family).iis`); a variant
meant for the other one finds appcmd missing or the WMI namespace invalid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.iis import Site, iis_api, iis_facts
from orchestrator.lab.net import is_ip
from orchestrator.lab.shell import (
    DEFAULT_VARIANT,
    StepFailed,
    ensure,
    major,
    native_failed,
    p_bool,
    p_int,
    p_str,
    result,
    text,
)
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


@dataclass(frozen=True)
class _Binding:
    protocol: str  # lower case
    ip: str  # "*" or the canonical address
    port: int
    host_header: str

    @property
    def information(self) -> str:
        """IIS 7's bindingInformation: "ip:port:host", an IPv6 address in brackets."""
        return f"{f'[{self.ip}]' if ':' in self.ip else self.ip}:{self.port}:{self.host_header}"

    @property
    def pair(self) -> tuple[str, str]:
        return (self.protocol, self.information)


def _binding(protocol: str, ip: str, port: int, host_header: str, variant: str) -> _Binding:
    if variant == DEFAULT_VARIANT:
        if not protocol:
            raise StepFailed("Protocol is empty")
    elif protocol.lower() != "http":
        raise StepFailed(f"IIS 6 ServerBindings hold http bindings only, not '{protocol}'")
    if not 1 <= port <= 65535:
        raise StepFailed(f"Port {port} is out of range")
    ip_part = "*"
    if ip and ip != "*":
        if not is_ip(ip.strip("[]")):
            raise StepFailed(f"Ip '{ip}' is not an IP address")
        ip_part = normalize_ip(ip.strip("[]"))
    return _Binding(protocol.strip().lower(), ip_part, port, host_header)


def _appcmd_site(host: WindowsHost, site_name: str, binding: _Binding) -> tuple[Site, str]:
    """default.ps1's site: (site, the binding as appcmd shows it)."""
    appcmd = f"{host.windir()}\\system32\\inetsrv\\appcmd.exe"
    if iis_api(host.caps, host.iis_version) is not oscaps.IisApi.APPCMD:
        raise StepFailed(f"{appcmd} is missing: IIS 7 or later is not installed")
    site = next((s for s in host.sites if s.name.casefold() == site_name.casefold()), None)
    if site is None:
        listing = ["list", "site", f"/site.name:{site_name}", "/config", "/xml"]
        message = f'ERROR ( message:Cannot find SITE object with identifier "{site_name}". )'
        raise native_failed("appcmd.exe", listing, 1168, message)
    return site, f"{binding.protocol}/{binding.information}"


def _metabase_site(host: WindowsHost, site_name: str, binding: _Binding) -> tuple[Site, str]:
    """win2003.ps1's site: (site, the ServerBindings entry)."""
    if iis_api(host.caps, host.iis_version) is not oscaps.IisApi.METABASE:
        raise StepFailed(
            'Invalid namespace "root\\MicrosoftIISv2"' if major(host.powershell_version) >= 3
            else "Invalid namespace "
        )
    matching = [s for s in host.sites if s.name.casefold() == site_name.casefold()]
    if len(matching) != 1:
        raise StepFailed(f"{len(matching)} IIsWebServerSetting objects have ServerComment '{site_name}'")
    shown = ("" if binding.ip == "*" else binding.ip) + f":{binding.port}:{binding.host_header}"
    return matching[0], shown


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    present = ensure(params)
    site_name = p_str(params, "Site")
    protocol, ip, port = p_str(params, "Protocol"), p_str(params, "Ip"), p_int(params, "Port")
    host_header = p_str(params, "HostHeader").strip()
    restart = p_bool(params, "Restart")
    if not site_name:
        raise StepFailed("Site is empty")
    binding = _binding(protocol, ip, port, host_header, variant)
    # Past the look-up, the variant is the host's API: the other one has thrown.
    metabase = variant != DEFAULT_VARIANT
    site, shown = (_metabase_site if metabase else _appcmd_site)(host, site_name, binding)
    changed = present != (binding.pair in site.bindings)
    outputs = []
    if changed:
        _change(host, site_name, site, binding, present, metabase, shown)
        outputs.append(f'SITE object "{site.name}" changed')
    # A stopped site stays stopped: restarting is for picking up the new binding.
    restarted = changed and restart and site.state == "Started"
    if restarted:
        outputs += [f'"{site.name}" successfully stopped', f'"{site.name}" successfully started.']
    output = None if metabase or not outputs else text(outputs)
    return result(changed, site=site_name, binding=shown, restarted=restarted, output=output)


def _change(host: WindowsHost, site_name: str, site: Site, binding: _Binding, present: bool, metabase: bool,
            shown: str) -> None:
    if not present and metabase and len(site.bindings) == 1:
        raise StepFailed(f"Removing {shown} would leave site '{site_name}' without bindings")
    if not host.elevated:
        if metabase:
            raise StepFailed('Exception calling "Put" with "0" argument(s): "Access denied "')
        entry = f"[protocol='{binding.protocol}',bindingInformation='{binding.information}']"
        args = ["set", "site", f"/site.name:{site_name}", f"/{'+' if present else '-'}bindings.{entry}"]
        message = "ERROR ( message:Cannot write configuration file due to insufficient permissions. )"
        raise native_failed("appcmd.exe", args, 5, message)
    if present:
        site.bindings.append(binding.pair)
    else:
        site.bindings.remove(binding.pair)


def _facts(host: WindowsHost) -> Mapping[str, Any]:
    return {"iis": iis_facts(host.caps, host.iis_version, host.sites)}


STEP = LabStep("iis_binding", _run, variants=(DEFAULT_VARIANT, "win2003"), facts=_facts)
