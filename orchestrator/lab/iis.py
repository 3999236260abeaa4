"""IIS on a lab host: its sites and bindings, and http.sys's IP listen list, read with the tools
`oscaps.caps(family)` says the family has: appcmd (IIS 7+) or the IIS 6 metabase through WMI
(`iis`), `netsh http` or 2003 Support Tools' httpcfg.exe (`listen_tool`).

Text layouts: `appcmd list site`, `netsh http show iplisten`, `httpcfg query iplisten` (the Platform
SDK's httpcfg sample), CRLF line ends as Out-String joins them; tests/data/appcmd and tests/data/http
hold the samples they are checked against (sources in tests/data/SOURCES.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable
from orchestrator.lab.shell import text

_HTTPCFG_SEPARATOR = "-" * 78
_IPLISTEN_HEADER = "IP addresses present in the IP listen list:"
# ERROR_NOT_FOUND: what httpcfg prints when the listen list has no entry.
_HTTPCFG_EMPTY = "HttpQueryServiceConfiguration completed with 1168."


@dataclass
class Site:
    """An IIS site. Bindings are (protocol, "ip:port:host") with "*" for All Unassigned, whatever
    the IIS version; IIS 6 shows "*" as an empty IP."""

    id: int
    name: str
    bindings: list[tuple[str, str]]
    state: str = "Started"


def iis_api(caps: oscaps.OsCaps, iis_version: str | None) -> oscaps.IisApi | None:
    """How the host's IIS is managed; None when IIS is not installed."""
    return None if iis_version is None else caps.iis


def metabase_binding(binding: str) -> str:
    """An IIS 6 ServerBindings entry ("ip:port:host", "" for All Unassigned)."""
    ip, _, rest = binding.partition(":")
    return f"{'' if ip == '*' else ip}:{rest}"


def binding_ip_port(info: str) -> tuple[str, int]:
    """("*" or the IP, port) of an IIS binding "ip:port:host" ("[v6]:port:host")."""
    if info.startswith("["):
        ip, _, rest = info[1:].partition("]:")
    else:
        ip, _, rest = info.partition(":")
    port = rest.split(":", 1)[0]
    return (ip or "*", int(port) if port.isdigit() else 0)


def iis_facts(caps: oscaps.OsCaps, iis_version: str | None, sites: list[Site]) -> Hashtable:
    """The facts' `iis`: appcmd's text on IIS 7+, the metabase's sites on IIS 6."""
    api = iis_api(caps, iis_version)
    if api is None:
        return Hashtable(version=None, appcmd_sites_text=None, metabase_sites=None)
    if api is oscaps.IisApi.METABASE:
        return Hashtable(
            version=iis_version,
            appcmd_sites_text=None,
            metabase_sites=[
                Hashtable(
                    id=f"W3SVC/{site.id}",
                    name=site.name,
                    bindings=[metabase_binding(b) for p, b in site.bindings if p == "http"],
                )
                for site in sorted(sites, key=lambda s: s.id)
            ],
        )
    return Hashtable(version=iis_version, appcmd_sites_text=render_appcmd_sites(sites), metabase_sites=None)


def http_listen_text(caps: oscaps.OsCaps, http_listen: list[str], httpcfg_installed: bool) -> str | None:
    """The facts' `http_listen_text`: what the family's listen tool prints; None where that is
    httpcfg.exe and the Support Tools are not installed."""
    if caps.listen_tool is oscaps.ListenTool.NETSH_HTTP:
        return render_netsh_http_iplisten(http_listen)
    if not httpcfg_installed:
        return None
    return render_httpcfg_iplisten(http_listen)


def serves(sites: list[Site], http_listen: list[str], address: str, port: int) -> bool:
    """IIS answers on a local address:port: a started site binds it (or All Unassigned) and
    http.sys listens on the address (an empty listen list means every address)."""
    key = normalize_ip(address)
    if http_listen and all(normalize_ip(a) != key for a in http_listen):
        return False
    for site in sites:
        if site.state != "Started":
            continue
        for _, info in site.bindings:
            bound_ip, bound_port = binding_ip_port(info)
            if bound_port == port and (bound_ip == "*" or normalize_ip(bound_ip) == key):
                return True
    return False


def render_appcmd_sites(sites: list[Site]) -> str:
    """`appcmd list site`: one `SITE "<name>" (id:<n>,bindings:<proto>/<info>,...,state:<s>)` line
    per site in id order; nothing at all when there is no site."""
    lines = []
    for site in sorted(sites, key=lambda s: s.id):
        bindings = ",".join(f"{proto}/{info}" for proto, info in site.bindings)
        lines.append(f'SITE "{site.name}" (id:{site.id},bindings:{bindings},state:{site.state})')
    return text(lines) if lines else ""


def render_netsh_http_iplisten(addresses: list[str]) -> str:
    """`netsh http show iplisten` (2008+): heading, dashes, then the entries indented by four."""
    lines = ["", _IPLISTEN_HEADER, "-" * len(_IPLISTEN_HEADER), ""]
    if addresses:
        lines += [f"    {a}" for a in addresses]
        lines.append("")
    lines.append("")
    return text(lines)


def render_httpcfg_iplisten(addresses: list[str]) -> str:
    """`httpcfg query iplisten` (2003 Support Tools): a record per entry, as the Platform SDK's
    httpcfg sample prints it, followed by httpcfg's 78-dash record separator; an empty list makes
    the query fail with ERROR_NOT_FOUND (1168)."""
    if not addresses:
        return text([_HTTPCFG_EMPTY])
    lines: list[str] = []
    for a in addresses:
        lines += [f"IP         :{a}", _HTTPCFG_SEPARATOR]
    return text(lines)
