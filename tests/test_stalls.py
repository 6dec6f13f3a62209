"""Accepting a task while Redis stalls (frozen with SIGSTOP) or is out of memory: every 202 is a task that
exists and runs once; a 503 leaves nothing that will run."""

import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from redis.client import Pipeline
from sqlalchemy import func, select

from core import IdempotencyKey, Task, db
from tests.conftest import app_on, wait_for
from tests.servers import PrivateRedis

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    yield server
    server.process.send_signal(signal.SIGCONT)  # whatever the test left it in
    server.close()


@pytest.fixture
def stalling_app(app: Flask, redis_server: PrivateRedis) -> Iterator[Flask]:
    """The app on a private Redis (`app` empties the test database around it)."""
    with app_on(REDIS_URL=redis_server.url) as on_private:
        yield on_private


def rows(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def test_a_stall_while_queueing_answers_202_and_queues_the_job_once(
    stalling_app: Flask, redis_server: PrivateRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute = Pipeline.execute

    def frozen_as_the_job_is_pushed(pipeline: Pipeline, *args, **kwargs):
        if any(command[0][0] in ("RPUSH", "LPUSH") for command in pipeline.command_stack):
            redis_server.process.send_signal(signal.SIGSTOP)  # Redis stalls for 3.5 s, past the 2 s read timeout
            threading.Timer(3.5, redis_server.process.send_signal, (signal.SIGCONT,)).start()
        return execute(pipeline, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", frozen_as_the_job_is_pushed)
    answer = stalling_app.test_client().post("/multiply", json={"x": 6, "y": 7})
    assert answer.status_code == 202  # accepted: its row decides, whether or not the job reached Redis
    task_id = answer.json["task_id"]
    queue = stalling_app.extensions["queues"]["default"]
    wait_for(lambda: queue.count, 10, "Redis to wake and run the queueing it was sent")
    time.sleep(0.5)
    assert queue.get_job_ids() == [task_id]  # once: redis-py did not send it again
    with stalling_app.app_context():
        assert db.session.get(Task, uuid.UUID(task_id)) is not None


def test_duplicates_of_a_request_that_redis_refuses_all_get_503_and_leave_nothing(
    stalling_app: Flask, redis_server: PrivateRedis
) -> None:
    with redis_server.client() as redis:
        redis.config_set("maxmemory", 1)  # every write refused as out of memory; reads still answered
    barrier = threading.Barrier(20)
    answers: list = []

    def send() -> None:
        client = stalling_app.test_client()
        barrier.wait()
        answers.append(client.post("/multiply", json={"x": 1, "y": 2}, headers={"Idempotency-Key": "oom"}))

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(answer.status_code for answer in answers) == [503] * 20, [answer.json for answer in answers]
    assert rows(stalling_app, Task) == rows(stalling_app, IdempotencyKey) == 0
