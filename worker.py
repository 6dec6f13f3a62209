"""The RQ worker: `python worker.py` serves the queues high, default, low in that order.

It runs jobs in its own process (RQ's SimpleWorker: longjobs/workers/appworker.py, or its fast path, fastworker.py)
rather than a forked work horse per job, and that process runs under the supervisor (supervisor.py), which starts a
fresh one when a job kills it or it outgrows WORKER_MAX_MEMORY_MB: docs/architecture.md says why.

Imports app (to build it), core and longjobs.workers; nothing of ours imports this module but the tests.
"""

import logging
import signal
import threading
import time

from flask import Flask
from redis.exceptions import RedisError
from rq.serializers import JSONSerializer

from app import LOG_FORMAT, create_app
from core import QUEUE_NAMES
from longjobs.workers import rqinternals
from longjobs.workers.appworker import AppWorker
from longjobs.workers.fastworker import FastWorker
from longjobs.workers.recovery import count_crash
from longjobs.workers.supervisor import MAX_RESTART_BACKOFF_SECONDS, RETIRED, RunningJob, supervise

log = logging.getLogger(__name__)
# RQ's maintenance (registry cleanup, and starting RQ's scheduler again once a Redis error ended it) runs this often;
# RQ's own default is 10 minutes.
SCHEDULER_CHECK_SECONDS = 30


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
