"""Judging verification data: arp -a output, the verify step's result, new conflict events."""

from __future__ import annotations

from orchestrator.facts import Event
from orchestrator.verify import judge_arp, new_conflict_events, parse_arp

# The `arp -a` layout of research section 4.5 (Windows 2000-2003), and a 2008+ header.
ARP_2003 = """
Interface: 172.16.11.104 on Interface 0x2
  Internet Address      Physical Address      Type
  172.16.11.100         00-40-95-d1-29-6c     dynamic
"""
ARP_2008 = """
Interface: 10.20.0.12 --- 0xb
  Internet Address      Physical Address      Type
  10.20.0.200           00-0c-29-4c-42-01     dynamic
  10.20.0.255           ff-ff-ff-ff-ff-ff     static
"""


def test_parse_arp_both_layouts() -> None:
    assert parse_arp(ARP_2003) == {"172.16.11.100": "00-40-95-D1-29-6C"}
    assert parse_arp(ARP_2008)["10.20.0.200"] == "00-0C-29-4C-42-01"
    assert parse_arp("No ARP Entries Found.\n") == {}


def test_judge_arp_flags_only_this_servers_mac() -> None:
    assert judge_arp(ARP_2008, "10.20.0.200", ["00:50:56:80:11:22"]) is None
    problem = judge_arp(ARP_2008, "10.20.0.200", ["00:0C:29:4C:42:01"])
    assert problem is not None and "answers ARP" in problem
    assert judge_arp("No ARP Entries Found.", "10.20.0.200", ["00:0C:29:4C:42:01"]) is None


def test_new_conflict_events_are_those_not_seen_before() -> None:
    old = Event(4199, "Tcpip", "2026-11-20T10:00:00", "conflict A")
    new = Event(4199, "Tcpip", "2026-11-27T10:00:00", "conflict B")
    assert new_conflict_events([old], [old, new]) == [new]
    assert new_conflict_events([old], [old]) == []
