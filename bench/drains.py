"""Drains: how fast workers empty a queue of one-row jobs (ours against a plain RQ SimpleWorker, Dramatiq, Huey and a
hand-written loop), what a webhook adds to a task's end, and a worker's memory over a long soak."""

import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import psycopg2
from redis import Redis

from bench.harness import (
    BASELINE_WORKER,
    DATABASE,
    ENV,
    RECEIVER_PORT,
    REDIS,
    MachineCPU,
    cpu_seconds,
    reset,
    rss_mb,
    sql,
    start,
    started_up,
    stop,
    wait,
    worker_pid,
)


def fill_service_queue(jobs: int) -> None:
    """Accept `jobs` multiplications the way POST does (a tasks row, then the job), from this process."""
    from app import create_app
    from longjobs.lifecycle import submit

    app = create_app(ENV)
    logging.getLogger("longjobs.lifecycle").setLevel(logging.WARNING)  # not a line per task on the bench's output
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
