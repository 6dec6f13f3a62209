"""Multiply two numbers after an optional delay: a stand-in for a long job whose length is known."""

import time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# So the product is always finite. An integer, so that an integer just past it is compared as the integer it is
# (as a float, 10**150 + 1 would round to 1e150), and 10**150 itself as the bound it is (1e150 as a float is not).
MAX_MAGNITUDE = 10**150
MAX_DELAY_SECONDS = 300.0
TIMEOUT = 360  # longer than the largest delay
PROGRESS_SECONDS = 0.25

Operand = Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]


class Params(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"x": 6, "y": 7, "delay": 2}]})

    x: Operand
    y: Operand
    delay: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False, description="seconds to wait")] = 0.0


def run(params: Params, progress) -> float:
    """Sleep `delay` seconds, reporting progress, then multiply."""
    deadline = time.monotonic() + params.delay
    while (left := deadline - time.monotonic()) > 0:
        progress(100 * (1 - left / params.delay), "waiting")
        time.sleep(min(left, PROGRESS_SECONDS))
    return params.x * params.y
