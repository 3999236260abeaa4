"""WMI on the adapter's configuration: `SetIPConnectionMetric(Metric)` when the metric differs or is
automatic (no fixed `InterfaceMetric` under `Tcpip\\Parameters\\Interfaces\\<SettingID>`; `Metric` 0
leaves the metric alone), `SetDynamicDNSRegistration(DnsRegistration, $false)` when either flag
differs, `SetTcpipNetbios(NetBios)` (0 default, 1 on, 2 off) when different. A WMI return value other
than 0 or 1 throws with the method name and code. Result: `@{changed; pnp_device_id;
reboot_required; commands}`.
"""

from __future__ import annotations

from functools import partial

from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)
from orchestrator.steps.loopback_config import DEGRADED_METRIC

NAME = "adapter_settings"
NETBIOS_DEFAULT, NETBIOS_OFF = 0, 2


def plan(ctx: PlanContext) -> StepPlan:
    if ctx.nic is None:
        return NOTHING
    d, lb = ctx.desired, ctx.loopback
    metric, dns, netbios = (lb.metric, lb.dns_registration, lb.netbios) if lb is not None else (None, None, None)
    want_metric = DEGRADED_METRIC if ctx.degraded_mask is not None else d.metric
    want_dns = False if d.disable_dns_registration else (True if dns is None else dns)
    want_netbios = NETBIOS_OFF if d.disable_netbios else (NETBIOS_DEFAULT if netbios is None else netbios)
    drift = []
    if metric != want_metric:
        drift.append(f"metric {metric if metric is not None else 'automatic'} -> {want_metric}")
    if dns != want_dns:
        drift.append("DNS registration on -> off" if want_dns is False else "DNS registration off -> on")
    if netbios != want_netbios:
        drift.append(f"NetBIOS option {netbios if netbios is not None else 'default'} -> {want_netbios}")
    if not drift:
        return NOTHING
    return StepPlan(actions=(action(NAME, "loopback " + "; ".join(drift),
                                    PnpDeviceId=lb.pnp_device_id if lb is not None else "", Metric=want_metric,
                                    DnsRegistration=want_dns, NetBios=want_netbios),))


def undo(ctx: UndoContext) -> list[Action]:
    """An adopted loopback's metric, DNS registration and NetBIOS option as they were."""
    was, lb = ctx.loopback_before, ctx.loopback_now
    if was is None or lb is None:
        return []
    if (was.metric, was.dns_registration, was.netbios) == (lb.metric, lb.dns_registration, lb.netbios):
        return []
    return [action(NAME, "restore the loopback's metric, DNS registration and NetBIOS",
                   PnpDeviceId=lb.pnp_device_id, Metric=was.metric if was.metric is not None else 0,
                   DnsRegistration=was.dns_registration,
                   NetBios=was.netbios if was.netbios is not None else NETBIOS_DEFAULT)]


STEP = Step(
    name=NAME,
    order=60,
    description=__doc__ or "",
    reads=("dsr_metric", "dsr_disable_dns_registration", "dsr_disable_netbios"),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"default": "metric 254, DNS registration off, NetBIOS off (WMI)"},
        checked_by="WMI",
        undone_by="recorded values restored",
    ),
)
