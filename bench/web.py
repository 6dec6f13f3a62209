"""The web's figures: latency from POST to row, a /metrics scrape over many ended tasks, requests with event streams
open, and the page's first load and chart."""

import json
import threading
import time

import psycopg2
import requests
from redis import Redis

from bench.harness import DATABASE, ENV, REDIS, STREAMED_TASKS, STREAMS, reset, sql, start, stop, wait, wrk


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
