"""Sweeps' figures: a sweep of short runs against the ideal, and the GET of a large sweep's table with the memory it
takes."""

import time

import requests
from redis import Redis

from bench.harness import ENV, REDIS, SWEEP_PARAMS, children, reset, rss_mb, sql, start, stop, wait, worker_pid


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
