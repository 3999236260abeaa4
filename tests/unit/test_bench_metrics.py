"""The benchmark's pure parts: the ideal wall time (bench/metrics.py) and its Markdown table."""

from __future__ import annotations

import pytest

from bench.metrics import (
    Measure,
    Need,
    ideal_rollout,
    ideal_single_phase,
    markdown_table,
    median_measure,
    phase_time,
    rollout_floor,
)


def test_floors_are_one_session_for_a_compliant_host_and_three_plus_two_per_action_otherwise() -> None:
    assert rollout_floor(0) == 8
    assert rollout_floor(1) == 18
    assert rollout_floor(6) == 28


def test_a_phase_lasts_its_slowest_host_when_the_forks_hold_everyone() -> None:
    assert phase_time([(8, 0.0), (28, 0.0), (18, 0.0)], 0.05, forks=32) == pytest.approx(28 * 0.05)


def test_a_host_away_on_its_own_restart_counts_its_outage_on_top_of_its_requests() -> None:
    assert phase_time([(8, 0.0), (18, 0.8)], 0.05, forks=32) == pytest.approx(18 * 0.05 + 0.8)
    assert phase_time([(28, 0.0), (18, 0.8)], 0.0, forks=32) == pytest.approx(0.8)


def test_a_phase_with_more_work_than_forks_lasts_its_requests_spread_over_the_forks() -> None:
    # 100 hosts of 8 requests over 32 forks: ceil(800 / 32) = 25 request times, more than one host's 8.
    assert phase_time([(8, 0.0)] * 100, 0.02, forks=32) == pytest.approx(25 * 0.02)
    assert phase_time([], 0.02, forks=32) == 0.0


def test_a_rollout_is_its_preflight_then_each_wave_in_turn() -> None:
    waves = [["a"], ["b", "c"], ["d"]]
    needs = {"a": Need(6, 0.8), "b": Need(2), "c": Need(0), "d": Need(1)}
    # preflight: every host one session (8); then per wave the slowest host's requests beyond it.
    expected = 8 + (2 * 6 + 8) + (2 * 2 + 8) + (2 * 1 + 8)
    assert ideal_rollout(waves, needs, 0.01, forks=32) == pytest.approx(expected * 0.01 + 0.8)


def test_a_compliant_fleet_costs_only_the_preflight_and_no_latency_costs_nothing() -> None:
    waves = [["a"], ["b", "c"]]
    assert ideal_rollout(waves, dict.fromkeys("abc", Need()), 0.05, forks=32) == pytest.approx(8 * 0.05)
    assert ideal_rollout(waves, {"a": Need(3), "b": Need(1), "c": Need(0)}, 0.0, forks=32) == 0.0


def test_one_phase_of_every_host_for_facts_and_the_baseline() -> None:
    assert ideal_single_phase({"a": Need(), "b": Need(4)}, 0.02, forks=32) == pytest.approx(24 * 0.02)


def _m(scenario: str, wall: float, *, hosts: int = 10, latency: int = 20, ideal: float = 1.0,
       exit_code: int = 0) -> Measure:
    return Measure(scenario, hosts, latency, wall, 30.0, 100.0, 80.0, ideal, exit_code)


def test_the_table_compares_each_rollout_with_the_baseline_of_its_own_cell() -> None:
    table = markdown_table([_m("rollout", 4.0), _m("baseline", 12.0), _m("rollout", 5.0, latency=50),
                            _m("baseline", 10.0, latency=50), _m("facts", 2.0)])
    rows = table.splitlines()
    assert rows[0].startswith("| hosts | latency | run |")
    assert len(rows) == 2 + 5
    rollout_20 = next(r for r in rows if "| 20 ms | rollout |" in r)
    rollout_50 = next(r for r in rows if "| 50 ms | rollout |" in r)
    assert rollout_20.endswith("| 3.00 | 0 |")
    assert rollout_50.endswith("| 2.00 | 0 |")
    facts = next(r for r in rows if "| facts |" in r)
    assert facts.endswith("|  | 0 |")  # no ratio for anything but the rollout


def test_the_table_says_n_a_where_the_ideal_is_zero_and_shows_failed_exits() -> None:
    table = markdown_table([_m("rollout", 4.0, latency=0, ideal=0.0, exit_code=1)])
    row = table.splitlines()[2]
    assert "| 0.0 | n/a |" in row
    assert row.endswith("| 1 |")


def test_repeats_give_the_median_of_each_figure_and_the_worst_exit() -> None:
    runs = [_m("rollout", 3.0), _m("rollout", 9.0, exit_code=1), _m("rollout", 4.0)]
    median = median_measure(runs)
    assert median.wall_s == 4.0
    assert median.exit_code == 1


def test_spread_deals_hosts_in_turn_so_every_share_mixes_the_fleet() -> None:
    from bench.spread import deal

    names = [f"web{i:02d}" for i in range(1, 8)]
    shares = deal(names, 3)
    assert shares == [["web01", "web04", "web07"], ["web02", "web05"], ["web03", "web06"]]
    assert sorted(n for share in shares for n in share) == names
