"""Idempotency-Key on POST: one job per key and request, 422 for another request, nothing kept for refusals."""

import threading

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from core import IdempotencyKey, Task, db


def count(app: Flask, model: type) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def post(client: FlaskClient, key: str, body: dict, path: str = "/multiply"):
    return client.post(path, json=body, headers={"Idempotency-Key": key})


def test_the_same_key_and_request_answer_the_same_202_and_queue_one_job(app: Flask, client: FlaskClient) -> None:
    first = post(client, "order-17", {"x": 2, "y": 3})
    second = post(client, "order-17", {"x": 2, "y": 3})
    assert first.status_code == second.status_code == 202
    assert first.json == second.json
    assert first.headers["Location"] == second.headers["Location"]
    assert app.extensions["queues"]["default"].count == 1
    assert count(app, Task) == 1


def test_the_same_key_with_another_request_is_422(app: Flask, client: FlaskClient) -> None:
    assert post(client, "k", {"x": 2, "y": 3}).status_code == 202
    for body, query in (
        ({"x": 2, "y": 4}, ""),
        ({"x": 2, "y": 3, "delay": 1}, ""),
        ({"x": 2, "y": 3}, "?priority=low"),
    ):
        response = client.post(f"/multiply{query}", json=body, headers={"Idempotency-Key": "k"})
        assert response.status_code == 422
        assert "Idempotency-Key" in response.json["error"]
    assert app.extensions["queues"]["default"].count == 1


def test_keys_are_scoped_to_the_endpoint(app: Flask, client: FlaskClient) -> None:
    simulation = {"population": 100, "initial_infected": 1, "r0": 2, "incubation_days": 2, "infectious_days": 3}
    simulation |= {"days": 10, "runs": 2}
    first = post(client, "shared", {"x": 1, "y": 1})
    second = post(client, "shared", simulation, path="/simulations")
    assert first.status_code == second.status_code == 202
    assert first.json != second.json


def test_concurrent_duplicates_make_one_job(app: Flask) -> None:
    barrier = threading.Barrier(8)
    answers: list = []

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post(client, "race", {"x": 5, "y": 5, "delay": 1}))

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [answer.status_code for answer in answers] == [202] * 8
    assert len({answer.json["task_id"] for answer in answers}) == 1
    assert app.extensions["queues"]["default"].count == 1
    assert count(app, Task) == count(app, IdempotencyKey) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_malformed_keys_are_400(app: Flask, client: FlaskClient, key: str) -> None:
    response = client.post(
        "/multiply", json={"x": 1, "y": 2}, headers={"Idempotency-Key": key.encode().decode("latin-1")}
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json["error"]
    assert count(app, IdempotencyKey) == 0


def test_a_key_of_255_printable_characters_is_accepted(client: FlaskClient) -> None:
    assert post(client, "~ !" * 85, {"x": 1, "y": 2}).status_code == 202


def test_a_refused_request_leaves_no_key(app: Flask, client: FlaskClient) -> None:
    assert post(client, "retry-me", {"x": "two", "y": 3}).status_code == 400
    assert count(app, IdempotencyKey) == 0
    assert post(client, "retry-me", {"x": 2, "y": 3}).status_code == 202


def test_a_503_leaves_no_key_and_no_task(app_without_redis: Flask) -> None:
    response = post(app_without_redis.test_client(), "later", {"x": 2, "y": 3})
    assert response.status_code == 503
    assert count(app_without_redis, IdempotencyKey) == count(app_without_redis, Task) == 0
