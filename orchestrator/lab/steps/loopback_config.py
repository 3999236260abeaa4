"""loopback_config: the loopback's name, its addresses (the VIPs with their masks, IPv6 VIPs as
/128, optionally SkipAsSource), no gateway, no DNS servers; or back to DHCP.

default.ps1 (every family with `netsh interface ipv4|ipv6`) runs netsh by interface index: `set
address ... static` for the first address when the adapter is on DHCP, `add|delete address` for the
rest (a mask or the flag is applied only when adding: delete, then add).

win2003.ps1 uses WMI's EnableStatic, which replaces the whole list. Where the family's WMI may
refuse a host mask (`host_mask_sure` off) and this host does, EnableStatic returns 66 for
255.255.255.255 and the template falls back to `FallbackMask` with the highest interface metric
(`degraded`), so the loopback's subnet route loses to the NIC's; the metric is set first, so that a
refused SetIPConnectionMetric (`WindowsHost.set_metric_returns` not 0: the method's documented
"any other number if there is an error") leaves no second route to the subnet on the loopback. No
IPv6 and no skipassource there.
On an adapter that already has static addresses EnableStatic returns 81, "Unable to configure DHCP
service", and the new addresses are set all the same: Microsoft's page "EnableStatic method of the
Win32_NetworkAdapterConfiguration class", Remarks ("the function returns an "81 - Unable to
configure DHCP service" if the adapter is already configured with a static address. However, the
function still succeeds in setting with the new operation."; MicrosoftDocs/win32,
desktop-src/CIMWin32Prov/enablestatic-method-in-class-win32-networkadapterconfiguration.md).
`WindowsHost.enable_static_on_static` is "81" by default; "0" for a host that answers plainly;
"81-unapplied" for a genuine 81 that set nothing, which the template's read-back must catch.

NLA (both variants): the loopback's first real address makes its network unidentified; on 2008
that can flip the whole machine to Public and cut the management connection (pypsrp issue 178),
even when the script then fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.facts import normalize_ip
from orchestrator.lab.common import ScriptResult
from orchestrator.lab.firewall import LegacyFirewall, identify_network
from orchestrator.lab.native import Commands, add_address, delete_address, netsh, reset_address
from orchestrator.lab.net import APIPA_MASK, FALLBACK_METRIC, HOST_MASK, Nic, is_autoconfigured, is_ip, is_ipv4
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, native_failed, p_bool, p_list, p_str, result
from orchestrator.lab.steps.base import LabStep

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost


@dataclass(frozen=True)
class _Request:
    name: str
    dhcp: bool
    skip: bool
    pairs: list[tuple[str, str]]  # IPv4 (address, mask), canonical
    wanted6: list[str]
    fallback: str  # win2003.ps1's FallbackMask, canonical; "" for none


def _ipv4_pairs(addresses: list[str], masks: list[str]) -> list[tuple[str, str]]:
    if len(addresses) != len(masks):
        raise StepFailed(f"Addresses has {len(addresses)} entries but Masks has {len(masks)}")
    pairs = []
    for address, mask in zip(addresses, masks, strict=True):
        if not is_ipv4(address):
            raise StepFailed(f"'{address}' is not an IPv4 address")
        if not is_ipv4(mask):
            raise StepFailed(f"'{mask}' is not an IPv4 mask")
        pairs.append((normalize_ip(address), normalize_ip(mask)))
    return pairs


def _request(params: dict[str, Any], variant: str) -> _Request:
    """The parameters, checked in the order the template checks them."""
    legacy = variant != DEFAULT_VARIANT
    skip = p_bool(params, "SkipAsSource")
    if legacy and p_list(params, "Addresses6"):
        raise StepFailed(
            "Addresses6: IPv6 VIPs are not supported on Windows Server 2003 (its IPv6 stack is separate "
            "and has no weak host setting)"
        )
    if legacy and skip:
        raise StepFailed("SkipAsSource: Windows Server 2003 has no skipassource option")
    pairs = _ipv4_pairs(p_list(params, "Addresses"), p_list(params, "Masks"))
    wanted6 = []
    for item in p_list(params, "Addresses6"):
        if not is_ip(item) or ":" not in item:
            raise StepFailed(f"'{item}' is not an IPv6 address")
        wanted6.append(normalize_ip(item))
    fallback = p_str(params, "FallbackMask")
    if legacy and fallback and not is_ipv4(fallback):
        raise StepFailed(f"FallbackMask '{fallback}' is not an IPv4 mask")
    dhcp = p_bool(params, "Dhcp")
    if not dhcp and not pairs:
        raise StepFailed(
            "Addresses is empty: EnableStatic needs at least one address (Dhcp=$true leaves the loopback "
            "on DHCP)" if legacy
            else "Addresses is empty: IPv4 cannot be made static without an address (Dhcp=$true leaves IPv4 on DHCP)"
        )
    return _Request(p_str(params, "Name"), dhcp, skip, pairs, wanted6, normalize_ip(fallback) if fallback else "")


def _run(host: WindowsHost, params: dict[str, Any], variant: str) -> ScriptResult:
    request = _request(params, variant)
    nic = host.resolve_adapter(p_str(params, "PnpDeviceId"))
    if variant == DEFAULT_VARIANT and nic.interface_index is None:
        raise StepFailed("The adapter has no InterfaceIndex (Windows Server 2003 takes win2003.ps1)")
    run = Commands(host)
    try:
        if variant == DEFAULT_VARIANT:
            changed, degraded = _configure_netsh(host, run, nic, request), False
        else:
            changed, degraded = _configure_wmi(host, run, nic, request)
    except StepFailed:
        # The script ends in an error, but what it did stays done: the profile flip with it.
        if identify_network(host.firewall, host.nics, nic, host.caps):
            return ScriptResult(cut_connection=True)
        raise
    outcome = result(
        changed,
        degraded=degraded,
        addresses=[a for a, _ in nic.addresses],
        pnp_device_id=nic.pnp_device_id,
        reboot_required=False,
        commands=run.commands,
    )
    outcome.cut_connection = identify_network(host.firewall, host.nics, nic, host.caps)
    return outcome


# --------------------------------------------------------------------------------------------------
# What both variants do


def _rename(host: WindowsHost, run: Commands, nic: Nic, name: str) -> bool:
    old = nic.connection_id or ""
    if not name or old == name:
        return False
    if not old:
        host.require_admin("Exception calling \"Put\" with \"0\" argument(s): \"Access denied \"")
        run.commands.append(f"Win32_NetworkAdapter.NetConnectionID = {name}")
    else:
        args = ["interface", "set", "interface", f"name={old}", f"newname={name}"]
        if any(n is not nic and (n.connection_id or "").casefold() == name.casefold() for n in host.nics):
            netsh(host, args)
            raise native_failed("netsh.exe", args, 1, "Cannot create a file when that file already exists.")
        run.netsh(args)
    fw = host.firewall
    if isinstance(fw, LegacyFirewall) and old in fw.interface_enabled:
        fw.interface_enabled[name] = fw.interface_enabled.pop(old)
    nic.connection_id = name
    return True


def _enable_dhcp(run: Commands, nic: Nic) -> bool:
    if nic.dhcp_enabled:
        return False
    run.wmi(nic, "EnableDHCP")
    nic.dhcp_enabled = True
    nic.drop_ipv4_flags()
    nic.addresses = ([(nic.apipa, APIPA_MASK)] if nic.apipa else []) + nic.ipv6()
    return True


def _clear_dns(run: Commands, nic: Nic) -> bool:
    if not nic.dns_servers:
        return False
    run.wmi(nic, "SetDNSServerSearchOrder")
    nic.dns_servers = []
    return True


# --------------------------------------------------------------------------------------------------
# default.ps1: netsh


def _configure_netsh(host: WindowsHost, run: Commands, nic: Nic, request: _Request) -> bool:
    """loopback_config/default.ps1, command for command."""
    changed = _rename(host, run, nic, request.name)
    if request.dhcp:
        changed = _enable_dhcp(run, nic) or changed
    else:
        changed = _static_ipv4(run, nic, request.pairs, request.skip) or changed
    changed = _ipv6(run, nic, request.wanted6, request.skip) or changed
    if not request.dhcp:
        changed = _clear_gateways(run, nic) or changed
        changed = _clear_dns(run, nic) or changed
    return changed


def _static_ipv4(run: Commands, nic: Nic, pairs: list[tuple[str, str]], skip: bool) -> bool:
    changed = False
    current4 = [(normalize_ip(a), m) for a, m in nic.ipv4()]
    flag_first = None
    if nic.dhcp_enabled:
        # `set address ... static` turns DHCP off and replaces every IPv4 address.
        first = pairs[0]
        run.netsh(["interface", "ipv4", "set", "address", str(nic.interface_index), "static", *first])
        nic.dhcp_enabled = False
        nic.drop_ipv4_flags()
        nic.addresses = [first, *nic.ipv6()]
        current4 = [first]
        flag_first = first if skip else None
        changed = True
    have = dict(current4)
    for address, mask in pairs:
        if address not in have:
            add_address(run, nic, address, mask, skip)
            changed = True
        elif have[address] != mask:
            reset_address(run, nic, address, mask, skip, have[address])
            changed = True
    wanted = {a for a, _ in pairs}
    for address, _ in current4:
        if address not in wanted:
            delete_address(run, nic, address)
            changed = True
    if flag_first is not None:
        # `set address` cannot set the flag: the first address is added again with it.
        reset_address(run, nic, flag_first[0], flag_first[1], True, flag_first[1])
    return changed


def _ipv6(run: Commands, nic: Nic, wanted6: list[str], skip: bool) -> bool:
    changed = False
    current6 = [(normalize_ip(a), m) for a, m in nic.ipv6() if not is_autoconfigured(a)]
    have6 = dict(current6)
    for address in wanted6:
        if have6.get(address) == "128":
            continue
        if address in have6:
            delete_address(run, nic, address)
        add_address(run, nic, address, "128", skip)
        changed = True
    for address, _ in current6:
        if address not in wanted6:
            delete_address(run, nic, address)
            changed = True
    return changed


def _clear_gateways(run: Commands, nic: Nic) -> bool:
    changed = False
    if any(":" not in g for g in nic.gateways):
        run.netsh(["interface", "ipv4", "delete", "address", str(nic.interface_index), "gateway=all"])
        nic.gateways = [g for g in nic.gateways if ":" in g]
        changed = True
    for gateway in [g for g in nic.gateways if ":" in g]:
        run.netsh(["interface", "ipv6", "delete", "route", "::/0", str(nic.interface_index), gateway])
        nic.gateways.remove(gateway)
        changed = True
    return changed


# --------------------------------------------------------------------------------------------------
# win2003.ps1: WMI EnableStatic


def _configure_wmi(host: WindowsHost, run: Commands, nic: Nic, request: _Request) -> tuple[bool, bool]:
    """loopback_config/win2003.ps1: (changed, degraded)."""
    changed = _rename(host, run, nic, request.name)
    if request.dhcp:
        return _enable_dhcp(run, nic) or changed, False
    pairs, fallback = request.pairs, request.fallback
    current = [(normalize_ip(a), m) for a, m in nic.ipv4()]
    static = not nic.dhcp_enabled
    # Left degraded by an earlier run: the fallback mask and metric already stand.
    in_place = (
        static and [a for a, _ in current] == [a for a, _ in pairs] and bool(fallback)
        and HOST_MASK in [m for _, m in pairs]
        and [m for _, m in current] == [fallback] * len(pairs) and nic.metric == FALLBACK_METRIC
    )
    degraded = in_place
    if not in_place and not (static and current == pairs):
        degraded = _enable_static(host, run, nic, pairs, fallback)
        changed = True
    if nic.gateways:
        # 2003's `interface ip` context knows interfaces by connection name only.
        run.netsh(["interface", "ip", "delete", "address", f"name={nic.connection_id}", "gateway=all"])
        nic.gateways = []
        changed = True
    changed = _clear_dns(run, nic) or changed
    return changed, degraded


def _enable_static(host: WindowsHost, run: Commands, nic: Nic, pairs: list[tuple[str, str]], fallback: str) -> bool:
    """EnableStatic replaces the whole list, turns DHCP off and drops the APIPA address; True when
    it had to fall back to `fallback` (degraded)."""
    refused = not host.caps.host_mask_sure and not host.accepts_host_mask and HOST_MASK in [m for _, m in pairs]
    if refused:
        # 66 (invalid subnet mask) changes nothing.
        run.wmi(nic, "EnableStatic", 66, note="EnableStatic(Addresses, Masks)", fail=not fallback)
        # The metric first: refused, it leaves no subnet route on the loopback behind.
        if nic.metric != FALLBACK_METRIC:
            run.wmi(nic, "SetIPConnectionMetric", note=f"SetIPConnectionMetric({FALLBACK_METRIC})")
            nic.metric = FALLBACK_METRIC
            nic.automatic_metric = False
        pairs = [(a, fallback) for a, _ in pairs]
        _static_call(host, run, nic, pairs, "EnableStatic(Addresses, FallbackMask)")
    else:
        _static_call(host, run, nic, pairs, "EnableStatic(Addresses, Masks)")
    return refused


def _static_call(host: WindowsHost, run: Commands, nic: Nic, pairs: list[tuple[str, str]], note: str) -> None:
    """One EnableStatic that Windows accepts, and the template's Assert-EnableStatic: 81 from an
    adapter that was static is success once WMI shows exactly `pairs`."""
    was_static = not nic.dhcp_enabled
    answer = host.enable_static_on_static if was_static else "0"
    if answer != "81-unapplied":
        nic.dhcp_enabled = False
        nic.drop_ipv4_flags()
        nic.addresses = list(pairs) + nic.ipv6()
    code = 0 if answer == "0" else 81
    run.wmi(nic, "EnableStatic", code, note=note, fail=False)
    if code == 81 and [(normalize_ip(a), m) for a, m in nic.ipv4()] != pairs:
        raise StepFailed(f"EnableStatic returned 81 (Unable to configure DHCP service) and the adapter holds "
                         f"{_pairs(nic.ipv4())}, not {_pairs(pairs)}")


def _pairs(pairs: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a}/{m}" for a, m in pairs) or "(none)"


STEP = LabStep("loopback_config", _run, variants=(DEFAULT_VARIANT, "win2003"))
