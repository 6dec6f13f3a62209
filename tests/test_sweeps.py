"""Sweeps: a model over a grid of parameters, each run an ordinary task, gathered into one table."""

import csv
import io
import json
import uuid
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from core import Sweep, Task, db
from tests.conftest import service_env, start_process, stop_process, wait_for


def post_sweep(client: FlaskClient, body: dict, **headers: str) -> str:
    response = client.post("/sweeps", data=json.dumps(body), headers=headers)  # json= would sort the grid's keys
    assert response.status_code == 202, response.json
    assert response.headers["Location"] == f"/sweeps/{response.json['sweep_id']}"
    return response.json["sweep_id"]


def counts(app: Flask) -> tuple[int, int, int]:
    """Tasks, sweeps, and jobs in Redis's default queue."""
    with app.app_context():
        tasks = db.session.scalar(select(func.count()).select_from(Task))
        sweeps = db.session.scalar(select(func.count()).select_from(Sweep))
    return tasks, sweeps, app.extensions["queues"]["default"].count


MULTIPLY = {"model": "multiply", "params": {"y": 1}, "grid": {"x": [1, 2, 3], "y": [10, 20]}}


def test_a_sweep_runs_every_combination_and_answers_one_table_in_grid_order(
    app: Flask, client: FlaskClient, run_worker
) -> None:
    sweep_id = post_sweep(client, MULTIPLY)
    pending = client.get(f"/sweeps/{sweep_id}")
    assert pending.status_code == 404 and pending.headers["Cache-Control"] == "no-store"
    assert pending.json == {"sweep_id": sweep_id, "status": "running",
                            "progress": {"total": 6, "ended": 0, "percent": 0}}  # fmt: skip
    tasks = client.get("/tasks?limit=100").json["tasks"]
    assert len(tasks) == 6 and {task["sweep_id"] for task in tasks} == {sweep_id}

    run_worker(app)
    table = client.get(f"/sweeps/{sweep_id}")
    assert table.status_code == 200
    body = table.json
    assert (body["sweep_id"], body["model"], body["status"]) == (sweep_id, "multiply", "finished")
    assert body["counts"] == {"finished": 6, "failed": 0, "canceled": 0, "stopped": 0}
    grid = [(x, y) for x in (1, 2, 3) for y in (10, 20)]  # the last key varies fastest
    assert [(run["index"], run["params"], run["status"], run["result"]) for run in body["runs"]] == [
        (index, {"x": x, "y": y}, "finished", float(x * y)) for index, (x, y) in enumerate(grid)
    ]
    for run in body["runs"]:  # each run is an ordinary task
        task = client.get(f"/tasks/{run['task_id']}").json
        expected = (sweep_id, "finished", run["params"] | {"delay": 0})
        assert (task["sweep_id"], task["status"], task["params"]) == expected

    as_csv = client.get(f"/sweeps/{sweep_id}?format=csv")
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["index", "x", "y", "task_id", "status", "result", "error"]
    assert [row[:3] + row[4:] for row in rows[1:]] == [
        [str(index), str(x), str(y), "finished", str(float(x * y)), ""] for index, (x, y) in enumerate(grid)
    ]


def test_failed_runs_do_not_hold_the_sweep_back_and_nested_results_are_dotted_columns(
    app: Flask, client: FlaskClient, run_worker
) -> None:
    failing = post_sweep(client, {"model": "echo_text", "grid": {"text": ["a", "b"], "fail": [False, True]}})
    simulation = post_sweep(client, {
        "model": "simulation",
        "params": {"population": 1000, "initial_infected": 5, "incubation_days": 3, "infectious_days": 5, "days": 30,
                   "runs": 5, "seed": 1},
        "grid": {"r0": [1.5, 2.5]},
    })  # fmt: skip
    run_worker(app)
    body = client.get(f"/sweeps/{failing}").json
    assert body["counts"] == {"finished": 2, "failed": 2, "canceled": 0, "stopped": 0}
    assert [(run["status"], run.get("result"), "error" in run) for run in body["runs"]] == [
        ("finished", {"text": "a"}, False), ("failed", None, True), ("finished", {"text": "b"}, False),
        ("failed", None, True),
    ]  # fmt: skip
    assert "ValueError: b" in body["runs"][3]["error"]

    header = next(csv.reader(io.StringIO(client.get(f"/sweeps/{simulation}?format=csv").text)))
    assert header[:4] == ["index", "r0", "task_id", "status"] and header[-1] == "error"
    assert {"days", "seed", "peak_day.median", "final_size.low", "final_size.median", "ended"} <= set(header)
    assert not any(name.startswith("infectious") for name in header)  # lists are left out


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"model": "nope", "grid": {"x": [1]}}, "there is no model named 'nope'"),
        ({"model": "multiply", "params": {"y": 1}, "grid": {"z": [1]}}, "grid key 'z' is not a parameter of multiply"),
        ({"model": "multiply", "params": {"y": 1}, "grid": {"x": []}}, "grid key 'x' has no values"),
        ({"model": "multiply", "params": {"y": 1}, "grid": {}}, "'grid' must name at least one parameter"),
        ({"model": "multiply", "params": {"y": 1}}, "key 'grid' is required"),
        ({"model": "multiply", "grid": {"x": [1, 2]}}, "run 0 (x=1): key 'y' is required"),
        ({"model": "multiply", "params": {"y": 1}, "grid": {"x": [1, 2, "3"]}},
         "run 2 (x=\"3\"): 'x' must be a number, not \"3\""),
        ({"model": "multiply", "params": {"y": 1}, "grid": {"x": list(range(11)), "delay": [0, 1]}},
         "the grid makes 22 runs, over the 20 allowed (MAX_SWEEP_RUNS)"),
        ({"model": "multiply", "params": {"y": 1}, "grid": {"x": [1]}, "extra": 1}, "unknown key 'extra'"),
    ],
)  # fmt: skip
def test_a_bad_sweep_is_a_400_naming_the_problem_and_keeps_nothing(
    app: Flask, client: FlaskClient, body: dict, error: str
) -> None:
    app.config["MAX_SWEEP_RUNS"] = 20
    response = client.post("/sweeps", data=json.dumps(body))
    assert response.status_code == 400 and response.json["error"].startswith(error), response.json
    assert counts(app) == (0, 0, 0)


def test_a_sweep_with_no_room_in_its_queue_is_a_503_and_keeps_nothing(app: Flask, client: FlaskClient) -> None:
    app.config["MAX_QUEUE_DEPTH"] = 5
    response = client.post("/sweeps", json=MULTIPLY)
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert counts(app) == (0, 0, 0)


def test_a_sweep_repeated_with_its_idempotency_key_is_the_same_sweep(app: Flask, client: FlaskClient) -> None:
    first = post_sweep(client, MULTIPLY, **{"Idempotency-Key": "sweep-1"})
    assert post_sweep(client, MULTIPLY, **{"Idempotency-Key": "sweep-1"}) == first
    assert counts(app) == (6, 1, 6)
    other = client.post("/sweeps", json=MULTIPLY | {"params": {"y": 2}}, headers={"Idempotency-Key": "sweep-1"})
    assert other.status_code == 422


def test_deleting_a_sweep_cancels_the_runs_that_have_not_ended(app: Flask, client: FlaskClient, run_worker) -> None:
    sweep_id = post_sweep(client, MULTIPLY)
    first = client.get("/tasks?limit=100").json["tasks"][0]["task_id"]
    assert client.delete(f"/tasks/{first}").status_code == 200  # a run canceled alone
    response = client.delete(f"/sweeps/{sweep_id}")
    assert response.status_code == 202 and response.json == {"sweep_id": sweep_id, "canceled": 5, "stopping": 0}
    run_worker(app)  # nothing left to run
    body = client.get(f"/sweeps/{sweep_id}").json
    assert body["counts"] == {"finished": 0, "failed": 0, "canceled": 6, "stopped": 0}
    assert client.delete(f"/sweeps/{sweep_id}").status_code == 409
    unknown = uuid.uuid4()
    assert client.delete(f"/sweeps/{unknown}").json == {"error": f"no sweep has the id {unknown}"}
    assert client.get(f"/sweeps/{unknown}").status_code == 404


def sweep_table(client: FlaskClient, sweep_id: str) -> dict | None:
    response = client.get(f"/sweeps/{sweep_id}")
    return response.json if response.status_code == 200 else None


@pytest.mark.parametrize("fault", ["SIGKILL of a worker", "Redis FLUSHALL"])
def test_every_run_ends_once_through_a_fault_mid_sweep(
    app: Flask, client: FlaskClient, tmp_path: Path, fault: str
) -> None:
    body = {"model": "multiply", "params": {"y": 2, "delay": 0.2}, "grid": {"x": list(range(16))}}
    sweep_id = post_sweep(client, body)
    settings = service_env(WORKER_LIVENESS_SECONDS="4")
    worker = start_process("worker", tmp_path / "worker.log", **settings)
    try:
        wait_for(lambda: client.get(f"/sweeps/{sweep_id}").json["progress"]["ended"] >= 3, 30, "some runs to end")
        if fault == "Redis FLUSHALL":
            app.extensions["redis"].flushdb()
        else:
            stop_process(worker)  # SIGKILL, supervisor and worker process
            worker = start_process("worker", tmp_path / "fresh.log", **settings)
        table = wait_for(lambda: sweep_table(client, sweep_id), 90, "the sweep's table")
    finally:
        stop_process(worker)
    assert [(run["index"], run["status"], run["result"]) for run in table["runs"]] == [
        (x, "finished", float(2 * x)) for x in range(16)
    ]
    jobs = Job.fetch_many([run["task_id"] for run in table["runs"]], connection=app.extensions["redis"],
                          serializer=JSONSerializer)  # fmt: skip
    assert all(len(job.results()) <= 1 for job in jobs if job is not None)  # none recorded twice


def test_the_cli_runs_a_sweep_and_prints_its_table(app: Flask, tmp_path: Path) -> None:
    worker = start_process("worker", tmp_path / "worker.log", **service_env())
    try:
        out = tmp_path / "table.csv"
        result = app.test_cli_runner().invoke(
            args=["tasks", "sweep", "multiply", "y=3", "--grid", "x=1,2", "--grid", "delay=0,0.1", "--csv", str(out)]
        )
    finally:
        stop_process(worker)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("sweep ") and "4 runs" in lines[0]
    header = next(line for line in lines if line.startswith("index"))
    assert header.split() == ["index", "x", "delay", "task_id", "status", "result", "error"]
    assert lines[-1].endswith(": 4 finished")
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert [(row[1], row[2], row[4], row[5]) for row in rows[1:]] == [
        ("1", "0", "finished", "3.0"), ("1", "0.1", "finished", "3.0"), ("2", "0", "finished", "6.0"),
        ("2", "0.1", "finished", "6.0"),
    ]  # fmt: skip
    bad = app.test_cli_runner().invoke(args=["tasks", "sweep", "multiply", "y=3", "--grid", "z=1"])
    assert bad.exit_code == 2 and "grid key 'z' is not a parameter of multiply" in bad.output
