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
from datetime import datetime
from types import FrameType
from typing import Any

from flask import Flask
from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, Retry, SimpleWorker
from rq.command import parse_payload
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.suspension import is_suspended
from rq.utils import now, utcformat
from rq.worker import WorkerStatus

from app import LOG_FORMAT, create_app
from core import QUEUE_NAMES
from longjobs.workers import rqinternals
from longjobs.workers.recovery import Watchman, count_crash
from longjobs.workers.scripts import Call, Scripts
from longjobs.workers.supervisor import MAX_RESTART_BACKOFF_SECONDS, RETIRED, RunningJob, supervise
from tasks import JobHandedBack, JobStopped

log = logging.getLogger(__name__)
SUSPENSION_CHECK_SECONDS = 1.0  # how soon `rq suspend` takes effect
HEARTBEAT_SECONDS = 1.0  # RQ beats before and after every job; once a second is plenty
MEMORY_CHECK_SECONDS = 1.0
STOP_CHECK_SECONDS = 1  # how soon an idle worker stops on SIGTERM
# RQ's maintenance (registry cleanup, and starting RQ's scheduler again once a Redis error ended it) runs this often;
# RQ's own default is 10 minutes.
SCHEDULER_CHECK_SECONDS = 30
# How many ids a worker reads at the head of the first non-empty queue: it takes the first of them still at the head
# at its next round trip, so as many workers as this can drain one queue without looking again.
PEEK = 8
# Set while a job's own code runs: only then may a stop or a hand-back (SIGUSR1) interrupt it. Raised in the middle
# of the worker's bookkeeping, it stranded the jobs that round trip had just taken.
PERFORMING = threading.Event()
INTERRUPT_AGAIN_SECONDS = 0.05  # how often a stop or a hand-back signals a job that has not taken it yet


class GatedJob(Job):
    """A job whose own code alone may be interrupted (PERFORMING)."""

    def perform(self) -> Any:
        PERFORMING.set()
        try:
            return self._perform()
        finally:
            PERFORMING.clear()

    def _perform(self) -> Any:
        return super().perform()


class TakenJob(GatedJob):
    """A job the fast path took: its key is already persistent, so performing it needs no round trip of its own."""

    def _perform(self) -> Any:
        return rqinternals.perform_taken(self)


class AppWorker(SimpleWorker):
    """RQ's SimpleWorker, running each job, its callbacks included, inside a fresh app context.

    It stops a job on request, hands a job that outlives its shutdown grace back to the front of its queue, retires
    past WORKER_MAX_MEMORY_MB, and runs a Watchman (recovery.py) beside it. Its bookkeeping is RQ's own; FastWorker
    writes the same in fewer round trips.
    """

    def __init__(self, *args, app: Flask, running: RunningJob | None = None, **kwargs) -> None:
        kwargs["job_class"] = GatedJob
        super().__init__(*args, **kwargs)
        self.app = app
        self.running_job = running or RunningJob()
        self.running_job.set_worker(self.name)  # for the supervisor, which removes its record if the process dies
        app.extensions["running_job"] = self.running_job  # tasks.run_model names its R process group there
        self.watchman = Watchman(app, self)
        self.stop_signalled = False
        self.handing_back = False
        self._hand_back_armed_for: Job | None = None
        self.retiring = False
        self.log_result_lifespan = False
        self._memory_checked_at = float("-inf")
        self._running_job: Job | None = None

    def work(self, *args, **kwargs) -> bool:
        signal.signal(signal.SIGUSR1, self._interrupt_job)
        self.watchman.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self.watchman.stopped.set()
            self.watchman.join(timeout=30)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """As RQ does, waiting a second at a time, until a job comes or a stop is asked for (request_stop)."""
        slice_ = STOP_CHECK_SECONDS if timeout else None
        while True:
            popped = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=slice_)
            if popped is not None or not timeout or rqinternals.stop_requested(self):
                return popped

    def get_current_job_id(self, pipeline: Pipeline | None = None) -> str | None:
        """The job running now, as this process knows it (RQ asks its own record in Redis)."""
        return self._running_job.id if self._running_job is not None else None

    def _run(self, job: Job | None) -> None:
        """The one place that says which job runs now (None: none): this worker's own record, which its readers
        (RQ's current job, the watchman's liveness mark) ask, and its copy for the supervisor."""
        self._running_job = job
        self.running_job.set(job.id if job is not None else "")

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._run(job)
        if self.stop_signalled:  # SIGTERM came as the job was being taken: it gets the grace period too
            self._arm_hand_back(job)
        try:
            self._execute_job(job, queue)
        finally:
            self._run(None)
            self._retire_if_too_big()

    def _execute_job(self, job: Job, queue: Queue) -> None:
        super().execute_job(job, queue)

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
            self.retiring = True
            rqinternals.stop_taking_jobs(self)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """As RQ does; a stop asked for while the job was being prepared ends it here."""
        super().prepare_job_execution(job, remove_from_intermediate_queue)
        self._stop_if_asked(job)

    def _stop_if_asked(self, job: Job) -> None:
        if rqinternals.stopped_job_id(self) == job.id:
            raise JobStopped(f"task {job.id} stopped on request")

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
        if (job := self._running_job) is not None:
            self._arm_hand_back(job)
        try:
            super().request_stop(signum, frame)
        except StopRequested:
            # RQ ends an idle worker's wait so, raised from this handler wherever the worker is: a job it had just
            # popped was lost with it. The wait ends within a second instead (dequeue_job_and_maintain_ttl).
            rqinternals.stop_taking_jobs(self)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        """Ctrl-C a second time is RQ's cold shutdown; a second SIGTERM is the first one again (see request_stop)."""
        if signum != signal.SIGTERM:
            super().request_force_stop(signum, frame)

    def _arm_hand_back(self, job: Job) -> None:
        """Hand the job back to its queue if it still runs once the shutdown grace is over."""
        if self._hand_back_armed_for is not job:
            self._hand_back_armed_for = job
            timer = threading.Timer(self.app.config["WORKER_SHUTDOWN_GRACE"], self._hand_back, [job])
            timer.daemon = True
            timer.start()

    def _hand_back(self, job: Job) -> None:
        if self._running_job is job:
            self.handing_back = True
            self._interrupt_until_over(job)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the running job (RQ's stop-job command): with no work horse, interrupt this process."""
        if (job := self._running_job) is not None:
            threading.Thread(target=self._interrupt_until_over, args=[job], name="stop", daemon=True).start()

    def _interrupt_until_over(self, job: Job) -> None:
        """Signal the main thread, which runs the job, until the job is over: a signal that comes before the job's
        code has begun, or after it has returned, is ignored (_interrupt_job)."""
        while self._running_job is job:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(INTERRUPT_AGAIN_SECONDS)

    def _interrupt_job(self, signum: int, frame: FrameType | None) -> None:
        if not PERFORMING.is_set():  # the job's own code has not begun, or has returned: what follows is bookkeeping
            return
        if (stopped := rqinternals.stopped_job_id(self)) is not None and stopped == self.get_current_job_id():
            raise JobStopped(f"task {stopped} stopped on request")
        if self.handing_back:
            raise JobHandedBack("the worker is shutting down")


Unrecorded = tuple[Job, Queue, list, list]  # a finished job, its queue, and FINISH's keys and arguments


class FastWorker(AppWorker):
    """AppWorker with RQ's per-job bookkeeping in Lua (scripts.py), in one round trip per job: a job's success is
    recorded, and the next job started, in the round trip that begins the next job, each as RQ's SimpleWorker
    records it. A job is marked started only as it begins, and recorded as it ends (the worker's loop in between).
    tests/test_equivalence.py holds it to the state RQ's own SimpleWorker leaves; rqinternals.fast_path_refusal says
    when it may run.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.scripts = Scripts(self.connection)
        self.burst = False
        self._suspension_checked_at = float("-inf")
        self._unrecorded: list[Unrecorded] = []  # the last job's success; more after a round trip failed
        self._candidates: tuple[int, list[str]] | None = None  # the head of the first non-empty queue, last seen

    def work(self, *args, **kwargs) -> bool:
        self.burst = kwargs.get("burst", False)
        return super().work(*args, **kwargs)

    def teardown(self) -> None:
        """Record the last job's success before the worker's record goes (RQ's teardown)."""
        try:
            self._round_trip()
        except RedisError as fault:  # the watchmen write its RQ records from its row once this worker is gone
            log.warning("could not record the last job's success: %s", fault)
        super().teardown()

    def check_for_suspension(self, burst: bool) -> None:
        """As RQ does, at most once a second (TAKE itself starts nothing while workers are suspended)."""
        if time.monotonic() - self._suspension_checked_at < SUSPENSION_CHECK_SECONDS:
            return
        if is_suspended(self.connection, self):
            self._wait_while_suspended()
        self._suspension_checked_at = time.monotonic()

    def _wait_while_suspended(self) -> None:
        """Record the last job's success, rather than leave it reading started through the suspension, and wait as
        RQ's worker waits, idle (a burst worker stops)."""
        self._round_trip()
        if self.get_state() == WorkerStatus.BUSY:  # busy from its last job: RQ's worker is idle after each
            self.set_state(WorkerStatus.IDLE)
        super().check_for_suspension(self.burst)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """The job at the head of the queues, started in the round trip that records the last one's success; only when
        every queue is empty, block as RQ does."""
        while True:
            if (started := self._round_trip(take=True)) is not None:
                return started
            elif self._candidates is None:
                popped = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
                if popped is None:
                    return None
                job, queue = popped
                self._candidates = (self.queues.index(queue), [job.id])
                if (started := self._round_trip(take=True, given=True)) is not None:
                    return started

    def _round_trip(self, take: bool = False, given: bool = False) -> tuple[Job, Queue] | None:
        """Record the finished jobs and, with `take`, start the candidate at the head of the queues (or the one RQ's
        dequeue popped, `given`) and look at the queues' heads again. Returns the job started."""
        unrecorded, self._unrecorded = self._unrecorded, []
        if not (unrecorded or take):
            return None
        calls: dict[int, Call] = {}
        try:
            with self.connection.pipeline(transaction=False) as pipeline:
                finishes = [Scripts.call(pipeline, calls, self.scripts.finish, keys, args)
                            for _, _, keys, args in unrecorded]  # fmt: skip
                if take and self._candidates is not None:
                    keys, args, execution_id, took_at = self._take_arguments(given)
                    taking = Scripts.call(pipeline, calls, self.scripts.take, keys, args)
                if take:
                    for queue in self.queues:
                        pipeline.lrange(queue.key, 0, PEEK - 1)
                replies = Scripts.execute(pipeline, calls)
        except BaseException:
            self._unrecorded[:0] = unrecorded
            raise
        for (finished, queue, _, _), finish in zip(unrecorded, finishes, strict=True):
            if replies[finish]:  # RQ's own, as its worker does on a success
                queue.enqueue_dependents(finished)
                finished.cleanup(finished.get_result_ttl(self.default_result_ttl), remove_from_queue=False)
        if not take:
            return None
        candidates = self._candidates
        heads = replies[-len(self.queues) :]
        self._candidates = next(
            ((index, [id_.decode() for id_ in ids]) for index, ids in enumerate(heads) if ids), None
        )
        if candidates is None or replies[taking] == 0:
            return None
        if replies[taking] == -1:  # workers are suspended
            self._wait_while_suspended()
            return None
        return self._started(candidates, execution_id, took_at, *replies[taking])

    def _take_arguments(self, given: bool) -> tuple[list[str], list[Any], str, datetime]:
        """TAKE's keys and arguments for the candidates, the new execution's id, and the take's stamp."""
        assert self._candidates is not None
        index, ids = self._candidates
        took_at, execution_id = now(), uuid.uuid4().hex
        keys = [self.key, rqinternals.PROVEN_LAYOUT["suspended"], self.queues[index].started_job_registry.key]
        keys += [queue.key for queue in self.queues]
        for job_id in ids:
            names = {"job": job_id, "execution": execution_id}
            keys += [template.format(**names) for template in TAKE_KEYS]
        args = [self.name, utcformat(took_at), repr(took_at.timestamp()), index + 1, len(self.queues), int(given),
                execution_id, *ids]  # fmt: skip
        return keys, args, execution_id, took_at

    def _started(
        self, candidates: tuple[int, list[str]], execution_id: str, took_at: datetime, index: int, fields: list
    ) -> tuple[Job, Queue]:
        """The job TAKE started, read from the hash it returned, with its execution."""
        queue, job_id = self.queues[candidates[0]], candidates[1][index]
        job = TakenJob(job_id, connection=self.connection, serializer=self.serializer)
        hash_ = dict(zip(fields[::2], fields[1::2], strict=True))
        del hash_[b"started_at"], hash_[b"last_heartbeat"]  # the take's own stamp: no need to parse it back
        job.restore(hash_)
        job.started_at = job.last_heartbeat = took_at
        self.execution = Execution(execution_id, job.id, self.connection, self.name)
        self.execution.created_at = self.execution.last_heartbeat = took_at
        rqinternals.mark_busy(self)
        return job, queue

    def handle_payload(self, message: dict) -> None:
        """RQ's; and a stop for a job this worker has marked started (TAKE) but not begun yet ends it as it begins:
        RQ's own handler ignores a stop for any job but the running one, and RQ's worker marks a job started only
        once it runs it."""
        payload = parse_payload(message)
        job_id = payload.get("job_id")
        if payload.get("command") == "stop-job" and job_id and job_id != self.get_current_job_id():
            status, worker = self.connection.hmget(Job.key_for(job_id), "status", "worker_name")
            if (status, worker) == (JobStatus.STARTED.value.encode(), self.name.encode()):
                rqinternals.stop_on_begin(self, job_id)
        super().handle_payload(message)

    def _execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job. The worker stays busy, locally too, until its next dequeue finds every queue empty:
        a SIGTERM between jobs is then RQ's warm shutdown, never an exception amid a round trip."""
        self.perform_job(job, queue)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """TAKE did RQ's preparation; a stop asked for before the job began ends it here."""
        self._stop_if_asked(job)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        job.ended_at = now()

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry) -> None:
        """Keep the job's bookkeeping (FINISH) for the round trip that starts the next job (or that the worker makes
        before it waits, stops or is suspended). A job that repeats or belongs to a group is recorded by RQ's own
        code, at once."""
        if job.repeats_left is not None or job.group_id is not None:
            return super().handle_job_success(job, queue, started_job_registry)
        # Set when the job was taken (_started) and when it ended (handle_execution_ended).
        assert self.execution is not None and job.started_at is not None and job.ended_at is not None
        # Result.serialize's fields, made here: a Result object costs a serializer check per job.
        result = {"type": Result.Type.SUCCESSFUL.value, "worker_name": self.name, "execution_id": self.execution.id,
                  "execution_started_at": self.execution.created_at.timestamp(),
                  "execution_ended_at": job.ended_at.timestamp()}  # fmt: skip
        if (value := rqinternals.return_value(job)) is not None:
            result["return_value"] = b64encode(self.serializer.dumps(value)).decode()
        took = (job.ended_at - job.started_at).total_seconds()
        names = {"job": job.id, "queue": job.origin, "execution": self.execution.id}
        keys = [self.key, *(template.format(**names) for template in FINISH_KEYS)]
        args = [job.id, self.execution.id, job.get_result_ttl(self.default_result_ttl), utcformat(job.ended_at), took,
                repr(job.ended_at.timestamp())]  # fmt: skip
        args += [part for field in result.items() for part in field]
        self.execution = None
        self._unrecorded.append((job, queue, keys, args))

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        recent = self.last_heartbeat and (now() - self.last_heartbeat).total_seconds() < HEARTBEAT_SECONDS
        if pipeline is None and timeout is None and recent:
            return
        super().heartbeat(timeout, pipeline)


# The keys TAKE takes per candidate and FINISH per job (scripts.py), in their order.
TAKE_KEYS = [rqinternals.PROVEN_LAYOUT[kind] for kind in ("job", "execution", "executions")]
FINISH_KEYS = [
    rqinternals.PROVEN_LAYOUT[kind]
    for kind in ("job", "results", "finished", "execution", "started", "executions", "dependents", "dependencies")
]


class WithoutJobOk(logging.Filter):
    """Drops RQ's "Job OK" line: tasks.write_result logs every task's outcome already, one line per task."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(isinstance(arg, str) and "Job OK" in arg for arg in record.args or ())


def build_worker(app: Flask, running: RunningJob | None = None) -> AppWorker:
    """A worker on the app's Redis and queues, highest priority first: the fast path unless WORKER_FAST_PATH is off
    or the installed RQ is not the one it was proven against."""
    queues = app.extensions["queues"]
    worker_class: type[AppWorker] = AppWorker
    if app.config["WORKER_FAST_PATH"]:
        if refusal := rqinternals.fast_path_refusal(app.extensions["redis"]):
            log.warning("the worker runs RQ's own code paths: %s", refusal)
        else:
            worker_class = FastWorker
    return worker_class(
        [queues[name] for name in QUEUE_NAMES],
        connection=app.extensions["redis"],
        serializer=JSONSerializer,
        maintenance_interval=SCHEDULER_CHECK_SECONDS,
        # RQ's idle heartbeat TTL; RQ also sets its connections' socket timeout to this less 5 s (40 s, not 415 s).
        worker_ttl=SCHEDULER_CHECK_SECONDS + 15,
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
