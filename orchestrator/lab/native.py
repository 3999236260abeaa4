"""The native commands the templates run, as a lab host answers them: netsh (with the contexts the
family has, `oscaps.caps(family)`: `interface ipv4|ipv6` with `netsh_ipv4`, `advfirewall` with
`advfirewall`, `http` with the netsh-http listen tool), the deprecated `netsh firewall` context,
Win32_NetworkAdapterConfiguration's methods and their return codes, and what `netsh interface
ipv4|ipv6 add|delete address` does to an adapter.

A variant meant for another family fails the way its commands fail there: a context the version
lacks ("The following command was not found: ..."), `netsh firewall` working on 2008+ with its
deprecation notice (KB947709), skipassource refused by 2008 without KB975808 ("The parameter is
incorrect."; 2008 R2 has it from RTM), refusals without elevation.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.firewall import AdvFirewall
from orchestrator.lab.net import Nic, is_autoconfigured
from orchestrator.lab.shell import StepFailed, command_line, native_failed, text

if TYPE_CHECKING:
    from orchestrator.lab.host import WindowsHost

_NETSH_ELEVATION = "The requested operation requires elevation (Run as administrator)."
# What `netsh advfirewall` prints, exit code 1, while the Windows Firewall service is stopped.
MPSSVC_STOPPED = (
    "An error occurred while attempting to contact the Windows Firewall service. Make sure that the "
    "service is running and try your request again."
)
# What a call on HNetCfg.FwPolicy2 (enumerating its Rules) throws while that service is stopped.
FWPOLICY2_STOPPED = (
    "There are no more endpoints available from the endpoint mapper. (Exception from HRESULT: 0x800706D9)"
)
# What netsh prints for a tag its helper does not know (2008 without KB975808: skipassource).
NETSH_BAD_PARAMETER = "The parameter is incorrect."
# Vista/2008+ netsh still runs the XP/2003 `firewall` context, and says so after every command.
_NETSH_FIREWALL_DEPRECATED = (
    "\r\nIMPORTANT: Command executed successfully.\r\n"
    'However, "netsh firewall" is deprecated;\r\n'
    'use "netsh advfirewall firewall" instead.\r\n'
    'For more information on using "netsh advfirewall firewall" commands\r\n'
    'instead of "netsh firewall", see KB article 947709\r\n'
    "at http://go.microsoft.com/fwlink/?linkid=121488 .\r\n\r\nOk.\r\n\r\n"
)


def netsh_not_found(command: str) -> str:
    """netsh's answer for a context or command this Windows version does not have."""
    return f"The following command was not found: {command}."


def _has_context(host: WindowsHost, args: list[str]) -> bool:
    caps = host.caps
    if args[0] == "advfirewall":
        return caps.advfirewall
    if args[0] == "http":
        return caps.listen_tool is oscaps.ListenTool.NETSH_HTTP
    if args[:2] in (["interface", "ipv4"], ["interface", "ipv6"]):
        return caps.netsh_ipv4
    return True


def netsh(host: WindowsHost, args: list[str], *, ok: tuple[int, ...] = (0,), admin: bool = True) -> tuple[int, str]:
    """Runs netsh as the templates' Invoke-NativeCommand does: (exit code, output), or the
    throw for an exit code not in `ok`. Only the refusals every command shares are decided
    here: a context this Windows version lacks, and a session without elevation."""
    code, output = 0, ""
    if not _has_context(host, args):
        code, output = 1, text([netsh_not_found(" ".join(args)), ""])
    elif admin and not host.elevated:
        code, output = 1, text([_NETSH_ELEVATION, ""])
    elif args[0] == "advfirewall" and host.firewall_service_stopped:
        code, output = 1, text([MPSSVC_STOPPED, ""])
    if code not in ok:
        raise native_failed("netsh.exe", args, code, output)
    return code, output


def netsh_firewall(host: WindowsHost, args: list[str]) -> str:
    """A `netsh firewall` command and its output: plain on 2003, deprecated where the advanced
    firewall replaced the context."""
    netsh(host, args)
    return _NETSH_FIREWALL_DEPRECATED if host.caps.advfirewall else text(["Ok.", ""])


def fw_policy2(host: WindowsHost) -> AdvFirewall:
    """`New-Object -ComObject HNetCfg.FwPolicy2` and a call on it: the advanced firewall, or the
    exception PowerShell shows where there is none (2003) or its service is stopped."""
    fw = host.firewall
    if not isinstance(fw, AdvFirewall):
        raise StepFailed("Cannot load COM type HNetCfg.FwPolicy2.")
    if host.firewall_service_stopped:
        raise StepFailed(FWPOLICY2_STOPPED)
    return fw


def wmi_call(host: WindowsHost, nic: Nic, method: str) -> None:
    """The return codes of Win32_NetworkAdapterConfiguration methods that the model produces:
    91 access denied, 84 IP not enabled on the adapter."""
    if not host.elevated:
        raise StepFailed(f"{method} returned 91")
    if not nic.ip_enabled:
        raise StepFailed(f"{method} returned 84")


class Commands:
    """Runs a template's commands through the host's refusals and keeps the list the template
    returns as `commands`."""

    def __init__(self, host: WindowsHost) -> None:
        self.host = host
        self.commands: list[str] = []

    def netsh(self, args: list[str]) -> None:
        netsh(self.host, args)
        self.commands.append(command_line("netsh.exe", args))

    def wmi(self, nic: Nic, method: str, code: int = 0, *, note: str | None = None, fail: bool = True,
            prefix: bool = True) -> None:
        """A Win32_NetworkAdapterConfiguration method returning `code`, checked as the templates'
        Assert-WmiResult does (0 and 1 are success) unless `fail` is off. SetIPConnectionMetric
        returns the host's `set_metric_returns` when that is not 0."""
        wmi_call(self.host, nic, method)
        if method == "SetIPConnectionMetric" and self.host.set_metric_returns:
            code, fail = self.host.set_metric_returns, True
        self.commands.append(("Win32_NetworkAdapterConfiguration." if prefix else "") + (note or f"{method}()"))
        if fail and code not in (0, 1):
            raise StepFailed(f"{method} returned {code}")


# --------------------------------------------------------------------------------------------------
# netsh interface ipv4|ipv6 add|delete address: the flag and the mask are set only when adding


def _address_args(nic: Nic, address: str, mask: str) -> list[str]:
    ipv6 = ":" in address
    return ["interface", "ipv6" if ipv6 else "ipv4", "add", "address", str(nic.interface_index),
            f"{address}/128" if ipv6 else address, *([] if ipv6 else [mask])]


def add_address(run: Commands, nic: Nic, address: str, mask: str, skip: bool) -> None:
    """`add address`, with skipassource=true when `skip` (refused where the flag is unknown);
    IPv6 after the other configured IPv6 addresses, before the link-local ones."""
    args = _address_args(nic, address, mask)
    if skip:
        args.append("skipassource=true")
    run.netsh(args)
    if skip and not run.host.skip_as_source_supported():
        raise native_failed("netsh.exe", args, 1, NETSH_BAD_PARAMETER)
    v4, v6 = nic.ipv4(), nic.ipv6()
    if ":" in address:
        v6.insert(sum(1 for a, _ in v6 if not is_autoconfigured(a)), (address, "128"))
    else:
        v4.append((address, mask))
    nic.addresses = v4 + v6
    if skip:
        nic.skip_as_source.add(normalize_ip(address))


def add_flagged(run: Commands, nic: Nic, address: str, mask: str, flag: bool) -> None:
    """`add address ... skipassource=true|false` (skip_as_source's template: the flag is always
    spelt out; IPv6 goes first)."""
    run.netsh([*_address_args(nic, address, mask), f"skipassource={'true' if flag else 'false'}"])
    v4, v6 = nic.ipv4(), nic.ipv6()
    if ":" in address:
        v6.insert(0, (address, "128"))
    else:
        v4.append((address, mask))
    nic.addresses = v4 + v6
    if flag:
        nic.skip_as_source.add(address)


def delete_address(run: Commands, nic: Nic, address: str) -> None:
    run.netsh(["interface", "ipv6" if ":" in address else "ipv4", "delete", "address",
               str(nic.interface_index), address])
    key = normalize_ip(address)
    nic.addresses = [(a, m) for a, m in nic.addresses if normalize_ip(a) != key]
    nic.skip_as_source.discard(key)


def reset_address(run: Commands, nic: Nic, address: str, mask: str, skip: bool, old_mask: str) -> None:
    """netsh applies a mask or the flag only when adding: delete, add; on a refused add the
    address goes back as it was and the refusal is thrown."""
    delete_address(run, nic, address)
    try:
        add_address(run, nic, address, mask, skip)
    except StepFailed:
        with contextlib.suppress(StepFailed):
            add_address(run, nic, address, old_mask, False)
        raise
