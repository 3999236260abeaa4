"""IIS 7+: reads `appcmd list site /site.name:<Site> /config /xml` (an unknown site fails here),
then `%windir%\\system32\\inetsrv\\appcmd.exe set site /site.name:<Site>
/+bindings.[protocol='<P>',bindingInformation='<Ip>:<Port>:<Host>']` (`/-bindings...` for Absent)
when needed; `Ip` empty or `*` is All Unassigned, IPv6 is bracketed. IIS 6: the one
`IIsWebServerSetting` whose ServerComment is `Site` (none or several throw): ServerBindings
plus/minus `<Ip>:<Port>:<Host>` (empty IP for All Unassigned), written whole with `Put()`; only
`Protocol` 'http' (https lives in SecureBindings: throws), and removing a site's last binding
throws. Then, when something changed and `Restart`, restarts that site only if it was running
(appcmd stop/start site; IIS 6 `IIsWebServer.Stop()/Start()` when ServerState is 2). Result:
`@{changed; site; binding; restarted; output}`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

from orchestrator.desired import Vip
from orchestrator.facts import Facts, FactsError, Reader, jsonable, type_name, with_path
from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    FactsPart,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)

NAME = "iis_binding"


@dataclass(frozen=True)
class Binding:
    protocol: str  # "http" | "https"
    ip: str  # "*" for All Unassigned
    port: int
    host: str

    @property
    def is_all_unassigned(self) -> bool:
        return self.ip == "*"

    def json_extra(self) -> dict[str, Any]:
        return {"is_all_unassigned": self.is_all_unassigned}


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    bindings: tuple[Binding, ...]
    state: str | None


@dataclass(frozen=True)
class Iis:
    version: str | None
    sites: tuple[Site, ...]
    sites_known: bool = True  # False when IIS is installed but its site list could not be read

    @property
    def installed(self) -> bool:
        return self.version is not None


    def site(self, name: str) -> Site | None:
        """The site of that name (IIS compares names case-insensitively)."""
        return next((s for s in self.sites if s.name.casefold() == name.casefold()), None)

    def served_ports(self, names: tuple[str, ...]) -> set[int]:
        """The ports some of the sites `names` has a binding on."""
        return {b.port for name in names if (site := self.site(name)) for b in site.bindings}

    def json_fields(self) -> dict[str, Any]:
        return {"iis": {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}}


def iis(facts: Facts) -> Iis:
    return facts.part(NAME, Iis)


# -- parsers of appcmd and metabase output ----------------------------------------------------------


_APPCMD_SITE = re.compile(r'^SITE "(?P<name>.*)" \((?P<attrs>.*)\)\s*$')
_APPCMD_ATTRS = re.compile(r"^id:(?P<id>[^,]*),bindings:(?P<bindings>.*?)(?:,state:(?P<state>[^,]*))?$")


def parse_binding_information(protocol: str, info: str) -> Binding:
    """An IIS bindingInformation `IP:port:host` (IIS 7+) or ServerBindings entry (IIS 6).

    IP "*" or empty means All Unassigned; IPv6 addresses are bracketed: `[fe80::1]:80:`.
    """
    text = info.strip()
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or text[close + 1 : close + 2] != ":":
            raise FactsError(f"malformed binding {info!r}")
        ip, rest = text[1:close], text[close + 2 :]
        port_text, sep, host = rest.partition(":")
    else:
        parts = text.split(":", 2)
        if len(parts) != 3:
            raise FactsError(f"malformed binding {info!r}: expected IP:port:host")
        ip, port_text, host = parts
        sep = ":"
    if not sep or not re.fullmatch(r"[0-9]{1,5}", port_text) or not 0 < int(port_text) < 65536:
        raise FactsError(f"malformed binding {info!r}: bad port")
    ip = ip.strip() or "*"
    if ip != "*":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise FactsError(f"malformed binding {info!r}: bad IP address {ip!r}") from None
    return Binding(protocol=protocol.lower(), ip=ip, port=int(port_text), host=host.strip())


def parse_appcmd_sites(text: str) -> tuple[Site, ...]:
    """`appcmd list site` lines; only http/https bindings are kept (net.tcp, net.pipe... are not
    web listeners the load balancer sends to). The keyword SITE and the attribute names are
    configuration names, printed the same in every language. Blank lines are ignored; any other
    line (an appcmd ERROR message) raises."""
    sites: list[Site] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        match = _APPCMD_SITE.match(line.strip())
        attrs = _APPCMD_ATTRS.match(match.group("attrs")) if match else None
        if match is None or attrs is None:
            raise FactsError(f"unexpected appcmd line {line.strip()!r}")
        bindings: list[Binding] = []
        for item in filter(None, attrs.group("bindings").split(",")):
            protocol, sep, info = item.partition("/")
            if not sep:
                raise FactsError(f"malformed binding {item!r} in appcmd line {line.strip()!r}")
            if protocol.lower() in ("http", "https"):
                bindings.append(parse_binding_information(protocol, info))
        sites.append(
            Site(
                id=attrs.group("id"),
                name=match.group("name"),
                bindings=tuple(bindings),
                state=attrs.group("state"),
            )
        )
    return tuple(sites)


def parse_metabase_sites(raw: Any, path: str = "metabase_sites") -> tuple[Site, ...]:
    """IIS 6 sites from `IIsWebServerSetting` as the facts script lists them:
    `[{"id": "W3SVC/1", "name": "Default Web Site", "bindings": [":80:", "10.0.0.11:80:www"]}]`.
    ServerBindings has no protocol; they are http (https lives in SecureBindings)."""
    if not isinstance(raw, list | tuple):
        raise FactsError(f"{path}: expected a list, got {type_name(raw)}")
    return tuple(_metabase_site(Reader(item, f"{path}[{i}]")) for i, item in enumerate(raw))


def _metabase_site(r: Reader) -> Site:
    bindings = tuple(
        with_path(f"{r.path}.bindings[{i}]", partial(parse_binding_information, "http", b))
        for i, b in enumerate(r.str_list("bindings"))
    )
    return Site(id=r.str_("id"), name=r.str_("name"), bindings=bindings, state=None)


def _parse_part(r: Reader) -> Iis:
    return _parse_iis(r.child("iis"))


def _parse_iis(r: Reader) -> Iis:
    version = r.opt_str("version")
    appcmd_text = r.opt_str("appcmd_sites_text")
    metabase = r.opt_list("metabase_sites")
    if appcmd_text is not None:
        path = r.child_path("appcmd_sites_text")
        return Iis(version=version, sites=with_path(path, partial(parse_appcmd_sites, appcmd_text)))
    if metabase is not None:
        return Iis(version=version, sites=parse_metabase_sites(metabase, r.child_path("metabase_sites")))
    return Iis(version=version, sites=(), sites_known=version is None)


# -- plan and undo ----------------------------------------------------------------------------------


def plan(ctx: PlanContext) -> StepPlan:
    desired, facts = ctx.desired, ctx.facts
    if ctx.nic is None or not desired.iis_sites:
        return NOTHING
    info = iis(facts)
    if not info.installed:
        return StepPlan(refusals=("IIS is not installed but dsr_iis_sites names sites "
                                  "(set dsr_iis_sites: [] to skip IIS)",))
    if not info.sites_known:
        return StepPlan(refusals=(f"IIS {info.version} is installed but its site list could not be read",))
    actions: list[Action] = []
    refusals: list[str] = []
    warnings: list[str] = []
    for name in desired.iis_sites:
        site = info.site(name)
        if site is None:
            known = ", ".join(s.name for s in info.sites) or "none"
            refusals.append(f"IIS site '{name}' not found (sites: {known})")
            continue
        pending = _missing_bindings(site, desired.vips)
        warnings += [f"site '{site.name}': https on {vip.address}:{port} needs a certificate bound to that "
                     "address (netsh http add sslcert)"
                     for vip, port, protocol, _host in pending if protocol == "https"]
        for i, (vip, port, protocol, host_header) in enumerate(pending):
            actions.append(action(
                NAME, f"site '{site.name}' not bound to {vip.address}:{port}"
                + (f" for host '{host_header}'" if host_header else ""), Ensure="Present",
                Site=site.name, Protocol=protocol, Ip=vip.address, Port=port, HostHeader=host_header,
                Restart=desired.restart_site and i == len(pending) - 1))
    warnings += _unserved_warnings(info, desired.iis_sites, desired.vips)
    return StepPlan(actions=tuple(actions), refusals=tuple(refusals), warnings=tuple(warnings))


def _missing_bindings(site: Site, vips: tuple[Vip, ...]) -> list[tuple[Vip, int, str, str]]:
    """(VIP, port, protocol, host header) the site lacks: the VIP answers with the same host headers
    as the real IP does, on the ports the site serves (unless it serves them on all addresses)."""
    pending: list[tuple[Vip, int, str, str]] = []
    for vip in vips:
        if vip.protocol != "tcp":
            continue  # IIS serves TCP only
        for port in vip.ports:
            served = [x for x in site.bindings if x.port == port]
            if not served or any(x.is_all_unassigned for x in served):
                continue
            for binding in served:
                if any(_same_ip(x.ip, vip.address) and x.host == binding.host for x in served):
                    continue
                if (vip, port, binding.protocol, binding.host) not in pending:
                    pending.append((vip, port, binding.protocol, binding.host))
    return pending


def _unserved_warnings(info: Iis, names: tuple[str, ...], vips: tuple[Vip, ...]) -> list[str]:
    served_ports = info.served_ports(names)
    warnings = []
    for vip in vips:
        unserved = [p for p in vip.ports if vip.protocol == "tcp" and p not in served_ports]
        if unserved:
            warnings.append(f"VIP {vip.address} port(s) {', '.join(map(str, unserved))}: no site of "
                            "dsr_iis_sites serves them, so nothing is bound or checked there")
    return warnings


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b)
    except ValueError:
        return False


def undo(ctx: UndoContext) -> list[Action]:
    """The VIPs' bindings that the desired sites did not have before."""
    before, now = iis(ctx.before), iis(ctx.now)
    if not before.sites_known:
        return []
    actions = []
    for name in ctx.desired.iis_sites:
        site_now, site_before = now.site(name), before.site(name)
        if site_now is None or site_before is None:
            continue
        new = [x for x in site_now.bindings if x not in site_before.bindings and ctx.holds_vip(x.ip)]
        for i, x in enumerate(new):
            actions.append(action(NAME, f"site '{site_now.name}': remove binding {x.ip}:{x.port}", Ensure="Absent",
                                  Site=site_now.name, Protocol=x.protocol, Ip=x.ip, Port=x.port, HostHeader=x.host,
                                  Restart=ctx.desired.restart_site and i == len(new) - 1))
    return actions


STEP = Step(
    name=NAME,
    order=90,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_iis_sites", "dsr_restart_site"),
    plan=plan,
    undo=undo,
    parse_output=partial(changed_only, NAME),
    facts=FactsPart(keys=("iis",), parse=_parse_part),
    docs=Docs(
        commands={"win2003": "IIS 6 `ServerBindings` through WMI `root\\MicrosoftIISv2`; nothing when the site "
                             "binds all unassigned addresses on that port; the site (not IIS) restarted",
                  "default": "`appcmd set site /+bindings.[...]`, same rules"},
        checked_by="metabase / `appcmd list site`",
        undone_by="binding removed",
    ),
)
