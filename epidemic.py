"""A stochastic SEIR epidemic model (chain binomial), vectorised with NumPy over replicate runs.

A pure module: imports nothing of ours. Each day, in every run at once:
  new exposures   ~ Binomial(S, 1 - exp(-beta * I / N))
  new infectious  ~ Binomial(E, 1 - exp(-1 / incubation_days))
  new recoveries  ~ Binomial(I, gamma),  gamma = 1 - exp(-1 / infectious_days)
A case stays infectious 1 / gamma days on average, so beta = r0 * gamma makes each case infect r0
others on average, and the final size follows z = 1 - exp(-r0 z) for a large population.
"""

from collections.abc import Callable

import numpy as np

BAND = (5, 50, 95)  # the 90% band and the median, in percent


def _band(values: np.ndarray) -> dict[str, float]:
    low, median, high = np.percentile(values, BAND)
    return {"low": round(float(low), 1), "median": round(float(median), 1), "high": round(float(high), 1)}


def simulate_seir(
    *,
    population: int,
    initial_infected: int,
    r0: float,
    incubation_days: float,
    infectious_days: float,
    days: int,
    runs: int,
    seed: int,
    on_day: Callable[[int], None] = lambda day: None,
) -> dict:
    """Run the model `runs` times for `days` days and summarise the runs (medians and 90% bands)."""
    rng = np.random.default_rng(seed)
    susceptible = np.full(runs, population - initial_infected, dtype=np.int64)
    exposed = np.zeros(runs, dtype=np.int64)
    infectious = np.full(runs, initial_infected, dtype=np.int64)
    p_onset = -np.expm1(-1.0 / incubation_days)
    p_recovery = -np.expm1(-1.0 / infectious_days)
    beta = r0 * p_recovery

    # Only the per-day quantiles are kept, so memory grows with runs + days, not runs * days.
    curve = np.empty((days + 1, len(BAND)))
    curve[0] = np.percentile(infectious, BAND)
    peak_size = infectious.copy()
    peak_day = np.zeros(runs, dtype=np.int64)
    for day in range(1, days + 1):
        exposures = rng.binomial(susceptible, -np.expm1(-beta * infectious / population))
        onsets = rng.binomial(exposed, p_onset)
        recoveries = rng.binomial(infectious, p_recovery)
        susceptible -= exposures
        exposed += exposures - onsets
        infectious += onsets - recoveries
        curve[day] = np.percentile(infectious, BAND)
        higher = infectious > peak_size
        peak_size[higher] = infectious[higher]
        peak_day[higher] = day
        on_day(day)

    rounded = np.round(curve, 1)
    return {
        "days": days,
        "runs": runs,
        "seed": seed,
        "infectious": {
            "low": rounded[:, 0].tolist(),
            "median": rounded[:, 1].tolist(),
            "high": rounded[:, 2].tolist(),
        },
        "peak_day": _band(peak_day),
        "peak_size": _band(peak_size),
        "final_size": _band(population - susceptible),
        "died_out": round(float(np.mean(exposed + infectious == 0)), 4),
    }
