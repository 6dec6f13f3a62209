"""The operator CLI: `flask tasks submit/watch/failed/requeue/prune`, against real services and workers."""

import os
import pty
import re
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select, text, update

from core import Delivery, IdempotencyKey, Result, Task, db
from tests.conftest import ROOT, service_env, submit_failing
from tests.test_metrics import samples


def invoke(app: Flask, *args: str):
    return app.test_cli_runner().invoke(args=["tasks", *args], catch_exceptions=False)


@pytest.mark.slow
def test_submit_watches_the_task_with_a_progress_bar_in_a_terminal(app: Flask, worker_process) -> None:
    primary, replica = pty.openpty()  # a terminal, as an operator has: click draws the bar only there
    try:
        command = ["flask", "tasks", "submit", "multiply", "x=6", "y=7", "delay=3", "--priority", "high"]
        environ = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"} | service_env()
        process = subprocess.Popen(command, cwd=ROOT, env=environ, stdin=replica, stdout=replica, stderr=replica)
        os.close(replica)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(timeout=30) == 0, output.decode()
    finally:
        os.close(primary)
    text = output.decode()
    shown = [int(percent) for percent in re.findall(r"(\d+)%", text)]
    assert shown == sorted(shown)
    assert any(0 < percent < 100 for percent in shown)
    assert shown[-1] == 100
    assert "started waiting" in text
    assert text.strip().splitlines()[-1].strip() == "42.0"


def test_submit_refuses_bad_parameters(app: Flask) -> None:
    for args, words in (
        (["multiply", "x=6"], "'y' is required"),
        (["multiply", "x=6", "y=true"], "'y' must be a number"),
        (["multiply", "x=6", "y"], "is not KEY=VALUE"),
        (["multiply", "x=6", "y=seven"], "must be a JSON value"),
        (["divide", "x=6", "y=7"], "there is no model named 'divide'; the models are"),
        (["r_echo", "x=1", "y=2.5"], "'y' must be an integer"),
    ):
        outcome = app.test_cli_runner().invoke(args=["tasks", "submit", *args])
        assert outcome.exit_code == 2
        assert words in outcome.output
    assert app.extensions["queues"]["default"].count == 0


def test_submit_without_watching_queues_and_returns(app: Flask) -> None:
    outcome = invoke(app, "submit", "simulation", "population=100", "initial_infected=1", "r0=1.5",
                     "incubation_days=2", "infectious_days=3", "days=10", "runs=5", "--no-watch")  # fmt: skip
    assert outcome.exit_code == 0
    assert app.extensions["queues"]["default"].count == 1


def test_watch_exits_1_for_a_task_that_failed(app: Flask, run_worker) -> None:
    task_id = submit_failing(app, failures=1, fault="data")
    run_worker(app)
    outcome = app.test_cli_runner().invoke(args=["tasks", "watch", task_id])
    assert outcome.exit_code == 1
    assert "failed: ValueError: bad data on run 1" in outcome.output
    assert app.test_cli_runner().invoke(args=["tasks", "watch", str(uuid.uuid4())]).exit_code == 1


def test_failed_tasks_are_listed_and_requeued(app: Flask, run_worker) -> None:
    failed = [submit_failing(app, failures=1, fault="data") for _ in range(2)]
    run_worker(app)
    listing = invoke(app, "failed")
    assert all(task_id in listing.output for task_id in failed)
    assert "ValueError: bad data on run 1" in listing.output
    assert "2 failed task(s)" in listing.output

    assert app.test_cli_runner().invoke(args=["tasks", "requeue"]).exit_code == 2
    assert app.test_cli_runner().invoke(args=["tasks", "requeue", str(uuid.uuid4())]).exit_code == 1
    assert f"task {failed[0]} requeued" in invoke(app, "requeue", failed[0]).output
    run_worker(app)
    assert "1 failed task(s)" in invoke(app, "failed").output
    assert f"task {failed[1]} requeued" in invoke(app, "requeue", "--all").output
    run_worker(app)
    with app.app_context():
        assert {db.session.get(Result, uuid.UUID(i)).status for i in failed} == {"finished"}


def test_prune_deletes_tasks_that_ended_before_the_age(app: Flask, run_worker) -> None:
    client = app.test_client()
    old, recent = (client.post("/multiply", json={"x": 1, "y": n}).json["task_id"] for n in (1, 2))
    keyed = client.post("/multiply", json={"x": 1, "y": 3}, headers={"Idempotency-Key": "k"}).json["task_id"]
    run_worker(app)
    queued = client.post("/multiply", json={"x": 1, "y": 4}).json["task_id"]
    long_ago = datetime.now(UTC) - timedelta(days=40)
    with app.app_context():
        db.session.execute(update(Result).where(Result.task_id == uuid.UUID(old)).values(ended_at=long_ago))
        db.session.execute(update(IdempotencyKey).values(created_at=long_ago))
        db.session.commit()
    assert app.test_cli_runner().invoke(args=["tasks", "prune", "--older-than", "soon"]).exit_code == 2
    with app.app_context():  # a webhook's deliveries: one delivered long ago, one pending as long
        db.session.execute(text("INSERT INTO webhooks VALUES (gen_random_uuid(), 'http://x', '[]', 's', now())"))
        db.session.execute(text("INSERT INTO webhook_deliveries (delivery_id, webhook_id, event, outcome, created_at) "
                                "SELECT gen_random_uuid(), webhook_id, 'task.finished', outcome, :at FROM webhooks, "
                                "unnest(ARRAY['delivered', 'pending']) AS outcome"), {"at": long_ago})  # fmt: skip
        db.session.commit()
    outcome = invoke(app, "prune", "--older-than", "30d")
    assert outcome.output.strip() == "pruned 1 ended task(s), 1 webhook delivery(ies) and 1 idempotency key(s)"
    with app.app_context():
        assert db.session.get(Task, uuid.UUID(old)) is None
        assert db.session.get(Result, uuid.UUID(old)) is None
        assert db.session.get(Result, uuid.UUID(recent)) is not None
        assert db.session.get(Result, uuid.UUID(keyed)) is not None
        assert db.session.get(Task, uuid.UUID(queued)) is not None
        assert db.session.scalar(select(func.count()).select_from(Task)) == 3
        assert db.session.scalars(select(Delivery.outcome)).all() == ["pending"]
    assert samples(client)[("longjobs_tasks_accepted_total", ("type", "multiply"))] == 4  # counters are not lowered


@pytest.mark.slow
def test_submit_prints_a_summary_of_a_large_result_and_no_log_lines(app: Flask, worker_process) -> None:
    command = ["flask", "tasks", "submit", "simulation", "population=10000", "initial_infected=5", "r0=2",
               "incubation_days=3", "infectious_days=5", "days=1000", "runs=20", "seed=1"]  # fmt: skip
    environ = os.environ | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"} | service_env()
    done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no log lines: the service logs to standard error
    lines = done.stdout.strip().splitlines()
    assert len(lines) < 20 and len(done.stdout) < 2000  # 3 x 1,001 numbers in the result
    assert any(line.startswith("infectious: {low: [1001 items: ") for line in lines)
    assert "final_size: {" in done.stdout
    assert lines[-1].startswith("(a summary; the whole result: GET /simulations/")


def test_models_are_listed(app: Flask) -> None:
    output = invoke(app, "models").output
    assert re.search(r"^enkf +r +\S", output, re.MULTILINE)
    assert re.search(r"^multiply +python +Multiply two numbers", output, re.MULTILINE)
