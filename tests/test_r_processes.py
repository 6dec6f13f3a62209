"""No R process outlives its task: a timeout, a stop, a SIGTERM hand-back and a SIGKILL of the worker each
leave none behind. The model (tests/models/r_forever.R) starts a child (`sleep 3599`) and never ends; the
worker is the Procfile's."""

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import app_on, row, submit, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(90)]


def r_processes() -> dict[int, str]:
    """The processes r_forever.R runs as, and its child, by pid."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except (OSError, ValueError):  # not a process, or one that just ended
            continue
        if proc.name.isdigit() and ("r_forever.R" in command or command == "sleep 3599"):
            found[int(proc.name)] = command
    return found


@pytest.fixture(autouse=True)
def no_r_left() -> Iterator[None]:
    assert r_processes() == {}, "an earlier test left R processes running"
    yield
    for pid in r_processes():  # what a failed test left behind, so that the next one starts clean
        os.kill(pid, signal.SIGKILL)


def start_forever(client: FlaskClient) -> str:
    task_id = submit(client, "/models/r_forever")
    wait_for(lambda: len(r_processes()) == 2, 30, "R and its child to run")
    wait_for(lambda: client.get(f"/tasks/{task_id}").json["progress"]["percent"] == 10, 10, "its progress")
    return task_id


def gone() -> bool:
    return r_processes() == {}


def test_a_timeout_kills_the_r_process_and_its_children(app: Flask, worker_process) -> None:
    with app_on(R_FOREVER_TIMEOUT="3") as impatient:  # the timeout goes with the job, from the app that queues it
        task_id = start_forever(impatient.test_client())
    failed = wait_for(lambda: (found := row(app, task_id)) and found, 30, "the task to time out")
    assert failed.status == "failed" and "longer than its timeout of 3 s" in failed.error
    wait_for(gone, 5, "no R process left")


def test_a_stop_kills_the_r_process_and_its_children(app: Flask, client: FlaskClient, worker_process) -> None:
    task_id = start_forever(client)
    assert client.delete(f"/tasks/{task_id}").status_code == 202
    stopped = wait_for(lambda: (found := row(app, task_id)) and found, 30, "the task to stop")
    assert stopped.status == "stopped"
    wait_for(gone, 5, "no R process left")


@pytest.mark.parametrize("worker_process", [{"WORKER_SHUTDOWN_GRACE": "1"}], indirect=True)
def test_a_sigterm_hand_back_kills_the_r_process_and_its_children(
    app: Flask, client: FlaskClient, worker_process: subprocess.Popen
) -> None:
    task_id = start_forever(client)
    os.killpg(worker_process.pid, signal.SIGTERM)  # as Heroku signals every process of a dyno
    assert worker_process.wait(timeout=30) == 0
    wait_for(gone, 5, "no R process left")
    assert client.get(f"/tasks/{task_id}").json["status"] == "queued"  # back on its queue, to run again


def test_a_sigkill_of_the_worker_process_kills_the_r_process_and_its_children(
    app: Flask, client: FlaskClient, worker_process: subprocess.Popen, tmp_path: Path
) -> None:
    start_forever(client)
    children = Path(f"/proc/{worker_process.pid}/task/{worker_process.pid}/children").read_text().split()
    # The worker process; R's child is the supervisor's too (its parent, `sh`, ended and left it to the subreaper).
    [child] = [pid for pid in children if b"worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(int(child), signal.SIGKILL)  # the worker process dies as the OOM killer kills it; its supervisor lives
    wait_for(gone, 5, "no R process left")
    assert "killed the processes (group" in (tmp_path / "worker.log").read_text()


def test_a_sigkill_of_the_whole_worker_kills_the_r_process(client: FlaskClient, worker_process) -> None:
    start_forever(client)
    os.killpg(worker_process.pid, signal.SIGKILL)  # supervisor and worker at once: nobody is left to clean up
    # The kernel kills Rscript when the worker dies (its parent-death signal). What R itself started lives on
    # (README: no supervisor is left to kill it), until the container goes, as a Heroku dyno's does.
    wait_for(lambda: not any("r_forever.R" in command for command in r_processes().values()), 5, "R to die")
