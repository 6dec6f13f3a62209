"""GET /tasks/<id>/events: a task's status and progress as Server-Sent Events, from the Procfile's real `web` (gunicorn,
gevent workers) while a real worker runs the task."""

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import free_port, service_env, start_process, stop_process, submit, wait_for, wait_for_web

pytestmark = pytest.mark.slow


def events(lines: Iterator[str], comments: bool = False) -> Iterator[tuple[str, dict | None]]:
    """(event, data) as an EventSource dispatches them, and ("comment", None) for comment lines if asked."""
    name, data = "message", None
    for line in lines:
        if line.startswith(":"):
            if comments:
                yield "comment", None
        elif line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = json.loads(line.removeprefix("data: "))
        elif line == "" and data is not None:
            yield name, data
            name, data = "message", None


def stream(base: str, task_id: str, timeout: float = 30) -> requests.Response:
    response = requests.get(f"{base}/tasks/{task_id}/events", stream=True, timeout=timeout)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/event-stream")
    return response


@contextmanager
def serving(tmp_path: Path, **settings: str) -> Iterator[str]:
    """The Procfile's `web` with settings of its own; yields its base URL once it answers."""
    port = free_port()
    process = start_process("web", tmp_path / "web.log", PORT=str(port), **service_env(**settings))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(process, base, tmp_path / "web.log")
        yield base
    finally:
        stop_process(process)


def test_a_stream_follows_a_task_until_it_ends(app: Flask, web: str, worker_process) -> None:
    task_id = requests.post(f"{web}/multiply", json={"x": 6, "y": 7, "delay": 2}, timeout=10).json()["task_id"]
    with stream(web, task_id) as response:
        seen = list(events(response.iter_lines(decode_unicode=True)))  # until the server closes the stream
    names = [name for name, _ in seen]
    assert names[-1] == "end" and set(names[:-1]) == {"status"}
    statuses = [data["status"] for _, data in seen[:-1]]
    assert statuses[-1] == "finished" and set(statuses) <= {"queued", "started", "finished"}
    percents = [data["progress"]["percent"] for _, data in seen[:-1]]
    assert percents == sorted(percents) and len(set(percents)) >= 4  # progress at most 4 times a second, for 2 s
    assert seen[-1][1] == seen[-2][1] == requests.get(f"{web}/tasks/{task_id}", timeout=10).json()


def test_an_ended_task_streams_its_view_and_ends(app: Flask, client: FlaskClient, run_worker) -> None:
    task_id = submit(client, x=6, y=7)
    run_worker(app)
    response = client.get(f"/tasks/{task_id}/events")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    view = client.get(f"/tasks/{task_id}").json
    assert list(events(iter(response.text.split("\n")))) == [("status", view), ("end", view)]


def test_an_unknown_task_has_no_stream(client: FlaskClient) -> None:
    response = client.get(f"/tasks/{uuid.uuid4()}/events")
    assert response.status_code == 404 and "no task has the id" in response.json["error"]
    assert client.get("/tasks/not-an-id/events").status_code == 404


def test_a_quiet_stream_sends_comments(app: Flask, web: str) -> None:
    task_id = requests.post(f"{web}/multiply", json={"x": 6, "y": 7}, timeout=10).json()["task_id"]  # no worker
    seen = []
    with stream(web, task_id, timeout=5) as response:
        for event in events(response.iter_lines(decode_unicode=True), comments=True):
            seen.append(event)
            if [name for name, _ in seen].count("comment") == 2:
                break
    assert seen[0] == ("status", requests.get(f"{web}/tasks/{task_id}", timeout=10).json())
    assert seen[1:] == [("comment", None)] * 2


def test_a_client_that_leaves_frees_its_slot_at_once(app: Flask, tmp_path: Path) -> None:
    with serving(tmp_path, MAX_EVENT_STREAMS="2", WEB_CONCURRENCY="1") as base:
        task_id = requests.post(f"{base}/multiply", json={"x": 6, "y": 7}, timeout=10).json()["task_id"]
        first, second = stream(base, task_id), stream(base, task_id)
        full = requests.get(f"{base}/tasks/{task_id}/events", timeout=10)
        assert full.status_code == 503 and full.headers["Retry-After"] == "5"
        assert "2 event streams open" in full.json()["error"]
        first.close()  # the client goes away

        def accepted() -> bool:
            response = requests.get(f"{base}/tasks/{task_id}/events", stream=True, timeout=10)
            response.close()
            return response.status_code == 200

        wait_for(accepted, 10, "the slot the client left to be free again")
        second.close()


def test_open_streams_do_not_starve_the_api(app: Flask, tmp_path: Path) -> None:
    """Fifty streams on one web process (one gevent worker), and the API answers as before."""
    with serving(tmp_path, WEB_CONCURRENCY="1") as base:
        task_id = requests.post(f"{base}/multiply", json={"x": 6, "y": 7}, timeout=10).json()["task_id"]
        opened = []
        stop = threading.Event()

        def listen() -> None:
            with stream(base, task_id) as response:
                lines = response.iter_lines(decode_unicode=True)
                opened.append(next(events(lines)))
                for _ in lines:  # a keep-alive a second
                    if stop.is_set():
                        return

        listeners = [threading.Thread(target=listen, daemon=True) for _ in range(50)]
        for listener in listeners:
            listener.start()
        try:
            wait_for(lambda: len(opened) == 50, 30, "50 streams to open")
            with requests.Session() as http:
                for n in range(20):
                    accepted = http.post(f"{base}/multiply", json={"x": n, "y": 2}, timeout=5)
                    assert accepted.status_code == 202
                    assert http.get(f"{base}{accepted.headers['Location']}", timeout=5).status_code == 404
            assert all(listener.is_alive() for listener in listeners)
        finally:
            stop.set()
            for listener in listeners:  # each leaves at its next keep-alive, before the server goes
                listener.join(timeout=10)
