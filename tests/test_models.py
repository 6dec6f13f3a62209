"""Models as files: GET /models, POST /models/<name>, GET /models/<name>/<id>, for Python and R models, with
the test models of tests/models/ (R ones that echo, print garbage, exit non-zero, flood standard error)."""

import logging
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import row, submit


def test_models_are_listed_with_their_schemas(client: FlaskClient) -> None:
    models = {model["name"]: model for model in client.get("/models").json["models"]}
    assert {"multiply", "simulation", "enkf"} <= set(models)
    assert models["multiply"]["language"] == "python"
    assert models["multiply"]["url"] == "/models/multiply"
    assert models["multiply"]["summary"].startswith("Multiply two numbers")
    assert models["simulation"]["params"]["properties"]["population"]["type"] == "integer"
    enkf = models["enkf"]
    assert enkf["language"] == "r" and enkf["url"] == "/models/enkf"
    assert set(enkf["params"]["required"]) == {"cases", "population"}
    assert all(model["params"]["additionalProperties"] is False for model in models.values())


def test_a_python_model_runs_behind_its_url_and_shows_its_parameters(
    app: Flask, client: FlaskClient, run_worker
) -> None:
    response = client.post("/models/multiply", json={"x": 6, "y": 7})
    assert response.status_code == 202
    task_id = response.json["task_id"]
    assert response.headers["Location"] == f"/multiply/{task_id}"  # the URL the model had before models were files
    assert client.get(f"/models/multiply/{task_id}").status_code == 404
    run_worker(app)
    outcome = {"task_id": task_id, "status": "finished", "params": {"x": 6.0, "y": 7.0, "delay": 0.0}, "result": 42.0}
    assert client.get(f"/models/multiply/{task_id}").json == outcome
    assert client.get(f"/multiply/{task_id}").json == outcome
    view = client.get(f"/tasks/{task_id}").json
    assert view["params"] == outcome["params"] and view["type"] == "multiply"


def test_an_integer_parameter_takes_a_whole_number_written_as_a_float(client: FlaskClient) -> None:
    body = {"population": 1000.0, "initial_infected": 1, "r0": 2, "incubation_days": 3, "infectious_days": 4,
            "days": 10.0, "runs": 2, "seed": 5}  # fmt: skip
    task_id = submit(client, "/models/simulation", **body)
    assert client.get(f"/tasks/{task_id}").json["params"] == body | {"population": 1000, "days": 10}
    refused = client.post("/simulations", json=body | {"days": 10.5})
    assert refused.json == {"error": "'days' must be an integer, not 10.5"}


def test_an_unknown_model_is_a_json_404(client: FlaskClient) -> None:
    response = client.post("/models/divide", json={"x": 1})
    assert response.status_code == 404
    assert response.json == {"error": "there is no model named 'divide'; GET /models lists them"}
    response = client.get(f"/models/divide/{uuid.uuid4()}")
    assert response.status_code == 404 and "no model named 'divide'" in response.json["error"]
    response = client.get("/models/multiply/not-a-uuid")
    assert response.status_code == 404 and response.json == {"error": "no multiply task has the id 'not-a-uuid'"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"x": 1}, "key 'y' is required"),
        ({"x": 1, "y": 2, "z": 3}, "unknown key 'z'"),
        ({"x": "1", "y": 2}, "'x' must be a number, not \"1\""),
        ({"x": True, "y": 2}, "'x' must be a number, not true"),
        ({"x": 1, "y": 2.5}, "'y' must be an integer, not 2.5"),
        ({"x": 1, "y": -1}, "'y' must be at least 0"),
        ({"x": None, "y": -1}, "'x' must be a number, not null; 'y' must be at least 0"),
        ({}, "key 'x' is required; key 'y' is required"),  # each once, though jsonschema reports each one twice
    ],
)
def test_an_r_models_parameters_are_checked_against_its_schema(
    app: Flask, client: FlaskClient, body: dict, words: str
) -> None:
    response = client.post("/models/r_echo", json=body)
    assert response.status_code == 400
    assert response.json == {"error": words}
    assert app.extensions["queues"]["default"].count == 0


@pytest.mark.slow
def test_an_r_model_runs_with_its_parameters_reports_progress_and_logs_its_messages(
    app: Flask, client: FlaskClient, run_worker, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = submit(client, "/models/r_echo", x=1.5, y=2.0)
    with caplog.at_level(logging.INFO, logger="longjobs.catalog.rscript"):
        run_worker(app)
    outcome = client.get(f"/models/r_echo/{task_id}").json
    assert outcome == {"task_id": task_id, "status": "finished", "params": {"x": 1.5, "y": 2.0},
                       "result": {"sum": 3.5, "params": {"x": 1.5, "y": 2}}}  # fmt: skip
    assert f"task {task_id}: R: hello from R" in caplog.messages
    assert not any("PROGRESS" in message for message in caplog.messages)  # progress, not a log line


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("r_garbage", ["the model's standard output is not one JSON value", "about to print something that is not"]),
        ("r_exit", ["Rscript exited with status 3", "step 1 went fine\nsomething went wrong in step 2"]),
    ],
)
def test_an_r_model_that_fails_ends_failed_with_the_end_of_its_standard_error(
    app: Flask, client: FlaskClient, run_worker, model: str, words: list[str]
) -> None:
    task_id = submit(client, f"/models/{model}")
    run_worker(app)
    outcome = client.get(f"/models/{model}/{task_id}").json
    assert outcome["status"] == "failed"
    for part in words:
        assert part in outcome["error"]
    assert task_id in app.extensions["queues"]["default"].failed_job_registry.get_job_ids()


@pytest.mark.slow
def test_an_r_model_that_floods_standard_error_still_finishes_with_a_bounded_log(
    app: Flask, client: FlaskClient, run_worker, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = submit(client, "/models/r_noisy")
    with caplog.at_level(logging.INFO, logger="longjobs.catalog.rscript"):
        run_worker(app)
    assert row(app, task_id).result == 42
    logged = [message for message in caplog.messages if message.startswith(f"task {task_id}: R:")]
    assert len(logged) == 1001  # 8,001 lines written; a thousand logged, then a note that the rest are not
    assert logged[-1].endswith("(further standard-error lines are not logged)")


@pytest.mark.slow
def test_an_r_model_fails_clearly_on_a_worker_without_r(
    app: Flask, client: FlaskClient, run_worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submit(client, "/models/r_echo", x=1, y=2)
    monkeypatch.setenv("PATH", "/nonexistent")
    run_worker(app)
    error = client.get(f"/models/r_echo/{task_id}").json["error"]
    assert error.startswith("Rscript is not installed on this worker (not found on PATH)")
