"""The one table of Windows Server families and what each has.

Every other part of dsrprep asks this table: facts detect a host's family from its version with
`family_of`, templates order their `# dsrprep-os: 2012r2+` ranges by `families()`, the steps decide
with capabilities (`caps.advfirewall`, `caps.skip_as_source`...) rather than by family name, and
the lab builds its simulated hosts from the same rows. Adding a family is adding a row here.

Sources: Microsoft's "Operating System Version" table (NT versions and release builds), the WMF
release notes (PowerShell/WinRM versions per OS), KB975808 (SkipAsSource on 2008 SP2), and
research/dsr-windows.md for the per-OS commands.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum

from orchestrator.errors import DsrError


class SkipAsSource(StrEnum):
    NATIVE = "native"  # netsh ... skipassource= from RTM (2008 R2 and later)
    HOTFIX = "hotfix"  # only with the hotfix named in `skip_as_source_hotfix` (2008 SP2 + KB975808)
    NONE = "none"  # no such flag (2003)


class IisApi(StrEnum):
    APPCMD = "appcmd"  # IIS 7+: %windir%\system32\inetsrv\appcmd.exe
    METABASE = "metabase"  # IIS 6: WMI root\MicrosoftIISv2


class ListenTool(StrEnum):
    NETSH_HTTP = "netsh-http"  # netsh http show|add|delete iplisten
    HTTPCFG = "httpcfg"  # httpcfg.exe from the 2003 Support Tools


class UnknownFamily(DsrError):
    """A Windows version or family name that no row of the table covers."""

    error_class = "UnknownFamily"


@dataclass(frozen=True)
class OsCaps:
    """What one Windows Server family has, as far as dsrprep's steps care."""

    family: str  # short id used in templates' file names and headers: "2008r2"
    name: str  # "Windows Server 2008 R2"
    nt_version: tuple[int, int]  # Win32_OperatingSystem.Version major.minor
    first_build: int  # the release build; on 10.0 only the build tells releases apart
    powershell: str  # the PowerShell a supported host runs (WMF 2.0 on the oldest)
    winrm: str
    psrp_protocol: str  # the PSRP protocol version its WinRM answers
    netsh_ipv4: bool  # `netsh interface ipv4|ipv6` contexts (2003 has only `netsh interface ip`)
    advfirewall: bool  # Windows Firewall with Advanced Security (else `netsh firewall`)
    weak_host: bool  # per-interface weak host settings exist (else weak host by design)
    skip_as_source: SkipAsSource
    skip_as_source_hotfix: str | None
    iis: IisApi
    iis_version: str
    listen_tool: ListenTool
    host_mask_sure: bool  # a /32 on the loopback is always accepted (2003 WMI may refuse it)
    single_firewall_profile: bool  # one active profile for the whole machine (2008 RTM/SP2)
    ipv6_vips: bool  # VIPs may be IPv6 (2003's IPv6 stack is separate and not supported)
    interface_index: bool  # Win32_NetworkAdapter.InterfaceIndex exists (2003: no)


def _nt5(family: str, name: str, build: int) -> OsCaps:
    return OsCaps(
        family=family, name=name, nt_version=(5, 2), first_build=build, powershell="2.0", winrm="2.0",
        psrp_protocol="2.1", netsh_ipv4=False, advfirewall=False, weak_host=False,
        skip_as_source=SkipAsSource.NONE, skip_as_source_hotfix=None, iis=IisApi.METABASE, iis_version="6.0",
        listen_tool=ListenTool.HTTPCFG, host_mask_sure=False, single_firewall_profile=False, ipv6_vips=False,
        interface_index=False,
    )


def _nt6(family: str, name: str, nt: tuple[int, int], build: int, *, powershell: str, iis: str,
         skip: SkipAsSource = SkipAsSource.NATIVE, single_profile: bool = False) -> OsCaps:
    legacy_ps = powershell.startswith("2.")
    return OsCaps(
        family=family, name=name, nt_version=nt, first_build=build, powershell=powershell,
        winrm="2.0" if legacy_ps else powershell.split(".")[0] + ".0",
        psrp_protocol="2.1" if legacy_ps else "2.3", netsh_ipv4=True, advfirewall=True, weak_host=True,
        skip_as_source=skip, skip_as_source_hotfix="KB975808" if skip is SkipAsSource.HOTFIX else None,
        iis=IisApi.APPCMD, iis_version=iis, listen_tool=ListenTool.NETSH_HTTP, host_mask_sure=True,
        single_firewall_profile=single_profile, ipv6_vips=True, interface_index=True,
    )


# Oldest first: "2012r2+" in a template header means this row and every row after it.
_BUILTIN: tuple[OsCaps, ...] = (
    _nt5("2003", "Windows Server 2003", 3790),
    _nt6("2008", "Windows Server 2008", (6, 0), 6001, powershell="2.0", iis="7.0", skip=SkipAsSource.HOTFIX,
         single_profile=True),
    _nt6("2008r2", "Windows Server 2008 R2", (6, 1), 7600, powershell="2.0", iis="7.5"),
    _nt6("2012", "Windows Server 2012", (6, 2), 9200, powershell="3.0", iis="8.0"),
    _nt6("2012r2", "Windows Server 2012 R2", (6, 3), 9600, powershell="4.0", iis="8.5"),
    _nt6("2016", "Windows Server 2016", (10, 0), 14393, powershell="5.1", iis="10.0"),
    _nt6("2019", "Windows Server 2019", (10, 0), 17763, powershell="5.1", iis="10.0"),
    _nt6("2022", "Windows Server 2022", (10, 0), 20348, powershell="5.1", iis="10.0"),
    _nt6("2025", "Windows Server 2025", (10, 0), 26100, powershell="5.1", iis="10.0"),
)

_table: list[OsCaps] = list(_BUILTIN)


def table() -> tuple[OsCaps, ...]:
    """Every known family, oldest first."""
    return tuple(_table)


def families() -> tuple[str, ...]:
    """The family ids, oldest first."""
    return tuple(c.family for c in _table)


def caps(family: str) -> OsCaps:
    """The row of `family` (`2008R2`, `win2008r2` and `2008r2` alike); UnknownFamily otherwise."""
    wanted = normalize(family)
    for row in _table:
        if row.family == wanted:
            return row
    raise UnknownFamily(f"unknown OS family {family!r}; known families: {', '.join(families())}")


def normalize(family: str) -> str:
    return family.strip().lower().removeprefix("win")


def is_family(family: str) -> bool:
    return normalize(family) in families()


def order(family: str) -> int:
    """Position of `family` in the table: older families sort first."""
    return families().index(caps(family).family)


def family_of(version: str) -> str:
    """The family of `Win32_OperatingSystem.Version` ("6.1.7601").

    On a major.minor that several families share (10.0), the build picks the newest release whose
    first build is not above it (a later servicing build belongs to the same release). A build older
    than every release of its major.minor, or a version no row has, raises UnknownFamily.
    """
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?", version.strip())
    if match is None:
        raise UnknownFamily(f"unrecognised Windows version {version!r}")
    nt = (int(match.group(1)), int(match.group(2)))
    build = int(match.group(3)) if match.group(3) is not None else None
    rows = [row for row in _table if row.nt_version == nt]
    if not rows:
        raise UnknownFamily(f"unsupported Windows version {version!r}")
    if len(rows) == 1:
        return rows[0].family
    if build is None:
        raise UnknownFamily(f"Windows version {version!r} has no build number")
    fitting = [row for row in rows if row.first_build <= build]
    if not fitting:
        oldest = min(rows, key=lambda r: r.first_build)
        raise UnknownFamily(f"Windows {nt[0]}.{nt[1]} build {build} is older than {oldest.name} "
                            f"({oldest.first_build})")
    return max(fitting, key=lambda r: r.first_build).family


@contextmanager
def extended(row: OsCaps) -> Iterator[OsCaps]:
    """The table with one more family for the duration of the block (placed by its NT version and
    build), for tests that show a new family needs no edit elsewhere. It changes the one table the
    whole process reads: not for use while hosts are being worked on in other threads."""
    if is_family(row.family):
        raise UnknownFamily(f"family {row.family!r} is already in the table")
    key = (row.nt_version, row.first_build)
    position = next((i for i, r in enumerate(_table) if (r.nt_version, r.first_build) > key), len(_table))
    _table.insert(position, row)
    try:
        yield row
    finally:
        _table.remove(row)
