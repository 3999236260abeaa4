"""A lab fleet: one protocol server per simulated Windows host, on its own 127.0.x.y address.

Owns starting and stopping the servers, routing each pipeline's script to the host model as the
exact template it is (step and variant, recognised by its text), the layer-2 segment the hosts
share, each host's WinRM configuration (its family's, orchestrator.lab.profiles.winrm_config), the
certificates of an HTTPS fleet, and writing an inventory that matches the running fleet.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from orchestrator import oscaps
from orchestrator.capture import Capture, CaptureError, read_captures
from orchestrator.facts import FactsError
from orchestrator.fdlimit import SPARE, OpenFilesError, ensure_open_files
from orchestrator.lab.build import LAB_VIP, build_fleet, capture_inventory_vars, host_from_capture
from orchestrator.lab.common import LabFaults, RequestCounters, ScriptResult, WinRMConfig
from orchestrator.lab.host import Segment, WindowsHost
from orchestrator.lab.profiles import profiles, winrm_config
from orchestrator.lab.server import LabServer
from orchestrator.lab.tls import LabCA
from orchestrator.templates import all_templates

LAB_USER = "labadmin"
LAB_PASSWORD = "Lab-Passw0rd!"
_STEP_HEADER = re.compile(r"^#\s*dsrprep-step:\s*(\S+)", re.MULTILINE)


class FleetError(Exception):
    """The fleet cannot be built or started as asked."""


def step_of(script: str) -> str | None:
    """The step id a template names in its header, or None for a script that is not ours."""
    match = _STEP_HEADER.search(script)
    return match.group(1) if match else None


def _digest(text: str) -> str:
    # Line ends may change on the way (editors, serializers); the template is the same script.
    normal = text.removeprefix("\ufeff").replace("\r\n", "\n")
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


@functools.cache
def _template_index() -> dict[str, tuple[str, str]]:
    return {_digest(t.text): (t.step, t.variant) for t in all_templates()}


def template_of(script: str) -> tuple[str, str | None] | None:
    """(step, variant) of a script: the shipped template it is, by its text. A script that names a
    step in its header but is no shipped template gives (step, None); one without a header None."""
    known = _template_index().get(_digest(script))
    if known is not None:
        return known
    step = step_of(script)
    return None if step is None else (step, None)


def _lacks_skip_as_source_hotfix(model: WindowsHost) -> bool:
    caps = model.caps
    return caps.skip_as_source is oscaps.SkipAsSource.HOTFIX and not model.skip_as_source_supported()


class _HostHandler:
    """Routes one host's pipelines to its model and counts them."""

    def __init__(self, model: WindowsHost, counters: RequestCounters) -> None:
        self._model = model
        self._counters = counters

    def __call__(self, script: str, parameters: dict[str, Any]) -> ScriptResult:
        identified = template_of(script)
        if identified is None:
            first = script.strip().splitlines()[0] if script.strip() else ""
            return ScriptResult(failed=f"The lab host only runs dsrprep templates; got: {first[:80]}")
        step, variant = identified
        self._counters.count_step(step)
        # variant None: a script that only names a step runs as the variant this host would get.
        return self._model.run(step, parameters, variant=variant)


@dataclass
class LabHost:
    """A running (or deliberately unreachable) lab host.

    `winrm` is its WinRM service's configuration, its family's at Windows' defaults: tests may
    change it (before or while the fleet runs) to shorten the idle timeout or allow Basic. `auth` is
    what its listener offers, read when the fleet starts; `kerberos_name` its name in the fleet's
    Kerberos realm (its SPNs are service/kerberos_name), None outside one."""

    model: WindowsHost
    address: str
    port: int
    server: LabServer | None
    counters: RequestCounters
    winrm: WinRMConfig
    https: bool = False
    auth: frozenset[str] = frozenset({"negotiate", "ntlm", "basic"})
    kerberos_name: str | None = None

    @property
    def name(self) -> str:
        return self.model.name.lower()

    @property
    def faults(self) -> LabFaults:
        return self.model.faults

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://{self.address}:{self.port}/wsman"


def _free_port(address: str) -> int:
    """A port nothing listens on, for hosts that must refuse connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def listen_addresses(base_octet: int, count: int) -> list[str]:
    """`count` listener addresses: 127.0.0.{base_octet}-254, then 127.0.1.1-254, 127.0.2.1-254...
    (Linux answers on all of 127.0.0.0/8; no .0 or .255, which some tools read as a network or a
    broadcast address). FleetError when 127.0.0.0/16 runs out."""
    if not 1 <= base_octet <= 254:
        raise FleetError(f"base octet {base_octet} is not 1-254")
    addresses: list[str] = []
    third, fourth = 0, base_octet
    while len(addresses) < count:
        if third > 255:
            raise FleetError(f"{count} hosts do not fit in 127.0.0.{base_octet}-127.0.255.254")
        addresses.append(f"127.0.{third}.{fourth}")
        third, fourth = (third, fourth + 1) if fourth < 254 else (third + 1, 1)
    return addresses


def poll_interval(hosts: int) -> float:
    """How often each listener of a fleet of `hosts` wakes to see whether it is asked to stop:
    0.05 s up to 100 hosts, longer beyond, so that the fleet wakes at most 2,000 times a second
    (a thousand listeners at 0.05 s took more than a core of the lab process doing nothing)."""
    return max(0.05, hosts / 2000)


# Servers stopped at once by LabFleet.stop: each waits up to its poll interval for its accept loop.
_STOPPERS = 64

# Open files a running fleet holds per host: its listening socket, and a connection a client may
# keep open to it (pypsrp keeps one per session; up to --forks at once, more after lost connections).
_FILES_PER_HOST = 2


class LabFleet:
    """Start with `with LabFleet.build(...) as fleet:`; every server is stopped on exit."""

    def __init__(self, models: Sequence[WindowsHost], *, base_octet: int = 11, port: int = 0,
                 password: str = LAB_PASSWORD, vip: str = LAB_VIP, https: bool = False,
                 kerberos_realm: str | None = None, client_auth: str = "negotiate") -> None:
        """`https`: every host listens with TLS, its certificate issued by a CA the fleet makes for
        the occasion (`ca_file`); the inventory then validates against that CA. `kerberos_realm`:
        every host is a member of that realm as `<name>.<realm in lower case>` and takes Kerberos too,
        with the keys of the keytab `KRB5_KTNAME` names (a KDC of that realm must know the user and
        the hosts' SPNs); the inventory then authenticates with Kerberos as LAB_USER@realm. `client_auth`:
        what the inventory asks for outside a realm, negotiate as most inventories do, or ntlm, which
        spares a client with Kerberos installed asking its default realm first."""
        addresses = listen_addresses(base_octet, len(models))
        self.password = password
        self.vip = vip
        self.kerberos_realm = kerberos_realm
        self.client_auth = client_auth
        self.https = https
        self._port = port
        self._tls_dir: Path | None = None
        self._ca: LabCA | None = None
        # Hosts built together already share one; a fleet of hand-made models gets its own.
        shared = {id(m.segment): m.segment for m in models if m.segment is not None}
        self.segment: Segment = next(iter(shared.values())) if len(shared) == 1 else Segment()
        for model in models:
            self.segment.join(model)
        self.hosts: list[LabHost] = [
            LabHost(model=m, address=address, port=port, server=None,
                    counters=RequestCounters(), https=https,
                    winrm=winrm_config(m.os_family, x64=m.architecture != "32-bit", version=m.version))
            for m, address in zip(models, addresses, strict=True)
        ]
        if kerberos_realm is not None:
            for handle in self.hosts:
                handle.kerberos_name = f"{handle.name}.{kerberos_realm.lower()}"
                handle.auth = handle.auth | {"kerberos"}

    @classmethod
    def build(cls, count: int, *, seed: int, profile: str, port: int = 0, https: bool = False,
              client_auth: str = "negotiate") -> LabFleet:
        if profile not in profiles():
            raise FleetError(f"unknown profile {profile!r}; choose one of {', '.join(profiles())}")
        return cls(build_fleet(count, seed=seed, profile=profile, password=LAB_PASSWORD), port=port, https=https,
                   client_auth=client_auth)

    @property
    def ca_file(self) -> Path | None:
        """The PEM file of the CA that issued the hosts' certificates (an HTTPS fleet that runs)."""
        return self._ca.cafile if self._ca is not None else None

    def host(self, name: str) -> LabHost:
        for handle in self.hosts:
            if handle.name == name.lower():
                return handle
        raise KeyError(name)

    def __iter__(self) -> Iterator[LabHost]:
        return iter(self.hosts)

    def start(self) -> None:
        try:
            ensure_open_files(_FILES_PER_HOST * len(self.hosts) + SPARE, f"{len(self.hosts)} lab hosts")
        except OpenFilesError as exc:
            raise FleetError(str(exc)) from None
        try:
            if self.https and self._ca is None:
                self._tls_dir = Path(tempfile.mkdtemp(prefix="dsrprep-lab-tls-"))
                self._ca = LabCA(self._tls_dir)
            for handle in self.hosts:
                if handle.model.faults.unreachable:
                    handle.port = _free_port(handle.address)
                    continue
                tls = None
                if self._ca is not None:
                    files = self._ca.issue(handle.model.name, handle.address)
                    tls = (str(files.certfile), str(files.keyfile))
                server = LabServer(
                    handle.address, self._port, _HostHandler(handle.model, handle.counters),
                    username=handle.model.username, password=handle.model.password,
                    faults=handle.model.faults, counters=handle.counters, hostname=handle.model.name,
                    winrm=handle.winrm, tls=tls, auth=handle.auth, kerberos_name=handle.kerberos_name,
                    poll_interval=poll_interval(len(self.hosts)),
                )
                server.start()
                handle.server, handle.port = server, server.port
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        running = [h for h in self.hosts if h.server is not None]
        if running:
            with ThreadPoolExecutor(max_workers=min(_STOPPERS, len(running)), thread_name_prefix="lab-stop") as pool:
                list(pool.map(lambda server: server.stop(), [h.server for h in running if h.server is not None]))
        for handle in running:
            handle.server = None
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)
            self._tls_dir, self._ca = None, None

    def __enter__(self) -> LabFleet:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def inventory(self) -> dict[str, Any]:
        """An Ansible-shaped inventory for this fleet: one group per OS family, shared VIP and account."""
        groups: dict[str, dict[str, Any]] = {}
        for handle in self.hosts:
            rip = handle.model.rip
            group = groups.setdefault(f"win{handle.model.os_family}", {"hosts": {}})
            entry: dict[str, Any] = {
                "ansible_host": handle.address,
                "ansible_port": handle.port,
                "dsr_nic": {"address": rip},
            }
            if handle.kerberos_name is not None:
                entry["ansible_psrp_negotiate_hostname_override"] = handle.kerberos_name
            if _lacks_skip_as_source_hotfix(handle.model):
                # What an admin does once preflight says so: no SkipAsSource without the hotfix.
                entry["dsr_skip_as_source"] = False
            group["hosts"][handle.name] = entry
        return {
            "all": {
                "vars": {
                    "ansible_connection": "psrp",
                    **self._auth_vars(),
                    **self._transport_vars(),
                    "ansible_psrp_connection_timeout": 5,
                    "ansible_psrp_operation_timeout": 5,
                    "ansible_psrp_read_timeout": 10,
                    "dsr_vips": [{"address": self.vip, "ports": [80], "protocol": "tcp"}],
                    "dsr_iis_sites": ["Default Web Site"],
                },
                "children": dict(sorted(groups.items())),
            }
        }

    def _auth_vars(self) -> dict[str, Any]:
        """`client_auth` as the lab's local account, or Kerberos as that user of the fleet's realm."""
        if self.kerberos_realm is None:
            return {"ansible_user": LAB_USER, "ansible_password": self.password, "ansible_psrp_auth": self.client_auth}
        return {"ansible_user": f"{LAB_USER}@{self.kerberos_realm}", "ansible_password": self.password,
                "ansible_psrp_auth": "kerberos"}

    def _transport_vars(self) -> dict[str, Any]:
        """Negotiate with message encryption over HTTP, or HTTPS validated against the fleet's CA."""
        if not self.https:
            return {"ansible_psrp_protocol": "http", "ansible_psrp_message_encryption": "auto"}
        if self.ca_file is None:
            raise FleetError("an HTTPS fleet has its CA once it has started")
        return {
            "ansible_psrp_protocol": "https",
            "ansible_psrp_message_encryption": "auto",
            "ansible_psrp_cert_validation": "validate",
            "ansible_psrp_ca_cert": str(self.ca_file),
        }

    def write_counters(self, path: Path, snapshot: int) -> None:
        """Every host's request counters as one JSON document, replaced atomically: `snapshot` tells
        a reader which request for them (`dsrprep lab serve --counters-out`, SIGUSR1) it answers."""
        document = {"snapshot": snapshot, "hosts": {h.name: h.counters.to_dict() for h in self.hosts}}
        part = path.with_name(path.name + ".part")
        part.write_text(json.dumps(document, indent=1), encoding="utf-8")
        part.replace(path)

    def write_inventory(self, path: Path) -> None:
        header = ("# Inventory of a running dsrprep lab fleet (simulated Windows servers).\n"
                  "# The password is the lab's own; real inventories should reference an environment variable.\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + yaml.safe_dump(self.inventory(), sort_keys=False), encoding="utf-8")


class CaptureFleet(LabFleet):
    """A lab fleet serving captures of real hosts (`dsrprep lab serve --from-capture DIR`): one host
    per capture file, built by `host_from_capture`, answering the facts script with the captured
    object until a step changes it. Its inventory connects to the lab's 127.0.x.y addresses and
    keeps the captured addresses for the rest: the NIC by its captured RIP, a VIP in that NIC's
    subnet per host (`capture_inventory_vars`)."""

    def __init__(self, captures: Sequence[Capture], *, port: int = 0, https: bool = False) -> None:
        models: list[WindowsHost] = []
        taken: set[str] = set()
        for capture in captures:
            try:
                model = host_from_capture(capture.facts)
            except FactsError as exc:
                raise FleetError(f"{capture.path}: the captured facts do not parse: {exc}") from None
            # Two captures of one computer name (redacted captures are all HOST01...) stay two hosts.
            name, number = model.name, 2
            while model.name.lower() in taken:
                model.name, number = f"{name}-{number}", number + 1
            taken.add(model.name.lower())
            models.append(model)
        super().__init__(models, port=port, https=https)
        self.captures = {handle.name: capture for handle, capture in zip(self.hosts, captures, strict=True)}

    @classmethod
    def from_dir(cls, directory: Path, *, port: int = 0, https: bool = False) -> CaptureFleet:
        try:
            return cls(read_captures(directory), port=port, https=https)
        except CaptureError as exc:
            raise FleetError(str(exc)) from None

    def inventory(self) -> dict[str, Any]:
        document = super().inventory()
        everyone = {a for handle in self.hosts for nic in handle.model.nics for a, _ in nic.addresses}
        chosen: set[str] = set()
        document["all"]["vars"].pop("dsr_vips", None)
        document["all"]["vars"].pop("dsr_iis_sites", None)
        for group in document["all"]["children"].values():
            for name, entry in group["hosts"].items():
                found = capture_inventory_vars(self.host(name).model, everyone | chosen)
                chosen.update(v["address"] for v in found["dsr_vips"])
                entry.update(found)
        return document
