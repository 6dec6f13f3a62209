"""Report progress every 0.3 s for a while, each message the moment it was reported: the bench's event streams tell
from it how long a change took to reach them."""

import time

from pydantic import BaseModel, Field

REPORT_SECONDS = 0.3  # just over the workers' throttle (0.25 s): every report is written


class Params(BaseModel):
    seconds: float = Field(gt=0, le=3600)


def run(params: Params, progress) -> int:
    started = time.monotonic()
    reports = 0
    while (elapsed := time.monotonic() - started) < params.seconds:
        progress(100 * elapsed / params.seconds, repr(time.time()))
        reports += 1
        time.sleep(REPORT_SECONDS)
    return reports
