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
from types import FrameType

from flask import Flask
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from app import create_app
from core import QUEUE_NAMES
from recovery import Watchman
from tasks import JobHandedBack, JobStopped

log = logging.getLogger(__name__)
MAX_RESTART_BACKOFF_SECONDS = 30


class AppWorker(SimpleWorker):
    """A worker that runs each job, its callbacks included, inside a fresh app context.

    It hands a job that outlives its shutdown grace back to the queue, stops a job on request, and
    runs a Watchman (recovery.py) beside it.
    """

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.watchman = Watchman(app, self)
        self.stop_signalled = False
        self.handing_back = False

    def work(self, *args, **kwargs) -> bool:
        self.watchman.start()
        try:
            return super().work(*args, **kwargs)
        finally:
            self.watchman.stopped.set()
            self.watchman.join(timeout=30)

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
