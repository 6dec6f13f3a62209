"""What can happen to a task: accept it, poll it, describe it, follow it, list it, cancel it.

Shared by the routes (tasks_api.py, models_api.py, ...), the operator CLI and the watchman (recovery.py). Imports
core, catalog, its schemas and tasks. Its errors are werkzeug HTTP exceptions, which the API answers as they are
and the CLI prints.
"""

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, cast

from flask import current_app
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Callback, Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.queue import EnqueueData
from rq.serializers import JSONSerializer
from sqlalchemy import Select, bindparam, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from werkzeug.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable, UnprocessableEntity

import tasks
from core import IdempotencyKey, Result, Task, db
from longjobs.catalog import Model, result_path
from longjobs.lifecycle.schemas import ListQuery, Progress, TaskPending, TaskView
from longjobs.validation import TERMINAL_STATUSES, InvalidRequest, Priority, Status

log = logging.getLogger(__name__)
PENDING = Progress(percent=0, message=None)
DONE = Progress(percent=100, message="done")
RETRY_FULL_QUEUE_SECONDS = 30
RETRY_HANDOVER_SECONDS = 1  # a task taken off its queue and not yet begun is so for milliseconds


def _redis() -> Redis:
    return current_app.extensions["redis"]


def fingerprint(body: Any, priority: str) -> str:
    return hashlib.sha256(json.dumps({"params": body, "priority": priority}, sort_keys=True).encode()).hexdigest()


def claim_key(endpoint: str, key: str, fingerprint: str, new_id: uuid.UUID) -> uuid.UUID | None:
    """Store an idempotency key for a new task (or sweep: its id is kept in task_id); if it is taken, the id it names
    (same request) or 422."""
    claim = insert(IdempotencyKey).values(endpoint=endpoint, key=key, fingerprint=fingerprint, task_id=new_id)
    # A concurrent request with the same key waits here until the first one commits or rolls back.
    if db.session.execute(claim.on_conflict_do_nothing().returning(IdempotencyKey.task_id)).scalar() is not None:
        return None
    stored = db.session.get(IdempotencyKey, (endpoint, key))
    assert stored is not None  # the INSERT above met it
    earlier, same = stored.task_id, stored.fingerprint == fingerprint
    db.session.rollback()
    if not same:
        raise UnprocessableEntity(f"the Idempotency-Key {key!r} was already used with another request to this endpoint")
    return earlier


def _job(task: Task) -> EnqueueData:
    """What an accepted task's job is: its model run, under the task's id."""
    return Queue.prepare_data(
        tasks.run_model,
        args=(str(task.task_id), task.type, task.params),
        job_id=str(task.task_id),
        description=f"{task.type} {task.task_id}",  # the dashboard shows it unescaped: never client data
        meta={"type": task.type},
        timeout=current_app.config["TASK_TIMEOUTS"].get(task.type, current_app.config["MODEL_TIMEOUT"]),
        result_ttl=current_app.config["RESULT_TTL"],  # Postgres is the record; Redis keeps it briefly
        failure_ttl=current_app.config["FAILED_JOB_TTL"],
        on_failure=Callback(tasks.record_failure),
    )


def enqueue(*batch: Task) -> None:
    """Put accepted tasks' jobs on their queue (one priority), in one MULTI/EXEC: all of them or none."""
    current_app.extensions["queues"][batch[0].priority].enqueue_many([_job(task) for task in batch])


INSERT_TASK = insert(Task.__table__)


def task_row(task: Task) -> dict[str, Any]:
    """A task's row for INSERT_TASK: a Core INSERT made once (the ORM's unit of work cost a fifth of a POST for one
    row, building the statement and its ORM bulk-insert path a tenth more)."""
    return {"task_id": task.task_id, "type": task.type, "priority": task.priority, "params": task.params,
            "sweep_id": task.sweep_id, "sweep_index": task.sweep_index, "schedule_id": task.schedule_id}  # fmt: skip


# A result URL's 200: the outcome and the parameters it ran with, in one SELECT.
ENDED = (
    select(Result.type, Result.status, Result.result, Result.error, Task.params)
    .outerjoin(Task, Task.task_id == Result.task_id)
    .where(Result.task_id == bindparam("task_id"))  # made once: built per poll, it cost a fifth of one
)


def submit(model: Model, body: Any, priority: str = "default", key: str | None = None) -> uuid.UUID:
    """Accept a task: check its parameters (400), record it in Postgres, then queue it. A repeated idempotency
    key gives the first task."""
    try:
        params = model.validate(body)
    except InvalidRequest as exc:
        raise BadRequest(str(exc)) from None
    check_room(priority, 1)
    task_id = uuid.uuid4()
    if key is not None and (earlier := claim_key(model.name, key, fingerprint(body, priority), task_id)):
        log.info("task %s requested again with its idempotency key", earlier)
        return earlier
    task = Task(task_id=task_id, type=model.name, priority=priority, params=params)
    db.session.execute(INSERT_TASK, task_row(task))
    queue_and_commit([task])
    log.info("task %s accepted (%s, priority %s)", task_id, model.name, priority)
    return task_id


def check_room(priority: str, tasks_: int) -> None:
    """503 when the queue has no room for this many more tasks (MAX_QUEUE_DEPTH)."""
    depth = current_app.config["MAX_QUEUE_DEPTH"]
    if current_app.extensions["queues"][priority].count + tasks_ > depth:
        raise ServiceUnavailable(
            f"the {priority} queue is full ({depth} tasks waiting at most); try again later",
            retry_after=RETRY_FULL_QUEUE_SECONDS,
        )


def queue_and_commit(batch: list[Task]) -> None:
    """Queue the jobs of tasks whose rows this transaction inserted, then commit: every task is recorded and queued,
    or none is. The rows and any idempotency key are committed once the jobs are queued: a duplicate request waits on
    the key until this one's outcome is known, and a refused request leaves nothing behind."""
    try:
        enqueue(*batch)
    except (RedisConnectionError, RedisTimeoutError) as fault:
        # Sent or not, nobody can tell: Redis may run it when it wakes. The tasks are accepted all the same; their
        # rows decide, and the watchmen queue a job that is not there (recovery.py), so each runs once either way.
        log.warning("tasks %s: their jobs may not be queued (%s); the watchmen queue them if they are not",
                    ", ".join(str(task.task_id) for task in batch[:3]) + (", ..." if len(batch) > 3 else ""),
                    fault)  # fmt: skip
    except Exception:
        db.session.rollback()  # Redis refused them (out of memory): nothing was queued
        raise
    try:
        db.session.commit()
    except Exception:
        _unqueue(batch)  # a task that is not recorded must not run
        raise


def _unqueue(batch: list[Task]) -> None:
    """Take back the jobs of tasks whose rows could not be written, unless a worker has taken them already."""
    for task in batch:
        try:
            if _redis().lrem(current_app.extensions["queues"][task.priority].key, 0, str(task.task_id)):
                _redis().delete(Job.key_for(str(task.task_id)))
        except RedisError as fault:
            log.error("task %s: its row could not be written, nor its job taken back: %s", task.task_id, fault)


def _fetch_jobs(task_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Job]:
    ids = list(task_ids)
    if not ids:
        return {}
    jobs = Job.fetch_many([str(i) for i in ids], connection=_redis(), serializer=JSONSerializer)
    return {i: job for i, job in zip(ids, jobs, strict=True) if job is not None}


def _aware(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _progress(status: str, meta: dict) -> Progress:
    """A task's progress from its status and its job's meta (empty when there is no job)."""
    if status == "finished":
        return DONE
    return Progress(**meta["progress"]) if "progress" in meta else PENDING


def describe(task: Task | None, result: Result | None, job: Job | None) -> TaskView:
    """Everything known about a task, from its rows and its RQ job (any of which may be missing)."""
    assert task is not None or result is not None or job is not None
    task_id = task.task_id if task else result.task_id if result else uuid.UUID(cast(Job, job).id)
    name = task.type if task else result.type if result else cast(Job, job).meta["type"]
    if result is not None:
        status = result.status
    elif job is not None:
        status = job.get_status(refresh=False).value
    else:
        status = "queued"  # accepted, and its job is not in Redis (yet, or any more)
    return TaskView(
        task_id=task_id,
        type=name,
        priority=cast(Priority, task.priority if task else job.origin if job else "default"),
        status=cast(Status, status),
        progress=_progress(status, job.meta if job else {}),
        params=task.params if task else job.args[2] if job and len(job.args) > 2 else None,
        enqueued_at=task.enqueued_at if task else _aware(job.enqueued_at) if job else None,
        started_at=result.started_at if result else _aware(job.started_at) if job else None,
        ended_at=result.ended_at if result else None,
        result_url=f"{result_path(name)}/{task_id}",
        error=result.error if result else None,
        sweep_id=task.sweep_id if task else None,
        schedule_id=task.schedule_id if task else None,
    )


def _lookup(task_id: uuid.UUID) -> tuple[Task | None, Result | None, Job | None]:
    """A task's rows and, unless it finished, its job; 404 if it was never accepted."""
    task, result = db.session.get(Task, task_id), db.session.get(Result, task_id)
    job = _fetch_jobs([task_id]).get(task_id) if result is None or result.status != "finished" else None
    if task is None and result is None and job is None:
        raise NotFound(f"no task has the id {task_id}")
    return task, result, job


def find(task_id: uuid.UUID) -> TaskView:
    """Describe one task; 404 if it was never accepted."""
    return describe(*_lookup(task_id))


def ended(task_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """Ended tasks as GET /tasks/<id> shows them, each with its `result` if it finished (what webhooks deliver), by
    id; one not kept any more (pruned) is left out. One SELECT, and one read of Redis for those that did not finish
    (their progress is in their job)."""
    rows = db.session.execute(
        select(Result, Task).outerjoin(Task, Task.task_id == Result.task_id).where(Result.task_id.in_(task_ids))
    ).all()
    jobs = _fetch_jobs(result.task_id for result, _ in rows if result.status != "finished")
    views = {}
    for result, task in rows:
        view = describe(task, result, jobs.get(result.task_id)).model_dump(mode="json")
        views[result.task_id] = view | ({"result": result.result} if result.status == "finished" else {})
    return views


def follow(task_id: uuid.UUID) -> Iterator[TaskView | None]:
    """The task as `find` describes it (404 if it was never accepted), then, at each later next(), its view again if
    its status or progress changed since, else None; the view once it has ended is its last.

    A look reads two fields of its job's hash, and the whole job only when they changed. A stream lasts as long as
    its task, so the database is asked only at the start and once the job says the task ended (or is gone), and the
    session gives its connection back to the pool after each question.
    """
    task, result, job = _lookup(task_id)
    db.session.close()
    view = describe(task, result, job)
    yield view
    if result is not None:
        return
    seen: list[Any] = []
    while True:
        state = cast(list[Any], _redis().hmget(Job.key_for(str(task_id)), "status", "meta"))
        if state == seen:
            yield None
            continue
        seen = state
        if state[0] is None or state[0].decode() in TERMINAL_STATUSES:  # it ended, or its job is gone: the row says
            ended = db.session.get(Result, task_id)
            db.session.close()
            if ended is not None:
                final = find(task_id)
                db.session.close()
                yield final
                return
            seen = []  # until the row is written (a worker writes it before it marks the job), or the job is back
            if state[0] is not None:
                yield None
                continue
        latest = describe(task, None, _fetch_jobs([task_id]).get(task_id))
        yield None if latest == view else latest
        view = latest


def poll(model: Model, task_id: uuid.UUID) -> dict[str, Any] | TaskPending:
    """The outcome of a task of this model once it has ended, else where the task is; 404 if unknown.

    The hot path of every polling client: one primary-key SELECT, then two fields of the job's hash.
    """
    ended = db.session.execute(ENDED, {"task_id": task_id}).first()
    if ended is not None and ended.type == model.name:
        body = {"task_id": str(task_id), "status": ended.status, "params": ended.params}
        return body | ({"result": ended.result} if ended.status == "finished" else {"error": ended.error})
    if ended is None:
        # bytes or None: the client does not decode responses
        status, meta = cast(list[Any], _redis().hmget(Job.key_for(str(task_id)), "status", "meta"))
        meta = JSONSerializer.loads(meta) if meta else {}
        if status is not None and meta.get("type") == model.name:
            status = status.decode()
            return TaskPending(task_id=task_id, status=status, progress=_progress(status, meta))
        task = db.session.get(Task, task_id)
        if task is not None and task.type == model.name:
            return TaskPending(task_id=task_id, status="queued", progress=PENDING)  # its job is not in Redis
    raise NotFound(f"no {model.name} task has the id {task_id}")


def _encode_cursor(view: TaskView) -> str:
    assert view.enqueued_at is not None  # a listed task has its row
    return base64.urlsafe_b64encode(f"{view.enqueued_at.isoformat()}|{view.task_id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        moment, _, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(moment), uuid.UUID(task_id)
    except (ValueError, binascii.Error):
        raise BadRequest("cursor is not one this API gave out; pass next_cursor of a previous page") from None


def _after(statement: Select, enqueued_at: datetime, task_id: uuid.UUID) -> Select:
    return statement.where(tuple_(Task.enqueued_at, Task.task_id) < (enqueued_at, task_id))


def list_tasks(query: ListQuery) -> tuple[list[TaskView], str | None]:
    """Recent tasks, newest first, a page at a time; the cursor of the next page, if there may be one."""
    statement = (
        select(Task, Result)
        .outerjoin(Result, Result.task_id == Task.task_id)
        .order_by(Task.enqueued_at.desc(), Task.task_id.desc())
        .limit(query.limit)
    )
    if query.type:
        statement = statement.where(Task.type == query.type)
    if query.cursor is not None:
        statement = _after(statement, *_decode_cursor(query.cursor))
    if query.status in TERMINAL_STATUSES:
        statement = statement.where(Result.status == query.status)
    elif query.status:
        statement = statement.where(Result.task_id.is_(None))  # then sorted out by their jobs' status
    views: list[TaskView] = []
    while len(views) < query.limit:
        rows = db.session.execute(statement).all()
        jobs = _fetch_jobs(task.task_id for task, result in rows if result is None or result.status != "finished")
        for task, result in rows:
            view = describe(task, result, jobs.get(task.task_id))
            if query.status in (None, view.status) and len(views) < query.limit:
                views.append(view)
        if len(rows) < query.limit:
            return views, None
        statement = _after(statement, rows[-1][0].enqueued_at, rows[-1][0].task_id)
    return views, _encode_cursor(views[-1])


def _withdraw(job: Job) -> bool:
    """Take a job that has not begun out of its queue, or out of the scheduled registry while it waits for a retry:
    true if it was there, and so no worker can take it now (the worker's take pops it atomically)."""
    queue = current_app.extensions["queues"][job.origin]
    return bool(_redis().lrem(queue.key, 0, job.id) or _redis().zrem(queue.scheduled_job_registry.key, job.id))


def cancel(task_id: uuid.UUID) -> TaskView:
    """Cancel a task that has not started, or ask the worker that has it to stop it; 409 once it ended.

    Whether it had started is decided by taking its job out of its queue, not by reading its status, which a
    worker may change a moment later: a task answered `canceled` never runs.
    """
    task, result, job = _lookup(task_id)
    view = describe(task, result, job)
    if view.status in TERMINAL_STATUSES:
        raise Conflict(f"task {task_id} has already ended: it is {view.status}")
    if job is None or _withdraw(job):
        if job is not None:
            job.cancel()
        tasks.write_result(str(task_id), view.type, "canceled", error="canceled on request before it started")
        return find(task_id)
    try:
        send_stop_job_command(_redis(), job.id, serializer=JSONSerializer)
        sent = True
    except (InvalidJobOperation, NoSuchJobError):  # it ended and is gone, or a worker has it but has not begun it
        sent = False
    ended = db.session.get(Result, task_id)  # it may have ended while we looked; a worker ignores a stale stop
    if ended is not None and ended.status != "stopped":
        raise Conflict(f"task {task_id} has already ended: it is {ended.status}")
    if not sent:
        raise ServiceUnavailable(
            f"task {task_id} is being handed to a worker: ask again in a moment", retry_after=RETRY_HANDOVER_SECONDS
        )
    log.info("task %s: asked its worker to stop it", task_id)
    return view
