"""The draws of the lab's seeded, rate-based faults (orchestrator.lab.common.RandomFaults)."""

from __future__ import annotations

import pytest

from orchestrator.lab.common import FAULT_KINDS, RandomFaults

EVERY_REQUEST = ("drop", "slow", "timeout", "shell_gone", "http_503", "http_401", "hang")


def _draws(faults: RandomFaults, count: int, applicable: tuple[str, ...] = EVERY_REQUEST) -> list[str | None]:
    return [faults.draw(applicable) for _ in range(count)]


def test_the_same_seed_draws_the_same_faults() -> None:
    first, second = RandomFaults(0.2, seed=7), RandomFaults(0.2, seed=7)
    assert _draws(first, 500) == _draws(second, 500)
    assert _draws(RandomFaults(0.2, seed=8), 500) != _draws(RandomFaults(0.2, seed=7), 500)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.2, 1.0])
def test_the_rate_is_the_share_of_requests_faulted(rate: float) -> None:
    faults = RandomFaults(rate, seed=11)
    drawn = _draws(faults, 5000)
    share = sum(1 for kind in drawn if kind is not None) / len(drawn)
    assert abs(share - rate) < 0.02
    assert sum(faults.injected.values()) == len([k for k in drawn if k is not None])


def test_only_enabled_kinds_that_apply_are_drawn() -> None:
    faults = RandomFaults(1.0, seed=3, kinds={"quota", "drop", "cut"})
    assert set(_draws(faults, 200, ("slow", "quota", "http_503"))) == {"quota"}
    assert set(_draws(faults, 200, ("slow", "http_503"))) == {None}
    assert set(faults.injected) == {"quota"}


def test_kinds_are_drawn_evenly() -> None:
    faults = RandomFaults(1.0, seed=5)
    _draws(faults, 7000)
    assert set(faults.injected) == set(EVERY_REQUEST)
    assert all(900 < count < 1100 for count in faults.injected.values()), faults.injected


def test_a_request_s_fate_does_not_depend_on_the_kinds_before_it() -> None:
    # Two hosts with the same seed meeting different requests first draw alike afterwards.
    one, other = RandomFaults(0.3, seed=2), RandomFaults(0.3, seed=2)
    one.draw(("quota",))
    other.draw(("drop", "timeout"))
    assert _draws(one, 100) == _draws(other, 100)


@pytest.mark.parametrize(("args", "message"), [
    ({"rate": 0.1, "kinds": {"drop", "flood"}}, "unknown fault kinds ['flood']"),
    ({"rate": 1.5}, "between 0 and 1"),
    ({"rate": 0.1, "hold": 0}, "hold must be positive"),
])
def test_bad_settings_are_refused(args: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RandomFaults(seed=1, **args)  # type: ignore[arg-type]  # the dict holds each keyword's own type


def test_every_kind_is_documented_in_the_lab_page() -> None:
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "lab.md").read_text(encoding="utf-8")
    for kind in FAULT_KINDS:
        assert f"`{kind}`" in page, kind


def test_faults_aimed_at_actions_strike_only_those() -> None:
    aimed, everywhere = RandomFaults(1.0, seed=4, actions={"Signal"}), RandomFaults(1.0, seed=4)
    assert aimed.draw(EVERY_REQUEST, "Receive") is None and aimed.draw(EVERY_REQUEST, "Create") is None
    everywhere.draw(EVERY_REQUEST, "Receive")
    everywhere.draw(EVERY_REQUEST, "Create")
    # The requests passed over took their draws: the Signal after them meets what it would have.
    assert aimed.draw(EVERY_REQUEST, "Signal") == everywhere.draw(EVERY_REQUEST, "Signal") is not None
    assert aimed.draw(("cut",)) == "cut"  # a step run is no request: the aim does not apply to it
