"""What differs per Windows Server family in the lab fleet: versions, captions, stock NIC hardware,
adapter and interface numbering, automatic metrics, and which lines each build's netsh prints.

Pure data; `orchestrator.lab.model` builds hosts from it.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES: tuple[str, ...] = ("2003", "2008", "2008r2", "2012r2", "2016", "2019", "2022")
PROFILES: tuple[str, ...] = ("mixed", *FAMILIES)


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
    """Everything the model needs to know about one OS family.

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
    nic_ifindex / loopback_ifindex_gap: InterfaceIndex choices (None on 2003) and how far above the
                    NIC's the loopback's lands (WAN miniports, ISATAP and Teredo take the numbers
                    between).
    nic_metric / loopback_metric:       automatic IPConnectionMetric for the NIC's link speed and
                    for the loopback's nominal 100 Mbps.
    """

    family: str
    builds: tuple[tuple[str, int, float], ...]
    caption: str
    editions: tuple[str, ...]
    x64_share: float
    powershell_version: str
    iis_version: str
    connection_name: str
    loopback_description: str
    nic_hardware: tuple[NicHardware, ...]
    nic_index: tuple[int, ...]
    loopback_index: tuple[int, ...]
    nic_ifindex: tuple[int, ...] | None
    loopback_ifindex_gap: tuple[int, int]
    luid_base: int
    nic_metric: int
    loopback_metric: int
    netsh_level: int
    hotfixes: tuple[str, ...]
    caption_x86: str | None = None

    @property
    def is_2003(self) -> bool:
        return self.family == "2003"


_LEGACY_LOOPBACK = "Microsoft Loopback Adapter"
_KMTEST_LOOPBACK = "Microsoft KM-TEST Loopback Adapter"

FAMILY_SPECS: dict[str, FamilySpec] = {
    "2003": FamilySpec(
        family="2003",
        builds=(("5.2.3790", 2, 1.0),),
        caption="Microsoft(R) Windows(R) Server 2003 {edition} x64 Edition",
        caption_x86="Microsoft(R) Windows(R) Server 2003, {edition} Edition",
        editions=("Standard", "Enterprise"),
        x64_share=0.4,
        powershell_version="2.0",
        iis_version="6.0",
        connection_name="Local Area Connection",
        loopback_description=_LEGACY_LOOPBACK,
        nic_hardware=(E1000_2003,),
        nic_index=(1, 2),
        loopback_index=(8, 9, 10),
        nic_ifindex=None,
        loopback_ifindex_gap=(0, 0),
        luid_base=0,
        nic_metric=10,
        loopback_metric=20,
        netsh_level=0,
        hotfixes=("KB968930", "KB2868626", "KB4012598"),
    ),
    "2008": FamilySpec(
        family="2008",
        builds=(("6.0.6001", 1, 0.35), ("6.0.6002", 2, 0.65)),
        caption="Microsoft\u00ae Windows Server\u00ae 2008 {edition} ",
        editions=("Standard", "Enterprise"),
        x64_share=0.8,
        powershell_version="2.0",
        iis_version="7.0",
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
    ),
    "2008r2": FamilySpec(
        family="2008r2",
        builds=(("6.1.7600", 0, 0.2), ("6.1.7601", 1, 0.8)),
        caption="Microsoft Windows Server 2008 R2 {edition} ",
        editions=("Standard", "Enterprise", "Datacenter"),
        x64_share=1.0,
        powershell_version="2.0",
        iis_version="7.5",
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
    ),
    "2012r2": FamilySpec(
        family="2012r2",
        builds=(("6.3.9600", 0, 1.0),),
        caption="Microsoft Windows Server 2012 R2 {edition}",
        editions=("Standard", "Datacenter"),
        x64_share=1.0,
        powershell_version="4.0",
        iis_version="8.5",
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
        hotfixes=("KB2919355", "KB2919442", "KB3000850"),
    ),
    "2016": FamilySpec(
        family="2016",
        builds=(("10.0.14393", 0, 1.0),),
        caption="Microsoft Windows Server 2016 {edition}",
        editions=("Standard", "Datacenter"),
        x64_share=1.0,
        powershell_version="5.1",
        iis_version="10.0",
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
    ),
    "2019": FamilySpec(
        family="2019",
        builds=(("10.0.17763", 0, 1.0),),
        caption="Microsoft Windows Server 2019 {edition}",
        editions=("Standard", "Datacenter"),
        x64_share=1.0,
        powershell_version="5.1",
        iis_version="10.0",
        connection_name="Ethernet",
        loopback_description=_KMTEST_LOOPBACK,
        nic_hardware=(VMXNET3, HYPERV_VMBUS),
        nic_index=(1, 2),
        loopback_index=(3, 4, 5),
        nic_ifindex=(2, 3, 4, 5, 6),
        loopback_ifindex_gap=(3, 9),
        luid_base=32768,
        nic_metric=15,
        loopback_metric=25,
        netsh_level=3,
        hotfixes=("KB4470788", "KB4589208", "KB5005112"),
    ),
    "2022": FamilySpec(
        family="2022",
        builds=(("10.0.20348", 0, 1.0),),
        caption="Microsoft Windows Server 2022 {edition}",
        editions=("Standard", "Datacenter"),
        x64_share=1.0,
        powershell_version="5.1",
        iis_version="10.0",
        connection_name="Ethernet",
        loopback_description=_KMTEST_LOOPBACK,
        nic_hardware=(VMXNET3, HYPERV_VMBUS),
        nic_index=(1, 2),
        loopback_index=(3, 4, 5),
        nic_ifindex=(2, 3, 4, 5, 6),
        loopback_ifindex_gap=(3, 9),
        luid_base=32768,
        nic_metric=15,
        loopback_metric=25,
        netsh_level=4,
        hotfixes=("KB5005039", "KB5012170", "KB5017316"),
    ),
}
