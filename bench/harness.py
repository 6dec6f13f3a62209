"""What every figure of `make bench` shares: its settings, its database and Redis, starting and stopping the service's
processes as the Procfile does, wrk, and reading a process's CPU and memory from /proc."""

import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy
import psycopg2
import requests
from redis import Redis

ROOT = Path(__file__).resolve().parent.parent


BIN = Path(sys.executable).parent


DATABASE = os.environ.get("BENCH_DATABASE_URL", "postgresql://localhost/longjobs_bench")


REDIS = os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/13")


RUNS = int(os.environ.get("BENCH_RUNS", "3"))


DRAIN_JOBS = int(os.environ.get("BENCH_DRAIN_JOBS", "2000"))


SOAK_JOBS = int(os.environ.get("BENCH_SOAK_JOBS", "10000"))


LOAD_SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "5"))


R_SAMPLES = int(os.environ.get("BENCH_R_SAMPLES", "20"))


SWEEP_RUNS = int(os.environ.get("BENCH_SWEEP_RUNS", "200"))


BIG_SWEEP_RUNS = 1000


SCRAPE_TASKS = 100_000


STREAMS = 50  # event streams open at once, on STREAMED_TASKS running tasks that report progress


STREAMED_TASKS = 5


RECEIVER_PORT = 5193


# Runs of the figures that seek a difference smaller than the machine's own from one run to the next: each in turn
# with its baseline, more of them than the rest.
PAIRED_RUNS = 2 * RUNS + 1


TICK = 1 / os.sysconf("SC_CLK_TCK")  # seconds of CPU in each unit that /proc counts in


# A short run: a SEIR simulation of about 20 ms of one core (each run of the sweep draws its own seed).
SWEEP_PARAMS = {"population": 100_000, "initial_infected": 10, "r0": 2.5, "incubation_days": 4, "infectious_days": 6,
                "days": 200, "runs": 200}  # fmt: skip


BASELINE_WORKER = ["rq", "worker", "-w", "rq.SimpleWorker", "-q", "--serializer", "rq.serializers.JSONSerializer",
                   "-u", REDIS, "baseline"]  # fmt: skip


def models_dir() -> str:
    """The service's models and the bench's (bench/models/: a trivial R model), in one directory of links."""
    directory = Path(tempfile.mkdtemp(prefix="bench-models-"))
    for file in [*(ROOT / "models").glob("*.*"), *(ROOT / "bench" / "models").glob("*.*")]:
        (directory / file.name).symlink_to(file)
    return str(directory)


ENV = os.environ | {
    "PATH": f"{BIN}:{os.environ['PATH']}",
    "MODELS_DIR": models_dir(),
    "DATABASE_URL": DATABASE,
    "REDIS_URL": REDIS,
    "RQ_DASHBOARD_PASSWORD": "bench",
    "MAX_QUEUE_DEPTH": "1000000",  # the bench fills queues on purpose
    "WEB_CONCURRENCY": "2",
    "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",  # the bench's receiver
}


_connection = None


def sql(statement: str, params: tuple = ()) -> list[tuple]:
    """Run a statement on the bench's one connection: a connection per call would make Postgres start a
    backend process every time the bench polls, taking CPU from what it measures."""
    global _connection
    if _connection is None:
        _connection = psycopg2.connect(DATABASE)
        _connection.autocommit = True
    with _connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def prepare_database() -> None:
    name = DATABASE.rsplit("/", 1)[1]
    admin = psycopg2.connect(DATABASE.rsplit("/", 1)[0] + "/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    subprocess.run(["flask", "db", "upgrade"], cwd=ROOT, env=ENV, check=True, capture_output=True)
    sql("CREATE TABLE bench_tasks (task_id uuid PRIMARY KEY, enqueued_at timestamptz DEFAULT now())")
    sql("CREATE TABLE bench_rows (task_id uuid PRIMARY KEY, created_at timestamptz DEFAULT clock_timestamp())")


def reset() -> None:
    Redis.from_url(REDIS).flushdb()
    sql("TRUNCATE results, tasks, sweeps, schedules, idempotency_keys, webhooks, webhook_deliveries, metric_totals, "
        "bench_tasks, bench_rows")  # fmt: skip


def start(command: list[str], **env: str) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
    return subprocess.Popen(command, cwd=ROOT, env=ENV | env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def wait(predicate, timeout: float = 60):
    """Poll until predicate() is truthy; return its value. Rates come from the rows' own timestamps, so polling
    every 50 ms costs them no precision, and the machine little."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("the bench waited too long")
        time.sleep(0.05)
    return value


def serve(app: str, port: int) -> subprocess.Popen:
    process = start(["gunicorn", app], PORT=str(port))

    def up() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/nowhere", timeout=2).status_code == 404
        except requests.RequestException:
            return False

    wait(up)
    return process


def wrk(url: str, method: str = "GET", body: str = "") -> float:
    """Requests per second answered 2xx over LOAD_SECONDS, from 16 connections on 2 threads."""
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write(f'wrk.method = "{method}"\nwrk.body = \'{body}\'\nwrk.headers["Content-Type"] = "application/json"\n')
    script.close()
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{LOAD_SECONDS}s", "-s", script.name, url],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    expected_4xx = "/multiply/" in url  # the pending poll answers 404 by design
    if errors and not expected_4xx:
        raise RuntimeError(f"wrk saw {errors[1]} errors on {url}:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK


class MachineCPU:
    """Every process's CPU on this machine (/proc/stat: busy, not idle nor stolen), sampled every 20 ms from a thread
    while in the block, so that the CPU spent between two moments of the rows' own timestamps can be read after."""

    def __enter__(self) -> "MachineCPU":
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _sample(self) -> None:
        while True:
            user, nice, system, _idle, _iowait, irq, softirq = map(int, Path("/proc/stat").read_text().split()[1:8])
            self.samples.append((time.time(), (user + nice + system + irq + softirq) * TICK))
            if self.done.wait(0.02):
                return

    def between(self, first: datetime, last: datetime) -> float:
        """Seconds of CPU spent from one moment to the other (interpolated between the samples around each)."""
        moments, seconds = zip(*self.samples, strict=True)
        return float(numpy.diff(numpy.interp([first.timestamp(), last.timestamp()], moments, seconds))[0])


def started_up(pid: int) -> bool:
    """Whether a process is idle: it used no more than a clock tick of CPU in 0.2 s."""
    before = cpu_seconds(pid)
    time.sleep(0.2)
    return cpu_seconds(pid) - before < 2 * TICK  # one tick at most, in floating point


def rss_mb(pid: int) -> float:
    return int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())[1]) / 1024


def worker_pid(process: subprocess.Popen) -> int:
    """The process that runs the jobs: ours runs in the one child of `python worker.py` (supervisor.py), forked
    once its modules are imported."""
    if process.args != ["python", "worker.py"]:
        return process.pid
    return int(wait(lambda: Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split())[0])


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def spread(values: list[float]) -> str:
    digits = 2 if statistics.median(values) < 10 else 0  # CPU milliseconds need the decimals
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"
