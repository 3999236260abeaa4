"""One simulated Windows server behind a lab server: `WindowsHost` holds its state (OS, adapters,
addresses, weak host flags, metrics, DNS/NetBIOS flags, firewall, IIS sites, http.sys listen list,
event log, dsrprep marker), answers the facts script with the raw facts object of docs/facts.md
(text fields in the layouts real Windows prints), and runs a template by step id with the handler
orchestrator.lab.steps registers for it. `Segment` is the layer-2 network a fleet's hosts share
with the load balancer.

What the host has is its family's row of orchestrator.oscaps (`caps`) and the lab's data about
the family (`spec`, orchestrator.lab.profiles); the variant a step runs as is the one the template
catalogue picks for the family (`select_template(step, family).variant`), unless the client sent
another variant's text, which then fails the way its commands fail on this Windows version.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator import oscaps
from orchestrator.facts import normalize_ip
from orchestrator.lab.common import Hashtable, LabFaults, ScriptResult
from orchestrator.lab.firewall import Firewall, firewall_facts
from orchestrator.lab.iis import Site, binding_ip_port
from orchestrator.lab.net import DEFAULT_LB_MAC, Nic, adapter_facts
from orchestrator.lab.profiles import FamilySpec, family_spec
from orchestrator.lab.shell import DEFAULT_VARIANT, StepFailed, changed, not_recognized
from orchestrator.lab.steps import STEPS
from orchestrator.lab.steps.base import LabStep
from orchestrator.lab.system import MARKER_KEY
from orchestrator.steps import ordered as ordered_steps
from orchestrator.templates import select_template
from orchestrator.templates import steps as template_steps

DEFAULT_USERNAME = "labadmin"
DEFAULT_PASSWORD = "Lab-Passw0rd!"


@dataclass(eq=False)
class Segment:
    """The layer-2 segment a fleet's hosts share with the load balancer, which answers ARP for
    every VIP with `lb_mac`. Steps that look at other hosts (`arp_check`) read them through it."""

    lb_mac: str = DEFAULT_LB_MAC
    hosts: list[WindowsHost] = field(default_factory=list, repr=False)

    def join(self, host: WindowsHost) -> None:
        if all(h is not host for h in self.hosts):
            self.hosts.append(host)
        host.segment = self


@functools.cache
def _network_steps() -> frozenset[str]:
    """The steps that change the network under the management connection, as dsrprep declares them
    (`Step.cuts_connection`): where a random `cut` can strike."""
    return frozenset(step.name for step in ordered_steps() if step.cuts_connection)


@dataclass(kw_only=True)
class WindowsHost:
    """One simulated Windows server.

    `lock` guards every field: the protocol server calls `run` from several threads. Step handlers
    run with it held, so they read state through `facts_locked()` and the fields, never `facts()`.
    """

    name: str
    os_family: str
    version: str
    caption: str
    service_pack: int
    architecture: str
    hotfixes: set[str]
    powershell_version: str
    nics: list[Nic]
    firewall: Firewall
    iis_version: str | None
    sites: list[Site]
    elevated: bool = True
    process_64bit: bool = True
    http_listen: list[str] = field(default_factory=list)
    httpcfg_installed: bool = True
    events: list[dict[str, Any]] = field(default_factory=list)
    marker: dict[str, str] = field(default_factory=dict)
    # Other registry values a step reads or writes, by full path ("HKLM\\SYSTEM\\...\\Name"); a
    # value that is absent here is absent on the host (Windows then uses its built-in default).
    registry: dict[str, int | str] = field(default_factory=dict)
    faults: LabFaults = field(default_factory=LabFaults)
    # Win32_ComputerSystemProduct.UUID (the SMBIOS UUID, upper case) and Win32_OperatingSystem.
    # SerialNumber (the installation's product id); None: WMI gives none.
    machine_uuid: str | None = None
    os_serial: str | None = None
    username: str = DEFAULT_USERNAME
    password: str = DEFAULT_PASSWORD
    # Where the family's WMI may refuse a /32 (`host_mask_sure` off: 2003): whether this host's
    # EnableStatic takes 255.255.255.255 (research: unresolved, so the fleet has both).
    accepts_host_mask: bool = True
    # What WMI EnableStatic answers for an adapter that already has static addresses: "81" as
    # Microsoft documents it (81, the new addresses set all the same), "0" plainly, or
    # "81-unapplied": a genuine 81 that set nothing (orchestrator.lab.steps.loopback_config).
    enable_static_on_static: str = "81"
    # What WMI SetIPConnectionMetric returns on this host: 0 done, anything else a refusal
    # (orchestrator.lab.native.Commands.wmi).
    set_metric_returns: int = 0
    # The Windows Firewall service (MpsSvc) is stopped (2008+): `netsh advfirewall` commands exit 1
    # with the service error and HNetCfg.FwPolicy2 throws (orchestrator.lab.native).
    firewall_service_stopped: bool = False
    # Where devcon.exe is on this host (None: nowhere), for the loopback template's DevconPath.
    devcon_path: str | None = None
    # How many runs of the loopback template wait in vain (their 30 seconds run out) for a loopback
    # device created here to show up in Win32_NetworkAdapter; until it does, the device is only a
    # PnP device (`pnp_only`: Win32_PnPEntity lists it). orchestrator.lab.steps.loopback.
    loopback_wmi_late: int = 0
    pnp_only: list[Nic] = field(default_factory=list)
    # The next this many HTTP service restarts that http_listen schedules fail: `net stop http`
    # times out (HTTP stuck in STOP_PENDING), so http.sys does not read its list again
    # (orchestrator.lab.steps.http_listen).
    http_restart_fails: int = 0
    # The next successful run of this step that changes something drops the management
    # connection (the change stays made); the knob then clears itself.
    cut_on_step: str | None = None
    # Step id -> what the host does with that template; tests may hand a host steps of their own.
    steps: Mapping[str, LabStep] = field(default_factory=lambda: STEPS, repr=False, compare=False)
    segment: Segment | None = field(default=None, repr=False, compare=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def caps(self) -> oscaps.OsCaps:
        return oscaps.caps(self.os_family)

    @property
    def spec(self) -> FamilySpec:
        return family_spec(self.os_family)

    @property
    def inventory_name(self) -> str:
        """The name an inventory uses for this host ("web07")."""
        return self.name.lower()

    @property
    def rip(self) -> str:
        """The real IP: the first IPv4 address of the first non-loopback adapter."""
        for nic in self.nics:
            if not nic.is_loopback and nic.ipv4():
                return nic.ipv4()[0][0]
        raise LookupError(f"{self.name} has no IPv4 address on a physical adapter")

    # ---- facts -----------------------------------------------------------------------------------

    def facts(self) -> Hashtable:
        """The raw facts object of docs/facts.md, as the facts script returns it.

        Every map is a `Hashtable`, adapters, rules, sites and events included: the template builds
        each of them with `@{}`. Lists and strings are fresh copies, safe to hand to another thread.
        """
        with self.lock:
            return self.facts_locked()

    def facts_locked(self) -> Hashtable:
        """`facts()` for a caller that holds the lock: the common part of the facts script here,
        each step's fragment answered by that step's lab module."""
        answer = Hashtable(
            schema=1,
            computer_name=self.name,
            os=Hashtable(
                version=self.version,
                caption=self.caption,
                service_pack=self.service_pack,
                architecture=self.architecture,
                hotfixes=sorted(h.upper() for h in self.hotfixes),
            ),
            powershell_version=self.powershell_version,
            elevated=self.elevated,
            process_64bit=self.process_64bit,
            adapters=[adapter_facts(nic) for nic in self.adapters()],
            firewall=firewall_facts(self.firewall, self.adapters()),
            marker=Hashtable(self.marker),
            machine=Hashtable(uuid=self.machine_uuid, os_serial=self.os_serial),
        )
        for step in STEPS.values():
            if step.facts is not None:
                answer.update(step.facts(self))
        return answer

    def adapters(self) -> list[Nic]:
        """The adapters as WMI lists them, by Index."""
        return sorted(self.nics, key=lambda n: n.index)

    def natural_variant(self, step: str) -> str:
        """The variant the template catalogue picks for this host's family (default.ps1 for a
        step that has no template, one only a test gave the host)."""
        if step not in template_steps():
            return DEFAULT_VARIANT
        return select_template(step, self.os_family).variant

    def run(self, step: str, params: dict[str, Any], variant: str | None = None) -> ScriptResult:
        """Execute template `step`/`variant` with the parameters the client bound.

        `variant` None means the variant the catalogue would pick for this host. Any other
        variant runs its own commands here, and fails the way they fail on this Windows version.
        """
        handler = self.steps.get(step)
        if handler is None:
            return ScriptResult(failed=not_recognized(step))
        chosen = variant if variant is not None else self.natural_variant(step)
        try:
            if chosen not in handler.variants:
                raise StepFailed(f"The lab host does not model variant {chosen!r} of step {step!r}")
            if handler.segment:
                # These read other hosts of the segment and take every lock themselves, one at a
                # time, so that two hosts checking each other cannot deadlock.
                return handler.run(self, dict(params), chosen)
            with self.lock:
                return self._after_step(step, handler.run(self, dict(params), chosen))
        except StepFailed as exc:
            return ScriptResult(failed=str(exc))

    def _after_step(self, step: str, result: ScriptResult) -> ScriptResult:
        if result.failed is not None or not changed(result):
            return result
        if self.cut_on_step == step:
            self.cut_on_step = None
            result.cut_connection = True
        elif self.faults.random is not None and step in _network_steps():
            # A random `cut`: the change made, the management connection gone (pypsrp issue 178).
            result.cut_connection = self.faults.random.draw(("cut",)) == "cut"
        return result

    # ---- drift: changes made on the host behind dsrprep's back ------------------------------------

    def remove_bindings(self, address: str) -> int:
        """Every IIS site binding of `address` removed, as an admin does with IIS Manager or
        Remove-WebBinding (Microsoft Learn, WebAdministration "Remove-WebBinding"), or a deployment
        that recreates a site without it: the site keeps running, nothing else changes. How many
        bindings were removed."""
        key = normalize_ip(address)
        removed = 0
        with self.lock:
            for site in self.sites:
                kept = [b for b in site.bindings if normalize_ip(binding_ip_port(b[1])[0]) != key]
                removed += len(site.bindings) - len(kept)
                site.bindings = kept
        return removed

    # ---- what several steps read (the caller holds the lock) --------------------------------------

    def windir(self) -> str:
        return self.spec.windir

    def skip_as_source_supported(self) -> bool:
        """netsh knows skipassource: natively (2008 R2 RTM already has it, Windows 7's netsh;
        KB2386184 later fixed only the DNS registration of such addresses), or with the family's
        hotfix installed (2008: KB975808)."""
        caps = self.caps
        if caps.skip_as_source is oscaps.SkipAsSource.HOTFIX:
            hotfix = caps.skip_as_source_hotfix
            return hotfix is not None and hotfix.upper() in {h.upper() for h in self.hotfixes}
        return caps.skip_as_source is oscaps.SkipAsSource.NATIVE

    def require_admin(self, message: str) -> None:
        if not self.elevated:
            raise StepFailed(message)

    def nic_by_pnp(self, pnp_device_id: str) -> Nic | None:
        wanted = pnp_device_id.casefold()
        return next((n for n in self.nics if n.pnp_device_id.casefold() == wanted), None)

    def resolve_adapter(self, pnp_device_id: str) -> Nic:
        """The adapter a template names by PNPDeviceID; '' is the loopback in dsrprep's marker."""
        target = pnp_device_id or self.marker.get("LoopbackPnpId", "")
        if not target:
            raise StepFailed(f"PnpDeviceId is empty and {MARKER_KEY} has no LoopbackPnpId")
        nic = self.nic_by_pnp(target)
        if nic is None:
            raise StepFailed(f"No network adapter has PNPDeviceID '{target}'")
        return nic

    def holders(self, address: str) -> list[Nic]:
        """The IP-enabled adapters that hold `address`."""
        return [n for n in self.nics if n.ip_enabled and n.has_address(address)]
