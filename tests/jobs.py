"""Job functions for tests that need a job to fail on cue; the worker imports them as it does tasks.

They go through the same retry wrapper, failure callback and result writing as the real tasks.
"""

from flask import current_app
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
