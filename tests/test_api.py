"""The HTTP API against real Postgres and Redis, with real (in-process) workers."""

import json
import socket
import threading
import time
import uuid
import zlib

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from sqlalchemy import select

from core import Result, db
from tests.conftest import app_fixture, app_on, closed_port_url


def submit(client: FlaskClient, **body: object) -> str:
    response = client.post("/multiply", data=json.dumps(body))
    assert response.status_code == 202, response.json
    task_id = response.json["task_id"]
    assert response.headers["Location"] == f"/multiply/{task_id}"
    return task_id


def rows(app: Flask) -> list[Result]:
    with app.app_context():
        return list(db.session.scalars(select(Result)))


def test_submit_poll_cycle(app: Flask, client: FlaskClient, run_worker) -> None:
    response = client.post("/multiply", data='{"x": 2.5, "y": 4}', content_type="text/plain")
    assert response.status_code == 202
    task_id = response.json["task_id"]
    assert uuid.UUID(task_id).version == 4
    assert str(uuid.UUID(task_id)) == task_id
    assert response.headers["Location"] == f"/multiply/{task_id}"

    pending = client.get(f"/multiply/{task_id}")
    assert pending.status_code == 404
    assert pending.json == {
        "task_id": task_id,
        "status": "queued",
        "progress": {"percent": 0, "message": None},
    }
    assert pending.headers["Cache-Control"] == "no-store"
    assert int(pending.headers["Retry-After"]) > 0
    assert rows(app) == []

    run_worker(app)

    done = client.get(f"/multiply/{task_id}")
    assert done.status_code == 200
    assert done.json == {"task_id": task_id, "status": "finished", "params": {"x": 2.5, "y": 4.0, "delay": 0.0},
                         "result": 10.0}  # fmt: skip
    assert client.get(f"/multiply/{task_id.upper()}").json == done.json


def test_each_post_gets_a_fresh_task_id(client: FlaskClient) -> None:
    ids = {submit(client, x=1, y=2) for _ in range(5)}
    assert len(ids) == 5


def test_extreme_operands_give_a_finite_product(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=10**150, y=-1e150, delay=0)
    run_worker(app)
    assert client.get(f"/multiply/{task_id}").json["result"] == pytest.approx(-1e300)


def test_job_payload_is_json_and_carries_the_task_id(app: Flask, client: FlaskClient) -> None:
    task_id = submit(client, x=3, y=4, delay=1.5)
    raw = app.extensions["redis"].hget(f"rq:job:{task_id}", "data")
    func, _, args, kwargs = json.loads(zlib.decompress(raw))
    assert func == "tasks.run_model"
    assert args == [task_id, "multiply", {"x": 3.0, "y": 4.0, "delay": 1.5}]
    assert kwargs == {}
    description = app.extensions["redis"].hget(f"rq:job:{task_id}", "description")
    assert description == f"multiply {task_id}".encode()


def test_delay_makes_the_job_sleep(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=1, y=1, delay=1)
    started = time.monotonic()
    run_worker(app)
    assert time.monotonic() - started >= 1
    assert client.get(f"/multiply/{task_id}").status_code == 200


def test_a_job_run_twice_leaves_one_row(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=6, y=7)
    queue = app.extensions["queues"]["default"]
    queue.enqueue_job(Job.fetch(task_id, connection=queue.connection, serializer=queue.serializer))
    assert queue.count == 2
    run_worker(app)
    assert queue.count == 0
    assert [(str(row.task_id), row.status, row.result) for row in rows(app)] == [(task_id, "finished", 42.0)]


def test_a_rerun_overwrites_the_row_with_its_latest_outcome(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=6, y=7)
    with app.app_context():
        db.session.add(Result(task_id=uuid.UUID(task_id), type="multiply", status="failed", error="an earlier run"))
        db.session.commit()
    run_worker(app)
    assert client.get(f"/multiply/{task_id}").json == {
        "task_id": task_id,
        "status": "finished",
        "params": {"x": 6.0, "y": 7.0, "delay": 0.0},
        "result": 42.0,
    }


impatient_app = app_fixture(MULTIPLY_TIMEOUT="1")


def test_a_job_over_its_timeout_is_stopped_and_fails(impatient_app: Flask, run_worker) -> None:
    client = impatient_app.test_client()
    task_id = submit(client, x=2, y=3, delay=3)
    started = time.monotonic()
    run_worker(impatient_app)
    assert time.monotonic() - started < 3
    answer = client.get(f"/multiply/{task_id}")
    assert answer.status_code == 200
    assert answer.json["status"] == "failed"
    assert "timeout of 1 s" in answer.json["error"]
    assert "result" not in answer.json
    failed = impatient_app.extensions["queues"]["default"].failed_job_registry
    assert task_id in failed.get_job_ids()


BAD_BODIES = {
    "empty": b"",
    "not json": b"x=1&y=2",
    "truncated": b'{"x": 1, "y":',
    "bad utf-8": b'{"x": 1, "y": 2, "\xff": 1}',
    "array": b"[1, 2]",
    "string": b'"x"',
    "number": b"3",
    "null": b"null",
    "missing y": b'{"x": 1}',
    "missing both": b"{}",
    "unknown key": b'{"x": 1, "y": 2, "z": 3}',
    "repeated key": b'{"x": 1, "y": 2, "x": 3}',
    "string operand": b'{"x": "1", "y": 2}',
    "boolean operand": b'{"x": true, "y": 2}',
    "null operand": b'{"x": null, "y": 2}',
    "object operand": b'{"x": {"v": 1}, "y": 2}',
    "NaN": b'{"x": NaN, "y": 2}',
    "Infinity": b'{"x": 1, "y": -Infinity}',
    "overflowing float": b'{"x": 1e400, "y": 2}',
    "too large": b'{"x": 1.0000001e150, "y": 2}',
    "too small": b'{"x": 1, "y": -2e150}',
    "huge integer": b'{"x": 1' + b"0" * 400 + b', "y": 2}',
    "giant integer": b'{"x": 1' + b"0" * 5000 + b', "y": 2}',
    "negative delay": b'{"x": 1, "y": 2, "delay": -0.5}',
    "delay over 300": b'{"x": 1, "y": 2, "delay": 300.5}',
    "string delay": b'{"x": 1, "y": 2, "delay": "1"}',
    "null delay": b'{"x": 1, "y": 2, "delay": null}',
    "NaN delay": b'{"x": 1, "y": 2, "delay": NaN}',
    "deep nesting": b"[" * 50_000,
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_are_refused_and_nothing_is_queued(app: Flask, client: FlaskClient, body: bytes) -> None:
    response = client.post("/multiply", data=body, content_type="application/json")
    assert response.status_code == 400
    assert set(response.json) == {"error"}
    assert len(response.json["error"]) > 10
    assert app.extensions["redis"].keys("rq:job:*") == []
    assert app.extensions["queues"]["default"].count == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"x": 1}', "'y' is required"),
        (b'{"x": 1, "y": 2, "z": 3}', "unknown key 'z'"),
        (b'{"x": 1, "y": 2, "x": 3}', "'x' appears more than once"),
        (b'{"x": true, "y": 2}', "'x' must be a number"),
        (b'{"x": 1, "y": 2e151}', "'y' must be at most 1e+150"),
        (b'{"x": 1, "y": 2, "delay": 301}', "'delay' must be at most 300"),
        (b"[1]", "must be a JSON object"),
        (b'{"x": NaN, "y": 2}', "NaN"),
    ],
)
def test_bad_input_errors_name_the_problem(client: FlaskClient, body: bytes, words: str) -> None:
    assert words in client.post("/multiply", data=body).json["error"]


def test_boundary_values_are_accepted(client: FlaskClient) -> None:
    for body in (
        {"x": 1e150, "y": -1e150, "delay": 300},
        {"x": 0, "y": -0.0, "delay": 0},
        {"x": 10**150, "y": 1},
    ):
        assert client.post("/multiply", data=json.dumps(body)).status_code == 202


def test_a_body_over_64_kib_is_413(app: Flask, client: FlaskClient) -> None:
    padding = "0" * 65_536
    response = client.post("/multiply", data=f'{{"x": 1, "y": 2, "delay": 0.{padding}}}')
    assert response.status_code == 413
    assert "65536 bytes" in response.json["error"]
    assert app.extensions["queues"]["default"].count == 0


@pytest.mark.parametrize(
    "task_id", ["abc", "1234", "c65f1117-32d1-49b5-ac47-193955761c8", "c65f111732d149b5ac47193955761c8c"]
)
def test_malformed_task_ids_are_404(client: FlaskClient, task_id: str) -> None:
    response = client.get(f"/multiply/{task_id}")
    assert response.status_code == 404
    assert set(response.json) == {"error"}


def test_an_unknown_task_id_is_404(client: FlaskClient) -> None:
    task_id = uuid.uuid4()
    response = client.get(f"/multiply/{task_id}")
    assert response.status_code == 404
    assert response.json == {"error": f"no multiply task has the id {task_id}"}


def test_errors_are_json(client: FlaskClient) -> None:
    for response in (client.get("/multiply"), client.delete("/multiply/x"), client.get("/nowhere")):
        assert response.status_code in (404, 405)
        assert response.content_type == "application/json"
        assert set(response.json) == {"error"}


def test_post_is_503_when_redis_is_unreachable(app_without_redis: Flask) -> None:
    started = time.monotonic()
    response = app_without_redis.test_client().post("/multiply", data='{"x": 1, "y": 2}')
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert "nothing was queued" in response.json["error"]
    assert rows(app_without_redis) == []


def test_post_is_503_within_seconds_when_redis_does_not_answer(migrated_database: str) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        silent.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                pass

    thread = threading.Thread(target=accept_and_say_nothing)
    thread.start()
    try:
        with app_on(REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/1") as app:
            started = time.monotonic()
            response = app.test_client().post("/multiply", data='{"x": 1, "y": 2}')
            assert time.monotonic() - started < 10
            assert response.status_code == 503
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        silent.close()


def test_finished_tasks_are_answered_while_redis_is_down(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=2, y=21)
    run_worker(app)
    with app_on(REDIS_URL=closed_port_url()) as down:
        assert down.test_client().get(f"/multiply/{task_id}").json["result"] == 42.0
        assert down.test_client().get(f"/multiply/{uuid.uuid4()}").status_code == 503


def test_get_is_503_when_the_database_is_unreachable(migrated_database: str) -> None:
    with app_on(DATABASE_URL=closed_port_url("postgresql", "longjobs")) as down:
        response = down.test_client().get(f"/multiply/{uuid.uuid4()}")
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) > 0
        assert "database" in response.json["error"]


def test_post_is_503_when_the_database_is_unreachable(migrated_database: str) -> None:
    with app_on(DATABASE_URL=closed_port_url("postgresql", "longjobs")) as down:
        response = down.test_client().post("/multiply", json={"x": 1, "y": 2})
        assert response.status_code == 503
        assert "nothing was queued" in response.json["error"]
        assert down.extensions["queues"]["default"].count == 0
