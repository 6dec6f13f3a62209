"""Fixtures: a migrated test database, a Redis database of its own, the app, a client and real workers.

Real services only: TEST_DATABASE_URL and TEST_REDIS_URL, defaulting to this machine's local servers.
"""

import atexit
import base64
import functools
import gc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import flask_migrate
import psycopg2
import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from sqlalchemy import make_url, text

from app import create_app
from core import Result, db
from longjobs import lifecycle
from tests.receivers import Receiver, dispatching
from worker import build_worker

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_BIN = ROOT / ".venv" / "bin"  # requirements.txt alone, as Heroku installs it (make .venv/requirements.txt)
TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://localhost/longjobs_test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://localhost:6379/15")
DASHBOARD_PASSWORD = "test-dashboard-password"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts" / "page"))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip


@functools.cache
def models_dir() -> str:
    """The service's models and the tests' own (tests/models/: models that fail, crash, leak or never end), in
    one directory of links for MODELS_DIR, removed when the tests end."""
    directory = Path(tempfile.mkdtemp(prefix="models-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for file in [*(ROOT / "models").iterdir(), *(ROOT / "tests" / "models").iterdir()]:
        if file.is_file():
            (directory / file.name).symlink_to(file)
    return str(directory)


def service_env(**overrides: str) -> dict[str, str]:
    """The environment the service reads, pointed at the test database and Redis, with the test models."""
    env = {
        "DATABASE_URL": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "RQ_DASHBOARD_PASSWORD": DASHBOARD_PASSWORD,
        "MODELS_DIR": models_dir(),
        # `make test` runs the worker's tests a second time on RQ's own code paths (WORKER_FAST_PATH=off).
        "WORKER_FAST_PATH": os.environ.get("WORKER_FAST_PATH", "on"),
        # The flask CLI would read a developer's .env (python-dotenv) into the tests' processes.
        "FLASK_SKIP_DOTENV": "1",
    }
    return env | overrides


def recreate_database(url: str, create: bool = True) -> None:
    """Drop and create the database a URL names, so migrations start from nothing (or only drop it)."""
    target = make_url(url)
    admin = target.set(drivername="postgresql", database="postgres")
    conn = psycopg2.connect(admin.render_as_string(hide_password=False))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)')
        if create:
            cur.execute(f'CREATE DATABASE "{target.database}"')
    conn.close()


@pytest.fixture(scope="session")
def migrated_database() -> str:
    """An empty test database brought to the latest schema by the migrations, once a session."""
    if Redis.from_url(TEST_REDIS_URL).connection_pool.connection_kwargs.get("db", 0) == 0:
        pytest.exit("TEST_REDIS_URL must name a Redis database other than 0: the tests flush it")
    recreate_database(TEST_DATABASE_URL)
    app = create_app(service_env())
    with app.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    return TEST_DATABASE_URL


def clean(app: Flask) -> None:
    """Empty the test Redis database and the tables (truncated: the worker's writes are committed)."""
    with Redis.from_url(TEST_REDIS_URL) as redis:
        redis.flushdb()
    with app.app_context():
        db.session.execute(
            text(
                "TRUNCATE results, tasks, sweeps, schedules, idempotency_keys, webhooks, "
                "webhook_deliveries, metric_totals"
            )
        )
        db.session.commit()


def make_app(**overrides: str) -> Iterator[Flask]:
    """An app on the test services, which start and end empty."""
    app = create_app(service_env(**overrides))
    clean(app)
    yield app
    clean(app)
    with app.app_context():
        db.engine.dispose()
    app.extensions["redis"].close()


def closed_port_url(scheme: str = "redis", path: str = "1") -> str:
    """A URL on which nothing listens: Redis by default, or (`postgresql`, a database name) a dead Postgres."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return f"{scheme}://127.0.0.1:{closed.getsockname()[1]}/{path}"


@contextmanager
def app_on(**overrides: str) -> Iterator[Flask]:
    """An app pointed at other servers (down ones, say); it cleans nothing up but its own pool."""
    app = create_app(service_env(**overrides))
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(migrated_database: str) -> Iterator[Flask]:
    yield from make_app()


def app_fixture(**overrides: str) -> Callable[[str], Iterator[Flask]]:
    """A fixture like `app`, with settings of its own: `impatient_app = app_fixture(MULTIPLY_TIMEOUT="1")`."""

    @pytest.fixture
    def app_with_settings(migrated_database: str) -> Iterator[Flask]:
        yield from make_app(**overrides)

    return app_with_settings


@pytest.fixture
def app_without_redis(migrated_database: str) -> Iterator[Flask]:
    yield from make_app(REDIS_URL=closed_port_url())


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def run_worker() -> Callable[[Flask], bool]:
    """Run a real worker of the app until its queues are empty (a burst worker, in this process).

    Returns whether it ran any job.
    """

    def run(app: Flask) -> bool:
        # A job's timeout (SIGALRM) raised inside a gc callback is swallowed as unraisable, and the job runs on;
        # hypothesis (tests/test_hostile.py) leaves one installed in this process. A worker process has none.
        callbacks = gc.callbacks[:]
        gc.callbacks.clear()
        try:
            return build_worker(app).work(burst=True, logging_level="WARNING", with_scheduler=True)
        finally:
            gc.callbacks[:] = callbacks

    return run


def submit(client: FlaskClient, path: str = "/multiply", **body: object) -> str:
    """POST a task (JSON body) and return its id; the answer must be 202."""
    response = client.post(path, json=body)
    assert response.status_code == 202, response.json
    return response.json["task_id"]


def submit_failing(app: Flask, failures: int, fault: str) -> str:
    """Queue, through the real submit path, a multiplication that fails `failures` times first (tests/models)."""
    return submit_task(app, "flaky", x=6, y=7, failures=failures, fault=fault)


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header for HTTP basic auth (the dashboard's)."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def submit_task(app: Flask, model: str, **params: object) -> str:
    """Queue a task of a model (the test models in tests/models/ included) through the real submit path."""
    with app.app_context():
        return str(lifecycle.submit(app.extensions["models"][model], params))


def row(app: Flask, task_id: str) -> Result | None:
    """The task's row in `results`, if it has one."""
    with app.app_context():
        return db.session.get(Result, uuid.UUID(task_id))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll until predicate() is truthy and return it; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def procfile_command(process: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process:
            return command.strip()
    raise LookupError(f"no {process!r} line in the Procfile")


def start_process(process: str, log: Path, bin_dir: Path | None = None, **env: str) -> subprocess.Popen:
    """Start a Procfile line as Heroku does (`bash -c "exec <line>"`) in a process group of its own.

    Only the packages' bin/ (these tests', or `bin_dir`) is put first on PATH; output goes to `log`.
    """
    environ = os.environ | {"PATH": f"{bin_dir or Path(sys.executable).parent}:{os.environ['PATH']}"} | env
    with log.open("w") as out:
        return subprocess.Popen(
            ["bash", "-c", f"exec {procfile_command(process)}"],
            cwd=ROOT,
            env=environ,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.fixture
def web(app: Flask, tmp_path: Path) -> Iterator[str]:
    """The Procfile's `web` on a free port, once it answers; yields its base URL."""
    port = free_port()
    process = start_process("web", tmp_path / "web.log", PORT=str(port), **service_env())
    base = f"http://127.0.0.1:{port}"
    wait_for_web(process, base, tmp_path / "web.log")
    yield base
    stop_process(process)


def wait_for_web(process: subprocess.Popen, base: str, log: Path) -> None:
    """Wait until a `web` process answers (its page needs neither a token, nor Redis, nor the database)."""

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            return requests.get(f"{base}/", timeout=5).status_code == 200
        except requests.RequestException:  # not listening yet, or still booting its workers
            return False

    wait_for(answers, 30, "web to listen")


@pytest.fixture
def worker_process(app: Flask, tmp_path: Path, request) -> Iterator[subprocess.Popen]:
    """The Procfile's `worker`, with the settings a test may give (indirect parametrization), once it waits for
    jobs (by then it handles SIGTERM; not yet when it registers). It logs to tmp_path / "worker.log"."""
    process = start_process("worker", tmp_path / "worker.log", **service_env(**getattr(request, "param", {})))

    def idle() -> bool:
        assert process.poll() is None, (tmp_path / "worker.log").read_text()
        return [worker.get_state() for worker in Worker.all(connection=app.extensions["redis"])] == ["idle"]

    wait_for(idle, 30, "the worker to wait for jobs")
    yield process
    stop_process(process)


def marked_processes(mark: str) -> list[str]:
    """The processes whose environment holds LONGJOBS_TEST_MARK=<mark> (every descendant of a process started with
    it, whatever session or group it moved to), as "<pid> <command>"."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"LONGJOBS_TEST_MARK={mark}".encode() in (proc / "environ").read_bytes():
                command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name} {command}")
        except OSError:  # gone meanwhile
            continue
    return found


def stop_process(process: subprocess.Popen) -> None:
    """Kill a process started by start_process, and its whole group, if it still runs."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless chromium with a fresh profile (nothing cached), a desktop-sized window, downloads into tmp_path."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    yield driver
    driver.quit()


@pytest.fixture
def shoot(browser: webdriver.Chrome, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Keep a full-page screenshot of the current state as an artifact: <test name>-<state>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(state: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{state}.png"
        capture = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(capture["data"]))
        return path

    return shot


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def dispatcher(app: Flask) -> Iterator[None]:
    """The Dispatcher, from the start of the test (`dispatching`, to start it later)."""
    with dispatching(app):
        yield
