"""Access and abuse: API tokens, backpressure, the dashboard's same-origin actions, nothing unescaped."""

import base64
import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import DASHBOARD_PASSWORD, app_fixture, submit_failing

AUTH = {"Authorization": "Basic " + base64.b64encode(f"admin:{DASHBOARD_PASSWORD}".encode()).decode()}
OWN_ORIGIN = "http://localhost"


token_app = app_fixture(API_TOKENS="alpha-token, beta-token")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/multiply"),
        ("get", "/tasks"),
        ("get", f"/multiply/{'0' * 8}-0000-4000-8000-{'0' * 12}"),
        ("get", "/health"),
        ("get", "/metrics"),
        ("get", "/schedules"),
        ("get", "/webhooks"),
        ("get", f"/tasks/{'0' * 8}-0000-4000-8000-{'0' * 12}/events"),
    ],
)
def test_with_api_tokens_every_api_request_needs_one(token_app: Flask, method: str, path: str) -> None:
    client = token_app.test_client()
    for headers in ({}, {"Authorization": "Bearer gamma"}, {"Authorization": "Basic alpha-token"},
                    {"Authorization": "Bearer alpha-token-and-more"}, {"Authorization": "Bearer "}):  # fmt: skip
        response = getattr(client, method)(path, json={"x": 1, "y": 2}, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
        assert "token" in response.json["error"]
    for token in ("alpha-token", "beta-token"):
        response = getattr(client, method)(path, json={"x": 1, "y": 2}, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code in (200, 202, 404)
    assert token_app.extensions["queues"]["default"].count == (2 if method == "post" else 0)


def test_without_api_tokens_the_api_is_open(client: FlaskClient) -> None:
    assert client.get("/tasks").status_code == 200


def test_the_docs_and_dashboard_do_not_take_api_tokens(token_app: Flask) -> None:
    client = token_app.test_client()
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/rq/", headers=AUTH).status_code == 200


shallow_app = app_fixture(MAX_QUEUE_DEPTH="3")


def test_past_the_queue_depth_post_is_503_with_retry_after(shallow_app: Flask) -> None:
    client = shallow_app.test_client()
    assert [client.post("/multiply", json={"x": 1, "y": n}).status_code for n in range(3)] == [202] * 3
    full = client.post("/multiply", json={"x": 1, "y": 4})
    assert full.status_code == 503
    assert int(full.headers["Retry-After"]) > 0
    assert "full" in full.json["error"]
    assert client.post("/multiply?priority=high", json={"x": 1, "y": 5}).status_code == 202  # its own queue
    assert shallow_app.extensions["queues"]["default"].count == 3


@pytest.mark.parametrize(
    ("method", "action"),
    [("post", "job/{task_id}/requeue"), ("post", "job/{task_id}/delete"), ("get", "requeue/default"),
     ("post", "requeue/default"), ("post", "queue/default/failed/empty"), ("post", "queue/default/compact")],
)  # fmt: skip
def test_dashboard_actions_from_another_site_are_403(app: Flask, run_worker, method: str, action: str) -> None:
    task_id = submit_failing(app, failures=1, fault="data")
    run_worker(app)
    client = app.test_client()
    path = f"/rq/{action.format(task_id=task_id)}"
    for headers in ({}, {"Origin": "https://evil.example"}, {"Referer": "https://evil.example/rq/"},
                    {"Origin": "null"}, {"Referer": "http://localhost.evil.example/rq/"}):  # fmt: skip
        response = getattr(client, method)(path, headers=AUTH | headers)
        assert response.status_code == 403, headers
        assert "own pages" in response.json["error"]
    assert task_id in app.extensions["queues"]["default"].failed_job_registry
    # From its own pages the action runs (what rq-dashboard then answers is its own affair: compacting
    # an empty queue fails there, for one).
    assert getattr(client, method)(path, headers=AUTH | {"Origin": OWN_ORIGIN}).status_code != 403
    assert getattr(client, method)(path, headers=AUTH | {"Referer": f"{OWN_ORIGIN}/rq/0/view/jobs"}).status_code != 403
    if action.startswith(("job/", "requeue/")):
        assert task_id not in app.extensions["queues"]["default"].failed_job_registry


def test_dashboard_pages_still_open_from_links(client: FlaskClient) -> None:
    assert client.get("/rq/0/view/jobs", headers=AUTH | {"Referer": "https://elsewhere.example/"}).status_code == 200


SCRIPT = "<script>alert(1)</script>"


def test_nothing_a_client_sends_reaches_the_dashboard_unescaped(app: Flask, client: FlaskClient, run_worker) -> None:
    refused = [
        client.post("/multiply", data=json.dumps({"x": SCRIPT, "y": 1})),
        client.post("/multiply", data=json.dumps({"x": 1, "y": 1, SCRIPT: 1})),
        client.post("/simulations", data=json.dumps({"population": SCRIPT})),
        client.post(f"/multiply?priority={SCRIPT}", data='{"x": 1, "y": 1}'),
    ]
    assert [response.status_code for response in refused] == [400] * 4
    assert all(response.content_type == "application/json" for response in refused)
    accepted = client.post("/multiply", json={"x": 1, "y": 1, "delay": 0}, headers={"Idempotency-Key": SCRIPT})
    failed = submit_failing(app, failures=1, fault="data")
    run_worker(app)
    for task_id in (accepted.json["task_id"], failed):
        for page in (f"/rq/0/view/job/{task_id}", f"/rq/0/data/job/{task_id}.json"):
            body = client.get(page, headers=AUTH).get_data(as_text=True)
            assert task_id in body
            assert "<script>alert" not in body
