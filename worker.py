"""The RQ worker process: `python worker.py` serves the queues high, default, low in that order.

Imports app (to build it), core, tasks and recovery; nothing of ours imports this module.
It runs jobs in its own process (RQ's SimpleWorker) rather than a forked work horse per job: the
README's "Architecture" section says why.
"""

import logging
import os
import signal
import threading
import time
import uuid
from types import FrameType
from typing import Any

from flask import Flask
from redis import Redis
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus, _job_stack
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.suspension import WORKERS_SUSPENDED
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from app import create_app
from core import QUEUE_NAMES
from recovery import Watchman
from tasks import JobHandedBack, JobStopped

log = logging.getLogger(__name__)
MAX_RESTART_BACKOFF_SECONDS = 30
SUSPENSION_CHECK_SECONDS = 1.0  # how soon `rq suspend` takes effect
HEARTBEAT_SECONDS = 1.0  # RQ beats before and after every job; once a second is plenty
# Take a job and mark it started, in one round trip: the state RQ's worker writes in its two preparation
# pipelines (job, execution, started registry, worker), written the same way. It takes the job named in
# ARGV, already popped from its queue KEYS[1], or else pops the first job of the first non-empty queue in
# KEYS (priority order), skipping ids whose job is gone as RQ does; it pops nothing while workers are
# suspended (`rq suspend`).
TAKE_JOB = """
local job_prefix, worker_key, worker, execution, stamp, now, suspended, given = unpack(ARGV)
local queue, id, job_key
if given ~= '' then
  queue, id, job_key = KEYS[1], given, job_prefix .. given
  if redis.call('EXISTS', job_key) == 0 then return nil end
elseif redis.call('EXISTS', suspended) == 1 then
  return nil
else
  for _, key in ipairs(KEYS) do
    while not id do
      local popped = redis.call('LPOP', key)
      if not popped then break end
      if redis.call('EXISTS', job_prefix .. popped) == 1 then queue, id, job_key = key, popped, job_prefix .. popped end
    end
    if id then break end
  end
  if not id then return nil end
end
local timeout = tonumber(redis.call('HGET', job_key, 'timeout'))
local ttl = 480  -- RQ's heartbeat TTL: the job's timeout + 60 s, 420 s for a job that never times out
if timeout == -1 then ttl = 420 elseif timeout then ttl = timeout + 60 end
local at = math.floor(tonumber(now))
local execution_key = 'rq:execution:' .. id .. ':' .. execution
redis.call('HSET', execution_key, 'id', execution, 'created_at', now, 'last_heartbeat', now, 'worker_name', worker)
redis.call('EXPIRE', execution_key, ttl)
redis.call('ZADD', 'rq:executions:' .. id, at + ttl + 60, execution)
redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
local origin = redis.call('HGET', job_key, 'origin')
redis.call('ZADD', 'rq:wip:' .. origin, at + ttl, id .. ':' .. execution)
redis.call('HSET', worker_key, 'state', 'busy', 'current_job', id, 'current_job_working_time', 0,
           'last_heartbeat', stamp)
redis.call('EXPIRE', worker_key, ttl)
redis.call('PERSIST', job_key)  -- what Job.perform does first, in a round trip of its own
redis.call('HSET', job_key, 'last_heartbeat', stamp, 'status', 'started', 'started_at', stamp, 'worker_name', worker)
return {queue, id, redis.call('HGETALL', job_key)}
"""
# A job's success as RQ's worker records it (Worker.handle_job_success): worker counters, the job's status and
# end, its Result in the job's results stream (fields from ARGV[9] on, as Result.serialize makes them) and
# the finished registry, both kept `ttl` seconds (0: the job is deleted at once), and the execution cleaned
# up (execution hash, started and execution registries, the worker's current job).
FINISH_JOB = """
local id, execution, worker_key, origin, ttl, ended, working, now = unpack(ARGV, 1, 8)
local job_key = 'rq:job:' .. id
ttl = tonumber(ttl)
redis.call('HINCRBY', worker_key, 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', worker_key, 'total_working_time', working)
redis.call('HDEL', worker_key, 'current_job')
if ttl == 0 then
  redis.call('DEL', job_key)
else
  redis.call('HSET', job_key, 'status', 'finished', 'ended_at', ended)
  redis.call('EXPIRE', job_key, ttl)
  local results = 'rq:results:' .. id
  redis.call('XADD', results, 'MAXLEN', '~', 10, '*', unpack(ARGV, 9))
  redis.call('EXPIRE', results, ttl)
  redis.call('ZADD', 'rq:finished:' .. origin, math.floor(tonumber(now)) + ttl, id)
end
redis.call('DEL', 'rq:execution:' .. id .. ':' .. execution)
redis.call('ZREM', 'rq:wip:' .. origin, id .. ':' .. execution)
redis.call('ZREM', 'rq:executions:' .. id, execution)
"""


class TakenJob(Job):
    """A job TAKE_JOB took: its key is already persistent, so performing it needs no round trip of its own."""

    def perform(self) -> Any:
        _job_stack.push(self)  # what get_current_job() reads, as in Job.perform
        try:
            self._result = self._execute()
        finally:
            _job_stack.pop()
        return self._result


class AppWorker(SimpleWorker):
    """A worker that runs each job, its callbacks included, inside a fresh app context.

    It takes jobs with fewer round trips than RQ's own loop (TAKE_JOB; a finished job's bookkeeping and
    the next take share one), hands a job that outlives its shutdown grace back to the queue, stops a job
    on request, and runs a Watchman (recovery.py) beside it.
    """

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.watchman = Watchman(app, self)
        self.stop_signalled = False
        self.handing_back = False
        self.log_result_lifespan = False
        self.burst = False
        self.taken: tuple[Job, Queue] | None = None  # marked started by the last finish, not yet run
        self._queue_by_key = {queue.key: queue for queue in self.queues}
        self._suspension_checked_at = float("-inf")

    def work(self, *args, **kwargs) -> bool:
        self.burst = kwargs.get("burst", False)
        self.watchman.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            if self.taken is not None:
                self._give_back(*self.taken)
            self.watchman.stopped.set()
            self.watchman.join(timeout=30)

    def check_for_suspension(self, burst: bool) -> None:
        if time.monotonic() - self._suspension_checked_at >= SUSPENSION_CHECK_SECONDS:
            super().check_for_suspension(burst)
            self._suspension_checked_at = time.monotonic()

    def _take(self, connection: Redis | Pipeline, queue: Queue | None = None, job_id: str = "") -> Any:
        """Run TAKE_JOB on a connection or pipeline; `_taken` reads its reply."""
        self._execution_id, self._took_at = uuid.uuid4().hex, now()
        keys = [queue.key] if queue else list(self._queue_by_key)
        args = [Job.redis_job_namespace_prefix, self.key, self.name, self._execution_id, utcformat(self._took_at),
                repr(self._took_at.timestamp()), WORKERS_SUSPENDED, job_id]  # fmt: skip
        return connection.eval(TAKE_JOB, len(keys), *keys, *args)

    def _taken(self, reply: list | None) -> tuple[Job, Queue] | None:
        if reply is None:
            return None
        queue_key, job_id, fields = reply
        job = TakenJob(job_id.decode(), connection=self.connection, serializer=self.serializer)
        job.restore(dict(zip(fields[::2], fields[1::2], strict=True)))
        self.execution = Execution(self._execution_id, job.id, self.connection, self.name)
        self.execution.created_at = self.execution.last_heartbeat = self._took_at
        self._state = WorkerStatus.BUSY
        return job, self._queue_by_key[queue_key.decode()]

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The job the last finish took, or one taken now; only when every queue is empty, block as RQ does."""
        if self.taken is not None:
            taken, self.taken = self.taken, None
            return taken
        while True:
            taken = self._taken(self._take(self.connection))
            if taken is not None:
                return taken
            self._suspension_checked_at = float("-inf")
            self.check_for_suspension(self.burst)
            popped = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if popped is None:
                return None
            taken = self._taken(self._take(self.connection, popped[1], popped[0].id))
            if taken is not None:
                return taken

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job. The worker stays busy, locally too, until its next dequeue finds every queue empty:
        a SIGTERM between jobs is then RQ's warm shutdown, never an exception amid a round trip."""
        self.perform_job(job, queue)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """TAKE_JOB did RQ's preparation; a stop asked for before the job began ends it here."""
        if self._stopped_job_id == job.id:
            raise JobStopped(f"task {job.id} stopped on request")

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """RQ's bookkeeping of a finished job (FINISH_JOB) and, unless the worker is stopping, the next take, in
        one round trip. Our jobs have no dependents, so RQ's watch on them is left out."""
        result_ttl = job.get_result_ttl(self.default_result_ttl)
        result = Result(job.id, Result.Type.SUCCESSFUL, self.connection, return_value=job._result,
                        worker_name=self.name, serializer=self.serializer, execution_id=self.execution.id,
                        execution_started_at=self.execution.created_at, execution_ended_at=job.ended_at)  # fmt: skip
        args = [job.id, self.execution.id, self.key, job.origin, result_ttl, utcformat(job.ended_at),
                (job.ended_at - job.started_at).total_seconds(), repr(job.ended_at.timestamp())]  # fmt: skip
        args += [part for field in result.serialize().items() for part in field]
        with self.connection.pipeline(transaction=False) as pipeline:
            pipeline.eval(FINISH_JOB, 0, *args)
            self.execution = None
            take = not self._stop_requested
            if take:
                self._take(pipeline)
            replies = pipeline.execute()
        if take:
            self.taken = self._taken(replies[-1])

    def _give_back(self, job: Job, queue: Queue) -> None:
        """Put a taken job that did not run back at the front of its queue."""
        self.taken = None
        with self.connection.pipeline() as pipeline:
            self.cleanup_execution(job, pipeline=pipeline)
            job.set_status(JobStatus.QUEUED, pipeline=pipeline)
            queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
            pipeline.execute()
        log.info("task %s: back at the front of its queue, as this worker stops", job.id)

    def heartbeat(self, timeout: int | None = None, pipeline=None) -> None:
        recent = self.last_heartbeat and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_SECONDS
        if pipeline is None and timeout is None and recent:
            return
        super().heartbeat(timeout, pipeline)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # Popping the context at the end removes the job's database session, whatever happened.
        with self.app.app_context():
            self.watchman.running_task = job.id
            signal.signal(signal.SIGUSR1, self._interrupt_job)
            try:
                return super().perform_job(job, queue)
            finally:
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)
                self.watchman.running_task = ""

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown (SIGTERM, Ctrl-C): a running job gets the grace period, then goes back to its queue."""
        self.stop_signalled = True
        if self.get_state() == WorkerStatus.BUSY:
            timer = threading.Timer(self.app.config["WORKER_SHUTDOWN_GRACE"], self._hand_back)
            timer.daemon = True
            timer.start()
        super().request_stop(signum, frame)

    def _hand_back(self) -> None:
        if self.get_state() == WorkerStatus.BUSY:
            self.handing_back = True
            os.kill(os.getpid(), signal.SIGUSR1)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the running job (RQ's stop-job command): with no work horse, interrupt this process."""
        os.kill(os.getpid(), signal.SIGUSR1)  # handled in the main thread, which runs the job

    def _interrupt_job(self, signum: int, frame: FrameType | None) -> None:
        if self._stopped_job_id is not None:
            raise JobStopped(f"task {self._stopped_job_id} stopped on request")
        if self.handing_back:
            raise JobHandedBack("the worker is shutting down")


def build_worker(app: Flask) -> AppWorker:
    """A worker on the app's Redis and queues, highest priority first."""
    queues = app.extensions["queues"]
    return AppWorker(
        [queues[name] for name in QUEUE_NAMES],
        connection=app.extensions["redis"],
        serializer=JSONSerializer,
        app=app,
    )


def main() -> None:
    """Run a worker until SIGTERM or Ctrl-C; start it again, with backoff, when a Redis fault stops it."""
    app = create_app()
    backoff = 1
    stop = threading.Event()
    while True:
        started = time.monotonic()
        worker = None
        try:
            worker = build_worker(app)
            worker.work(with_scheduler=True)  # the scheduler runs retries once their backoff is over
        except RedisError as fault:
            log.error("worker stopped: Redis is unreachable (%s)", fault)
        if worker is not None and worker.stop_signalled:
            return
        backoff = 1 if time.monotonic() - started > 60 else min(backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        log.warning("worker starting again in %d s", backoff)
        if stop.wait(backoff):
            return


if __name__ == "__main__":
    main()
