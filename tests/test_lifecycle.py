"""The task lifecycle: task views, progress, priorities, retries, dead letters, cancel and stop."""

import base64
import json
import time
import uuid
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer

import tasks
from longjobs import lifecycle
from tasks import ProgressReporter
from tests.conftest import DASHBOARD_PASSWORD, app_fixture, make_app, row, submit, submit_failing, wait_for

AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{DASHBOARD_PASSWORD}".encode()).decode()}


FLAKY = {"x": 6.0, "y": 7.0, "failures": 1, "fault": "data"}


def runs(app: Flask, task_id: str) -> int:
    return int(app.extensions["redis"].get(f"test:runs:{task_id}") or 0)


def test_a_task_view_follows_the_task_to_its_end(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=2, y=3)
    queued = client.get(f"/tasks/{task_id}").json
    assert queued == queued | {
        "task_id": task_id,
        "type": "multiply",
        "priority": "default",
        "status": "queued",
        "progress": {"percent": 0, "message": None},
        "started_at": None,
        "ended_at": None,
        "result_url": f"/multiply/{task_id}",
        "error": None,
    }
    assert datetime.fromisoformat(queued["enqueued_at"]).utcoffset().total_seconds() == 0
    assert queued["enqueued_at"].endswith("+00:00")

    run_worker(app)
    done = client.get(f"/tasks/{task_id}").json
    assert (done["status"], done["progress"], done["error"]) == ("finished", {"percent": 100, "message": "done"}, None)
    enqueued, started, ended = (datetime.fromisoformat(done[key]) for key in ("enqueued_at", "started_at", "ended_at"))
    assert enqueued <= started <= ended


def test_unknown_tasks_are_404(client: FlaskClient) -> None:
    for path in (f"/tasks/{uuid.uuid4()}", "/tasks/not-a-uuid", f"/simulations/{uuid.uuid4()}"):
        response = client.get(path)
        assert response.status_code == 404
        assert set(response.json) == {"error"}


def test_a_result_url_of_another_type_is_404(client: FlaskClient) -> None:
    task_id = submit(client, x=2, y=3)
    assert client.get(f"/simulations/{task_id}").status_code == 404
    assert client.get(f"/multiply/{task_id}").status_code == 404  # pending, with its status
    assert client.get(f"/multiply/{task_id}").json["status"] == "queued"


def test_progress_is_throttled_and_never_goes_back(app: Flask, client: FlaskClient) -> None:
    job = Job.fetch(submit(client, x=1, y=1), connection=app.extensions["redis"])
    reporter = ProgressReporter(job)

    def stored() -> dict:
        return Job.fetch(job.id, connection=app.extensions["redis"]).meta["progress"]

    reporter.report(10, "first")
    for percent in range(11, 60):  # within the throttle interval: not written
        reporter.report(percent, "later")
    assert stored() == {"percent": 10, "message": "first"}
    time.sleep(0.3)
    reporter.report(30, "back?")
    assert stored() == {"percent": 59, "message": "back?"}
    time.sleep(0.3)
    reporter.report(150, "over")
    assert stored()["percent"] == 99  # only a finished task is at 100


@pytest.mark.slow
def test_a_running_job_reports_progress_strictly_between_0_and_100(
    app: Flask, client: FlaskClient, worker_process
) -> None:
    task_id = submit(client, x=2, y=3, delay=2)
    seen: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pending = client.get(f"/multiply/{task_id}")
        if pending.status_code == 200:
            break
        seen.append(pending.json["progress"]["percent"])
        time.sleep(0.05)
    assert client.get(f"/multiply/{task_id}").json["result"] == 6.0
    assert seen == sorted(seen)
    assert len({p for p in seen if 0 < p < 100}) >= 3
    assert client.get(f"/tasks/{task_id}").json["progress"]["percent"] == 100


def test_high_priority_overtakes_queued_low_ones(app: Flask, client: FlaskClient, run_worker) -> None:
    low = [client.post("/multiply?priority=low", json={"x": 1, "y": n}).json["task_id"] for n in range(3)]
    default = [client.post("/multiply", json={"x": 2, "y": n}).json["task_id"] for n in range(2)]
    high = client.post("/multiply?priority=high", json={"x": 3, "y": 3}).json["task_id"]
    assert client.get(f"/tasks/{high}").json["priority"] == "high"
    run_worker(app)
    started = {task_id: row(app, task_id).started_at for task_id in [*low, *default, high]}
    order = sorted(started, key=started.get)
    assert order == [high, *default, *low]


@pytest.mark.parametrize(
    "query", ["priority=", "priority=HIGH", "priority=urgent", "priority=high&priority=low", "priority=%20high", "p=1"]
)
def test_bad_priorities_are_400_and_queue_nothing(app: Flask, client: FlaskClient, query: str) -> None:
    response = client.post(f"/multiply?{query}", json={"x": 1, "y": 2})
    assert response.status_code == 400
    assert set(response.json) == {"error"}
    assert all(queue.count == 0 for queue in app.extensions["queues"].values())


quick_retry_app = app_fixture(RETRY_ATTEMPTS="2", RETRY_BACKOFF_SECONDS="0")


def test_a_connection_error_is_retried_and_then_succeeds(quick_retry_app: Flask, run_worker) -> None:
    task_id = submit_failing(quick_retry_app, failures=2, fault="connection")
    run_worker(quick_retry_app)
    assert runs(quick_retry_app, task_id) == 3
    assert (row(quick_retry_app, task_id).status, row(quick_retry_app, task_id).result) == ("finished", 42.0)
    assert quick_retry_app.extensions["queues"]["default"].failed_job_registry.count == 0


def test_a_connection_error_that_persists_fails_after_the_retries(quick_retry_app: Flask, run_worker) -> None:
    task_id = submit_failing(quick_retry_app, failures=10, fault="connection")
    run_worker(quick_retry_app)
    assert runs(quick_retry_app, task_id) == 3  # the run and 2 retries
    failed = row(quick_retry_app, task_id)
    assert failed.status == "failed"
    assert "OperationalError" in failed.error
    assert task_id in quick_retry_app.extensions["queues"]["default"].failed_job_registry


def test_a_deterministic_error_is_not_retried_and_gives_a_failed_row(quick_retry_app: Flask, run_worker) -> None:
    task_id = submit_failing(quick_retry_app, failures=1, fault="data")
    run_worker(quick_retry_app)
    assert runs(quick_retry_app, task_id) == 1
    answer = quick_retry_app.test_client().get(f"/models/flaky/{task_id}")
    assert answer.status_code == 200
    assert answer.json == {
        "task_id": task_id,
        "status": "failed",
        "params": FLAKY,
        "error": "ValueError: bad data on run 1",
    }
    assert task_id in quick_retry_app.extensions["queues"]["default"].failed_job_registry


backoff_app = app_fixture(RETRY_ATTEMPTS="3", RETRY_BACKOFF_SECONDS="2")


def test_retries_wait_their_backoff(backoff_app: Flask, run_worker) -> None:
    task_id = submit_failing(backoff_app, failures=1, fault="connection")
    run_worker(backoff_app)
    client = backoff_app.test_client()
    assert client.get(f"/tasks/{task_id}").json["status"] == "scheduled"
    assert not run_worker(backoff_app)  # not due yet
    assert runs(backoff_app, task_id) == 1
    time.sleep(2.2)
    run_worker(backoff_app)
    assert runs(backoff_app, task_id) == 2
    assert client.get(f"/models/flaky/{task_id}").json["result"] == 42.0


def test_a_failed_task_requeued_from_the_dashboard_finishes(app: Flask, run_worker) -> None:
    task_id = submit_failing(app, failures=1, fault="data")
    run_worker(app)
    client = app.test_client()
    assert client.get(f"/models/flaky/{task_id}").json["status"] == "failed"
    assert client.post(f"/rq/job/{task_id}/requeue", headers=AUTH | {"Origin": "http://localhost"}).status_code == 200
    assert json.loads(app.extensions["redis"].hget(f"rq:job:{task_id}", "meta")) == {"type": "flaky"}  # not pickle
    run_worker(app)
    assert client.get(f"/models/flaky/{task_id}").json == {"task_id": task_id, "status": "finished", "params": FLAKY,
                                                           "result": 42.0}  # fmt: skip
    assert app.extensions["queues"]["default"].failed_job_registry.count == 0


def test_a_canceled_queued_task_never_runs(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit_failing(app, failures=0, fault="data")
    canceled = client.delete(f"/tasks/{task_id}")
    assert canceled.status_code == 200
    assert canceled.json["status"] == "canceled"
    run_worker(app)
    assert runs(app, task_id) == 0
    assert client.get(f"/models/flaky/{task_id}").json["status"] == "canceled"
    again = client.delete(f"/tasks/{task_id}")
    assert again.status_code == 409
    assert "canceled" in again.json["error"]


def test_deleting_a_finished_or_unknown_task(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=1, y=2)
    run_worker(app)
    assert client.delete(f"/tasks/{task_id}").status_code == 409
    assert client.delete(f"/tasks/{uuid.uuid4()}").status_code == 404


@pytest.mark.slow
def test_a_stopped_running_task_ends_stopped_and_the_worker_goes_on(
    app: Flask, client: FlaskClient, worker_process
) -> None:
    task_id = submit(client, x=2, y=3, delay=30)
    wait_for(lambda: client.get(f"/tasks/{task_id}").json["status"] == "started", 20, "the task to start")
    stopping = client.delete(f"/tasks/{task_id}")
    assert stopping.status_code == 202
    wait_for(lambda: row(app, task_id), 10, "the stopped row")
    assert client.get(f"/multiply/{task_id}").json == {
        "task_id": task_id,
        "status": "stopped",
        "params": {"x": 2.0, "y": 3.0, "delay": 30.0},
        "error": "stopped on request while running",
    }
    assert worker_process.poll() is None
    # Stopped on request is no failure: not in the dead-letter queue, not counted as failed.
    assert app.extensions["queues"]["default"].failed_job_registry.get_job_ids() == []
    assert client.get("/health").json["failed"] == 0
    assert Job.fetch(task_id, connection=app.extensions["redis"], serializer=JSONSerializer).get_status() == "stopped"
    next_task = submit(client, x=4, y=5)
    wait_for(lambda: client.get(f"/multiply/{next_task}").status_code == 200, 20, "the next task")


def test_a_simulation_over_its_timeout_is_stopped_and_fails(migrated_database: str, run_worker) -> None:
    for app in make_app(SIMULATION_TIMEOUT="1"):
        client = app.test_client()
        body = {"population": 10**9, "initial_infected": 10, "r0": 3, "incubation_days": 4, "infectious_days": 6}
        task_id = submit(client, "/simulations", **body, days=1000, runs=100_000)
        started = time.monotonic()
        run_worker(app)
        assert time.monotonic() - started < 10
        answer = client.get(f"/simulations/{task_id}").json
        assert answer["status"] == "failed"
        assert "timeout of 1 s" in answer["error"]


def test_a_task_whose_job_expired_is_answered_from_postgres(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=2, y=5, delay=0)
    run_worker(app)
    before = client.get(f"/tasks/{task_id}").json
    Job.fetch(task_id, connection=app.extensions["redis"]).delete()  # as when its result TTL runs out
    assert client.get(f"/tasks/{task_id}").json == before
    assert client.get(f"/multiply/{task_id}").json["result"] == 10.0


def test_a_task_a_worker_takes_as_it_is_canceled_is_not_answered_canceled(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker takes the job (pops it off its queue and marks it started, as a worker does) at the last moment
    before the API cancels it: the API must not answer `canceled` for a task that a worker has."""
    task_id = submit(client, x=1, y=2)
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    taken = []
    cancel = Job.cancel

    def taken_just_before(job: Job, *args, **kwargs) -> None:
        if redis.lpop(queue.key):
            redis.hset(job.key, "status", "started")
            taken.append(job.id)
        cancel(job, *args, **kwargs)

    monkeypatch.setattr(Job, "cancel", taken_just_before)
    answer = client.delete(f"/tasks/{task_id}")
    assert answer.status_code == 200 and answer.json["status"] == "canceled"
    assert taken == []  # the API took the job off its queue first, so no worker could take it


def test_a_delete_that_meets_the_task_ending_answers_409_and_changes_nothing(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submit(client, x=6, y=7)
    queue = app.extensions["queues"]["default"]
    app.extensions["redis"].lrem(queue.key, 0, task_id)  # a worker has taken it
    send = lifecycle.send_stop_job_command

    def ended_meanwhile(redis, job_id: str, serializer=None) -> None:
        tasks.write_result(job_id, "multiply", "finished", result=42.0)  # its worker ends it as the stop goes out,
        app.extensions["redis"].delete(Job.key_for(job_id))  # and its job is gone (RESULT_TTL=0): RQ raises
        send(redis, job_id, serializer=serializer)

    monkeypatch.setattr(lifecycle, "send_stop_job_command", ended_meanwhile)
    response = client.delete(f"/tasks/{task_id}")
    assert (response.status_code, response.json["error"]) == (409, f"task {task_id} has already ended: it is finished")
    assert client.get(f"/multiply/{task_id}").json["result"] == 42.0
    assert queue.canceled_job_registry.get_job_ids() == [] and queue.failed_job_registry.get_job_ids() == []


def test_a_delete_of_a_task_a_worker_has_not_begun_yet_asks_to_try_again(app: Flask, client: FlaskClient) -> None:
    task_id = submit(client, x=6, y=7)
    queue = app.extensions["queues"]["default"]
    app.extensions["redis"].lpop(queue.key)  # popped by a worker, not started yet
    response = client.delete(f"/tasks/{task_id}")
    assert (response.status_code, response.headers["Retry-After"]) == (503, "1")
    assert response.json["error"] == f"task {task_id} is being handed to a worker: ask again in a moment"
    assert client.get(f"/tasks/{task_id}").json["status"] == "queued"
