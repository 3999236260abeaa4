"""Present: find the loopback (the `PnpDeviceId` or, when empty, the marker's `LoopbackPnpId`, if that
msloop adapter exists; else the first msloop adapter, by Index, holding one of `Vips`); else create
one: through SetupAPI from `Add-Type` C# 2.0 (`SetupDiGetINFClass`, `SetupDiCreateDeviceInfo` with
`DICD_GENERATE_ID`, SPDRP_HARDWAREID `*msloop`, `DIF_REGISTERDEVICE`, then the driver of
`%windir%\\inf\\netloop.inf` on that device only: install params `DI_ENUMSINGLEINF|DI_QUIETINSTALL`
with the INF as `DriverPath`, `SetupDiSetSelectedDevice`, `SetupDiBuildDriverInfoList` (compatible
drivers), `DIF_SELECTBESTCOMPATDRV`, `DIF_REGISTER_COINSTALLERS`, `DIF_INSTALLINTERFACES`,
`DIF_INSTALLDEVICE`; other `*msloop` devices are not touched, as they would be by
UpdateDriverForPlugAndPlayDevices; `DIF_REMOVE` if the driver install fails), or `& $DevconPath
install %windir%\\inf\\netloop.inf *msloop` when `DevconPath` is not empty; then poll WMI (up to 30
s) for the new msloop adapter. Creating refuses a 32-bit process on 64-bit Windows (ERROR_IN_WOW64).
Writes marker values `LoopbackPnpId` and `LoopbackCreated` ('1' when created; when found, '1' stays
'1' if the marker already recorded that device as created, else '0'); they are written as soon as
the device exists: with SetupAPI when it is registered, with devcon (which prints no instance id) as
soon as `Win32_PnPEntity` lists a new msloop device, before the wait for `Win32_NetworkAdapter`;
devcon install, through UpdateDriverForPlugAndPlayDevices, also reinstalls the driver of every other
msloop device. A device the marker records as created that Plug and Play lists but
`Win32_NetworkAdapter` does not yet (an earlier run's wait ran out) is waited for again, up to 30 s,
rather than duplicated. `changed` when a device was created or a marker value written. Result:
`@{changed; pnp_device_id; created; reboot_required; output}`. Absent: the device `PnpDeviceId`
(empty: the marker's). If it exists, it is removed (SetupAPI `DIF_REMOVE` on the Net-class device
with that instance id, or `devcon remove @<id>`) only when the marker says `LoopbackCreated=1` for
that id, otherwise the step throws; then the two marker values are deleted when they name that id. A
device that is already gone is not an error (`changed` only if marker values were deleted).
"""

from __future__ import annotations

from functools import partial

from orchestrator.steps.base import (
    NOTHING,
    Action,
    Docs,
    PlanContext,
    Step,
    StepPlan,
    UndoContext,
    action,
    changed_only,
)

NAME = "loopback"


def plan(ctx: PlanContext) -> StepPlan:
    if ctx.nic is None or ctx.loopback is not None:
        return NOTHING
    return StepPlan(actions=(action(NAME, "no loopback adapter holds the VIPs: create one", Ensure="Present",
                                    PnpDeviceId="", Vips=list(ctx.vips), DevconPath=ctx.desired.devcon_path or ""),))


def undo(ctx: UndoContext) -> list[Action]:
    """Remove the loopback only when the marker says dsrprep created it (it did not exist before)."""
    lb = ctx.loopback_now
    if not ctx.created or lb is None:
        return []
    return [action(NAME, "remove the loopback adapter dsrprep created", Ensure="Absent",
                   PnpDeviceId=lb.pnp_device_id, Vips=[], DevconPath="")]


STEP = Step(
    name=NAME,
    order=40,
    description=__doc__ or "",
    reads=("dsr_vips", "dsr_devcon_path"),
    plan=plan,
    undo=undo,
    cuts_connection=True,  # a new network device: NLA and the firewall profile may change
    parse_output=partial(changed_only, NAME),
    docs=Docs(
        commands={"default": "created through SetupAPI from `Add-Type` C# (or devcon when `dsr_devcon_path` is "
                             "set); PNP id recorded in `HKLM\\SOFTWARE\\dsrprep\\DSR`"},
        checked_by="marker first, then a `msloop` adapter holding the VIP",
        undone_by="removed only if the marker says dsrprep created it",
    ),
)
