"""rq-dashboard at /rq: basic auth from the environment, on the queues' Redis and JSON serializer."""

import json

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import DASHBOARD_PASSWORD, app_fixture, basic, wait_for

PAGES = [
    "/rq",
    "/rq/",
    "/rq/0/view/queues",
    "/rq/0/data/queues.json",
    "/rq/static/css/main.css",
    "/rq/nothing",
]


@pytest.mark.parametrize("page", PAGES)
@pytest.mark.parametrize(
    "headers",
    [{}, basic("admin", "wrong"), basic("root", DASHBOARD_PASSWORD), {"Authorization": "Bearer x"}],
    ids=["none", "wrong password", "wrong user", "not basic"],
)
def test_dashboard_refuses_without_valid_credentials(client: FlaskClient, page: str, headers: dict) -> None:
    response = client.get(page, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert "error" in response.json


def test_dashboard_serves_with_valid_credentials(client: FlaskClient) -> None:
    response = client.get("/rq/", headers=basic("admin", DASHBOARD_PASSWORD))
    assert response.status_code == 200
    assert b"<title>RQ dashboard</title>" in response.data


def test_dashboard_lists_a_queued_task(client: FlaskClient) -> None:
    task_id = client.post("/multiply", data='{"x": 1, "y": 2}').json["task_id"]
    response = client.get("/rq/0/data/jobs/default/queued/8/asc/1.json", headers=basic("admin", DASHBOARD_PASSWORD))
    assert response.status_code == 200
    jobs = json.loads(response.data)["jobs"]
    assert [job["id"] for job in jobs] == [task_id]
    assert jobs[0]["description"] == f"multiply {task_id}"


locked_app = app_fixture(RQ_DASHBOARD_PASSWORD="")


def test_dashboard_without_a_password_lets_nobody_in(locked_app: Flask) -> None:
    for credentials in (basic("admin", ""), basic("admin", "admin"), basic("admin", DASHBOARD_PASSWORD)):
        response = locked_app.test_client().get("/rq/", headers=credentials)
        assert response.status_code == 401
        assert "RQ_DASHBOARD_PASSWORD" in response.json["error"]


custom_user_app = app_fixture(RQ_DASHBOARD_USERNAME="ops", RQ_DASHBOARD_PASSWORD="s3cret:with:colons")


def test_dashboard_username_and_password_come_from_the_environment(custom_user_app: Flask) -> None:
    client = custom_user_app.test_client()
    assert client.get("/rq/", headers=basic("ops", "s3cret:with:colons")).status_code == 200
    assert client.get("/rq/", headers=basic("admin", "s3cret:with:colons")).status_code == 401


AUTH = basic("admin", DASHBOARD_PASSWORD)
SCRIPT = "<script>alert('x')</script>"


def test_what_a_model_returns_raises_or_reports_is_escaped_on_the_job_page(app: Flask, run_worker) -> None:
    client = app.test_client()
    finished = client.post("/models/echo_text", json={"text": SCRIPT}).json["task_id"]
    failed = client.post("/models/echo_text", json={"text": SCRIPT, "fail": True}).json["task_id"]
    run_worker(app)
    for task_id, field in ((finished, "result"), (failed, "exc_info")):
        response = client.get(f"/rq/0/data/job/{task_id}.json", headers=AUTH)
        assert response.status_code == 200
        assert "<script>" not in response.get_data(as_text=True)
        assert "&lt;script&gt;" in json.dumps(response.json[field])
    assert client.get(f"/rq/0/view/job/{failed}", headers=AUTH).status_code == 200


@pytest.mark.slow
def test_every_dashboard_page_answers_while_a_job_runs(app: Flask, client: FlaskClient, worker_process) -> None:
    task_id = client.post("/multiply", json={"x": 1, "y": 2, "delay": 5}).json["task_id"]
    wait_for(lambda: client.get(f"/tasks/{task_id}").json["status"] == "started", 20, "the job to start")
    pages = ["/rq/0/view/queues", "/rq/0/data/queues.json", "/rq/0/view/workers", "/rq/0/view/jobs",
             "/rq/0/data/jobs/default/started/8/asc/1.json", f"/rq/0/view/job/{task_id}",
             f"/rq/0/data/job/{task_id}.json"]  # fmt: skip
    for page in pages:
        assert client.get(page, headers=AUTH, follow_redirects=True).status_code == 200, page
    workers = client.get("/rq/0/data/workers.json", headers=AUTH)
    assert workers.status_code == 200
    [worker] = workers.json["workers"]
    assert (worker["state"], worker["current_job"]["job_id"]) == ("busy", task_id)
    assert worker["current_job"]["description"] == f"multiply {task_id}"
