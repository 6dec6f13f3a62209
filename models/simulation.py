"""A stochastic SEIR epidemic (chain binomial), run many times: infectious people per day with a 90% band.

Each day, in every run at once (vectorised with NumPy over replicate runs):
  new exposures   ~ Binomial(S, 1 - exp(-beta * I / N))
  new infectious  ~ Binomial(E, 1 - exp(-1 / incubation_days))
  new recoveries  ~ Binomial(I, gamma),  gamma = 1 - exp(-1 / infectious_days)
A case stays infectious 1 / gamma days on average, so beta = r0 * gamma makes each case infect r0
others on average, and the final size follows z = 1 - exp(-r0 z) for a large population.
"""

import secrets
from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

TIMEOUT = 600  # the largest run (100,000 runs over 1,000 days) takes about 15 s of one core
BAND = (5, 50, 95)  # the 90% band and the median, in percent
DIED_OUT_SHARE = 0.01  # an outbreak that ended having infected fewer than this share of the population died out
EXAMPLE: dict[str, Any] = {"population": 1_000_000, "initial_infected": 20, "r0": 2.5, "incubation_days": 4,
                           "infectious_days": 6, "days": 365, "runs": 1000, "seed": 7}  # fmt: skip


class Params(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    population: Annotated[int, Field(ge=1, le=1_000_000_000, description="people in the population")]
    initial_infected: Annotated[int, Field(ge=1, description="infectious people on day 0, at most population")]
    r0: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False, description="basic reproduction number")]
    incubation_days: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False, description="mean latent period")]
    infectious_days: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False, description="mean infectious period")]
    days: Annotated[int, Field(ge=1, le=1000, description="days to simulate")]
    runs: Annotated[int, Field(ge=1, le=100_000, description="replicate runs")]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="random seed; one is drawn if absent")] = Field(
        default_factory=lambda: secrets.randbits(63)
    )

    @field_validator("initial_infected")
    @classmethod
    def _at_most_population(cls, value: int, info: ValidationInfo) -> int:
        population = info.data.get("population")
        if population is not None and value > population:
            raise PydanticCustomError(
                "too_many", "must be at most population ({population})", {"population": population}
            )
        return value


def run(params: Params, progress) -> dict:
    """Run the model, reporting progress day by day, and return its summary."""
    days = params.days
    return simulate_seir(**params.model_dump(), on_day=lambda day: progress(100 * day / days, f"day {day} of {days}"))


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
    ended = exposed + infectious == 0
    ever_infected = population - susceptible
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
        "final_size": _band(ever_infected),
        "ended": round(float(np.mean(ended)), 4),
        "died_out": round(float(np.mean(ended & (ever_infected - initial_infected < DIED_OUT_SHARE * population))), 4),
    }
