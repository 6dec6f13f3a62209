"""The SEIR model (models/simulation.py) against cases with known answers, and its reproducibility."""

import json

from models.simulation import simulate_seir

BASE = {"population": 10_000, "initial_infected": 10, "incubation_days": 4.0, "infectious_days": 6.0}


def test_no_transmission_infects_nobody_else() -> None:
    summary = simulate_seir(**BASE, r0=0.0, days=120, runs=200, seed=1)
    assert summary["final_size"] == {"low": 10.0, "median": 10.0, "high": 10.0}
    assert summary["peak_day"]["high"] == 0.0
    assert summary["died_out"] == 1.0
    assert summary["infectious"]["median"][0] == 10.0
    assert summary["infectious"]["high"][-1] == 0.0


def test_below_threshold_the_outbreak_dies_out_in_most_runs() -> None:
    summary = simulate_seir(**BASE | {"initial_infected": 5}, r0=0.6, days=365, runs=500, seed=2)
    assert summary["died_out"] > 0.95
    assert summary["final_size"]["high"] < 0.01 * BASE["population"]


def test_above_threshold_the_final_size_matches_the_final_size_equation() -> None:
    # For a large population, the share ever infected z solves z = 1 - exp(-r0 z): 0.797 for r0 = 2.
    summary = simulate_seir(
        **BASE | {"population": 200_000, "initial_infected": 200}, r0=2.0, days=500, runs=50, seed=3
    )
    assert abs(summary["final_size"]["median"] / 200_000 - 0.797) < 0.02
    curve = summary["infectious"]["median"]
    assert abs(curve.index(max(curve)) - summary["peak_day"]["median"]) < 10
    assert summary["ended"] == 1.0  # every run's epidemic is over by day 500...
    assert summary["died_out"] == 0.0  # ...and none of them died out: 80% were infected


def test_from_one_case_the_outbreak_dies_out_about_as_often_as_branching_theory_says() -> None:
    # Each case infects a geometric number of others with mean r0, so an outbreak from one case dies out with
    # probability 1 / r0 (0.4 for r0 = 2.5); the daily steps of the chain binomial make it a little less.
    summary = simulate_seir(
        **BASE | {"population": 100_000, "initial_infected": 1}, r0=2.5, days=400, runs=2000, seed=4
    )
    assert 0.3 < summary["died_out"] < 0.45
    assert summary["ended"] == 1.0


def test_a_seed_reproduces_the_summary_and_another_does_not() -> None:
    first = simulate_seir(**BASE, r0=2.5, days=100, runs=20, seed=42)
    assert simulate_seir(**BASE, r0=2.5, days=100, runs=20, seed=42) == first
    assert simulate_seir(**BASE, r0=2.5, days=100, runs=20, seed=43) != first


def test_progress_is_reported_every_day() -> None:
    days: list[int] = []
    simulate_seir(**BASE, r0=1.5, days=30, runs=3, seed=1, on_day=days.append)
    assert days == list(range(1, 31))


def test_the_largest_summary_stays_well_under_a_megabyte() -> None:
    summary = simulate_seir(**BASE, r0=2.5, days=1000, runs=50, seed=1)
    assert len(summary["infectious"]["median"]) == 1001
    assert len(json.dumps(summary)) < 100_000
