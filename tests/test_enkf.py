"""The EnKF model (models/enkf.R) run as the service runs it: R(t) recovered from simulated cases, its
reproducibility, and the shape of its output and progress."""

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "models/enkf.R"
PROGRESS = re.compile(r"PROGRESS (\d+) (\S.*)")

# The recovery scenario: R(t) = 2.0 for 40 days then 0.8 for 40 days, 20 infections on day 0, Poisson noise.
R_BEFORE, R_AFTER, CHANGE_DAY, DAYS = 2.0, 0.8, 40, 80
# Days left out of the comparison: the first two weeks (counts under ~60, R barely identifiable, and the
# filter still forgetting its prior) and the week right after the step change.
BURN_IN_DAYS = 14
CHANGE_WINDOW_DAYS = 7
# Largest |posterior median - truth| allowed. Over 80 runs (40 simulations x ensembles of 100 and 300) the
# worst errors were 0.32 while R = 2 (days 14-39, 50 to 5,000 cases a day) and 0.08 while R = 0.8 (days 47-79).
TOLERANCE_BEFORE = 0.4
TOLERANCE_AFTER = 0.15
# The 90% band covered the truth on 97-100% of the compared days in those runs; its width was 15-22% of the
# median on average, so the coverage does not come from bands wide enough to cover anything.
MIN_COVERAGE = 0.85
MAX_MEAN_RELATIVE_WIDTH = 0.35
# The filtered incidence follows the counts closely (correlation >= 0.999 in those runs).
MIN_INCIDENCE_CORRELATION = 0.99


def run_enkf(tmp_path: Path, params: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run the model as the service does, from the project root; fail (not skip) without R."""
    if shutil.which("Rscript") is None:
        pytest.fail("R is required for the EnKF model: Rscript is not on PATH (install r-base-core r-cran-jsonlite)")
    params_file = tmp_path / f"params-{len(list(tmp_path.iterdir()))}.json"
    params_file.write_text(json.dumps(params))
    done = subprocess.run(
        ["Rscript", "--vanilla", SCRIPT, str(params_file)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


def result(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(done.stdout)  # exactly one JSON value, or this raises


def generation_weights(mean_days: float) -> np.ndarray:
    """The script's generation interval: gamma of shape 2, w_s = F(s + 1/2) - F(s - 1/2), day 1 taking (0, 3/2],
    truncated at the 99.9% quantile."""
    scale = mean_days / 2

    def cdf(x: float) -> float:
        return 1 - math.exp(-x / scale) * (1 + x / scale)

    max_lag = 2
    while 1 - cdf(max_lag) > 0.001:
        max_lag += 1
    w = np.array([cdf(1.5)] + [cdf(s + 0.5) - cdf(s - 0.5) for s in range(2, max_lag + 1)])
    return w / w.sum()


def simulate_cases(rt: np.ndarray, population: int, initial: int, mean_days: float, seed: int) -> list[int]:
    """Renewal-equation epidemic with depletion of susceptibles: I_t ~ Poisson(R_t S/N sum_s w_s I_(t-s))."""
    rng = np.random.default_rng(seed)
    w = generation_weights(mean_days)
    series = [0.0] * (len(w) - 1) + [float(initial)]  # day 0 last
    susceptible = population - initial
    cases = []
    for r in rt:
        force = sum(w[s - 1] * series[-s] for s in range(1, len(w) + 1))
        new = min(int(rng.poisson(r * susceptible / population * force)), susceptible)
        susceptible -= new
        series.append(new)
        cases.append(new)
    return cases


def band(output: dict[str, Any], key: str, level: str) -> np.ndarray:
    return np.array([day[level] for day in output[key]])


def test_recovers_a_step_change_in_r(tmp_path: Path) -> None:
    truth = np.array([R_BEFORE] * CHANGE_DAY + [R_AFTER] * (DAYS - CHANGE_DAY))
    cases = simulate_cases(truth, 1_000_000, 20, 5.0, seed=2024)
    assert 1_000 < max(cases) < 20_000  # the scenario the tolerances were measured on
    out = result(run_enkf(tmp_path, {"cases": cases, "population": 1_000_000, "ensemble": 300, "seed": 11}))
    low, median, high = (band(out, "rt", level) for level in ("low", "median", "high"))

    before = np.arange(BURN_IN_DAYS, CHANGE_DAY)
    after = np.arange(CHANGE_DAY + CHANGE_WINDOW_DAYS, DAYS)
    error = np.abs(median - truth)
    assert error[before].max() <= TOLERANCE_BEFORE, error[before].round(2)
    assert error[after].max() <= TOLERANCE_AFTER, error[after].round(2)

    compared = np.concatenate([before, after])
    covered = (low <= truth) & (truth <= high)
    assert covered[compared].mean() >= MIN_COVERAGE
    assert ((high - low) / median)[compared].mean() <= MAX_MEAN_RELATIVE_WIDTH

    incidence = band(out, "incidence", "median")
    assert np.corrcoef(incidence, cases)[0, 1] >= MIN_INCIDENCE_CORRELATION


def test_a_seed_reproduces_the_output_and_another_does_not(tmp_path: Path) -> None:
    params = {"cases": [10, 12, 15, 20, 24, 30, 38, 45, 50, 48, 44, 40, 35, 30, 26], "population": 100_000}
    first = run_enkf(tmp_path, params | {"ensemble": 50, "seed": 7}).stdout
    assert run_enkf(tmp_path, params | {"ensemble": 50, "seed": 7}).stdout == first
    other = run_enkf(tmp_path, params | {"ensemble": 50, "seed": 8}).stdout
    assert other != first
    assert json.loads(other)["seed"] == 8

    drawn = run_enkf(tmp_path, params | {"ensemble": 50})
    seed = result(drawn)["seed"]
    assert isinstance(seed, int) and 0 <= seed <= 2_147_483_647
    assert run_enkf(tmp_path, params | {"ensemble": 50, "seed": seed}).stdout == drawn.stdout
    assert result(run_enkf(tmp_path, params | {"ensemble": 50}))["seed"] != seed  # 1 in 2^31 to collide


def test_output_shape_and_progress(tmp_path: Path) -> None:
    cases = [float(round(30 * math.exp(0.08 * t - 0.002 * t * t))) for t in range(60)]  # as 30.0, 33.0, ...
    done = run_enkf(tmp_path, {"cases": cases, "population": 50_000, "seed": 3})  # ensemble and generation: defaults
    out = result(done)
    assert set(out) == {"days", "seed", "rt", "incidence"}
    assert out["days"] == len(cases) and out["seed"] == 3
    for key in ("rt", "incidence"):
        assert len(out[key]) == len(cases)
        for day in out[key]:
            assert set(day) == {"low", "median", "high"}
            assert all(isinstance(v, int | float) and math.isfinite(v) for v in day.values())
            assert day["low"] <= day["median"] <= day["high"]
    assert all(day["low"] > 0 for day in out["rt"])
    assert all(day["low"] >= 0 for day in out["incidence"])

    percents = []
    for line in done.stderr.splitlines():
        if line.startswith("PROGRESS"):
            match = PROGRESS.fullmatch(line)
            assert match, line
            percents.append(int(match[1]))
    assert len(percents) >= 20  # every 2-5% of the days
    assert all(0 <= p <= 100 for p in percents)
    assert percents == sorted(percents)
    assert percents[0] == 0 and percents[-1] == 100
