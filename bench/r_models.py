"""R models' figures: a trivial R model's POST to 200 against a bare Rscript start-up, and enkf's time and memory."""

import subprocess
import sys
import time

import requests

from bench.harness import ENV, ROOT, reset, start, stop


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
