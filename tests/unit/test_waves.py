"""Canary choice, wave sizes, host order and the threshold arithmetic of the gates."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.waves import (
    CanarySpec,
    Size,
    Threshold,
    Wave,
    WaveError,
    build_waves,
    choose_canary,
    judge_wave,
    order_hosts,
    parse_threshold,
    parse_waves,
)

HOSTS = [f"web{i:02d}" for i in range(1, 21)]


@pytest.mark.parametrize(("spec", "sizes"), [
    ("1,5,25%,100%", (Size(1), Size(5), Size(25, True), Size(100, True))),
    ("3", (Size(3),)),
    (" 10% , 2 ", (Size(10, True), Size(2))),
])
def test_parse_waves(spec: str, sizes: tuple[Size, ...]) -> None:
    assert parse_waves(spec) == sizes


@pytest.mark.parametrize("spec", ["", "1,,2", "0", "a", "150%", "-1", "1.5"])
def test_bad_waves_are_refused(spec: str) -> None:
    with pytest.raises(WaveError, match="--waves"):
        parse_waves(spec)


@pytest.mark.parametrize(("candidates", "canary", "spec", "expected"), [
    # 19 hosts after the canary: 1, then 5, then 25% of 19 = 4 (rounded down), then 100% = 19 (the rest)
    (HOSTS, ["web01"], "1,5,25%,100%", [["web01"], ["web02"], HOSTS[2:7], HOSTS[7:11], HOSTS[11:]]),
    # the last size repeats
    (HOSTS[:8], ["web01"], "2", [["web01"], HOSTS[1:3], HOSTS[3:5], HOSTS[5:7], HOSTS[7:8]]),
    # a percentage of few hosts still takes one
    (HOSTS[:3], ["web01"], "10%", [["web01"], ["web02"], ["web03"]]),
    # nothing after the canary
    (["web01"], ["web01"], "1,5", [["web01"]]),
    (HOSTS[:4], ["web03"], "100%", [["web03"], ["web01", "web02", "web04"]]),
    ([], [], "1", []),
])
def test_build_waves(candidates: list[str], canary: list[str], spec: str, expected: list[list[str]]) -> None:
    waves = build_waves(candidates, canary, parse_waves(spec))
    assert [list(w.hosts) for w in waves] == expected
    assert [w.name for w in waves] == (["canary"] + [f"wave {i}" for i in range(1, len(waves))] if waves else [])


@given(st.lists(st.sampled_from(HOSTS), unique=True), st.integers(0, 3),
       st.lists(st.builds(Size, st.integers(1, 100), st.booleans()), min_size=1, max_size=4))
def test_every_candidate_is_placed_once(candidates: list[str], canaries: int, sizes: list[Size]) -> None:
    waves = build_waves(candidates, candidates[:canaries], sizes)
    placed = [h for w in waves for h in w.hosts]
    assert sorted(placed) == sorted(candidates) and all(w.hosts for w in waves)


GROUPS = {"all": HOSTS, "canary": ["web05", "web06"], "edge": ["web03", "web30"]}


@pytest.mark.parametrize(("text", "candidates", "expected"), [
    (None, HOSTS, ["web05", "web06"]),  # the inventory's canary group
    (None, [h for h in HOSTS if h != "web05"], ["web06"]),  # web05 is already compliant
    ("2", HOSTS[3:], ["web04", "web05"]),  # the first hosts that need changes
    ("web09,web02", HOSTS, ["web02", "web09"]),  # in placement order
    ("@edge", HOSTS, ["web03"]),  # web30 is not selected
])
def test_choose_canary(text: str | None, candidates: list[str], expected: list[str]) -> None:
    assert choose_canary(CanarySpec.parse(text), candidates, HOSTS, GROUPS) == expected


def test_without_a_canary_group_the_first_host_needing_changes() -> None:
    assert choose_canary(CanarySpec(), HOSTS[2:], HOSTS, {"all": HOSTS}) == ["web03"]
    assert choose_canary(CanarySpec(), [], HOSTS, {"all": HOSTS}) == []


@pytest.mark.parametrize(("text", "message"), [
    ("web99", "not among the selected hosts: web99"),
    ("@nope", "no inventory group 'nope'"),
    ("0", "at least 1"),
    ("@", "needs a group name"),
    ("a,,b", "not a count"),
])
def test_bad_canaries(text: str, message: str) -> None:
    with pytest.raises(WaveError, match=message):
        choose_canary(CanarySpec.parse(text), HOSTS, HOSTS, GROUPS)


def test_order() -> None:
    assert order_hosts(["b", "a", "c"], "inventory") == ["b", "a", "c"]
    assert order_hosts(["b", "a", "c"], "sorted") == ["a", "b", "c"]
    once = order_hosts(HOSTS, "shuffle:7")
    assert once == order_hosts(HOSTS, "shuffle:7") and sorted(once) == HOSTS and once != HOSTS
    assert order_hosts(HOSTS, "shuffle:8") != once
    with pytest.raises(WaveError, match="--order"):
        order_hosts(HOSTS, "random")


@pytest.mark.parametrize(("text", "size", "allowed"), [
    ("0", 10, 0), ("2", 10, 2), ("2", 1, 2),
    ("10%", 10, 1), ("10%", 9, 0), ("25%", 19, 4), ("100%", 7, 7), ("0%", 50, 0),
])
def test_threshold_arithmetic(text: str, size: int, allowed: int) -> None:
    threshold = parse_threshold(text, "--max-failures")
    assert threshold.allowed(size) == allowed
    assert not threshold.exceeded(allowed, size) and threshold.exceeded(allowed + 1, size)


@pytest.mark.parametrize("text", ["x", "-1", "101%", "1.5"])
def test_bad_thresholds(text: str) -> None:
    with pytest.raises(WaveError, match="--max-unreachable"):
        parse_threshold(text, "--max-unreachable")


WAVE = Wave("wave 2", tuple(HOSTS[:10]))
CANARY_WAVE = Wave("canary", ("web01", "web02"))


@pytest.mark.parametrize(("wave", "failed", "unreachable", "failures", "unreach", "go_on"), [
    (WAVE, 1, 0, Threshold(1), Threshold(0), True),  # at the threshold: go on
    (WAVE, 2, 0, Threshold(1), Threshold(0), False),  # strictly above: stop
    (WAVE, 0, 1, Threshold(5), Threshold(0), False),  # unreachable counted on its own
    (WAVE, 5, 0, Threshold(5), Threshold(0), True),  # failures do not count as unreachable
    (WAVE, 1, 1, Threshold(10, True), Threshold(10, True), True),  # 10% of 10 = 1 each
    (WAVE, 2, 0, Threshold(10, True), Threshold(10, True), False),
    (CANARY_WAVE, 1, 0, Threshold(100, True), Threshold(100, True), False),  # the canary allows nothing
    (CANARY_WAVE, 0, 1, Threshold(100, True), Threshold(100, True), False),
    (CANARY_WAVE, 0, 0, Threshold(0), Threshold(0), True),
])
def test_judge_wave(wave: Wave, failed: int, unreachable: int, failures: Threshold, unreach: Threshold,
                    go_on: bool) -> None:
    gate = judge_wave(wave, failed, unreachable, max_failures=failures, max_unreachable=unreach)
    assert gate.go_on is go_on and bool(gate.reasons) is not go_on
