"""adapter_settings: the loopback's interface metric (SetIPConnectionMetric, 0 leaves it alone),
DNS registration (SetDynamicDNSRegistration) and NetBIOS over TCP/IP (SetTcpipNetbios), through
Win32_NetworkAdapterConfiguration on every family."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.lab.common import ScriptResult
from orchestrator.lab.native import Commands
from orchestrator.lab.net import FALLBACK_METRIC
from orchestrator.lab.shell import StepFailed, p_bool, p_int, p_str, result
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    metric = p_int(params, "Metric")
    dns = p_bool(params, "DnsRegistration")
    netbios = p_int(params, "NetBios")
    if not 0 <= netbios <= 2:
        raise StepFailed(f"NetBios must be 0 (from DHCP), 1 (on) or 2 (off), not {netbios}")
    if not 0 <= metric <= FALLBACK_METRIC:
        raise StepFailed(f"Metric {metric} is out of range (1-9999; 0 leaves the metric alone)")
    nic = host.resolve_adapter(p_str(params, "PnpDeviceId"))
    run = Commands(host)
    changed = False
    if metric > 0 and (nic.metric != metric or nic.automatic_metric or not nic.ip_enabled):
        run.wmi(nic, "SetIPConnectionMetric", note=f"SetIPConnectionMetric({metric})", prefix=False)
        nic.metric = metric
        nic.automatic_metric = False
        changed = True
    if nic.dns_registration != dns or nic.domain_dns_registration:
        run.wmi(nic, "SetDynamicDNSRegistration", note=f"SetDynamicDNSRegistration({dns}, False)", prefix=False)
        nic.dns_registration = dns
        nic.domain_dns_registration = False
        changed = True
    if nic.netbios != netbios:
        run.wmi(nic, "SetTcpipNetbios", note=f"SetTcpipNetbios({netbios})", prefix=False)
        nic.netbios = netbios
        changed = True
    return result(changed, pnp_device_id=nic.pnp_device_id, reboot_required=False, commands=run.commands)


STEP = LabStep("adapter_settings", _run)
