"""The RQ worker: `python worker.py` serves the queues high, default, low in that order.

Imports app (to build it), core, lifecycle, tasks, recovery and supervisor; nothing of ours imports this module.
It runs jobs in its own process (RQ's SimpleWorker) rather than a forked work horse per job, and that process
runs under the supervisor (supervisor.py), which starts a fresh one when a job kills it or it outgrows
WORKER_MAX_MEMORY_MB: docs/architecture.md says why.
"""

import logging
import os
import resource
import signal
import threading
import time
import uuid
from base64 import b64encode
from collections import deque
from collections.abc import Sequence
from types import FrameType
from typing import Any

from flask import Flask
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker
from rq.command import parse_payload
from rq.executions import Execution
from rq.job import Job, JobStatus, _job_stack
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.utils import now, utcformat
from rq.worker import WorkerStatus
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

import lifecycle
from app import LOG_FORMAT, create_app
from core import QUEUE_NAMES
from recovery import Watchman, count_crash
from supervisor import MAX_RESTART_BACKOFF_SECONDS, RETIRED, RunningJob, supervise
from tasks import JobHandedBack, JobStopped

log = logging.getLogger(__name__)
SUSPENSION_CHECK_SECONDS = 1.0  # how soon `rq suspend` takes effect
HEARTBEAT_SECONDS = 1.0  # RQ beats before and after every job; once a second is plenty
HEARTBEAT_MARGIN_SECONDS = 60  # a worker's record outlives its job's timeout by this much, as RQ's does
NO_TIMEOUT_TTL = 420  # and lasts this long while a job without a timeout runs (RQ's default worker TTL)
MEMORY_CHECK_SECONDS = 1.0
MAX_BATCH = 64  # jobs taken in one round trip, at most
SHORT_JOB_SECONDS = 0.01  # a worker takes twice as many jobs next time while every job of a batch is this quick
HOLD_SECONDS = 0.5  # jobs taken but not begun go back to their queues once the running job has taken this long
RELEASE_CHECK_SECONDS = 0.1
# Both scripts use RQ 2's key layout (rq:job:, rq:execution:, rq:wip:, ...), pinned with RQ itself.
# Take jobs and mark them started, in one round trip: the state RQ's worker writes in its two preparation
# pipelines (job, execution, started registry, worker), written the same way. It takes the job named in
# ARGV, already popped from its queue KEYS[1], or else pops as many jobs as it is given execution ids
# (ARGV[6] on), from the first queues in KEYS (priority order) that have them, skipping ids whose job is
# gone as RQ does; it pops nothing while workers are suspended (`rq suspend`).
TAKE_JOBS = """
local worker_key, worker, stamp, now, given = unpack(ARGV, 1, 5)
local executions = {unpack(ARGV, 6)}
local at = math.floor(tonumber(now))
local taken, longest = {}, 0
local function start(queue, id)
  local job_key, execution = 'rq:job:' .. id, executions[#taken + 1]
  local timeout = tonumber(redis.call('HGET', job_key, 'timeout'))
  local ttl = 480  -- RQ's heartbeat TTL: the job's timeout + 60 s, 420 s for a job that never times out
  if timeout == -1 then ttl = 420 elseif timeout then ttl = timeout + 60 end
  longest = math.max(longest, ttl)
  local execution_key = 'rq:execution:' .. id .. ':' .. execution
  redis.call('HSET', execution_key, 'id', execution, 'created_at', now, 'last_heartbeat', now, 'worker_name', worker)
  redis.call('EXPIRE', execution_key, ttl)
  redis.call('ZADD', 'rq:executions:' .. id, at + ttl + 60, execution)
  redis.call('EXPIRE', 'rq:executions:' .. id, ttl + 60)
  redis.call('ZADD', 'rq:wip:' .. redis.call('HGET', job_key, 'origin'), at + ttl, id .. ':' .. execution)
  redis.call('PERSIST', job_key)  -- what Job.perform does first, in a round trip of its own
  redis.call('HSET', job_key, 'last_heartbeat', stamp, 'status', 'started', 'started_at', stamp, 'worker_name', worker)
  table.insert(taken, {queue, id, execution, redis.call('HGETALL', job_key)})
end
if given ~= '' then
  if redis.call('EXISTS', 'rq:job:' .. given) == 1 then start(KEYS[1], given) end
elseif redis.call('EXISTS', 'rq:suspended') == 0 then
  for _, queue in ipairs(KEYS) do
    while #taken < #executions do
      local id = redis.call('LPOP', queue)
      if not id then break end
      if redis.call('EXISTS', 'rq:job:' .. id) == 1 then start(queue, id) end
    end
  end
end
if #taken > 0 then
  redis.call('HSET', worker_key, 'state', 'busy', 'current_job', taken[1][2], 'current_job_working_time', 0,
             'last_heartbeat', stamp)
  redis.call('EXPIRE', worker_key, longest)
end
return taken
"""
# A job's success as RQ's worker records it (Worker.handle_job_success): worker counters, the job's status and
# end, its Result in the job's results stream (fields from ARGV[9] on, as Result.serialize makes them) and
# the finished registry, both kept `ttl` seconds (0: the job is deleted at once; negative: kept for good), and the
# execution cleaned up (execution hash, started and execution registries, the worker's current job if it names
# this one).
FINISH_JOB = """
local id, execution, worker_key, origin, ttl, ended, working, now = unpack(ARGV, 1, 8)
local job_key = 'rq:job:' .. id
ttl = tonumber(ttl)
redis.call('HINCRBY', worker_key, 'successful_job_count', 1)
redis.call('HINCRBYFLOAT', worker_key, 'total_working_time', working)
if redis.call('HGET', worker_key, 'current_job') == id then redis.call('HDEL', worker_key, 'current_job') end
if ttl == 0 then
  redis.call('DEL', job_key)
else
  redis.call('HSET', job_key, 'status', 'finished', 'ended_at', ended)
  local results = 'rq:results:' .. id
  redis.call('XADD', results, 'MAXLEN', '~', 10, '*', unpack(ARGV, 9))
  if ttl > 0 then
    redis.call('EXPIRE', job_key, ttl)
    redis.call('EXPIRE', results, ttl)
    redis.call('ZADD', 'rq:finished:' .. origin, math.floor(tonumber(now)) + ttl, id)
  else  -- a negative ttl keeps the job and its result for good, in the registry for good, as RQ does
    redis.call('ZADD', 'rq:finished:' .. origin, '+inf', id)
  end
end
redis.call('DEL', 'rq:execution:' .. id .. ':' .. execution)
redis.call('ZREM', 'rq:wip:' .. origin, id .. ':' .. execution)
redis.call('ZREM', 'rq:executions:' .. id, execution)
"""


# Set while a job's own code runs: only then may a stop or a hand-back (SIGUSR1) interrupt it. Raised in the middle
# of the worker's bookkeeping, it stranded the jobs that round trip had just taken.
PERFORMING = threading.Event()


class TakenJob(Job):
    """A job TAKE_JOBS took: its key is already persistent, so performing it needs no round trip of its own."""

    def perform(self) -> Any:
        _job_stack.push(self)  # what get_current_job() reads, as in Job.perform
        PERFORMING.set()
        try:
            self._result = self._execute()
        finally:
            PERFORMING.clear()
            _job_stack.pop()
        return self._result


Taken = tuple[TakenJob, Queue, Execution]


class AppWorker(SimpleWorker):
    """A worker that runs each job, its callbacks included, inside a fresh app context.

    It takes jobs in batches with RQ's bookkeeping in Lua (TAKE_JOBS, FINISH_JOB; the finishes of a batch
    and the next take share one round trip), hands a job that outlives its shutdown grace back to the
    queue, stops a job on request, and runs a Watchman (recovery.py) beside it.
    """

    def __init__(self, *args, app: Flask, running: RunningJob | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.running_job = running or RunningJob()
        app.extensions["running_job"] = self.running_job  # tasks.run_model names its R process group there
        self.watchman = Watchman(app, self)
        self.stop_signalled = False
        self.handing_back = False
        self.retiring = False
        self.log_result_lifespan = False
        self.burst = False
        self._queue_by_key = {queue.key: queue for queue in self.queues}
        self._suspension_checked_at = self._memory_checked_at = float("-inf")
        # The batch, shared with the releaser thread and the stop-job command handler under `_batch_lock`:
        # jobs taken (marked started) but not begun, and finished jobs whose bookkeeping is not written yet.
        self._batch_lock = threading.Lock()
        self._held: deque[Taken] = deque()
        self._unrecorded: list[list] = []
        self._batch_size = 1
        self._slowest_in_batch = 0.0
        self._running_job: Job | None = None
        self._running_since = float("inf")
        self._stopped = threading.Event()

    def work(self, *args, **kwargs) -> bool:
        self.burst = kwargs.get("burst", False)
        signal.signal(signal.SIGUSR1, self._interrupt_job)
        self.watchman.start()
        releaser = threading.Thread(target=self._release_held, name="releaser", daemon=True)
        releaser.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self._stopped.set()
            releaser.join(timeout=5)
            with self._batch_lock:
                held, self._held = list(self._held), deque()
            try:
                self._round_trip(give_back=held)
            except RedisError as fault:  # the watchmen queue them again once this worker is gone
                log.warning("could not give back the jobs taken but not begun: %s", fault)
            self.watchman.stopped.set()
            self.watchman.join(timeout=30)

    def check_for_suspension(self, burst: bool) -> None:
        """As RQ does, at most once a second; jobs taken but not begun go back to their queues first, rather than
        wait, marked started, through the suspension (RQ's registry cleanup would take them for abandoned)."""
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_CHECK_SECONDS:
            return
        if self._held and is_suspended(self.connection, self):
            with self._batch_lock:
                held, self._held = list(self._held), deque()
            self._round_trip(give_back=held)
        super().check_for_suspension(burst)
        self._suspension_checked_at = time.monotonic()

    def get_current_job_id(self, pipeline: Pipeline | None = None) -> str | None:
        """The job running now (the worker's hash names it from its take, or once it has run HOLD_SECONDS)."""
        return self._running_job.id if self._running_job is not None else None

    def _round_trip(
        self,
        take: int = 0,
        given: tuple[Queue, str] | None = None,
        give_back: Sequence[Taken] = (),
        running: Job | None = None,
    ) -> None:
        """Write the batch's unrecorded finishes, give jobs back to their queues and take new ones, at once; and
        name the job `running` as the worker's current one, for as long as it may run."""
        with self._batch_lock:
            unrecorded, self._unrecorded = self._unrecorded, []
        if not (unrecorded or take or given or give_back or running):
            return
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                for args in unrecorded:
                    pipeline.eval(FINISH_JOB, 0, *args)
                if running is not None:  # after the finishes, which unname the jobs they finish
                    pipeline.hset(self.key, "current_job", running.id)
                    # As TAKE_JOBS: the job's timeout and a margin, or RQ's 420 s for a job without a timeout.
                    timeout = running.timeout if running.timeout is not None and running.timeout >= 0 else None
                    pipeline.expire(self.key, int(timeout) + HEARTBEAT_MARGIN_SECONDS if timeout else NO_TIMEOUT_TTL)
                for job, queue, execution in reversed(give_back):
                    execution.delete(job, pipeline)
                    job.set_status(JobStatus.QUEUED, pipeline=pipeline)
                    queue.push_job_id(job.id, pipeline=pipeline, at_front=True)
                if take or given:
                    self._take(pipeline, take, given)
                replies = pipeline.execute()
        except BaseException:
            with self._batch_lock:
                self._unrecorded[:0] = unrecorded
            raise
        for job, _, _ in give_back:
            log.info("task %s: back at the front of its queue (taken by worker %s, not begun)", job.id, self.name)
        if take or given:
            self._hold(replies[-1])

    def _take(self, pipeline: Pipeline, count: int, given: tuple[Queue, str] | None) -> None:
        self._took_at = now()
        keys = [given[0].key] if given else list(self._queue_by_key)
        executions = [uuid.uuid4().hex for _ in range(1 if given else count)]
        args = [
            self.key,
            self.name,
            utcformat(self._took_at),
            repr(self._took_at.timestamp()),
            given[1] if given else "",
        ]
        pipeline.eval(TAKE_JOBS, len(keys), *keys, *args, *executions)

    def _hold(self, reply: list) -> None:
        held: deque[Taken] = deque()
        for queue_key, job_id, execution_id, fields in reply:
            job = TakenJob(job_id.decode(), connection=self.connection, serializer=self.serializer)
            hash_ = dict(zip(fields[::2], fields[1::2], strict=True))
            del hash_[b"started_at"], hash_[b"last_heartbeat"]  # the take's own stamp: no need to parse it back
            job.restore(hash_)
            job.started_at = job.last_heartbeat = self._took_at
            execution = Execution(execution_id.decode(), job.id, self.connection, self.name)
            execution.created_at = execution.last_heartbeat = self._took_at
            held.append((job, self._queue_by_key[queue_key.decode()], execution))
        if held:
            self._state = WorkerStatus.BUSY
        with self._batch_lock:
            self._held = held

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The next job of the batch, or a new batch; only when every queue is empty, block as RQ does."""
        while True:
            if taken := self._begin():
                return taken
            self._round_trip(take=self._batch_size)
            if taken := self._begin():
                return taken
            super().check_for_suspension(self.burst)
            popped = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            if popped is None:
                return None
            self._round_trip(given=(popped[1], popped[0].id))

    def _begin(self) -> tuple[Job, Queue] | None:
        with self._batch_lock:
            if not self._held:
                return None
            job, queue, self.execution = self._held.popleft()
            self._run(job)
        return job, queue

    def _run(self, job: Job | None) -> None:
        """The one place that says which job runs now (None: none): this worker's own record, which its readers
        (RQ's current job, the watchman's liveness mark, the releaser) ask, and its copy for the supervisor."""
        self._running_job, self._running_since = job, time.monotonic() if job is not None else float("inf")
        self.running_job.set(job.id if job is not None else "")

    def _release_held(self) -> None:
        """Releaser thread: once the running job has run HOLD_SECONDS, give the held jobs back, for other workers,
        and record the batch's finished jobs."""
        while not self._stopped.wait(RELEASE_CHECK_SECONDS):
            with self._batch_lock:
                waiting = self._held or self._unrecorded
                if not waiting or time.monotonic() - self._running_since < HOLD_SECONDS:
                    continue
                held, self._held, self._batch_size = list(self._held), deque(), 1
                running = self._running_job
            try:
                # The worker's record named the first job of the batch: it names this one now.
                self._round_trip(give_back=held, running=running)
            except RedisError as fault:  # the worker's own loop meets the fault too; the sweep recovers the jobs
                log.warning("could not give back the jobs held behind a long one: %s", fault)

    def handle_payload(self, message: dict) -> None:
        """A stop for a job taken but not begun cancels it (its row says so); the running job's goes to RQ."""
        payload = parse_payload(message)
        if payload.get("command") == "stop-job":
            with self._batch_lock:
                held = [taken for taken in self._held if taken[0].id == payload.get("job_id")]
                for taken in held:
                    self._held.remove(taken)
            if held:
                try:
                    self._round_trip(give_back=held)
                    with self.app.app_context():
                        lifecycle.cancel(uuid.UUID(payload["job_id"]))
                except (RedisError, SQLAlchemyError, HTTPException) as fault:
                    log.warning("task %s: could not cancel it: %s", payload["job_id"], fault)
                return
        super().handle_payload(message)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job. The worker stays busy, locally too, until its next dequeue finds every queue empty:
        a SIGTERM between jobs is then RQ's warm shutdown, never an exception amid a round trip."""
        try:
            self.perform_job(job, queue)
        finally:
            self._run(None)
            self._retire_if_too_big()

    def _retire_if_too_big(self) -> None:
        """Past WORKER_MAX_MEMORY_MB (at its peak: a job that leaks, or one that needed much once), stop taking
        jobs; the supervisor starts a fresh process. Checked after a job, at most once a second."""
        if time.monotonic() - self._memory_checked_at < MEMORY_CHECK_SECONDS:
            return
        self._memory_checked_at = time.monotonic()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # kilobytes on Linux
        if not self.retiring and peak > self.app.config["WORKER_MAX_MEMORY_MB"]:
            log.warning("worker %s retires: it reached %d MB (WORKER_MAX_MEMORY_MB is %d)", self.name, peak,
                        self.app.config["WORKER_MAX_MEMORY_MB"])  # fmt: skip
            self.retiring = self._stop_requested = True

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """TAKE_JOBS did RQ's preparation; a stop asked for before the job began ends it here."""
        if self._stopped_job_id == job.id:
            raise JobStopped(f"task {job.id} stopped on request")

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """Keep the job's bookkeeping (FINISH_JOB) for the batch's round trip; our jobs have no dependents, so
        RQ's watch on them is left out. The last job of a batch makes the round trip, taking the next one."""
        # Set when the job was taken (_hold), begun (_begin) and when it ended (handle_execution_ended).
        assert self.execution is not None and job.started_at is not None and job.ended_at is not None
        # Result.serialize's fields, made here: a Result object costs a serializer check per job.
        result = {"type": Result.Type.SUCCESSFUL.value, "worker_name": self.name, "execution_id": self.execution.id,
                  "execution_started_at": self.execution.created_at.timestamp(),
                  "execution_ended_at": job.ended_at.timestamp()}  # fmt: skip
        if job._result is not None:
            result["return_value"] = b64encode(self.serializer.dumps(job._result)).decode()
        took = (job.ended_at - job.started_at).total_seconds()
        args = [job.id, self.execution.id, self.key, job.origin, job.get_result_ttl(self.default_result_ttl),
                utcformat(job.ended_at), took, repr(job.ended_at.timestamp())]  # fmt: skip
        args += [part for field in result.items() for part in field]
        self.execution = None
        self._slowest_in_batch = max(self._slowest_in_batch, took)
        with self._batch_lock:
            self._unrecorded.append(args)
            if self._held:
                return
        quick = self._slowest_in_batch < SHORT_JOB_SECONDS
        self._batch_size, self._slowest_in_batch = min(self._batch_size * 2, MAX_BATCH) if quick else 1, 0.0
        self._round_trip(take=0 if self._stop_requested else self._batch_size)

    def handle_job_retry(
        self, job: Job, queue: Queue, retry: Retry, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        """As RQ does, except that a retry asked for at the front of its queue (a job handed back at shutdown) goes
        there: RQ 2.12 puts it at the back."""
        super().handle_job_retry(job, queue, retry, started_job_registry, execution)
        # Out of the queue, nobody can take it; a worker that took it meanwhile runs it, and it is not pushed again.
        if retry.enqueue_at_front and self.connection.lrem(queue.key, 1, job.id):
            self.connection.lpush(queue.key, job.id)

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry | None = None, exc_string: str = ""
    ) -> None:
        """As RQ does, except that a job stopped on request is no failure: it leaves the failed registry (the
        dead-letter queue, which `requeue --all` would run again) with its status, stopped, and its row."""
        super().handle_job_failure(job, queue, started_job_registry, exc_string)
        if job.get_status(refresh=False) == JobStatus.STOPPED:
            queue.failed_job_registry.remove(job)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        recent = self.last_heartbeat and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_SECONDS
        if pipeline is None and timeout is None and recent:
            return
        super().heartbeat(timeout, pipeline)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # Popping the context at the end removes the job's database session, whatever happened.
        with self.app.app_context():
            return super().perform_job(job, queue)

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        """Warm shutdown (SIGTERM, Ctrl-C): a running job gets the grace period, then goes back to its queue.

        The same request again is nothing new: Heroku signals every process of a dyno and the supervisor passes the
        signal on, so a second one can arrive while this handler still runs (starting the timer waits).
        """
        if self.stop_signalled:
            return
        self.stop_signalled = True
        if self.get_state() == WorkerStatus.BUSY:
            timer = threading.Timer(self.app.config["WORKER_SHUTDOWN_GRACE"], self._hand_back)
            timer.daemon = True
            timer.start()
        super().request_stop(signum, frame)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C a second time is RQ's cold shutdown; a second SIGTERM is the first one again (see request_stop)."""
        if signum != signal.SIGTERM:
            super().request_force_stop(signum, frame)

    def _hand_back(self) -> None:
        if self.get_state() == WorkerStatus.BUSY:
            self.handing_back = True
            os.kill(os.getpid(), signal.SIGUSR1)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the running job (RQ's stop-job command): with no work horse, interrupt this process."""
        os.kill(os.getpid(), signal.SIGUSR1)  # handled in the main thread, which runs the job

    def _interrupt_job(self, signum: int, frame: FrameType | None) -> None:
        if not PERFORMING.is_set():  # the job's own code has returned: what follows is bookkeeping, a round trip
            return
        if self._stopped_job_id is not None:
            raise JobStopped(f"task {self._stopped_job_id} stopped on request")
        if self.handing_back:
            raise JobHandedBack("the worker is shutting down")


class WithoutJobOk(logging.Filter):
    """Drops RQ's "Job OK" line: tasks.write_result logs every task's outcome already, one line per task."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(isinstance(arg, str) and "Job OK" in arg for arg in record.args or ())


def build_worker(app: Flask, running: RunningJob | None = None) -> AppWorker:
    """A worker on the app's Redis and queues, highest priority first."""
    queues = app.extensions["queues"]
    return AppWorker(
        [queues[name] for name in QUEUE_NAMES],
        connection=app.extensions["redis"],
        serializer=JSONSerializer,
        app=app,
        running=running,
    )


def serve(running: RunningJob) -> int:
    """Run a worker until SIGTERM or Ctrl-C (0) or until it retires (RETIRED); start it again, with backoff,
    when a Redis fault stops it. A job that `running` still names killed the process before this one."""
    app = create_app()
    logging.getLogger("rq.worker").addFilter(WithoutJobOk())
    if task_id := running.get():
        try:
            with app.app_context():
                count_crash(task_id)
        except RedisError as fault:  # the crash goes uncounted; the task still runs again
            log.warning("task %s: could not count the crash of its worker process: %s", task_id, fault)
        running.set("")
    backoff = 1
    stop = threading.Event()
    while True:
        started = time.monotonic()
        worker = None
        try:
            worker = build_worker(app, running)
            worker.work(with_scheduler=True)  # the scheduler runs retries once their backoff is over
        except RedisError as fault:
            log.error("worker stopped: Redis is unreachable (%s)", fault)
        if worker is not None and worker.retiring:
            return RETIRED
        if worker is not None and worker.stop_signalled:
            return 0
        backoff = 1 if time.monotonic() - started > 60 else min(backoff * 2, MAX_RESTART_BACKOFF_SECONDS)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        log.warning("worker starting again in %d s", backoff)
        if stop.wait(backoff):
            return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    supervise(serve)
