"""The benchmark's pure parts: the ideal wall time (bench/metrics.py) and its Markdown table."""

from __future__ import annotations

import dataclasses

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
    start_waits,
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


def test_the_table_shows_the_longest_wait_to_start_and_n_a_without_host_logs() -> None:
    waited = Measure("rollout", 10, 20, 4.0, 30.0, 100.0, 80.0, 1.0, 0, 2.25)
    rows = markdown_table([waited, _m("baseline", 8.0)]).splitlines()
    assert "max wait to start s" in rows[0]
    assert next(r for r in rows if "| rollout |" in r).endswith("| 80 | 2.2 | 2.00 | 0 |")
    assert next(r for r in rows if "| baseline |" in r).endswith("| 80 | n/a |  | 0 |")


def _line(host: str, event: str, second: float, wave: str | None = None) -> dict[str, object]:
    stamp = f"2026-12-02T10:00:{second:09.6f}Z"
    return {"host": host, "event": event, "timestamp": stamp, **({"wave": wave} if wave else {})}


def test_each_phase_waits_from_its_first_host_start_to_its_last_and_is_bounded_by_rounds_of_its_slowest_host() -> None:
    lines = [
        # preflight: 3 hosts, 2 forks; c starts when a is done.
        _line("a", "host_start", 0.0, "preflight"), _line("b", "host_start", 0.1, "preflight"),
        _line("a", "host_done", 1.0, "preflight"), _line("c", "host_start", 1.1, "preflight"),
        _line("b", "host_done", 3.1, "preflight"), _line("c", "host_done", 2.0, "preflight"),
        # a wave of its own, later, in another order in the file: its start is its own first host_start.
        _line("c", "host_start", 11.5, "wave 1"), _line("a", "host_start", 10.0, "wave 1"),
        _line("a", "host_done", 10.5, "wave 1"), _line("c", "host_done", 12.0, "wave 1"),
        _line("a", "step_start", 0.0, "wave 1"), {"host": "b", "event": "host_start", "timestamp": "garbled"},
    ]
    preflight, wave = start_waits(lines, forks=2)
    assert (preflight.phase, preflight.hosts) == ("preflight", 3)
    assert preflight.max_wait_s == pytest.approx(1.1)
    assert preflight.slowest_host_s == pytest.approx(3.0)  # b: 0.1 -> 3.1
    assert preflight.bound_s == pytest.approx(2 * 3.0) and preflight.bounded
    assert (wave.phase, wave.hosts) == ("wave 1", 2)
    assert wave.max_wait_s == pytest.approx(1.5)
    assert wave.bound_s == pytest.approx(1 * 0.5) and not wave.bounded  # c waited with a worker free


def test_facts_lines_without_a_wave_are_one_phase_and_no_lines_no_phases() -> None:
    (only,) = start_waits([_line("a", "host_start", 5.0), _line("b", "host_start", 5.25)], forks=32)
    assert (only.phase, only.hosts, only.max_wait_s, only.slowest_host_s) == ("all", 2, 0.25, 0.0)
    assert start_waits([], forks=32) == []


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
    assert median.max_wait_start_s is None
    waited = [dataclasses.replace(r, max_wait_start_s=w) for r, w in zip(runs, (1.0, 5.0, 2.0), strict=True)]
    assert median_measure(waited).max_wait_start_s == 2.0


def test_spread_deals_hosts_in_turn_so_every_share_mixes_the_fleet() -> None:
    from bench.spread import deal

    names = [f"web{i:02d}" for i in range(1, 8)]
    shares = deal(names, 3)
    assert shares == [["web01", "web04", "web07"], ["web02", "web05"], ["web03", "web06"]]
    assert sorted(n for share in shares for n in share) == names
