"""The worker's own take-and-finish protocol (worker.TAKE_JOB) leaves the state RQ's readers expect."""

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
from rq.exceptions import StopRequested
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job, JobStatus
from rq.results import Result as RQResult
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

import lifecycle
import rqinternals
from core import Result, db
from recovery import Watchman
from scripts import Scripts
from tests.conftest import row, service_env, start_process, stop_process, submit, wait_for
from worker import FastWorker, build_worker


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
    # Finishing the first job takes the second; the worker then stops, as it would on SIGTERM.
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
    """The app's worker, which takes jobs in batches: the fast path's (these tests skip with WORKER_FAST_PATH=off)."""
    worker = build_worker(app)
    if not isinstance(worker, FastWorker):
        pytest.skip("batches are the fast path's")
    return worker


def watch_while_working(app: Flask, look: Callable[[], object]) -> object:
    """Run a burst worker that starts with a batch of 8, calling `look` in another thread once a job runs."""
    queue, seen = app.extensions["queues"]["default"], []

    def watch() -> None:
        wait_for(lambda: queue.started_job_registry.get_job_ids(), 10, "a job to start")
        seen.append(look())

    worker = fast_worker(app)
    worker._batch_size = 8
    watcher = threading.Thread(target=watch)
    watcher.start()  # as after a run of quick jobs
    worker.work(burst=True, logging_level="WARNING")
    watcher.join()
    return seen[0]


def test_jobs_held_behind_a_long_one_go_back_to_their_queue(app: Flask, client: FlaskClient) -> None:
    queue = app.extensions["queues"]["default"]
    long_one = submit(client, x=1, y=1, delay=2)
    quick = [submit(client, x=n, y=2) for n in range(5)]

    def soon_after_the_long_one_began() -> tuple[list[str], list[str]]:
        time.sleep(1)
        return queue.started_job_registry.get_job_ids(), queue.get_job_ids()

    started, queued = watch_while_working(app, soon_after_the_long_one_began)
    assert (started, queued) == ([long_one], quick)  # taken in one batch, given back while it ran
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


def test_stopping_a_job_held_behind_another_cancels_it(app: Flask, client: FlaskClient) -> None:
    running, held = submit(client, x=1, y=1, delay=1), submit(client, x=2, y=2)

    def stop_the_held_one() -> int:
        assert fetch(app, held).get_status() == JobStatus.STARTED  # taken with the running one
        return app.test_client().delete(f"/tasks/{held}").status_code

    assert watch_while_working(app, stop_the_held_one) == 202
    assert client.get(f"/multiply/{held}").json == {
        "task_id": held,
        "status": "canceled",
        "params": {"x": 2.0, "y": 2.0, "delay": 0.0},
        "error": "canceled on request before it started",
    }
    assert client.get(f"/multiply/{running}").json["status"] == "finished"


def test_jobs_held_by_a_suspended_worker_go_back_to_their_queue(app: Flask, client: FlaskClient) -> None:
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    held = [submit(client, x=n, y=2) for n in range(3)]
    worker = fast_worker(app)
    worker.register_birth()
    worker._round_trip(take=3)  # a batch taken, none of it begun yet
    assert [fetch(app, task_id).get_status() for task_id in held] == [JobStatus.STARTED] * 3
    suspend(redis)
    try:
        with pytest.raises(StopRequested):  # a burst worker stops while suspended; a worker waits
            worker.check_for_suspension(burst=True)
    finally:
        resume(redis)
        worker.register_death()
    assert [fetch(app, task_id).get_status() for task_id in held] == [JobStatus.QUEUED] * 3
    assert queue.get_job_ids() == held and queue.started_job_registry.get_job_ids() == []


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
    start = FastWorker._start

    def stopped_meanwhile(self, claimed: list, given: tuple | None = None) -> None:
        if third in [task_id for _, task_id in claimed]:  # taken as the second ended
            self._stopped_job_id = second  # the second's stop arrives as that round trip returns
            os.kill(os.getpid(), signal.SIGUSR1)
        start(self, claimed, given)

    monkeypatch.setattr(FastWorker, "_start", stopped_meanwhile)
    worker._batch_size = 2  # the first two taken together, the third when the second ends
    worker.work(burst=True, logging_level="WARNING")
    assert [row(app, task_id).status for task_id in (first, second, third)] == ["finished"] * 3
    assert app.extensions["queues"]["default"].started_job_registry.get_job_ids() == []


def test_a_result_kept_for_good_is_kept_as_rq_keeps_it(app: Flask, client: FlaskClient, run_worker) -> None:
    app.config["RESULT_TTL"] = -1  # RQ's "keep the result for good" (the setting allows 0 and up; RQ allows -1)
    task_id = submit(client, x=6, y=7)
    run_worker(app)
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    job = fetch(app, task_id)
    assert (job.get_status(), job.return_value(), redis.ttl(job.key)) == (JobStatus.FINISHED, 42, -1)
    assert queue.finished_job_registry.get_job_ids() == [task_id]
    assert redis.zscore(queue.finished_job_registry.key, task_id) == float("inf")


def claim_as_a_worker_that_dies(app: Flask, count: int) -> None:
    """What a worker leaves when it dies, or loses its connection, between its CLAIM and its START."""
    queues = [app.extensions["queues"][name] for name in ("high", "default", "low")]
    keys = [rqinternals.PROVEN_LAYOUT["suspended"]]
    for queue in queues:
        keys += [queue.key, queue.intermediate_queue_key]
    Scripts(app.extensions["redis"]).claim(keys, [count])


def test_a_job_claimed_but_never_started_goes_back_to_its_queue_and_runs_once(
    app: Flask, client: FlaskClient, run_worker
) -> None:
    queue = app.extensions["queues"]["default"]
    task_id = submit(client, x=6, y=7)
    claim_as_a_worker_that_dies(app, 1)
    assert (queue.get_job_ids(), queue.intermediate_queue.get_job_ids()) == ([], [task_id])
    watchman = Watchman(app, build_worker(app))
    with app.app_context():
        watchman.sweep()  # a worker may be between its claim and its start: left alone
        assert queue.intermediate_queue.get_job_ids() == [task_id]
        watchman.sweep()
    assert (queue.get_job_ids(), queue.intermediate_queue.get_job_ids()) == ([task_id], [])
    run_worker(app)
    assert client.get(f"/multiply/{task_id}").json["result"] == 42


def test_a_claimed_job_given_back_meanwhile_is_not_started(app: Flask, client: FlaskClient) -> None:
    queue = app.extensions["queues"]["default"]
    task_id = submit(client, x=6, y=7)
    worker = fast_worker(app)
    claim_as_a_worker_that_dies(app, 1)
    intermediate = queue.intermediate_queue
    Scripts(app.extensions["redis"]).unclaim([intermediate.key, queue.key, intermediate.get_first_seen_key(task_id)],
                                             [task_id])  # fmt: skip
    worker._start([(queue, task_id)])  # the claiming worker's start, come late
    assert (list(worker._held), queue.get_job_ids()) == ([], [task_id])
    assert fetch(app, task_id).get_status() == JobStatus.QUEUED


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
