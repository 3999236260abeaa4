"""Checks on the host, changing nothing (`TimeoutMs` 0 or less: 3000). Result: `@{changed=$false;
tcp=@(@{address; port; ok}...) for every (Rip and each VIP) x Ports (TcpClient BeginConnect +
WaitOne(TimeoutMs)); ping=@(@{address; ok}) for each VIP (System.Net.NetworkInformation.Ping);
routes=@(@{destination; mask; next_hop; interface_index; metric}) from Win32_IP4RouteTable where
Destination is a VIP}` (`metric` is Metric1). Run by the runner after every change, with fresh facts
(the plan must then be empty) and the Tcpip 4198/4199 events of the System log, which this step's
facts fragment reads (newest first, the last seven days).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator.desired import Desired
from orchestrator.facts import HOST_MASK, Facts, Reader, jsonable
from orchestrator.steps import iis_binding
from orchestrator.steps.base import Docs, FactsPart, Step, StepOutput, parse_output

NAME = "verify"
DEFAULT_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class Event:
    event_id: int
    source: str
    time: str
    message: str


@dataclass(frozen=True)
class EventLog:
    """The address-conflict events (Tcpip 4198/4199) the facts fragment found."""

    events: tuple[Event, ...]

    def json_fields(self) -> dict[str, Any]:
        return {"events": jsonable(self.events)}


def events(facts: Facts) -> tuple[Event, ...]:
    return facts.part(NAME, EventLog).events


def _parse_event(r: Reader) -> Event:
    return Event(event_id=r.int_("event_id"), source=r.str_("source"), time=r.str_("time"), message=r.str_("message"))


def _parse_part(r: Reader) -> EventLog:
    return EventLog(tuple(_parse_event(item) for item in r.items("events")))


def new_conflict_events(before: Iterable[Event], after: Iterable[Event]) -> list[Event]:
    """Tcpip 4198/4199 events present after the change and not before."""
    seen = {(e.event_id, e.time, e.message) for e in before}
    return [e for e in after if (e.event_id, e.time, e.message) not in seen]


# -- the template's result --------------------------------------------------------------------------


@dataclass(frozen=True)
class TcpCheck:
    address: str
    port: int
    ok: bool


@dataclass(frozen=True)
class PingCheck:
    address: str
    ok: bool


@dataclass(frozen=True)
class Route:
    destination: str
    mask: str
    next_hop: str
    interface_index: int
    metric: int


@dataclass(frozen=True)
class VerifyOutput(StepOutput):
    tcp: tuple[TcpCheck, ...]
    ping: tuple[PingCheck, ...]
    routes: tuple[Route, ...]


def _rows(r: Reader, key: str) -> Iterator[Reader]:
    # PowerShell may hand a one-element array over as the element itself.
    value = r.value.get(key) if isinstance(r.value, dict) else None
    if isinstance(value, dict):
        yield Reader(value, r.child_path(key))
        return
    yield from r.items(key)


def _read(r: Reader) -> VerifyOutput:
    return VerifyOutput(
        changed=r.bool_("changed"),
        tcp=tuple(TcpCheck(t.str_("address"), t.int_("port"), t.bool_("ok")) for t in _rows(r, "tcp")),
        ping=tuple(PingCheck(p.str_("address"), p.bool_("ok")) for p in _rows(r, "ping")),
        routes=tuple(Route(x.str_("destination"), x.str_("mask"), x.str_("next_hop"), x.int_("interface_index"),
                           x.int_("metric")) for x in _rows(r, "routes")),
    )


def parse(raw: Any) -> VerifyOutput:
    return parse_output(NAME, raw, _read)


# -- what is sent and how the answer is judged ------------------------------------------------------


def ports(facts: Facts, desired: Desired) -> list[int]:
    """The VIP ports some desired IIS site actually serves: those a TCP check can expect to answer."""
    wanted = {port for vip in desired.vips for port in vip.ports}
    return sorted(wanted & iis_binding.iis(facts).served_ports(desired.iis_sites))


def params(facts: Facts, desired: Desired, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> dict[str, Any]:
    nic = facts.nic(desired.nic.by, desired.nic.value)
    rip = nic.ipv4() if nic else None
    checked = ports(facts, desired) if desired.verify_tcp else []
    return {"Vips": [v.address for v in desired.vips], "Ports": checked, "Rip": rip.address if rip else "",
            "TimeoutMs": timeout_ms}


def judge(result: VerifyOutput, facts: Facts, desired: Desired) -> list[str]:
    """Problems the verify step's result shows; empty when the host is ready for DSR."""
    problems = [f"TCP connect to {c.address}:{c.port} failed" for c in result.tcp if not c.ok]
    problems += [f"ping {c.address} failed" for c in result.ping if not c.ok]
    vips = [v.address for v in desired.vips]
    loopback = facts.dsr_loopback(vips)
    nic = facts.nic(desired.nic.by, desired.nic.value)
    accepted = {HOST_MASK, facts.degraded_mask(nic, vips)}
    for vip in desired.vips:
        if vip.version != 4:
            continue
        host_routes = [r for r in result.routes if r.destination == vip.address]
        if not host_routes:
            problems.append(f"no route for VIP {vip.address}")
            continue
        masks = {r.mask for r in host_routes}
        if not masks & accepted:
            problems.append(f"route for VIP {vip.address} is not a /32 host route (masks: {', '.join(sorted(masks))})")
        if loopback is not None and loopback.interface_index is not None and not any(
                r.interface_index == loopback.interface_index for r in host_routes):
            problems.append(f"route for VIP {vip.address} is not on the loopback adapter")
    return problems


STEP = Step(
    name=NAME,
    order=120,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_nic", "dsr_iis_sites", "dsr_verify_tcp"),
    parse_output=parse,
    facts=FactsPart(keys=("events",), parse=_parse_part),
    docs=Docs(
        commands={"default": "facts again in a PSRP session opened after the last change: a new one, or the one "
                             "the re-plan after the HTTP service restart opened (the plan must be empty); on the "
                             "host: TCP to "
                             "RIP:port and VIP:port, ping VIP, on-link /32 route on the loopback, no new Tcpip "
                             "4198/4199 events; optionally `arp -a` on a peer (`dsr_verify_peer`) must not show "
                             "this server's MAC for the VIP"},
        checked_by="",
        undone_by="",
    ),
)

