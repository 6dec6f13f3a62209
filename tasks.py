"""The job functions the workers run: progress, retries of transient faults, and outcomes in Postgres.

Imports core, catalog (the models) and scripts. Every function here runs inside the app context the
worker pushes per job (record_failure may also run outside one: see there); none imports app.
"""

import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

from flask import current_app, has_app_context
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Retry, get_current_job
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.timeouts import JobTimeoutException
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.exc import InterfaceError, OperationalError

from core import AUTOCOMMIT, Result, db
from longjobs.catalog import ModelFailed
from longjobs.workers.scripts import SAVE_META

log = logging.getLogger(__name__)

# Faults of the servers, not of the task: worth running the task again after a pause.
TRANSIENT_FAULTS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
PROGRESS_INTERVAL_SECONDS = 0.25  # at most four progress writes to Redis a second
RUNNING_PERCENT_CAP = 99  # 100 is for finished tasks


UNWRITTEN_KEY = "longjobs:unwritten"  # outcomes the database could not take yet, by task id


class JobStopped(Exception):
    """Raised inside a running job when a user asks to stop it."""


class JobHandedBack(Exception):
    """Raised inside a running job that cannot finish before its worker shuts down."""


class ProgressReporter:
    """Publishes a running job's percent complete in its meta: throttled, never going backwards."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.save_meta = job.connection.register_script(SAVE_META)  # not Job.save_meta: see SAVE_META
        self.percent = 0
        self.written_at = float("-inf")

    def report(self, percent: float, message: str | None = None) -> None:
        """Record progress; written to Redis only if the last write is old enough."""
        self.percent = max(self.percent, min(int(percent), RUNNING_PERCENT_CAP))
        now = time.monotonic()
        if now - self.written_at < PROGRESS_INTERVAL_SECONDS:
            return
        self.job.meta["progress"] = {"percent": self.percent, "message": message}
        try:
            self.save_meta([self.job.key], [self.job.serializer.dumps(self.job.meta)])
        except RedisError:  # progress is for show: a job does not fail for want of it
            return
        self.written_at = now


def _upsert(where: Any) -> Insert:
    statement = insert(Result.__table__)  # a Core statement, made once: no ORM bookkeeping per row
    outcome = {name: statement.excluded[name] for name in ("status", "result", "error", "started_at", "ended_at")}
    return statement.on_conflict_do_update(index_elements=["task_id"], set_=outcome, where=where)


# A task run again keeps one row, holding its latest outcome, except that nothing overwrites a finished
# task's row: a result, once stored, is final.
STORE_FINISHED = _upsert(None)
STORE_UNLESS_FINISHED = _upsert(Result.__table__.c.status != "finished")


def store_result(values: dict[str, Any]) -> None:
    """Write an outcome row (see STORE_FINISHED); raises if the database cannot take it."""
    statement = STORE_FINISHED if values["status"] == "finished" else STORE_UNLESS_FINISHED
    params = values | {"task_id": uuid.UUID(values["task_id"])}
    if db.session.registry.has() and db.session().in_transaction():  # has(): asking must not make a session
        db.session.execute(statement, params)
        db.session.commit()
        return
    # One statement needs neither a transaction nor a session's bookkeeping (docs/performance.md).
    with db.engines[AUTOCOMMIT].connect() as connection:
        connection.execute(statement, params)


def _outcome(
    task_id: str, task_type: str | None, status: str, result: Any, error: str | None, started_at: datetime | None
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "type": task_type,
        "status": status,
        "result": result,
        "error": error,
        "started_at": started_at.isoformat() if started_at else None,
        "ended_at": datetime.now(UTC).isoformat(),
    }


def write_result(
    task_id: str,
    task_type: str,
    status: str,
    *,
    result: Any = None,
    error: str | None = None,
    started_at: datetime | None = None,
) -> None:
    """Record a task's outcome; while the database is unreachable, keep it in Redis for the sweeper."""
    values = _outcome(task_id, task_type, status, result, error, started_at)
    try:
        store_result(values)
    except (OperationalError, InterfaceError) as fault:
        db.session.rollback()
        current_app.extensions["redis"].hset(UNWRITTEN_KEY, task_id, json.dumps(values))
        log.warning("task %s %s; the database is unreachable (%s), so its outcome waits in Redis", task_id, status,
                    type(fault).__name__)  # fmt: skip
        return
    log.info("task %s %s", task_id, status)


def retry_transient_faults(func: Callable[..., Any]) -> Callable[..., Any]:
    """Hand a job that hit a transient fault back to RQ to run again, with exponential backoff.

    Any other exception is a deterministic failure and propagates at once, as does a transient
    fault once RETRY_ATTEMPTS retries are spent. A job interrupted by its worker's shutdown goes
    back to the front of its queue at once.
    """

    @functools.wraps(func)
    def run(task_id: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(task_id, *args, **kwargs)
        except JobHandedBack:
            db.session.rollback()
            log.info("task %s handed back to the front of its queue: its worker is shutting down", task_id)
            return Retry(max=(cast(Job, get_current_job()).number_of_retries or 0) + 1, enqueue_at_front=True)
        except TRANSIENT_FAULTS as fault:
            db.session.rollback()
            attempts = current_app.config["RETRY_ATTEMPTS"]
            retries = cast(Job, get_current_job()).number_of_retries or 0
            if retries >= attempts:
                raise
            backoff = current_app.config["RETRY_BACKOFF_SECONDS"]
            intervals = [backoff * 2**n for n in range(attempts)]
            log.warning(
                "task %s hit a transient fault (%s); retry %d of %d in %d s",
                task_id, type(fault).__name__, retries + 1, attempts, intervals[retries],
            )  # fmt: skip
            return Retry(max=attempts, interval=intervals)

    return run


@retry_transient_faults
def run_model(task_id: str, name: str, params: dict[str, Any]) -> Any:
    """Run a model (longjobs.catalog) on a task's parameters, reporting progress, and store its result."""
    job = cast(Job, get_current_job())  # RQ runs it as a job
    model = current_app.extensions["models"].get(name)
    if model is None:
        raise ModelFailed(f"this worker has no model named {name!r} (was models/{name}.* removed?)")
    on_start = current_app.extensions["running_job"].set_group  # the worker's record, for its supervisor
    result = model.run(params, ProgressReporter(job).report, task=task_id, on_start=on_start)
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ModelFailed(f"the model returned a value JSON cannot hold ({exc})") from None
    write_result(task_id, name, "finished", result=result, started_at=job.started_at)
    return result


def record_failure(
    job: Job, connection: Any, kind: type[BaseException], value: BaseException, tb: TracebackType
) -> None:
    """RQ failure callback: give a task that failed or was stopped a row its poller can read.

    RQ's own maintenance (`rq info`, the dashboard's counts, any worker's registry cleanup) calls it too, for a job
    it finds abandoned, in a process that may have no app of ours: the outcome then waits in Redis, on the
    connection RQ gives, for the watchmen to write (recovery.py).
    """
    if isinstance(value, AbandonedJobError):
        error = "its worker stopped reporting while it ran, and RQ's maintenance found it abandoned"
        if not has_app_context():
            values = _outcome(job.id, job.meta.get("type"), "failed", None, error, job.started_at)
            connection.hset(UNWRITTEN_KEY, job.id, json.dumps(values))
            return
        write_result(job.id, job.meta["type"], "failed", error=error, started_at=job.started_at)
        return
    db.session.rollback()  # the job may have failed halfway through a transaction
    if isinstance(value, JobStopped):
        status, error = "stopped", "stopped on request while running"
    elif isinstance(value, JobTimeoutException):
        status, error = "failed", f"the task ran longer than its timeout of {job.timeout} s and was stopped"
    elif isinstance(value, ModelFailed):
        status, error = "failed", str(value)
    else:
        status, error = "failed", f"{kind.__name__}: {value}"
    write_result(job.id, job.meta["type"], status, error=error, started_at=job.started_at)
