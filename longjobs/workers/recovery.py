"""Recovery: what crashed workers, a Redis that lost its data and database outages leave behind.

Every worker runs a Watchman thread. Every few seconds it marks its worker alive (a Redis key with a
short TTL naming the task it runs) and, one worker at a time (a Redis lock), sweeps:
- jobs left `started` by a worker that is no longer alive go back to the front of their queue;
- accepted tasks (rows in `tasks` without a result) whose job has been missing from Redis for a whole
  liveness period, and that no live worker runs, are queued again under the same id;
- jobs that read `queued` but are in no queue (a worker stopped between popping one and starting it) go back
  to their queue after a liveness period;
- outcomes that jobs kept in Redis while the database was unreachable are written to Postgres.
A task is never queued again while a live worker runs it; if one runs twice all the same (a worker cut
off from Redis longer than the liveness period), its row is still one.

Imports core, tasks, lifecycle and scripts.
"""

import json
import logging
import threading
import time
import uuid

from flask import Flask, current_app
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.results import Result as RQResult
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from core import QUEUE_NAMES, Result, Task, db
from longjobs import lifecycle
from longjobs.workers.scripts import Scripts
from tasks import UNWRITTEN_KEY, store_result, write_result

log = logging.getLogger(__name__)
ALIVE_PREFIX = "longjobs:alive:"
SWEEP_LOCK = "longjobs:sweep-lock"
CRASHES_PREFIX = "longjobs:crashes:"  # how many worker processes died running a job, by task id
CRASHES_KEPT_SECONDS = 7 * 24 * 3600
MAX_CRASHES = 3  # a job that kills its worker process this many times fails, rather than take every worker down
# The watchman beats at least this often, well within core.WORKER_SILENT_SECONDS: past that, a worker is not counted.
MAX_BEAT_SECONDS = 15


def count_crash(task_id: str) -> None:
    """Record that a worker process died running this task (the supervisor finds out; the next process records it)."""
    redis = current_app.extensions["redis"]
    with redis.pipeline() as pipeline:
        pipeline.incr(f"{CRASHES_PREFIX}{task_id}").expire(f"{CRASHES_PREFIX}{task_id}", CRASHES_KEPT_SECONDS)
        crashes = pipeline.execute()[0]
    log.warning("task %s: a worker process died running it (%d of %d before it fails)", task_id, crashes, MAX_CRASHES)


class Watchman(threading.Thread):
    """Keeps its worker's liveness mark fresh and, in turn with the other workers, sweeps up."""

    def __init__(self, app: Flask, worker: BaseWorker) -> None:
        super().__init__(name="watchman", daemon=True)
        self.app, self.worker = app, worker
        self.redis = app.extensions["redis"]
        self.liveness = app.config["WORKER_LIVENESS_SECONDS"]
        self.interval = min(self.liveness / 4, MAX_BEAT_SECONDS)
        self.missing_since: dict[uuid.UUID, float] = {}
        self.unlisted_since: dict[str, float] = {}
        self.stopped = threading.Event()
        self.scripts = Scripts(self.redis)

    def run(self) -> None:
        while True:
            try:
                self.beat()
                if self.redis.set(SWEEP_LOCK, self.worker.name, nx=True, px=int(self.interval * 900)):
                    with self.app.app_context():
                        self.sweep()
            except (RedisError, SQLAlchemyError) as fault:
                log.warning("recovery sweep skipped: %s: %s", type(fault).__name__, fault)
            except Exception:  # a bug of ours: were this thread to end, other workers would take this one for dead
                log.exception("recovery sweep failed; the watchman goes on")
            if self.stopped.wait(self.interval):
                return

    def beat(self) -> None:
        """Mark the worker alive, naming its task, and beat its RQ record (RQ's worker beats only between jobs, so a
        busy one would look silent: core.live_workers); register it again if Redis lost its record."""
        running = self.worker.get_current_job_id() or ""
        self.redis.set(f"{ALIVE_PREFIX}{self.worker.name}", running, ex=self.liveness)
        if self.worker.get_state() == "starting":
            return
        if self.redis.exists(self.worker.key):
            self.worker.heartbeat()
        else:
            self.worker.register_birth()

    def sweep(self) -> None:
        self.write_unwritten_outcomes()
        alive = {
            key.decode().removeprefix(ALIVE_PREFIX): (value or b"").decode()
            for key, value in zip(*self._alive_marks(), strict=True)
        }
        self.requeue_orphans(alive)
        self.requeue_lost(set(alive.values()))

    def _alive_marks(self) -> tuple[list[bytes], list[bytes | None]]:
        keys = list(self.redis.scan_iter(f"{ALIVE_PREFIX}*", count=1000))  # SCAN walks every key: jobs' too
        return keys, (self.redis.mget(keys) if keys else [])

    def write_unwritten_outcomes(self) -> None:
        """Write the outcomes kept in Redis: while the database was down, or by RQ's maintenance outside any app."""
        for task_id, kept in self.redis.hgetall(UNWRITTEN_KEY).items():
            values = json.loads(kept)
            if values["type"] is None:  # RQ's maintenance may read a job's meta with another serializer
                task = db.session.get(Task, uuid.UUID(values["task_id"]))
                values["type"] = task.type if task is not None else "unknown"
            store_result(values)
            self.redis.hdel(UNWRITTEN_KEY, task_id)
            log.info("task %s: its outcome, kept in Redis, is now written", task_id.decode())

    def requeue_orphans(self, alive: dict[str, str]) -> None:
        """Queue again the jobs that workers no longer alive left started."""
        queues = self.app.extensions["queues"]
        for name in QUEUE_NAMES:
            registry = queues[name].started_job_registry
            for job_id, execution_id in registry.get_job_and_execution_ids(cleanup=False):
                try:
                    job = Job.fetch(job_id, connection=self.redis, serializer=JSONSerializer)
                except NoSuchJobError:
                    job = None
                if job is not None and (job.worker_name in alive or job_id in alive.values()):
                    continue
                self.redis.zrem(registry.key, f"{job_id}:{execution_id}")
                if job is None:
                    continue  # nothing left to run
                with self.redis.pipeline() as pipeline:  # its execution's record goes, as RQ's worker ends one
                    Execution(execution_id, job_id, self.redis).delete(job, pipeline)
                    pipeline.execute()
                if (ended := db.session.get(Result, uuid.UUID(job_id))) is not None:
                    self.record_ended(job, queues[name], ended)  # its worker died before it wrote RQ's bookkeeping
                    continue
                if (crashes := int(self.redis.get(f"{CRASHES_PREFIX}{job_id}") or 0)) >= MAX_CRASHES:
                    self.fail_crashing(job, crashes)
                    continue
                queues[name].enqueue_job(job, at_front=True)
                log.warning("task %s: its worker %s is gone; queued again", job_id, job.worker_name)

    def record_ended(self, job: Job, queue: Queue, ended: Result) -> None:
        """Write the RQ bookkeeping of a job whose row says it ended, as its worker would have: status, registry,
        result and expiry (a worker that dies mid-batch has written its jobs' rows, not yet their RQ records)."""
        with self.redis.pipeline() as pipeline:
            job.set_status(JobStatus(ended.status), pipeline=pipeline)
            if ended.status == "finished":
                ttl = job.get_result_ttl(self.app.config["RESULT_TTL"])
                queue.finished_job_registry.add(job, ttl, pipeline=pipeline)
                RQResult.create(job, RQResult.Type.SUCCESSFUL, ttl, return_value=ended.result, pipeline=pipeline)
                job.cleanup(ttl, pipeline=pipeline, remove_from_queue=False)
            elif ended.status == "failed":
                queue.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=ended.error or "", pipeline=pipeline)
            else:  # stopped or canceled: no registry of RQ's holds them here
                job.cleanup(job.failure_ttl, pipeline=pipeline, remove_from_queue=False)
            pipeline.execute()
        log.warning("task %s: its worker is gone; its RQ job is now %s, as its row says", job.id, ended.status)

    def fail_crashing(self, job: Job, crashes: int) -> None:
        """Fail a job that killed its worker process every time it ran, rather than run it again."""
        error = f"its worker process died {crashes} times while running it (a crash, or killed for its memory)"
        with self.redis.pipeline() as pipeline:  # as RQ's own registry cleanup fails an abandoned job, publicly
            job.set_status(JobStatus.FAILED, pipeline=pipeline)
            job.failed_job_registry.add(job, ttl=job.failure_ttl, exc_string=error, pipeline=pipeline)
            RQResult.create_failure(job, job.failure_ttl, error, worker_name=job.worker_name or "", pipeline=pipeline)
            pipeline.execute()
        write_result(job.id, job.meta["type"], "failed", error=error, started_at=job.started_at)

    def requeue_lost(self, running: set[str]) -> None:
        """Queue again accepted tasks whose job Redis lost, once it has been missing for a liveness period; and give
        back to its queue a job that reads `queued` but is in no queue, once it has been so for a liveness period
        (a worker stopped, by a signal RQ turns into an exception, between popping it and starting it)."""
        # Only the ids: a backlog of thousands is read every sweep, and whole rows (params) cost a worker time.
        unfinished = select(Task.task_id).outerjoin(Result, Result.task_id == Task.task_id)
        task_ids = db.session.scalars(unfinished.where(Result.task_id.is_(None))).all()
        with self.redis.pipeline(transaction=False) as pipeline:
            for task_id in task_ids:
                pipeline.hmget(Job.key_for(str(task_id)), "status", "origin")
            states = pipeline.execute()
        now = time.monotonic()
        missing = [task_id for task_id, (status, _) in zip(task_ids, states, strict=True) if status is None]
        self.missing_since = {task_id: self.missing_since.get(task_id, now) for task_id in missing}
        for task_id, since in list(self.missing_since.items()):
            if now - since >= self.liveness and str(task_id) not in running:
                del self.missing_since[task_id]
                if (task := db.session.get(Task, task_id)) is None:
                    continue  # its submit failed and took the row back meanwhile
                lifecycle.enqueue(task)
                log.warning("task %s: its job was lost from Redis; queued again", task_id)
        queued = {str(task_id): origin.decode() for task_id, (status, origin) in zip(task_ids, states, strict=True)
                  if status == b"queued" and origin is not None}  # fmt: skip
        unlisted = set(queued) - self._listed() if queued else set()
        self.unlisted_since = {job_id: self.unlisted_since.get(job_id, now) for job_id in unlisted}
        for job_id, since in list(self.unlisted_since.items()):
            if now - since >= self.liveness:
                del self.unlisted_since[job_id]
                queue = self.app.extensions["queues"][queued[job_id]]
                keys = [Job.key_for(job_id), queue.key]
                if self.scripts.relist(keys, [job_id]):
                    log.warning(
                        "task %s: queued but in no queue (its worker stopped as it took it); queued again", job_id
                    )

    def _listed(self) -> set[str]:
        """The ids in the queues."""
        with self.redis.pipeline(transaction=False) as pipeline:
            for name in QUEUE_NAMES:
                pipeline.lrange(self.app.extensions["queues"][name].key, 0, -1)
            return {job_id.decode() for ids in pipeline.execute() for job_id in ids}
