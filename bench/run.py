"""`make bench`: the service's speed and memory against baselines measured in the same run.

Starts `web` and `worker` as the Procfile does, on a database (`longjobs_bench`) and Redis database
(13) of their own, loads them over loopback with wrk, and prints a markdown table (also written to
bench/results.md): medians over BENCH_RUNS runs (default 3) with min and max, and each figure's ratio to
its baseline: bare Flask endpoints under the same gunicorn settings doing the same database and Redis
work; a plain RQ SimpleWorker, Dramatiq and Huey running the same one-row job; and a hand-written
Redis-list loop.
"""

import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
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


def fill_service_queue(jobs: int) -> None:
    """Accept `jobs` multiplications the way POST does (a tasks row, then the job), from this process."""
    from lifecycle import submit

    from app import create_app

    app = create_app(ENV)
    logging.getLogger("lifecycle").setLevel(logging.WARNING)  # not a line per task on the bench's output
    with app.app_context():
        for n in range(jobs):
            submit(app.extensions["models"]["multiply"], {"x": n, "y": 2})


def fill_baseline_queue(jobs: int) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer

    queue = Queue("baseline", connection=Redis.from_url(REDIS), serializer=JSONSerializer)
    with queue.connection.pipeline() as pipeline:
        for _ in range(jobs):
            task_id = str(uuid.uuid4())
            queue.enqueue("bench.row.insert_row", task_id, job_id=task_id, pipeline=pipeline)
        pipeline.execute()


def fill_handwritten_queue(jobs: int) -> None:
    from bench.handwritten import QUEUE

    Redis.from_url(REDIS).lpush(QUEUE, *(str(uuid.uuid4()) for _ in range(jobs)))


def fill_dramatiq_queue(jobs: int) -> None:
    from bench.dramatiq_job import insert_row

    for _ in range(jobs):
        insert_row.send(str(uuid.uuid4()))


def fill_huey_queue(jobs: int) -> None:
    from bench.huey_job import insert_row

    for _ in range(jobs):
        insert_row(str(uuid.uuid4()))


DRAINS = {  # who drains: (named in the table as, fill the queue, worker command, processes started)
    "service": ("longjobs", fill_service_queue, ["python", "worker.py"], 2),
    "SimpleWorker": ("RQ SimpleWorker", fill_baseline_queue, BASELINE_WORKER, 2),
    "hand-written": ("the hand-written loop (BRPOP + one commit per job)", fill_handwritten_queue,
                     ["python", "-m", "bench.handwritten"], 2),
    # These two start 2 worker processes themselves, as in the table.
    "Dramatiq": ("Dramatiq, 2 processes x 8 threads", fill_dramatiq_queue,
                 ["dramatiq", "bench.dramatiq_job", "-p", "2", "-t", "8"], 1),
    "Huey": ("Huey, 2 worker processes", fill_huey_queue,
             ["huey_consumer", "bench.huey_job.huey", "-w", "2", "-k", "process"], 1),
}  # fmt: skip


def row_times(table: str, column: str) -> list[datetime]:
    return [row[0] for row in sql(f"SELECT {column} FROM {table} ORDER BY {column}")]


def add_webhook() -> None:
    """A webhook that takes every task.finished, sent to the bench's receiver."""
    sql("INSERT INTO webhooks VALUES (gen_random_uuid(), %s, '[\"task.finished\"]', %s, now())",
        (f"http://127.0.0.1:{RECEIVER_PORT}/hooks", "whsec_" + "A" * 32))  # fmt: skip


def drain(who: str, jobs: int, webhook: str = "") -> dict:
    """Jobs per second from the first row to the last, with queue pre-filled; CPU and memory of the processes
    started (for Dramatiq and Huey, of their parent process only: leave those out). With `webhook`, a webhook takes
    every task.finished: "written", its deliveries are written (as when the clock runs on a machine of its own);
    "sent", the clock sends them to a local receiver meanwhile, on the same cores: then also the seconds from the
    first row to the last delivery, and the clock's and the receiver's CPU per job while the workers drained."""
    reset()
    _, fill, command, workers = DRAINS[who]
    table, column = ("results", "ended_at") if who == "service" else ("bench_rows", "created_at")
    fill(jobs)
    started = datetime.now(UTC)
    sending = []
    if webhook:
        add_webhook()
    if webhook == "sent":
        sending = [start(["python", "-m", "bench.receiver", str(RECEIVER_PORT)]), start(["python", "clock.py"])]
        for process in sending:  # up and idle, as a clock is that has run a while: its start-up is no delivery's cost
            wait(lambda pid=process.pid: started_up(pid))
    processes = [start(command) for _ in range(workers)]
    try:
        with MachineCPU() as machine:
            # CPU is counted from the first row on, so that start-up (imports, connections) is left out.
            done_before = wait(lambda: sql(f"SELECT count(*) FROM {table}")[0][0], timeout=60)
            cpu_before = sum(cpu_seconds(worker_pid(process)) for process in processes)
            sending_before = sum(cpu_seconds(process.pid) for process in sending)
            wait(lambda: sql(f"SELECT count(*) FROM {table}")[0][0] >= jobs, timeout=600)
            cpu = sum(cpu_seconds(worker_pid(process)) for process in processes) - cpu_before
            sending_cpu = sum(cpu_seconds(process.pid) for process in sending) - sending_before
            rss = [rss_mb(worker_pid(process)) for process in processes]
            time.sleep(0.05)  # a sample after the last row
        if webhook == "sent":
            wait(lambda: sql("SELECT count(*) FROM webhook_deliveries WHERE outcome = 'delivered'")[0][0] >= jobs, 600)
    finally:
        for process in processes + sending:
            stop(process)
    times = row_times(table, column)
    figures = {"rate": (len(times) - 1) / (times[-1] - times[0]).total_seconds(),
               "from_start": len(times) / (times[-1] - started).total_seconds(),
               "cpu_ms": 1000 * cpu / (jobs - done_before), "rss": max(rss),
               "machine_ms": 1000 * machine.between(times[0], times[-1]) / (len(times) - 1)}  # fmt: skip
    if webhook == "sent":
        delivered = sql("SELECT max(delivered_at) FROM webhook_deliveries")[0][0]
        figures["delivered_after"] = (delivered - times[0]).total_seconds()
        figures["sending_ms"] = 1000 * sending_cpu / (jobs - done_before)
    return figures


def end_cost(webhook: bool, ends: int = 3000) -> float:
    """Postgres CPU (µs) per task end written as a worker writes it (tasks.STORE_FINISHED: one statement in
    autocommit, with its triggers), from two connections at once as the drain's two workers write; with `webhook`, a
    webhook takes every task.finished. The backends' own CPU, read from /proc: a cost that the drain's figures, which
    move by 10% from run to run, cannot make out when it is a few per cent of a job's."""
    from sqlalchemy.dialects import postgresql

    from tasks import STORE_FINISHED

    reset()
    if webhook:
        add_webhook()
    statement = str(STORE_FINISHED.compile(dialect=postgresql.dialect()))
    connections = [psycopg2.connect(DATABASE) for _ in range(2)]
    for connection in connections:
        connection.autocommit = True

    def write(connection) -> None:
        with connection.cursor() as cursor:
            for _ in range(ends):
                now = datetime.now(UTC).isoformat()
                values = {"task_id": str(uuid.uuid4()), "type": "multiply", "status": "finished", "result": "6",
                          "error": None, "started_at": now, "ended_at": now}  # fmt: skip
                cursor.execute(statement, values)

    backends = [connection.get_backend_pid() for connection in connections]
    before = sum(cpu_seconds(pid) for pid in backends)
    writers = [threading.Thread(target=write, args=[connection]) for connection in connections]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    spent = sum(cpu_seconds(pid) for pid in backends) - before
    for connection in connections:
        connection.close()
    return 1e6 * spent / (len(connections) * ends)


def latency(samples: int = 200) -> list[float]:
    """Milliseconds from POST to the row, one task at a time, with an idle worker."""
    reset()
    worker = start(["python", "worker.py"])
    time.sleep(3)
    port = int(ENV["BENCH_PORT"])
    conn = psycopg2.connect(DATABASE)
    conn.autocommit = True
    found: list[float] = []
    with conn.cursor() as cursor:
        for n in range(samples):
            started = time.perf_counter()
            task_id = requests.post(f"http://127.0.0.1:{port}/multiply", json={"x": n, "y": 2}, timeout=10).json()[
                "task_id"
            ]
            while True:
                cursor.execute("SELECT 1 FROM results WHERE task_id = %s", (task_id,))
                if cursor.fetchone():
                    break
                time.sleep(0.0005)
            found.append(1000 * (time.perf_counter() - started))
    conn.close()
    stop(worker)
    return found


def r_latency(samples: int) -> tuple[list[float], list[float]]:
    """Milliseconds from POST to a 200 of a trivial R model (`cat(1)`), polled every 5 ms with an idle worker;
    and, measured in the same run, a bare `Rscript --vanilla -e 'cat(1)'`: the floor."""
    reset()
    worker = start(["python", "worker.py"])
    time.sleep(3)
    base = f"http://127.0.0.1:{ENV['BENCH_PORT']}/models/r_trivial"
    service, bare = [], []
    with requests.Session() as http:
        for _ in range(samples):
            started = time.perf_counter()
            task_id = http.post(base, json={}, timeout=10).json()["task_id"]
            while http.get(f"{base}/{task_id}", timeout=10).status_code != 200:
                time.sleep(0.005)
            service.append(1000 * (time.perf_counter() - started))
            started = time.perf_counter()
            subprocess.run(["Rscript", "--vanilla", "-e", "cat(1)"], check=True, capture_output=True)
            bare.append(1000 * (time.perf_counter() - started))
    stop(worker)
    return service, bare


def enkf_cost(ensemble: int, days: int) -> tuple[float, float]:
    """Seconds and peak megabytes of one enkf run (through rscript.run, as a worker runs it), in a process of its
    own so that its peak is the R process's alone."""
    code = f"""
import math, resource, time
from longjobs.catalog import rscript
from pathlib import Path
cases = [round(150 + 120 * math.sin(2 * math.pi * day / 120)) for day in range({days})]
params = {{"cases": cases, "population": 10_000_000, "ensemble": {ensemble}, "seed": 1}}
started = time.perf_counter()
rscript.run(Path("models/enkf.R"), params, progress=lambda *args: None)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    seconds, megabytes = map(float, out.split())
    return seconds, megabytes


def soak(jobs: int) -> tuple[float, float]:
    """One worker's resident memory after a tenth of `jobs` and after all of them."""
    reset()
    fill_service_queue(jobs)
    worker = start(["python", "worker.py"])
    wait(lambda: sql("SELECT count(*) FROM results")[0][0] >= jobs // 10, timeout=600)
    early = rss_mb(worker_pid(worker))
    wait(lambda: sql("SELECT count(*) FROM results")[0][0] >= jobs, timeout=1200)
    late = rss_mb(worker_pid(worker))
    stop(worker)
    return early, late


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def run_sweep(base: str, body: dict) -> tuple[str, float]:
    """POST a sweep and wait for its table; its id and the moment of its 202 (epoch seconds)."""
    accepted = time.time()
    sweep_id = requests.post(f"{base}/sweeps", json=body, timeout=30).json()["sweep_id"]
    wait(lambda: requests.get(f"{base}/sweeps/{sweep_id}", timeout=10).status_code == 200, timeout=600)
    return sweep_id, accepted


def sweep_efficiency(runs: int) -> tuple[float, float]:
    """Seconds from a sweep's 202 to its last run's end, on 2 idle workers; and the ideal: the sum of the runs' own
    durations (from their rows, measured in this run) over the 2 workers."""
    reset()
    workers = [start(["python", "worker.py"]) for _ in range(2)]
    redis = Redis.from_url(REDIS)
    wait(lambda: redis.scard("rq:workers") == 2)
    body = {"model": "simulation", "params": SWEEP_PARAMS, "grid": {"seed": list(range(runs))}}
    try:
        _, accepted = run_sweep(f"http://127.0.0.1:{ENV['BENCH_PORT']}", body)
    finally:
        for worker in workers:
            stop(worker)
    rows = sql("SELECT started_at, ended_at FROM results")
    own = sum((ended - started).total_seconds() for started, ended in rows)
    return max(ended for _, ended in rows).timestamp() - accepted, own / 2


def big_sweep(runs: int, samples: int = 50) -> tuple[list[float], list[float], list[float]]:
    """A sweep of `runs` multiplications on 2 workers: milliseconds of each of `samples` GETs of its table once
    ended; the web processes' and the workers' resident memory (MB, the largest of each) before and after it."""
    reset()
    base = f"http://127.0.0.1:{ENV['BENCH_PORT']}"
    workers = [start(["python", "worker.py"]) for _ in range(2)]
    redis = Redis.from_url(REDIS)
    wait(lambda: redis.scard("rq:workers") == 2)

    def memory() -> list[float]:
        web = max(rss_mb(pid) for pid in children(int(ENV["BENCH_WEB_PID"])))
        return [web, max(rss_mb(worker_pid(worker)) for worker in workers)]

    try:
        before = memory()
        sweep_id, _ = run_sweep(base, {"model": "multiply", "params": {"y": 2}, "grid": {"x": list(range(runs))}})
        latencies = []
        with requests.Session() as http:
            for _ in range(samples):
                started = time.perf_counter()
                assert http.get(f"{base}/sweeps/{sweep_id}", timeout=10).status_code == 200
                latencies.append(1000 * (time.perf_counter() - started))
        after = memory()
    finally:
        for worker in workers:
            stop(worker)
    return latencies, before, after


def scrape(tasks: int, samples: int = 50) -> list[float]:
    """Milliseconds of each of `samples` scrapes of /metrics with `tasks` tasks in the tables, all ended."""
    reset()
    sql("INSERT INTO tasks (task_id, type, priority, params) SELECT gen_random_uuid(), 'multiply', 'default', '{}' "
        "FROM generate_series(1, %s)", (tasks,))  # fmt: skip
    sql("INSERT INTO results (task_id, type, status, result, started_at, ended_at) SELECT task_id, type, 'finished', "
        "'1', enqueued_at, enqueued_at + random() * interval '10 seconds' FROM tasks")  # fmt: skip
    sql("ANALYZE tasks; ANALYZE results")
    url = f"http://127.0.0.1:{ENV['BENCH_PORT']}/metrics"
    times = []
    with requests.Session() as http:
        for _ in range(samples):
            started = time.perf_counter()
            assert http.get(url, timeout=10).status_code == 200
            times.append(1000 * (time.perf_counter() - started))
    return sorted(times)


def streams(base: str, loads: int) -> dict[str, list[float]]:
    """POST and pending-poll throughput (wrk) with STREAMS event streams open on STREAMED_TASKS running tasks that
    report progress, alternating with the same loads without the streams (the tasks run all along); and each progress
    change's delay from the moment it was reported to its arrival at a stream (ms)."""
    reset()
    workers = [start(["python", "worker.py"]) for _ in range(STREAMED_TASKS)]
    redis = Redis.from_url(REDIS)
    wait(lambda: redis.scard("rq:workers") == STREAMED_TASKS)
    tickers = [requests.post(f"{base}/models/ticker", json={"seconds": 3600}, timeout=10).json()["task_id"]
               for _ in range(STREAMED_TASKS)]  # fmt: skip
    wait(lambda: all(requests.get(f"{base}/tasks/{task_id}", timeout=10).json()["status"] == "started"
                     for task_id in tickers))  # fmt: skip
    pending = requests.post(f"{base}/multiply", json={"x": 2, "y": 3}, timeout=10).json()["task_id"]  # stays queued
    figures: dict[str, list[float]] = {"post": [], "post_bare": [], "poll": [], "poll_bare": [], "delay_ms": []}

    def listen(task_id: str, closing: threading.Event, opened: list) -> None:
        with requests.get(f"{base}/tasks/{task_id}/events", stream=True, timeout=30) as response:
            opened.append(response.status_code)
            changes = (line for line in response.iter_lines(decode_unicode=True) if line.startswith("data: "))
            next(changes)  # the task as it is when the stream opens: not a change
            for line in changes:
                if closing.is_set():
                    return
                reported = json.loads(line.removeprefix("data: "))["progress"]["message"]
                figures["delay_ms"].append(1000 * (time.time() - float(reported)))

    try:
        for _ in range(loads):
            closing, opened = threading.Event(), []
            listeners = [threading.Thread(target=listen, args=(tickers[n % STREAMED_TASKS], closing, opened),
                                          daemon=True) for n in range(STREAMS)]  # fmt: skip
            for listener in listeners:
                listener.start()
            wait(lambda opened=opened: len(opened) == STREAMS)
            assert opened == [200] * STREAMS
            figures["post"].append(wrk(f"{base}/multiply", "POST", '{"x": 2, "y": 3}'))
            figures["poll"].append(wrk(f"{base}/multiply/{pending}"))
            closing.set()
            for listener in listeners:
                listener.join(timeout=10)
            figures["post_bare"].append(wrk(f"{base}/multiply", "POST", '{"x": 2, "y": 3}'))
            figures["poll_bare"].append(wrk(f"{base}/multiply/{pending}"))
    finally:
        for task_id in tickers:
            requests.delete(f"{base}/tasks/{task_id}", timeout=10)
        for worker in workers:
            stop(worker)
    figures["delay_ms"].sort()
    return figures


def page(base: str, loads: int) -> list[dict]:
    """The page's first load and the draw of a 1,000-day, 100,000-run simulation's chart, `loads` times each, in
    headless chromium (bench/page.py)."""
    from bench.page import measure

    reset()
    worker = start(["python", "worker.py"])
    body = {"population": 1_000_000, "initial_infected": 20, "r0": 2.5, "incubation_days": 4, "infectious_days": 6,
            "days": 1000, "runs": 100_000, "seed": 7}  # fmt: skip
    try:
        location = requests.post(f"{base}/simulations", json=body, timeout=10).headers["Location"]
        wait(lambda: requests.get(f"{base}{location}", timeout=10).status_code == 200, timeout=600)
    finally:
        stop(worker)
    return [measure(base, location) for _ in range(loads)]


def spread(values: list[float]) -> str:
    digits = 2 if statistics.median(values) < 10 else 0  # CPU milliseconds need the decimals
    return f"{statistics.median(values):,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def main() -> None:
    os.environ |= {"REDIS_URL": REDIS, "DATABASE_URL": DATABASE}  # the Dramatiq and Huey modules read them here too
    prepare_database()
    web_port, base_port = 5191, 5192
    ENV["BENCH_PORT"] = str(web_port)
    web = serve("app:create_app()", web_port)
    baseline = serve("bench.baseline:create_app()", base_port)
    figures: dict[str, tuple[list[float], list[float]]] = {}
    try:
        body = '{"x": 2, "y": 3}'
        submit = ([], [])
        for _ in range(RUNS):
            reset()
            submit[0].append(wrk(f"http://127.0.0.1:{web_port}/multiply", "POST", body))
            reset()
            submit[1].append(wrk(f"http://127.0.0.1:{base_port}/submit", "POST", body))
        figures["submit, POST /multiply (req/s)"] = submit

        reset()
        done = requests.post(f"http://127.0.0.1:{web_port}/multiply", data=body, timeout=10).json()["task_id"]
        sql("INSERT INTO results (task_id, type, status, result) VALUES (%s, 'multiply', 'finished', '6')", (done,))
        pending = requests.post(f"http://127.0.0.1:{web_port}/multiply", data=body, timeout=10).json()["task_id"]
        for label, task_id in (("finished", done), ("pending", pending)):
            ours = [wrk(f"http://127.0.0.1:{web_port}/multiply/{task_id}") for _ in range(RUNS)]
            bare = [wrk(f"http://127.0.0.1:{base_port}/poll/{task_id}") for _ in range(RUNS)]
            figures[f"poll, GET of a {label} task (req/s)"] = (ours, bare)
    finally:
        stop(web)
        stop(baseline)

    drains = {who: [drain(who, DRAIN_JOBS) for _ in range(RUNS)] for who in DRAINS}
    ours = drains.pop("service")
    # In turn, so that each meets the same machine (PAIRED_RUNS), and in the other order every other time: the
    # machine's speed drifts over minutes, which would favour whichever came first.
    modes: dict[str, list[dict]] = {"": [], "written": [], "sent": []}
    ends: tuple[list[float], list[float]] = ([], [])
    for n in range(PAIRED_RUNS):
        for mode in list(modes)[:: 1 if n % 2 else -1]:
            modes[mode].append(drain("service", DRAIN_JOBS, webhook=mode))
        for webhook in (True, False)[:: 1 if n % 2 else -1]:
            ends[0 if webhook else 1].append(end_cost(webhook))
    bare, written, sent = modes.values()
    per_job = 1000 * statistics.median(d["machine_ms"] for d in bare)  # µs, the machine's, without a webhook
    figures[f"a task's end written as a worker writes it (2 connections), a webhook taking it: Postgres CPU per end "
            f"(µs), against no webhook, {PAIRED_RUNS} runs"] = ends  # fmt: skip
    for what, drained in (
        ("each end's webhook delivery written (the clock elsewhere)", written),
        ("each delivered by a clock on the same cores to a local receiver", sent),
    ):
        for figure, key in (("jobs/s", "rate"), ("the machine's CPU per job, every process's (ms)", "machine_ms")):
            name = f"drain of {DRAIN_JOBS} one-row jobs, {what}: {figure}, against no webhook, {PAIRED_RUNS} runs"
            figures[name] = ([d[key] for d in drained], [d[key] for d in bare])
    for counted, key in (("first row to last", "rate"), ("worker start to last row", "from_start")):
        for who, theirs in drains.items():
            figure = f"drain of {DRAIN_JOBS} one-row jobs, 2 processes, {counted} (jobs/s), against {DRAINS[who][0]}"
            figures[figure] = ([d[key] for d in ours], [d[key] for d in theirs])
    simple = drains["SimpleWorker"]
    for figure, key in (("worker CPU per job (ms)", "cpu_ms"), ("worker resident memory (MB)", "rss")):
        figures[f"{figure}, against RQ SimpleWorker"] = ([d[key] for d in ours], [d[key] for d in simple])

    web = serve("app:create_app()", web_port)
    ENV["BENCH_WEB_PID"] = str(web.pid)
    try:
        lat = latency()
        r_service, r_bare = r_latency(R_SAMPLES)
        sweeps = [sweep_efficiency(SWEEP_RUNS) for _ in range(RUNS)]
        sweep_gets, memory_before, memory_after = big_sweep(BIG_SWEEP_RUNS)
        scrapes = scrape(SCRAPE_TASKS)
        streamed = streams(f"http://127.0.0.1:{web_port}", PAIRED_RUNS)
        pages = page(f"http://127.0.0.1:{web_port}", RUNS)
    finally:
        stop(web)
    for name, key in (("submit, POST /multiply", "post"), ("poll, GET of a pending task", "poll")):
        figures[f"{name} (req/s) with {STREAMS} event streams open, against none, {PAIRED_RUNS} runs"] = (
            streamed[key],
            streamed[f"{key}_bare"],
        )
    sweep = f"sweep of {SWEEP_RUNS} short simulation runs on 2 workers: 202 to the last run's end (s), against the "
    figures[sweep + "ideal (the runs' own durations summed, over 2)"] = ([s[0] for s in sweeps], [s[1] for s in sweeps])
    figures["R model POST → 200, a trivial model (ms), against a bare Rscript start-up"] = (r_service, r_bare)
    enkf = {size: [enkf_cost(*size) for _ in range(RUNS)] for size in ((300, 365), (2000, 730))}
    early, late = soak(SOAK_JOBS)

    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; medians of {RUNS} runs (min–max).",
        "",
        "| figure | longjobs | baseline | ratio |",
        "|---|---|---|---|",
    ]
    for name, (ours, bare) in figures.items():
        ratio = statistics.median(ours) / statistics.median(bare)
        lines.append(f"| {name} | {spread(ours)} | {spread(bare)} | {ratio:.2f} |")
    lat.sort()
    lines.append(f"| latency POST → row, idle worker (ms) | p50 {statistics.median(lat):.1f}, "
                 f"p99 {lat[int(len(lat) * 0.99) - 1]:.1f} | | |")  # fmt: skip
    lines.append(
        f"| one worker's memory after {SOAK_JOBS // 10:,} and {SOAK_JOBS:,} jobs (MB) | {early:.1f} → {late:.1f} | | |"
    )
    sweep_gets.sort()
    lines.append(
        f"| GET of a finished {BIG_SWEEP_RUNS:,}-run sweep's table (ms) | p50 "
        f"{statistics.median(sweep_gets):.1f}, p99 {sweep_gets[int(len(sweep_gets) * 0.99) - 1]:.1f} | | |"
    )
    lines.append(
        f"| scrape of /metrics with {SCRAPE_TASKS:,} ended tasks in the tables (ms) | p50 "
        f"{statistics.median(scrapes):.1f}, p99 {scrapes[int(len(scrapes) * 0.99) - 1]:.1f} | | |"
    )
    delays = streamed["delay_ms"]
    lines.append(f"| a progress change reported → at one of {STREAMS} event streams (ms) | p50 "
                 f"{statistics.median(delays):.0f}, p95 {delays[int(len(delays) * 0.95) - 1]:.0f} | | |")  # fmt: skip
    delivered = [d["delivered_after"] for d in sent]
    lines.append(
        f"| drain of {DRAIN_JOBS} jobs with a webhook: first row → last delivery (s) | {spread(delivered)} | | |"
    )
    for what, cost in (
        ("what a webhook adds to a drained job: its end's added Postgres CPU",
         statistics.median(ends[0]) - statistics.median(ends[1])),
        ("what sending took meanwhile, on the same cores: the clock's and the receiver's CPU per drained job",
         1000 * statistics.median(d["sending_ms"] for d in sent)),
    ):  # fmt: skip
        lines.append(f"| {what}, over the machine's CPU per job without a webhook (µs) | {cost:.0f} / {per_job:.0f}: "
                     f"{100 * cost / per_job:.1f}% | | |")  # fmt: skip
    lines.append(
        f"| the page's first load: kB transferred; ms to interactive (DOMContentLoaded) | "
        f"{spread([p['transferred_kB'] for p in pages])}; {spread([p['interactive_ms'] for p in pages])} | | |"
    )
    lines.append(f"| the chart of a 1,000-day, 100,000-run simulation: ms to draw | "
                 f"{spread([p['chart_ms'] for p in pages])} | | |")  # fmt: skip
    web, worker = (f"{before:.1f} → {after:.1f}" for before, after in zip(memory_before, memory_after, strict=True))
    lines.append(f"| memory across a {BIG_SWEEP_RUNS:,}-run sweep (MB): web process; worker | {web}; {worker} | | |")
    gap = statistics.median(r_service) - statistics.median(r_bare)
    lines.append(f"| R model POST → 200 minus a bare Rscript start-up, medians (ms) | {gap:.0f} | | |")
    for (ensemble, days), runs in enkf.items():
        seconds, megabytes = [run[0] for run in runs], [run[1] for run in runs]
        lines.append(f"| enkf, {ensemble:,} members over {days} days: seconds; peak MB of the R process | "
                     f"{spread(seconds)}; {spread(megabytes)} | | |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    (ROOT / "bench" / "results.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
