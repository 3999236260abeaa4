"""What differs per Windows Server family in the lab fleet beyond orchestrator.oscaps: captions,
stock NIC hardware, adapter and interface numbering, automatic metrics, which lines each build's
netsh prints, how %windir% is spelt and how the route table shows local addresses; and what its
WinRM service answers with at Windows' defaults (`winrm_config`).

The families themselves, their versions (NT version, release build, PowerShell, IIS) and their
capabilities are the rows of orchestrator.oscaps: `profiles()` lists the families of that table and
`family_spec()` answers for any of them. A family of the table with no lab data of its own (one added
by `oscaps.extended` in a test, say) borrows the data of the nearest older family that has some, with
its own name and release build; its PowerShell and IIS versions come from its row anyway.

Pure data; orchestrator.lab.build makes hosts from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from orchestrator import oscaps
from orchestrator.lab.common import WinRMConfig

MIXED = "mixed"


def profiles() -> tuple[str, ...]:
    """The lab profiles: "mixed" (every family in turn), then one per family of the table."""
    return (MIXED, *oscaps.families())


@dataclass(frozen=True)
class NicHardware:
    """A virtual NIC as Win32_NetworkAdapter describes it.

    kind selects how the PNPDeviceID instance part is generated: "pci" (emulated or VMware PCI
    device, `PCI\\VEN_..\\<instance>`) or "vmbus" (Hyper-V synthetic NIC, `VMBUS\\{class}\\{guid}`).
    """

    description: str
    service_name: str
    pnp_prefix: str
    mac_prefix: str
    kind: str


E1000_2003 = NicHardware(
    "Intel(R) PRO/1000 MT Network Connection",
    "E1000",
    "PCI\\VEN_8086&DEV_100F&SUBSYS_075015AD&REV_01",
    "00:50:56",
    "pci",
)
E1000 = NicHardware(
    "Intel(R) PRO/1000 MT Network Connection",
    "E1G60",
    "PCI\\VEN_8086&DEV_100F&SUBSYS_075015AD&REV_01",
    "00:50:56",
    "pci",
)
VMXNET3 = NicHardware(
    "vmxnet3 Ethernet Adapter",
    "vmxnet3ndis6",
    "PCI\\VEN_15AD&DEV_07B0&SUBSYS_07B015AD&REV_01",
    "00:50:56",
    "pci",
)
HYPERV_VMBUS_2008R2 = NicHardware(
    "Microsoft Virtual Machine Bus Network Adapter",
    "netvsc",
    "VMBUS\\{F8615163-DF3E-46C5-913F-F2D2F965ED0E}",
    "00:15:5D",
    "vmbus",
)
HYPERV_VMBUS = NicHardware(
    "Microsoft Hyper-V Network Adapter",
    "netvsc",
    "VMBUS\\{F8615163-DF3E-46C5-913F-F2D2F965ED0E}",
    "00:15:5D",
    "vmbus",
)


@dataclass(frozen=True)
class FamilySpec:
    """The lab's data about one OS family, beside its row in orchestrator.oscaps.

    builds:         (Win32_OperatingSystem.Version, ServicePackMajorVersion, weight). Server 2008
                    "RTM" already reports 6.0.6001 Service Pack 1: it shipped at the Vista SP1 level.
    caption:        Win32_OperatingSystem.Caption with `{edition}`; caption_x86 for 32-bit installs
                    where Windows words it differently (2003).
    x64_share:      probability that a host of this family is a 64-bit install.
    netsh_level:    which `netsh interface ipv4|ipv6 show interface` lines the build prints:
                    0 Vista/2008 (with "Compartment Id"), 1 Windows 7/2008 R2, 2 Windows 8.x/10 era
                    (adds router-lifetime, hop-limit, wake-pattern and ECN lines), 3 adds
                    "RA Based DNS Config (RFC 6106)" (1703+), 4 adds "DHCP/Static IP coexistence".
    luid_base:      NetLuidIndex of the first NIC ("ethernet_7"); Windows 8+ numbers NDIS
                    interfaces from 32768.
    nic_index / loopback_index:         Win32_NetworkAdapter.Index choices.
    nic_ifindex / loopback_ifindex_gap: InterfaceIndex choices (unused where the family has no
                    InterfaceIndex, see `OsCaps.interface_index`) and how far above the NIC's the
                    loopback's lands (WAN miniports, ISATAP and Teredo take the numbers between).
    nic_metric / loopback_metric:       automatic IPConnectionMetric for the NIC's link speed and
                    for the loopback's nominal 100 Mbps.
    windir:         %windir% as Setup spelt it ("C:\\WINDOWS" up to 2003).
    loopback_routes: the XP/2003 TCP/IP stack routes every local address as a host route through
                    127.0.0.1 on the "MS TCP Loopback interface" (index 1), whatever its mask; the
                    Vista+ stack keeps on-link routes on the address' own interface.
    tls_maximum:    the newest TLS version SChannel serves by default: 1.0 up to 2008 R2 (whose
                    TLS 1.1/1.2 must be enabled by hand: Ansible's "Windows Remote Management"
                    guide, TLS 1.2 Support), 1.2 from 2012, 1.3 from 2022.
    extra_endpoints: PowerShell session configurations the family registers beyond those of its
                    PowerShell version (2008 R2: Microsoft.ServerManager).
    """

    family: str
    builds: tuple[tuple[str, int, float], ...]
    caption: str
    editions: tuple[str, ...]
    x64_share: float
    connection_name: str
    loopback_description: str
    nic_hardware: tuple[NicHardware, ...]
    nic_index: tuple[int, ...]
    loopback_index: tuple[int, ...]
    nic_ifindex: tuple[int, ...]
    loopback_ifindex_gap: tuple[int, int]
    luid_base: int
    nic_metric: int
    loopback_metric: int
    netsh_level: int
    hotfixes: tuple[str, ...]
    caption_x86: str | None = None
    windir: str = "C:\\Windows"
    loopback_routes: bool = False
    tls_maximum: str = "1.2"
    extra_endpoints: tuple[str, ...] = ()


_LEGACY_LOOPBACK = "Microsoft Loopback Adapter"
# Windows 8 / Server 2012 renamed the adapter and the connections ("Ethernet", "Ethernet 2").
_KMTEST_LOOPBACK = "Microsoft KM-TEST Loopback Adapter"

_2003 = FamilySpec(
    family="2003",
    builds=(("5.2.3790", 2, 1.0),),
    caption="Microsoft(R) Windows(R) Server 2003 {edition} x64 Edition",
    caption_x86="Microsoft(R) Windows(R) Server 2003, {edition} Edition",
    editions=("Standard", "Enterprise"),
    x64_share=0.4,
    connection_name="Local Area Connection",
    loopback_description=_LEGACY_LOOPBACK,
    nic_hardware=(E1000_2003,),
    nic_index=(1, 2),
    loopback_index=(8, 9, 10),
    nic_ifindex=(),
    loopback_ifindex_gap=(0, 0),
    luid_base=0,
    nic_metric=10,
    loopback_metric=20,
    netsh_level=0,
    hotfixes=("KB968930", "KB2868626", "KB4012598"),
    windir="C:\\WINDOWS",
    loopback_routes=True,
    tls_maximum="1.0",
)
_2008 = FamilySpec(
    family="2008",
    builds=(("6.0.6001", 1, 0.35), ("6.0.6002", 2, 0.65)),
    caption="Microsoft\u00ae Windows Server\u00ae 2008 {edition} ",
    editions=("Standard", "Enterprise"),
    x64_share=0.8,
    connection_name="Local Area Connection",
    loopback_description=_LEGACY_LOOPBACK,
    nic_hardware=(E1000,),
    nic_index=(7,),
    loopback_index=(11, 12, 13),
    nic_ifindex=(10, 11, 12),
    loopback_ifindex_gap=(3, 8),
    luid_base=6,
    nic_metric=10,
    loopback_metric=20,
    netsh_level=0,
    hotfixes=("KB968930", "KB4012598"),
    tls_maximum="1.0",
)
_2008R2 = FamilySpec(
    family="2008r2",
    builds=(("6.1.7600", 0, 0.2), ("6.1.7601", 1, 0.8)),
    caption="Microsoft Windows Server 2008 R2 {edition} ",
    editions=("Standard", "Enterprise", "Datacenter"),
    x64_share=1.0,
    connection_name="Local Area Connection",
    loopback_description=_LEGACY_LOOPBACK,
    nic_hardware=(E1000, HYPERV_VMBUS_2008R2),
    nic_index=(7,),
    loopback_index=(11, 12, 13),
    nic_ifindex=(10, 11, 12, 13),
    loopback_ifindex_gap=(3, 8),
    luid_base=6,
    nic_metric=10,
    loopback_metric=20,
    netsh_level=1,
    hotfixes=("KB976902", "KB2533623", "KB4012212"),
    tls_maximum="1.0",
    extra_endpoints=("microsoft.servermanager",),
)
_2012 = FamilySpec(
    family="2012",
    builds=(("6.2.9200", 0, 1.0),),
    caption="Microsoft Windows Server 2012 {edition}",
    editions=("Standard", "Datacenter"),
    x64_share=1.0,
    connection_name="Ethernet",
    loopback_description=_KMTEST_LOOPBACK,
    nic_hardware=(VMXNET3, HYPERV_VMBUS),
    nic_index=(10, 12),
    loopback_index=(14, 15, 16),
    nic_ifindex=(12, 13, 14),
    loopback_ifindex_gap=(3, 8),
    luid_base=32768,
    nic_metric=5,
    loopback_metric=25,
    netsh_level=2,
    hotfixes=("KB2756872", "KB2770917", "KB4012214"),
)
_2012R2 = replace(
    _2012,
    family="2012r2",
    builds=(("6.3.9600", 0, 1.0),),
    caption="Microsoft Windows Server 2012 R2 {edition}",
    hotfixes=("KB2919355", "KB2919442", "KB3000850"),
)
_2016 = FamilySpec(
    family="2016",
    builds=(("10.0.14393", 0, 1.0),),
    caption="Microsoft Windows Server 2016 {edition}",
    editions=("Standard", "Datacenter"),
    x64_share=1.0,
    connection_name="Ethernet",
    loopback_description=_KMTEST_LOOPBACK,
    nic_hardware=(VMXNET3, HYPERV_VMBUS),
    nic_index=(1, 2),
    loopback_index=(3, 4, 5),
    nic_ifindex=(2, 3, 4, 5),
    loopback_ifindex_gap=(3, 9),
    luid_base=32768,
    nic_metric=15,
    loopback_metric=25,
    netsh_level=2,
    hotfixes=("KB3192137", "KB4512574", "KB5011570"),
)
_2019 = replace(
    _2016,
    family="2019",
    builds=(("10.0.17763", 0, 1.0),),
    caption="Microsoft Windows Server 2019 {edition}",
    nic_ifindex=(2, 3, 4, 5, 6),
    netsh_level=3,
    hotfixes=("KB4470788", "KB4589208", "KB5005112"),
)
_2022 = replace(
    _2019,
    family="2022",
    builds=(("10.0.20348", 0, 1.0),),
    caption="Microsoft Windows Server 2022 {edition}",
    netsh_level=4,
    tls_maximum="1.3",
    hotfixes=("KB5005039", "KB5012170", "KB5017316"),
)
# No capture of 2025's netsh yet: it prints what 2022's does as far as the lab knows.
_2025 = replace(
    _2022,
    family="2025",
    builds=(("10.0.26100", 0, 1.0),),
    caption="Microsoft Windows Server 2025 {edition}",
    hotfixes=("KB5043080", "KB5044284", "KB5048667"),
)

# The families the lab has data of its own for; every key is a family of orchestrator.oscaps.
FAMILY_SPECS: dict[str, FamilySpec] = {
    spec.family: spec for spec in (_2003, _2008, _2008R2, _2012, _2012R2, _2016, _2019, _2022, _2025)
}


def family_spec(family: str) -> FamilySpec:
    """The lab data of `family` (any spelling oscaps accepts); UnknownFamily for a family the
    table does not have."""
    row = oscaps.caps(family)
    own = FAMILY_SPECS.get(row.family)
    return own if own is not None else _borrowed(row)


def _borrowed(row: oscaps.OsCaps) -> FamilySpec:
    """The data of the nearest older family that has some (else the oldest that has), renamed
    to `row` and on its release build. Updates are per release: it lists no hotfix."""
    order = oscaps.families()
    older = [f for f in reversed(order[: order.index(row.family)]) if f in FAMILY_SPECS]
    donor_family = older[0] if older else next(f for f in order if f in FAMILY_SPECS)
    donor = FAMILY_SPECS[donor_family]
    donor_name = oscaps.caps(donor_family).name
    caption = f"Microsoft {row.name} {{edition}}"
    if donor_name in donor.caption:
        caption = donor.caption.replace(donor_name, row.name)
    major, minor = row.nt_version
    return replace(
        donor,
        family=row.family,
        builds=((f"{major}.{minor}.{row.first_build}", 0, 1.0),),
        caption=caption,
        caption_x86=None,
        hotfixes=(),
    )


# --- WinRM ----------------------------------------------------------------------------------------
#
# What the WinRM service of a host answers with at Windows' defaults, by the WinRM version of its
# family (oscaps.caps(family).winrm). Sources:
#   WinRM 2.0 (WMF 2.0: 2003, 2008, 2008 R2): MaxEnvelopeSizekb 150 ([MS-WSMV] 2.2.4.10 ConfigType,
#     "SHOULD be 500 but MAY be 150"; 500 came with WinRM 3.0, psrpcore's ProtocolVersion notes);
#     MaxShellsPerUser 5 (PowerShell Team blog "Configuring WSMAN Limits", 2010: "This user is
#     allowed a maximum number of 5 concurrent shells"); MaxConcurrentOperationsPerUser 15
#     (test-kitchen issue 656, WSMan fault 2150859174 on Windows 7: "a maximum number of 15
#     concurrent operations"); IdleTimeout 180000 ms ([MS-WSMV] 2.2.4.42 WinrsType default, and
#     Microsoft's "Quotas" page of the WinRM docs); server-assigned ShellId and CommandId, no
#     rsp:Shell in the CreateResponse (pypsrp's recording test_psrp_run_protocol_version_2.1.yml).
#   WinRM 3.0+ with the Microsoft.PowerShell plugin's quotas: MaxEnvelopeSizekb 500, MaxShellsPerUser
#     25 and MaxConcurrentCommandsPerShell 1000 (plugin Quotas; pypsrp issue 148 hits the 1000 on
#     2012 R2), MaxConcurrentOperationsPerUser 1500, IdleTimeout 7200000 ms and the client's own
#     ShellId and CommandId kept (pypsrp's recording test_psrp_run_protocol_version_2.3.yml:
#     rsp:IdleTimeOut PT7200.000S).
#   Both recordings open a pool in two Receives (SESSION_CAPABILITY and APPLICATION_PRIVATE_DATA,
#   then RUNSPACEPOOL_STATE): WinRMConfig.split_open, on for every family.
@dataclass(frozen=True)
class WinRMDefaults:
    """The quotas and id habits of one WinRM version (see WinRMConfig for each field)."""

    max_envelope_kb: int
    max_shells_per_user: int
    max_concurrent_operations_per_user: int
    max_commands_per_shell: int | None
    idle_timeout_ms: int
    server_assigned_ids: bool


WINRM_2 = WinRMDefaults(
    max_envelope_kb=150,
    max_shells_per_user=5,
    max_concurrent_operations_per_user=15,
    max_commands_per_shell=None,
    idle_timeout_ms=180_000,
    server_assigned_ids=True,
)
WINRM_3 = WinRMDefaults(
    max_envelope_kb=500,
    max_shells_per_user=25,
    max_concurrent_operations_per_user=1500,
    max_commands_per_shell=1000,
    idle_timeout_ms=7_200_000,
    server_assigned_ids=False,
)
# The session configurations `Enable-PSRemoting` registers (Get-PSSessionConfiguration).
_ENDPOINTS_PS2 = ("microsoft.powershell", "microsoft.powershell32")
_ENDPOINTS_PS3 = (
    "microsoft.powershell",
    "microsoft.powershell.workflow",
    "microsoft.powershell32",
    "microsoft.windows.servermanagerworkflows",
)


def winrm_config(family: str, *, x64: bool = True, version: str | None = None) -> WinRMConfig:
    """A fresh WinRMConfig for a host of `family` at Windows' defaults. `x64`: a 32-bit install
    has no Microsoft.PowerShell32 endpoint; `version`: the host's Win32_OperatingSystem.Version,
    which its PowerShell reports as BuildVersion."""
    row = oscaps.caps(family)
    spec = family_spec(family)
    legacy = row.winrm == "2.0"
    endpoints = (_ENDPOINTS_PS2 if legacy else _ENDPOINTS_PS3) + spec.extra_endpoints
    if not x64:
        endpoints = tuple(e for e in endpoints if e != "microsoft.powershell32")
    build = version or spec.builds[-1][0]
    return WinRMConfig(
        psrp_protocol=row.psrp_protocol,
        powershell=row.powershell,
        build_version=build if build.count(".") >= 3 else f"{build}.0",
        # PSVersionTable.WSManStackVersion: WinRM 3.0 stayed the stack of WMF 4.0 and 5.1.
        wsman_stack="2.0" if legacy else "3.0",
        endpoints=endpoints,
        tls_maximum=spec.tls_maximum,
        **asdict(WINRM_2 if legacy else WINRM_3),
    )
