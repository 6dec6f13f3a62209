"""The RQ worker process: `python worker.py` serves the queues high, default, low in that order.

Imports app (to build it) and core; nothing of ours imports this module.
It runs jobs in its own process (RQ's SimpleWorker) rather than a forked work horse per job: the
README's "Architecture" section says why.
"""

import os
import signal
from types import FrameType

from flask import Flask
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from app import create_app
from core import QUEUE_NAMES
from tasks import JobStopped


class AppWorker(SimpleWorker):
    """A worker that runs each job, its callbacks included, inside a fresh app context."""

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # Popping the context at the end removes the job's database session, whatever happened.
        with self.app.app_context():
            signal.signal(signal.SIGUSR1, self._stop_job)
            try:
                return super().perform_job(job, queue)
            finally:
                signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop the running job (RQ's stop-job command): with no work horse, interrupt this process."""
        os.kill(os.getpid(), signal.SIGUSR1)  # handled in the main thread, which runs the job

    def _stop_job(self, signum: int, frame: FrameType | None) -> None:
        if self._stopped_job_id is not None:
            raise JobStopped(f"task {self._stopped_job_id} stopped on request")


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
    """Run a worker until SIGTERM or Ctrl-C (a warm shutdown: the running job finishes first)."""
    build_worker(create_app()).work(with_scheduler=True)  # the scheduler runs retries after their backoff


if __name__ == "__main__":
    main()
