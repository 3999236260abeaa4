"""Whether the host answering now is the machine whose facts a rollout recorded: pure.

A rollback takes a host back to the facts recorded before a rollout, and those facts name adapters by
index, PNP device id and address. Applied to another machine that answers at the same address (a
server rebuilt since, another fleet behind the same inventory) it would change whatever that machine
has under the same names. So before anything changes, the facts now must prove the same machine:

- the machine identity: the SMBIOS UUID (Win32_ComputerSystemProduct.UUID) and the OS installation's
  product id (Win32_OperatingSystem.SerialNumber). Each one both facts have must be equal, and at
  least one must be there to compare. A UUID of all zeros or all Fs (firmware that sets none) proves
  nothing and is not compared.
- the NIC the desired state selects: the same MAC as recorded.
"""

from __future__ import annotations

from orchestrator.desired import NicSelector
from orchestrator.facts import Facts, normalize_mac

# What firmware that sets no SMBIOS UUID reports: the same on every such machine.
_UNSET_UUIDS = frozenset({"00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff"})


def _usable_uuid(value: str | None) -> str | None:
    if value is None or not value.strip() or value.strip().casefold() in _UNSET_UUIDS:
        return None
    return value.strip()


def _usable(value: str | None) -> str | None:
    return value.strip() if value is not None and value.strip() else None


def differences(before: Facts, now: Facts, nic: NicSelector) -> tuple[str, ...]:
    """Why the host of `now` is not proved to be the machine of `before` (empty: it is)."""
    if before.machine is None:
        return ("the facts recorded before the rollout hold no machine identity (recorded by an older dsrprep): "
                "nothing proves this is the same machine",)
    if now.machine is None:
        return ("the host's facts hold no machine identity: nothing proves this is the same machine",)
    found: list[str] = []
    compared = 0
    for label, was, is_ in (
        ("SMBIOS UUID", _usable_uuid(before.machine.uuid), _usable_uuid(now.machine.uuid)),
        ("OS product id", _usable(before.machine.os_serial), _usable(now.machine.os_serial)),
    ):
        if was is None and is_ is None:
            continue
        compared += 1
        if was is None or is_ is None or was.casefold() != is_.casefold():
            found.append(f"{label} is {is_ or 'not readable'}, recorded {was or 'not readable'}")
    if not compared:
        found.append("neither the SMBIOS UUID nor the OS product id was readable, then or now: nothing proves "
                     "this is the same machine")
    found += _nic_differences(before, now, nic)
    return tuple(found)


def _nic_differences(before: Facts, now: Facts, nic: NicSelector) -> list[str]:
    was = before.nic(nic.by, nic.value)
    if was is None:
        return []  # the rollout found no such NIC either: it changed nothing through it
    is_ = now.nic(nic.by, nic.value)
    if is_ is None:
        return [f"no NIC {nic.by} {nic.value} now; recorded: MAC {was.mac or 'none'}"]
    if normalize_mac(was.mac or "") != normalize_mac(is_.mac or ""):
        return [f"NIC {nic.by} {nic.value} has MAC {is_.mac or 'none'}, recorded {was.mac or 'none'}"]
    return []
