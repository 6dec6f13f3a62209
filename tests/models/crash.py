"""Kill the process running it (tests), as a segfault or the kernel's OOM killer would, on its first `crashes` runs."""

import os
import signal

from flask import current_app
from pydantic import BaseModel
from rq import get_current_job


class Params(BaseModel):
    x: float
    y: float
    crashes: int


def run(params: Params, progress) -> float:
    if current_app.extensions["redis"].incr(f"test:runs:{get_current_job().id}") <= params.crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    return params.x * params.y
