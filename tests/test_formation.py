"""What a user and Heroku run, from a virtual environment of requirements.txt alone (.venv, which `make test` builds
anew whenever that file changes): the Procfile's lines as a formation, the flask CLI, and `make run`'s local.py.

The rest of the tests run in .venv-dev, which holds the test tools too: a runtime package missing from
requirements.txt would pass there unnoticed.
"""

import contextlib
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import requests
from redis import Redis
from sqlalchemy import make_url

from tests.conftest import (
    ROOT,
    RUNTIME_BIN,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    free_port,
    marked_processes,
    recreate_database,
    service_env,
    start_process,
    wait_for,
    wait_for_web,
)
from tests.receivers import Receiver

pytestmark = pytest.mark.slow
STOP_SECONDS = 30  # Heroku's, between SIGTERM and SIGKILL


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_runtime_environment_holds_requirements_txt_alone() -> None:
    """What the other tests here run from is what Heroku installs: every pin, at its version, and nothing else."""
    assert (RUNTIME_BIN / "python").exists(), "make test builds .venv (make .venv/requirements.txt)"
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalized(name.partition("[")[0])] = version.strip()
    frozen = subprocess.run([RUNTIME_BIN / "python", "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
    lines = (line.partition("==") for line in frozen.stdout.split())
    installed = {normalized(name): version for name, _, version in lines}
    assert installed == pins


@pytest.fixture
def formation_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a formation on a database of its own (created empty, dropped after) and the tests' Redis
    database (flushed before and after), with the shipped models only; every process it starts is marked."""
    url = make_url(TEST_DATABASE_URL)
    database = url.set(database=f"{url.database}_formation").render_as_string(hide_password=False)
    recreate_database(database)
    redis = Redis.from_url(TEST_REDIS_URL)
    redis.flushdb()
    mark = uuid.uuid4().hex
    yield service_env(DATABASE_URL=database, MODELS_DIR="", WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
                      PORT=str(free_port()), LONGJOBS_TEST_MARK=mark)  # fmt: skip
    for left in marked_processes(mark):  # a failed test's: the check is the test's own
        os.kill(int(left.split()[0]), signal.SIGKILL)
    redis.flushdb()
    redis.close()
    recreate_database(database, create=False)


def submit(base: str, path: str, body: dict) -> str:
    """POST: 202 with the result's Location; returns it."""
    response = requests.post(f"{base}{path}", json=body, timeout=10)
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def answer(base: str, location: str, timeout: float = 60) -> dict:
    """The result URL's 200, once it comes."""

    def answered() -> dict | None:
        response = requests.get(f"{base}{location}", timeout=10)
        return response.json() if response.status_code == 200 else None

    return wait_for(answered, timeout, f"{location} to answer 200")  # type: ignore[return-value]


def test_the_procfile_runs_from_requirements_txt_alone(formation_env: dict[str, str], tmp_path: Path) -> None:
    """release, then web, worker and clock, each as Heroku starts it, from .venv; a short smoke; SIGTERM to each
    leaves no process behind."""
    release = start_process("release", tmp_path / "release.log", bin_dir=RUNTIME_BIN, **formation_env)
    assert release.wait(timeout=60) == 0, (tmp_path / "release.log").read_text()
    processes = {name: start_process(name, tmp_path / f"{name}.log", bin_dir=RUNTIME_BIN, **formation_env)
                 for name in ("web", "worker", "clock")}  # fmt: skip
    base = f"http://127.0.0.1:{formation_env['PORT']}"
    receiver = Receiver()
    try:
        wait_for_web(processes["web"], base, tmp_path / "web.log")
        hook = requests.post(f"{base}/webhooks", json={"url": receiver.url, "events": ["task.finished"]}, timeout=10)
        assert hook.status_code == 201, hook.text
        slow = submit(base, "/multiply", {"x": 6, "y": 7, "delay": 2})  # the others wait behind it: 404 first
        python = submit(base, "/models/simulation", {"population": 10_000, "initial_infected": 5, "r0": 2,
                        "incubation_days": 3, "infectious_days": 5, "days": 60, "runs": 10, "seed": 1})  # fmt: skip
        cases = [3, 4, 6, 8, 11, 15, 19, 25, 33, 41, 52, 66, 80, 97, 118, 140, 160, 181, 204, 230]
        r = submit(base, "/models/enkf", {"cases": cases, "population": 1_000_000, "ensemble": 50, "seed": 1})
        sweep = submit(base, "/sweeps", {"model": "multiply", "params": {"y": 2}, "grid": {"x": [1, 2, 3]}})
        for location in (slow, python, r, sweep):  # pending: queued behind the slow one, or running it
            assert requests.get(f"{base}{location}", timeout=10).status_code == 404
        assert answer(base, slow)["result"] == 42.0
        assert answer(base, python)["result"]["final_size"]["median"] > 0
        assert len(answer(base, r)["result"]["rt"]) == len(cases)
        swept = answer(base, sweep)
        assert (swept["counts"]["finished"], [run["result"] for run in swept["runs"]]) == (3, [2.0, 4.0, 6.0])

        def delivered() -> set[str]:  # sent by the clock, verified as a receiver verifies it
            return {event["data"]["task_id"] for event in receiver.events(hook.json()["secret"])}

        wait_for(lambda: slow.rsplit("/", 1)[1] in delivered(), 30, "the clock to deliver the webhook")
        health = requests.get(f"{base}/health", timeout=10)
        assert (health.status_code, health.json()["workers"], health.json()["database"]) == (200, 1, {"ok": True})
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert re.search(r'^longjobs_tasks_ended_total\{status="finished",type="multiply"\} 4\.0$', metrics, re.M)
        docs = requests.get(f"{base}/docs", timeout=10)
        assert (docs.status_code, docs.headers["Content-Type"].startswith("text/html")) == (200, True)
        assert requests.get(f"{base}/openapi.json", timeout=10).json()["info"]["title"] == "longjobs"
        page = requests.get(f"{base}/", timeout=10)
        assert (page.status_code, "<html" in page.text) == (200, True)
    finally:
        receiver.close()
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):  # one that died, which the test then reports
                os.killpg(process.pid, signal.SIGTERM)  # as Heroku stops a dyno: every process of it
        codes = {name: process.wait(timeout=STOP_SECONDS) for name, process in processes.items()}
    assert codes == {"web": 0, "worker": 0, "clock": 0}, {name: (tmp_path / f"{name}.log").read_text()[-3000:]
                                                         for name in processes}  # fmt: skip
    assert marked_processes(formation_env["LONGJOBS_TEST_MARK"]) == []


def flask_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environ = os.environ | service_env(FLASK_APP=f"{ROOT / 'app.py'}:create_app")
    del environ["FLASK_SKIP_DOTENV"]
    environ["PATH"] = f"{RUNTIME_BIN}:{environ['PATH']}"
    return subprocess.run(["flask", *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)


def test_the_flask_cli_reads_dotenv_as_make_run_does_and_prints_no_tip(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RQ_DASHBOARD_USERNAME=someone\n")
    listed = flask_cli(tmp_path, "tasks", "models")
    assert (listed.returncode, listed.stderr) == (0, "")
    assert re.search(r"^multiply +python ", listed.stdout, re.M)
    (tmp_path / ".env").write_text("MAX_SWEEP_RUNS=0\n")  # read: the setting stops the command, naming itself
    refused = flask_cli(tmp_path, "tasks", "models")
    assert refused.returncode != 0
    assert "MAX_SWEEP_RUNS must be a whole number, at least 1, not '0'" in refused.stderr


def test_local_stops_every_process_on_ctrl_c_after_its_output_pipe_closed_and_gives_a_task_its_grace(
    formation_env: dict[str, str], tmp_path: Path
) -> None:
    """`make run 2>&1 | tee log`, then Ctrl-C: tee ends first, then local.py is told; the running task finishes,
    then every process ends. Two workers (WORKERS=2) are counted."""
    release = start_process("release", tmp_path / "release.log", bin_dir=RUNTIME_BIN, **formation_env)
    assert release.wait(timeout=60) == 0
    environ = os.environ | formation_env | {"PATH": f"{RUNTIME_BIN}:{os.environ['PATH']}"}
    command = [RUNTIME_BIN / "python", "-m", "longjobs.operations.local", "start", "web", "worker=2", "clock"]
    local = subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{formation_env['PORT']}"
    try:
        assert local.stdout is not None
        seen = b""
        while b"Listening on" not in seen or seen.count(b"Listening on") < 2:  # both workers wait for jobs
            line = local.stdout.readline()
            assert line, seen.decode()
            seen += line
        assert requests.get(f"{base}/health", timeout=10).json()["workers"] == 2
        location = submit(base, "/multiply", {"x": 6, "y": 7, "delay": 4})
        wait_for(lambda: requests.get(f"{base}{location}", timeout=10).json()["status"] == "started", 30, "a start")
        local.stdout.close()  # nobody reads its output any more
        local.send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches local.py, not the processes it started
        assert local.wait(timeout=STOP_SECONDS + 5) == 0
        assert marked_processes(formation_env["LONGJOBS_TEST_MARK"]) == []
    finally:
        if local.poll() is None:
            local.kill()
            local.wait()
    conn = psycopg2.connect(formation_env["DATABASE_URL"])
    with conn, conn.cursor() as cur:  # finished before its worker stopped, not handed back or killed
        cur.execute("SELECT status, result FROM results WHERE task_id = %s", [location.rsplit("/", 1)[1]])
        assert cur.fetchone() == ("finished", 42.0)
    conn.close()


def test_make_run_creates_the_database_it_is_given_or_says_in_one_line_why_it_cannot() -> None:
    url = make_url(TEST_DATABASE_URL)
    missing = url.set(database=f"{url.database}_created").render_as_string(hide_password=False)
    recreate_database(missing, create=False)
    environ = os.environ | {"DATABASE_URL": missing, "PATH": f"{RUNTIME_BIN}:{os.environ['PATH']}"}
    command = [RUNTIME_BIN / "python", "-m", "longjobs.operations.local", "database"]
    try:
        for _ in range(2):  # created, then found
            done = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        conn = psycopg2.connect(missing)  # it exists
        conn.close()
    finally:
        recreate_database(missing, create=False)
    environ["DATABASE_URL"] = make_url(missing).set(port=free_port()).render_as_string(hide_password=False)
    refused = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "Start Postgres, or set DATABASE_URL." in refused.stderr
