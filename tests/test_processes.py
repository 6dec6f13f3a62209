"""The Procfile's lines run as Heroku runs them (`bash -c "exec <line>"`), against real servers."""

import os
import signal
import socket
import time
from pathlib import Path

import psycopg2
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from rq import Worker
from sqlalchemy import make_url

from core import WORKER_SILENT_SECONDS, live_workers
from tests.conftest import (
    DASHBOARD_PASSWORD,
    TEST_DATABASE_URL,
    basic,
    procfile_command,
    recreate_database,
    service_env,
    start_process,
    wait_for,
)
from tests.test_metrics import samples

pytestmark = pytest.mark.slow


def test_procfile_has_the_three_processes() -> None:
    assert procfile_command("release") == "flask db upgrade"
    assert procfile_command("web").startswith('gunicorn "app:create_app()"')
    assert procfile_command("worker") == "python worker.py"


def test_release_migrates_an_empty_database_and_is_safe_to_run_again(tmp_path: Path) -> None:
    url = make_url(TEST_DATABASE_URL)
    url = url.set(database=f"{url.database}_release").render_as_string(hide_password=False)
    recreate_database(url)
    for attempt in range(2):
        release = start_process("release", tmp_path / f"release{attempt}.log", **service_env(DATABASE_URL=url))
        assert release.wait(timeout=60) == 0, (tmp_path / f"release{attempt}.log").read_text()
    conn = psycopg2.connect(url)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM results")
        assert cur.fetchone() == (0,)
    conn.close()


def poll(base: str, task_id: str, status: int = 200, timeout: float = 30) -> dict:
    def answered() -> dict | None:
        response = requests.get(f"{base}/multiply/{task_id}", timeout=5)
        return response.json() if response.status_code == status else None

    return wait_for(answered, timeout, f"{task_id} to answer {status}")


def test_web_and_worker_serve_the_cycle(web: str, worker_process, tmp_path: Path) -> None:
    response = requests.post(f"{web}/multiply", data='{"x": 6, "y": 7, "delay": 0.5}', timeout=5)
    assert response.status_code == 202
    task_id = response.json()["task_id"]
    assert response.headers["Location"] == f"/multiply/{task_id}"
    pending = requests.get(f"{web}/multiply/{task_id}", timeout=5)
    assert pending.status_code == 404
    assert pending.json()["status"] in ("queued", "started")
    params = {"x": 6.0, "y": 7.0, "delay": 0.5}
    assert poll(web, task_id) == {"task_id": task_id, "status": "finished", "params": params, "result": 42.0}
    log = tmp_path / "worker.log"  # one line per task outcome: RQ's "Job OK" is left out
    wait_for(lambda: f"task {task_id} finished" in log.read_text(), 10, "the task's line in the worker's log")
    assert "Job OK" not in log.read_text()


def test_web_refuses_large_bodies_chunked_or_not(web: str) -> None:
    body = b'{"x": 1, "y": 2, "delay": 0.' + b"0" * 70_000 + b"}"
    assert requests.post(f"{web}/multiply", data=body, timeout=5).status_code == 413
    chunked = requests.post(f"{web}/multiply", data=iter([body[:40_000], body[40_000:]]), timeout=5)
    assert chunked.status_code == 413
    small = requests.post(f"{web}/multiply", data=iter([b'{"x": 1,', b' "y": 2}']), timeout=5)
    assert small.status_code == 202


def test_web_serves_the_dashboard_behind_basic_auth(web: str) -> None:
    assert requests.get(f"{web}/rq/", timeout=5).status_code == 401
    assert requests.get(f"{web}/rq/", auth=("admin", DASHBOARD_PASSWORD), timeout=5).status_code == 200


def test_web_trusts_the_routers_forwarded_headers(web: str) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "jobs.example.com"}
    response = requests.get(
        f"{web}/rq", headers=headers, auth=("admin", DASHBOARD_PASSWORD), timeout=5, allow_redirects=False
    )
    assert response.status_code == 308
    assert response.headers["Location"] == "https://jobs.example.com/rq/"


def test_sigterm_lets_the_running_job_finish_and_keeps_the_queued_ones(web: str, worker_process) -> None:
    running = requests.post(f"{web}/multiply", json={"x": 2, "y": 3, "delay": 3}, timeout=5).json()["task_id"]
    poll(web, running, status=404)
    wait_for(
        lambda: requests.get(f"{web}/multiply/{running}", timeout=5).json().get("status") == "started",
        30,
        "the job to start",
    )
    waiting = requests.post(f"{web}/multiply", json={"x": 1, "y": 1}, timeout=5).json()["task_id"]

    os.killpg(worker_process.pid, signal.SIGTERM)  # as Heroku does: every process of the dyno
    assert worker_process.wait(timeout=25) == 0
    assert requests.get(f"{web}/multiply/{running}", timeout=5).json() == {
        "task_id": running,
        "status": "finished",
        "params": {"x": 2.0, "y": 3.0, "delay": 3.0},
        "result": 6.0,
    }
    left = requests.get(f"{web}/multiply/{waiting}", timeout=5)
    assert (left.status_code, left.json()["status"]) == (404, "queued")


def test_worker_exits_promptly_on_sigterm_when_idle(worker_process) -> None:
    os.killpg(worker_process.pid, signal.SIGTERM)
    assert worker_process.wait(timeout=10) == 0


def test_slow_clients_do_not_hold_up_the_api(web: str) -> None:
    """Clients that send a request's headers and then a trickle of its body (or nothing) hold no web process:
    others are answered at once."""
    host, port = web.removeprefix("http://").split(":")
    slow = [socket.create_connection((host, int(port))) for _ in range(8)]  # more than web's processes
    try:
        for client in slow:
            client.sendall(b'POST /multiply HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                           b'Content-Length: 20\r\n\r\n{"x": 1')  # fmt: skip
        time.sleep(0.5)
        started = time.monotonic()
        answers = [requests.post(f"{web}/multiply", json={"x": n, "y": 1}, timeout=10).status_code for n in range(20)]
        assert (answers, time.monotonic() - started < 5) == ([202] * 20, True)
    finally:
        for client in slow:
            client.close()


def records(app: Flask) -> tuple[list[str], list[str]]:
    """The workers' names as RQ's registry lists them, and as the service counts them (core.live_workers)."""
    redis = app.extensions["redis"]
    listed = [worker.name for worker in Worker.all(connection=redis)]
    return listed, [worker.name for worker in live_workers(redis)]


def test_a_worker_process_that_dies_is_no_longer_counted_at_once(app: Flask, client: FlaskClient, worker_process):
    """The supervisor removes the dead process's record as RQ's worker removes its own when it stops, and starts a
    fresh process, counted in its turn: at no time are two counted."""
    [worker] = Worker.all(connection=app.extensions["redis"])
    os.kill(worker.pid, signal.SIGKILL)  # the worker process alone: its supervisor sees it die
    counts = []

    def replaced() -> bool:
        counts.append(client.get("/health").json["workers"])
        listed, counted = records(app)
        return worker.name not in listed and len(counted) == 1

    wait_for(replaced, 30, "a fresh worker process to take the dead one's place")
    assert max(counts) == 1
    assert Worker.count(connection=app.extensions["redis"]) == 1  # RQ's own count: the dead one's record is gone


@pytest.mark.parametrize("worker_process", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_worker_whose_host_died_is_not_counted_once_silent_for_a_minute(
    app: Flask, client: FlaskClient, worker_process
) -> None:
    """A busy worker beats (its watchman), so it stays counted however long its task runs; once its whole host is
    gone (every process SIGKILLed), it is not counted after WORKER_SILENT_SECONDS, though RQ still lists it."""
    task_id = client.post("/multiply", json={"x": 1, "y": 2, "delay": 6}).json["task_id"]
    wait_for(lambda: client.get(f"/tasks/{task_id}").json["status"] == "started", 30, "the task to start")
    beats = set()
    while client.get(f"/tasks/{task_id}").json["status"] == "started":
        [worker] = Worker.all(connection=app.extensions["redis"])
        beats.add(worker.last_heartbeat)
        time.sleep(0.5)
    assert len(beats) >= 3  # RQ's worker beats only between jobs: these are the watchman's, a second apart
    os.killpg(worker_process.pid, signal.SIGKILL)  # the supervisor, its worker process and all they started
    killed_at = time.monotonic()
    assert client.get("/health").json["workers"] == 1  # silent for less than a minute: it may be slow, not dead
    wait_for(lambda: client.get("/health").json["workers"] == 0, 90, "the dead worker to stop being counted")
    assert time.monotonic() - killed_at > WORKER_SILENT_SECONDS - 5
    assert records(app) == ([worker.name], [])  # its record is still there until it expires
    assert samples(client)[("longjobs_workers",)] == 0
    dashboard = client.get("/rq/0/data/workers.json", headers=basic("admin", DASHBOARD_PASSWORD))
    assert dashboard.json["workers"] == []
