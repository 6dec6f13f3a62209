"""The job functions the workers run, and how they record outcomes in Postgres.

Imports core only. Every function here runs inside an app context the worker pushes per job.
"""

import logging
import time
import uuid
from types import TracebackType
from typing import Any

from rq.job import Job
from rq.timeouts import JobTimeoutException
from sqlalchemy.dialects.postgresql import insert

from core import Result, db

log = logging.getLogger(__name__)


def write_result(task_id: str, status: str, result: float | None = None, error: str | None = None) -> None:
    """Record a task's outcome; a task run again keeps one row, holding its latest outcome."""
    values = {"status": status, "result": result, "error": error, "finished_at": db.func.now()}
    statement = insert(Result).values(task_id=uuid.UUID(task_id), **values)
    db.session.execute(statement.on_conflict_do_update(index_elements=[Result.task_id], set_=values))
    db.session.commit()
    log.info("task %s %s", task_id, status)


def multiply(task_id: str, x: float, y: float, delay: float = 0.0) -> float:
    """Sleep `delay` seconds, then store and return x * y."""
    time.sleep(delay)
    product = x * y
    write_result(task_id, "finished", result=product)
    return product


def record_failure(
    job: Job, connection: Any, kind: type[BaseException], value: BaseException, tb: TracebackType
) -> None:
    """RQ failure callback: give a task that failed a `failed` row its poller can read."""
    db.session.rollback()  # the job may have failed halfway through a transaction
    if isinstance(value, JobTimeoutException):
        error = f"the task ran longer than its timeout of {job.timeout} s and was stopped"
    else:
        error = f"{kind.__name__}: {value}"
    write_result(job.id, "failed", error=error)
