"""The worker's take-and-finish protocol (worker.FastWorker, scripts.py) leaves the state RQ's readers expect."""

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Worker
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.results import Result as RQResult
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from core import Result, db
from longjobs import lifecycle
from longjobs.workers import rqinternals
from longjobs.workers.fastworker import FastWorker
from longjobs.workers.scripts import Scripts
from tests.conftest import row, service_env, start_process, stop_process, submit, submit_task, wait_for
from worker import build_worker


def fetch(app: Flask, task_id: str) -> Job:
    return Job.fetch(task_id, connection=app.extensions["redis"], serializer=JSONSerializer)


def has_row(app: Flask, task_id: str) -> bool:
    return row(app, task_id) is not None


def test_a_running_and_a_finished_job_read_as_rq_writes_them(app: Flask, client: FlaskClient, worker_process) -> None:
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    task_id = submit(client, x=6, y=7, delay=1.5)
    wait_for(lambda: fetch(app, task_id).get_status() == JobStatus.STARTED, 20, "the job to start")

    [worker] = Worker.all(connection=redis)
    job = fetch(app, task_id)
    assert (worker.get_state(), worker.get_current_job_id()) == ("busy", task_id)
    assert job.worker_name == worker.name and job.started_at is not None
    [(started_id, execution_id)] = queue.started_job_registry.get_job_and_execution_ids()
    assert started_id == task_id
    execution = Execution.fetch(execution_id, task_id, connection=redis)
    assert execution.worker_name == worker.name

    wait_for(lambda: fetch(app, task_id).get_status() == JobStatus.FINISHED, 20, "the job to finish")
    job = fetch(app, task_id)
    assert job.return_value() == 42 and job.ended_at >= job.started_at
    result = job.latest_result()
    assert (result.type, result.worker_name) == (RQResult.Type.SUCCESSFUL, worker.name)
    assert result.execution_id == execution_id
    assert result.execution_started_at <= result.execution_ended_at
    assert queue.finished_job_registry.get_job_ids() == [task_id]
    assert queue.started_job_registry.get_job_ids() == []
    assert not redis.exists(execution.key)
    assert 0 < redis.ttl(job.key) <= app.config["RESULT_TTL"]
    assert ExecutionRegistry(task_id, connection=redis).get_execution_ids() == []
    wait_for(lambda: Worker.find_by_key(worker.key, connection=redis).get_state() == "idle", 10, "the worker to idle")
    worker.refresh()
    assert (worker.get_current_job_id(), worker.successful_job_count) == (None, 1)
    assert worker.total_working_time > 0


def test_a_job_taken_as_the_worker_stops_goes_back_to_the_front(app: Flask, client: FlaskClient, run_worker) -> None:
    queue = app.extensions["queues"]["default"]
    first, second = submit(client, x=1, y=2), submit(client, x=3, y=4)
    # The worker stops after the first job, as it would on SIGTERM: the second is never taken.
    build_worker(app).work(burst=True, max_jobs=1, logging_level="WARNING")

    assert has_row(app, first) and not has_row(app, second)
    assert fetch(app, second).get_status() == JobStatus.QUEUED
    assert queue.get_job_ids() == [second]
    assert queue.started_job_registry.get_job_ids() == []
    assert app.extensions["redis"].keys(f"rq:execution:{second}:*") == []

    run_worker(app)
    assert client.get(f"/multiply/{second}").json["result"] == 12


def test_suspended_workers_take_no_new_job(app: Flask, client: FlaskClient, worker_process) -> None:
    redis = app.extensions["redis"]
    running = submit(client, x=1, y=1, delay=1)
    wait_for(lambda: fetch(app, running).get_status() == JobStatus.STARTED, 20, "the first job to start")
    suspend(redis)
    try:
        waiting = submit(client, x=2, y=2)
        wait_for(lambda: has_row(app, running), 20, "the running job to finish")
        time.sleep(2)  # a worker that took it (finishing a job takes the next one) would have run it by now
        assert fetch(app, waiting).get_status() == JobStatus.QUEUED and not has_row(app, waiting)
    finally:
        resume(redis)
    wait_for(lambda: has_row(app, waiting), 20, "the waiting job to run once workers resume")


def rows(app: Flask) -> int:
    with app.app_context():
        return db.session.query(Result).count()


def test_sigterm_amid_a_drain_stops_the_worker_and_loses_no_task(app: Flask, run_worker, tmp_path: Path) -> None:
    queues = app.extensions["queues"]
    with app.app_context():
        accepted = [lifecycle.submit(app.extensions["models"]["multiply"], {"x": n, "y": 2}) for n in range(600)]
    worker = start_process("worker", tmp_path / "worker.log", **service_env())
    try:
        wait_for(lambda: rows(app) >= 50, 30, "the drain to be under way")
        worker.send_signal(signal.SIGTERM)  # `bash -c exec` made the worker the process itself
        assert worker.wait(timeout=30) == 0, (tmp_path / "worker.log").read_text()
    finally:
        stop_process(worker)
    left = rows(app)
    assert left < len(accepted), "the worker drained everything before the signal: the test proved nothing"
    assert sum(queues[name].count for name in queues) == len(accepted) - left  # every other task is queued again
    assert all(not queues[name].started_job_registry.get_job_ids() for name in queues)
    assert all(not queues[name].failed_job_registry.get_job_ids() for name in queues)

    run_worker(app)
    with app.app_context():
        statuses = db.session.query(Result.status).all()
    assert sorted(statuses) == [("finished",)] * len(accepted)


def fast_worker(app: Flask) -> FastWorker:
    """The app's worker on its fast path (these tests skip with WORKER_FAST_PATH=off)."""
    worker = build_worker(app)
    if not isinstance(worker, FastWorker):
        pytest.skip("the fast path's own protocol")
    return worker


def watch_while_working(app: Flask, look: Callable[[], object]) -> object:
    """Run a burst worker, calling `look` in another thread once a job runs."""
    queue, seen = app.extensions["queues"]["default"], []

    def watch() -> None:
        wait_for(lambda: queue.started_job_registry.get_job_ids(), 10, "a job to start")
        seen.append(look())

    watcher = threading.Thread(target=watch)
    watcher.start()
    build_worker(app).work(burst=True, logging_level="WARNING")
    watcher.join()
    return seen[0]


def test_jobs_behind_a_running_one_wait_in_their_queue(app: Flask, client: FlaskClient) -> None:
    queue = app.extensions["queues"]["default"]
    long_one = submit(client, x=1, y=1, delay=2)
    quick = [submit(client, x=n, y=2) for n in range(5)]

    def soon_after_the_long_one_began() -> tuple[list[str], list[str]]:
        time.sleep(1)
        return queue.started_job_registry.get_job_ids(), queue.get_job_ids()

    started, queued = watch_while_working(app, soon_after_the_long_one_began)
    assert (started, queued) == ([long_one], quick)  # a job is started only as it begins
    assert all(has_row(app, task_id) for task_id in [long_one, *quick])


def test_a_job_finished_before_a_long_one_is_recorded_while_it_runs(app: Flask, client: FlaskClient) -> None:
    queue = app.extensions["queues"]["default"]
    first, long_one = submit(client, x=1, y=1), submit(client, x=1, y=1, delay=2)

    def soon_after_the_long_one_began() -> tuple[str, list[str], str | None, int]:
        wait_for(lambda: has_row(app, first), 10, "the first job to end")
        time.sleep(1)
        [worker] = Worker.all(connection=app.extensions["redis"])
        ttl = app.extensions["redis"].ttl(worker.key)
        started = queue.started_job_registry.get_job_ids()
        return fetch(app, first).get_status(), started, worker.get_current_job_id(), ttl

    status, started, current, ttl = watch_while_working(app, soon_after_the_long_one_began)
    assert (status, started, current) == (JobStatus.FINISHED, [long_one], long_one)  # the worker names the job it runs
    assert ttl > app.config["TASK_TIMEOUTS"]["multiply"]  # and its record outlives it


def test_a_job_queued_at_a_higher_priority_meanwhile_runs_next(app: Flask, client: FlaskClient) -> None:
    """The worker looked at the head of the default queue as the running job began; a job queued in `high` since
    runs before those."""
    running = submit(client, x=1, y=1, delay=1)
    waiting = [submit(client, x=n, y=2) for n in range(3)]

    def submit_urgent() -> str:
        return submit(app.test_client(), "/multiply?priority=high", x=9, y=9)

    urgent = watch_while_working(app, submit_urgent)
    order = sorted([running, urgent, *waiting], key=lambda task_id: fetch(app, task_id).started_at)
    assert order == [running, urgent, *waiting]


def test_two_workers_draining_one_queue_run_each_job_once(app: Flask, tmp_path: Path) -> None:
    """Both look at the same head of the queue; each job is started by one of them, once."""
    redis = app.extensions["redis"]
    suspend(redis)  # the jobs wait until all are queued
    task_ids = [submit_task(app, "multiply", x=n, y=2, delay=0.01) for n in range(300)]
    workers = [start_process("worker", tmp_path / f"worker-{n}.log", **service_env()) for n in range(2)]
    try:
        wait_for(lambda: len(Worker.all(connection=redis)) == 2, 30, "both workers to start")
        resume(redis)
        wait_for(lambda: rows(app) == len(task_ids), 60, "every task to end")
        wait_for(lambda: sum(worker.successful_job_count for worker in Worker.all(connection=redis)) == len(task_ids),
                 10, "the workers' records to count every job once")  # fmt: skip
        counts = [worker.successful_job_count for worker in Worker.all(connection=redis)]
    finally:
        for worker in workers:
            stop_process(worker)
    assert min(counts) > 0, "one worker drained the queue alone: the test proved nothing"
    jobs = Job.fetch_many(task_ids, connection=redis, serializer=JSONSerializer)
    assert [(job.get_status(), len(job.results())) for job in jobs] == [(JobStatus.FINISHED, 1)] * len(task_ids)


def test_a_job_handed_back_goes_to_the_front_of_its_queue(app: Flask, client: FlaskClient) -> None:
    handed_back = submit(client, "/models/hand_back")
    behind = submit(client, x=1, y=2)
    build_worker(app).work(burst=True, max_jobs=1, logging_level="WARNING")
    assert app.extensions["queues"]["default"].get_job_ids() == [handed_back, behind]


def test_a_stop_that_comes_during_the_workers_round_trip_strands_no_job(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, third = [submit(client, x=n, y=2) for n in range(3)]
    worker = fast_worker(app)
    started = FastWorker._started

    def stopped_meanwhile(self, candidates: tuple, *args: object) -> tuple:
        taken = started(self, candidates, *args)
        if taken[0].id == third:  # taken as the second's success is recorded
            self._stopped_job_id = second  # the second's stop arrives as that round trip returns
            os.kill(os.getpid(), signal.SIGUSR1)
        return taken

    monkeypatch.setattr(FastWorker, "_started", stopped_meanwhile)
    worker.work(burst=True, logging_level="WARNING")
    assert [row(app, task_id).status for task_id in (first, second, third)] == ["finished"] * 3
    assert app.extensions["queues"]["default"].started_job_registry.get_job_ids() == []


def test_a_stop_for_a_job_being_taken_stops_it_as_it_begins(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job reads started, by this worker, from its take on: a DELETE then is a stop RQ's own handler would ignore
    (the worker runs no job yet)."""
    task_id = submit(client, x=6, y=7)
    worker = fast_worker(app)
    started = FastWorker._started

    def stopped_as_taken(self, *args: object) -> tuple:
        taken = started(self, *args)
        assert app.test_client().delete(f"/tasks/{task_id}").status_code == 202
        wait_for(lambda: rqinternals.stopped_job_id(self) == task_id, 10, "the worker to hear of the stop")
        return taken

    monkeypatch.setattr(FastWorker, "_started", stopped_as_taken)
    worker.work(burst=True, logging_level="WARNING")
    assert row(app, task_id).status == "stopped"


def test_a_sigterm_as_a_job_is_taken_gives_that_job_the_grace_period(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM between taking a job and running it: the job is run, and handed back once the grace is over."""
    app.config["WORKER_SHUTDOWN_GRACE"] = 0
    long_one, behind = submit(client, x=1, y=1, delay=3), submit(client, x=2, y=2)
    worker = build_worker(app)
    dequeue = worker.dequeue_job_and_maintain_ttl

    def signalled_as_taken(*args: object, **kwargs: object) -> tuple | None:
        taken = dequeue(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # handled before the job runs
        return taken

    monkeypatch.setattr(worker, "dequeue_job_and_maintain_ttl", signalled_as_taken)
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        worker.work(burst=True, logging_level="WARNING")
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert not has_row(app, long_one) and fetch(app, long_one).get_status() == JobStatus.QUEUED
    assert app.extensions["queues"]["default"].get_job_ids() == [long_one, behind]


def test_a_result_kept_for_good_is_kept_as_rq_keeps_it(app: Flask, client: FlaskClient, run_worker) -> None:
    app.config["RESULT_TTL"] = -1  # RQ's "keep the result for good" (the setting allows 0 and up; RQ allows -1)
    task_id = submit(client, x=6, y=7)
    run_worker(app)
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    job = fetch(app, task_id)
    assert (job.get_status(), job.return_value(), redis.ttl(job.key)) == (JobStatus.FINISHED, 42, -1)
    assert queue.finished_job_registry.get_job_ids() == [task_id]
    assert redis.zscore(queue.finished_job_registry.key, task_id) == float("inf")


def test_a_success_whose_round_trip_reply_was_lost_is_recorded_once(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submit(client, x=6, y=7)
    worker = fast_worker(app)
    execute, lost = Scripts.execute, []

    def reply_lost(pipeline, calls):
        replies = execute(pipeline, calls)
        if not lost and any(call[0] is worker.scripts.finish for call in calls.values()):
            lost.append(replies)
            raise RedisConnectionError("the connection dropped before the reply came")
        return replies

    monkeypatch.setattr(Scripts, "execute", staticmethod(reply_lost))
    worker.work(burst=True, logging_level="WARNING")
    job = fetch(app, task_id)
    assert lost and (job.get_status(), [result.return_value for result in job.results()]) == (JobStatus.FINISHED, [42])
    assert client.get(f"/multiply/{task_id}").json["result"] == 42
