"""The RQ worker process: `python worker.py` serves the queues high, default, low in that order.

Imports app (to build it) and core; nothing of ours imports this module.
It runs jobs in its own process (RQ's SimpleWorker) rather than a forked work horse per job: the
README's "Architecture" section says why.
"""

from flask import Flask
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.serializers import JSONSerializer

from app import create_app
from core import QUEUE_NAMES


class AppWorker(SimpleWorker):
    """A worker that runs each job, its callbacks included, inside a fresh app context."""

    def __init__(self, *args, app: Flask, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.app = app

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # Popping the context at the end removes the job's database session, whatever happened.
        with self.app.app_context():
            return super().perform_job(job, queue)


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
    build_worker(create_app()).work()


if __name__ == "__main__":
    main()
