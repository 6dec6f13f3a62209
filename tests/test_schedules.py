"""Schedules: a model run on a clock; the `clock` process queues each due run exactly once."""

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from croniter import croniter
from flask import Flask
from flask.testing import FlaskClient
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select, update

from core import Schedule, Task, db
from longjobs import lifecycle
from longjobs.workers.recovery import Watchman
from longjobs.workflows import schedules
from tests.conftest import service_env, start_process, stop_process, wait_for
from worker import build_worker


def create(client: FlaskClient, **body: object) -> dict:
    response = client.post("/schedules", json=body)
    assert response.status_code == 201, response.json
    assert response.headers["Location"] == f"/schedules/{response.json['schedule_id']}"
    return response.json


def runs_of(app: Flask, schedule_id: str) -> list[uuid.UUID]:
    with app.app_context():
        return list(db.session.scalars(select(Task.task_id).where(Task.schedule_id == uuid.UUID(schedule_id))))


def make_due(app: Flask, schedule_id: str, ago: timedelta) -> None:
    with app.app_context():
        db.session.execute(update(Schedule).where(Schedule.schedule_id == uuid.UUID(schedule_id))
                           .values(next_run_at=datetime.now(UTC) - ago))  # fmt: skip
        db.session.commit()


def test_a_schedule_is_created_listed_shown_and_deleted(app: Flask, client: FlaskClient) -> None:
    before = datetime.now(UTC)
    schedule = create(client, model="multiply", params={"x": 6, "y": 7}, cron="30 6 * * 1-5")
    expected_next = croniter("30 6 * * 1-5", before).get_next(datetime)
    assert datetime.fromisoformat(schedule["next_run_at"]) == expected_next
    params = {"x": 6.0, "y": 7.0, "delay": 0.0}  # as validated
    assert (schedule["model"], schedule["params"], schedule["cron"]) == ("multiply", params, "30 6 * * 1-5")
    assert (schedule["last_run_at"], schedule["recent_runs"]) == (None, [])
    assert client.get("/schedules").json == {"schedules": [schedule]}
    url = f"/schedules/{schedule['schedule_id']}"
    assert client.get(url).json == schedule
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404 and client.delete(url).status_code == 404
    assert client.get("/schedules").json == {"schedules": []}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"model": "multiply", "params": {"x": 1, "y": 2}, "cron": "61 * * * *"}, "'cron' must be 5 cron fields"),
        ({"model": "multiply", "params": {"x": 1, "y": 2}, "cron": "* * * *"}, "'cron' must be 5 cron fields"),
        ({"model": "multiply", "params": {"x": 1, "y": 2}, "cron": "0 * * * * *"}, "'cron' must be 5 cron fields"),
        ({"model": "nope", "params": {}, "cron": "* * * * *"}, "there is no model named 'nope'"),
        ({"model": "multiply", "params": {"x": 1}, "cron": "* * * * *"}, "params: key 'y' is required"),
        ({"model": "multiply", "params": {"x": 1, "y": 2}}, "key 'cron' is required"),
    ],
)
def test_a_bad_schedule_is_a_400_naming_the_problem_and_keeps_nothing(
    app: Flask, client: FlaskClient, body: dict, error: str
) -> None:
    response = client.post("/schedules", json=body)
    assert response.status_code == 400 and response.json["error"].startswith(error), response.json
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Schedule)) == 0


def test_two_clocks_queue_each_due_run_once_and_a_missed_schedule_runs_once(
    app: Flask, client: FlaskClient, tmp_path: Path
) -> None:
    yearly = create(client, model="multiply", params={"x": 1, "y": 2}, cron="0 0 1 1 *")
    hourly = create(client, model="multiply", params={"x": 3, "y": 4}, cron="0 * * * *")
    make_due(app, yearly["schedule_id"], timedelta(minutes=1))
    make_due(app, hourly["schedule_id"], timedelta(hours=3))  # three runs missed while no clock ran
    clocks = [start_process("clock", tmp_path / f"clock-{n}.log", **service_env()) for n in range(2)]
    try:
        for schedule in (yearly, hourly):
            wait_for(lambda s=schedule: runs_of(app, s["schedule_id"]), 30, "the due run to be queued")
        time.sleep(3)  # ticks of both clocks
    finally:
        for clock in clocks:
            stop_process(clock)
    now = datetime.now(UTC)
    for schedule in (yearly, hourly):
        [task_id] = runs_of(app, schedule["schedule_id"])
        shown = client.get(f"/schedules/{schedule['schedule_id']}").json
        assert shown["recent_runs"] == [str(task_id)]
        assert now - timedelta(seconds=40) < datetime.fromisoformat(shown["last_run_at"]) <= now
        assert datetime.fromisoformat(shown["next_run_at"]) == croniter(schedule["cron"], now).get_next(datetime)
        task = client.get(f"/tasks/{task_id}").json
        assert (task["schedule_id"], task["type"], task["status"]) == (schedule["schedule_id"], "multiply", "queued")
    assert app.extensions["queues"]["default"].count == 2


def test_a_clock_that_dies_before_its_commit_leaves_the_run_to_the_next_tick(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = create(client, model="multiply", params={"x": 1, "y": 2}, cron="0 0 1 1 *")
    make_due(app, schedule["schedule_id"], timedelta(minutes=1))
    with app.app_context():
        commit = db.session.commit
        monkeypatch.setattr(db.session, "commit", lambda: (_ for _ in ()).throw(SystemExit("killed")))
        with pytest.raises(SystemExit):
            schedules.run_due_schedule()
        db.session.rollback()
        monkeypatch.setattr(db.session, "commit", commit)
        assert runs_of(app, schedule["schedule_id"]) == [] and app.extensions["queues"]["default"].count == 0
        task_id = schedules.run_due_schedule()
        assert schedules.run_due_schedule() is None  # not due any more
    assert runs_of(app, schedule["schedule_id"]) == [task_id]
    assert app.extensions["queues"]["default"].get_job_ids() == [str(task_id)]


def test_a_run_recorded_but_not_queued_is_queued_by_the_watchmen(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock commits the run, then queues its job: if it dies in between (or Redis is down), the row decides."""
    schedule = create(client, model="multiply", params={"x": 1, "y": 2}, cron="0 0 1 1 *")
    make_due(app, schedule["schedule_id"], timedelta(minutes=1))

    def redis_down(*batch: Task) -> None:
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(lifecycle, "enqueue", redis_down)
    with app.app_context():
        task_id = schedules.run_due_schedule()
    monkeypatch.undo()
    assert runs_of(app, schedule["schedule_id"]) == [task_id]
    assert app.extensions["queues"]["default"].count == 0
    app.config["WORKER_LIVENESS_SECONDS"] = 0  # the job has been missing long enough
    with app.app_context():
        Watchman(app, build_worker(app)).sweep()
    assert app.extensions["queues"]["default"].get_job_ids() == [str(task_id)]


def test_the_cli_lists_the_schedules(app: Flask, client: FlaskClient) -> None:
    schedule = create(client, model="multiply", params={"x": 1, "y": 2}, cron="*/5 * * * *")
    result = app.test_cli_runner().invoke(args=["tasks", "schedules"])
    assert result.exit_code == 0, result.output
    [line, total] = result.output.splitlines()
    assert line.split()[:3] == [schedule["schedule_id"], "multiply", "*/5"] and "last never" in line
    assert total == "1 schedule(s)"
