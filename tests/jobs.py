"""Job functions for tests that need a job to fail on cue; the worker imports them as it does tasks.

They go through the same retry wrapper, failure callback and result writing as the real tasks.
"""

import os
import signal

from flask import current_app
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

import tasks


@tasks.retry_transient_faults
def fail_then_multiply(task_id: str, x: float, y: float, failures: int, fault: str) -> float:
    """Raise `fault` on the first `failures` runs of this task, then multiply as tasks.multiply does."""
    runs = current_app.extensions["redis"].incr(f"test:runs:{task_id}")
    if runs <= failures:
        if fault == "connection":
            raise OperationalError("INSERT INTO results ...", {}, ConnectionError("server closed the connection"))
        raise ValueError(f"bad data on run {runs}")
    return tasks.multiply.__wrapped__(task_id, x, y)


class CrashParams(BaseModel):
    x: float
    y: float
    crashes: int


@tasks.retry_transient_faults
def crash_then_multiply(task_id: str, x: float, y: float, crashes: int) -> float:
    """Kill the process running it, as a segfault or the kernel's OOM killer would, on its first `crashes` runs."""
    if current_app.extensions["redis"].incr(f"test:runs:{task_id}") <= crashes:
        os.kill(os.getpid(), signal.SIGKILL)
    return tasks.multiply.__wrapped__(task_id, x, y)


class LeakParams(BaseModel):
    x: float
    y: float
    megabytes: int


_leaked: list[bytes] = []


@tasks.retry_transient_faults
def leak_then_multiply(task_id: str, x: float, y: float, megabytes: int) -> float:
    """Keep `megabytes` of memory for good, as a leaking job does, then multiply."""
    _leaked.append(b"\x01" * (megabytes << 20))  # written, so resident
    return tasks.multiply.__wrapped__(task_id, x, y)
