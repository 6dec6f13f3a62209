"""AppWorker: RQ's SimpleWorker running each job, its callbacks included, in a fresh app context; it stops a job on
request, hands a job that outlives its shutdown grace back to the front of its queue, retires past
WORKER_MAX_MEMORY_MB, and runs a Watchman (recovery.py) beside it.

Imports core, tasks and the workers' recovery, rqinternals and supervisor; worker.py builds it.
"""

import logging
import os
import resource
import signal
import threading
import time
from types import FrameType
from typing import Any

from flask import Flask
from redis.client import Pipeline
from rq import Queue, Retry, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry

from longjobs.workers import rqinternals
from longjobs.workers.recovery import Watchman
from longjobs.workers.supervisor import RunningJob
from tasks import JobHandedBack, JobStopped

log = logging.getLogger(__name__)
MEMORY_CHECK_SECONDS = 1.0
STOP_CHECK_SECONDS = 1  # how soon an idle worker stops on SIGTERM
# RQ's maintenance (registry cleanup, and starting RQ's scheduler again once a Redis error ended it) runs this often;
# RQ's own default is 10 minutes.
SCHEDULER_CHECK_SECONDS = 30
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
