"""RQ's own tools on the state this service leaves: `rq info` and RQ's maintenance, run outside any app of ours."""

import subprocess
import sys
import uuid
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from core import Result, db
from longjobs.workers.recovery import Watchman
from tests.conftest import ROOT, TEST_REDIS_URL, submit, wait_for
from worker import build_worker


def test_rq_info_fails_an_abandoned_job_and_the_watchmen_write_its_row(app: Flask, client: FlaskClient) -> None:
    task_id = submit(client, x=1, y=2)
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    job = Job.fetch(task_id, connection=redis, serializer=JSONSerializer)
    queue.remove(job)
    job.set_status(JobStatus.STARTED)
    redis.zadd(queue.started_job_registry.key, {f"{task_id}:gone": 1})  # its worker vanished long ago
    rq = Path(sys.executable).parent / "rq"
    done = subprocess.run([str(rq), "info", "--url", TEST_REDIS_URL, "--serializer", "rq.serializers.JSONSerializer",
                           "default"], cwd=ROOT, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr  # its registry cleanup called our failure callback: no crash
    assert queue.failed_job_registry.get_job_ids() == [task_id]
    with app.app_context():
        Watchman(app, build_worker(app)).write_unwritten_outcomes()
        failed = db.session.get(Result, uuid.UUID(task_id))
    assert failed.status == "failed" and "found it abandoned" in failed.error


def test_the_watchman_outlives_a_bug_in_its_sweep(app: Flask, monkeypatch) -> None:
    worker = build_worker(app)
    watchman = worker.watchman
    watchman.interval = 0.05
    sweeps = []

    def broken_sweep() -> None:
        sweeps.append(1)
        raise ValueError("a bug")

    monkeypatch.setattr(watchman, "sweep", broken_sweep)
    monkeypatch.setattr(watchman, "liveness", 1)
    watchman.start()
    try:
        wait_for(lambda: len(sweeps) >= 2 and watchman.is_alive(), 10, "a second sweep after the first one failed")
    finally:
        watchman.stopped.set()
        watchman.join(timeout=5)
