"""`make bench`: the service's speed and memory against baselines measured in the same run.

Starts `web` and `worker` as the Procfile does, on a database (`longjobs_bench`) and Redis database
(13) of their own, loads them over loopback with wrk, and prints a markdown table (also written to
bench/results.md): medians over BENCH_RUNS runs (default 3) with min and max, and each figure's ratio to
its baseline: bare Flask endpoints under the same gunicorn settings doing the same database and Redis
work; a plain RQ SimpleWorker, Dramatiq and Huey running the same one-row job; and a hand-written
Redis-list loop.
"""

import os
import statistics
from datetime import UTC, datetime

import requests

from bench.drains import DRAINS, drain, end_cost, soak
from bench.harness import (
    BIG_SWEEP_RUNS,
    DATABASE,
    DRAIN_JOBS,
    ENV,
    PAIRED_RUNS,
    R_SAMPLES,
    REDIS,
    ROOT,
    RUNS,
    SCRAPE_TASKS,
    SOAK_JOBS,
    STREAMS,
    SWEEP_RUNS,
    prepare_database,
    reset,
    serve,
    spread,
    sql,
    stop,
    wrk,
)
from bench.r_models import enkf_cost, r_latency
from bench.sweeps import big_sweep, sweep_efficiency
from bench.web import latency, page, scrape, streams

Figures = dict[str, tuple[list[float], list[float]]]  # each figure: our runs, and its baseline's


def web_against_baseline(web_port: int, base_port: int, figures: Figures) -> None:
    """POST and poll rates against bare Flask endpoints doing the same database and Redis work."""
    web = serve("app:create_app()", web_port)
    baseline = serve("bench.baseline:create_app()", base_port)
    try:
        body = '{"x": 2, "y": 3}'
        submit: tuple[list[float], list[float]] = ([], [])
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


def drains_against_others(figures: Figures) -> dict:
    """Drains by every queue, and ours with a webhook written or sent, each in turn with its baseline; returns what
    the table's own rows need (the drains with a webhook sent, the ends' costs, the machine's CPU per job)."""
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
    per_job = 1000 * statistics.median(d["machine_ms"] for d in bare)  # µs, the machine's, without a webhook
    return {"sent": sent, "ends": ends, "per_job": per_job}


def service_figures(web_port: int, figures: Figures) -> dict:
    """What one web process serves: latency, R models, sweeps, a scrape, event streams and the page; then enkf and a
    worker's soak. Returns the measures the table's own rows need."""
    web = serve("app:create_app()", web_port)
    ENV["BENCH_WEB_PID"] = str(web.pid)
    try:
        measured = {"latency": latency()}
        r_service, r_bare = r_latency(R_SAMPLES)
        sweeps = [sweep_efficiency(SWEEP_RUNS) for _ in range(RUNS)]
        measured["sweep_gets"], measured["memory_before"], measured["memory_after"] = big_sweep(BIG_SWEEP_RUNS)
        measured["scrapes"] = scrape(SCRAPE_TASKS)
        measured["streamed"] = streamed = streams(f"http://127.0.0.1:{web_port}", PAIRED_RUNS)
        measured["pages"] = page(f"http://127.0.0.1:{web_port}", RUNS)
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
    measured["r_gap"] = statistics.median(r_service) - statistics.median(r_bare)
    measured["enkf"] = {size: [enkf_cost(*size) for _ in range(RUNS)] for size in ((300, 365), (2000, 730))}
    measured["early"], measured["late"] = soak(SOAK_JOBS)
    return measured


def percentile(values: list[float], share: float) -> float:
    return sorted(values)[int(len(values) * share) - 1]


def table(figures: Figures, drained: dict, measured: dict) -> list[str]:
    """The figures as a markdown table: the ratios first, then the rows that have no baseline."""
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores; medians of {RUNS} runs (min–max).",
        "",
        "| figure | longjobs | baseline | ratio |",
        "|---|---|---|---|",
    ]
    for name, (ours, bare) in figures.items():
        ratio = statistics.median(ours) / statistics.median(bare)
        lines.append(f"| {name} | {spread(ours)} | {spread(bare)} | {ratio:.2f} |")
    lat, gets, scrapes = measured["latency"], measured["sweep_gets"], measured["scrapes"]
    delays = measured["streamed"]["delay_ms"]
    lines += [
        f"| latency POST → row, idle worker (ms) | p50 {statistics.median(lat):.1f}, p99 "
        f"{percentile(lat, 0.99):.1f} | | |",
        f"| one worker's memory after {SOAK_JOBS // 10:,} and {SOAK_JOBS:,} jobs (MB) | {measured['early']:.1f} → "
        f"{measured['late']:.1f} | | |",
        f"| GET of a finished {BIG_SWEEP_RUNS:,}-run sweep's table (ms) | p50 {statistics.median(gets):.1f}, p99 "
        f"{percentile(gets, 0.99):.1f} | | |",
        f"| scrape of /metrics with {SCRAPE_TASKS:,} ended tasks in the tables (ms) | p50 "
        f"{statistics.median(scrapes):.1f}, p99 {percentile(scrapes, 0.99):.1f} | | |",
        f"| a progress change reported → at one of {STREAMS} event streams (ms) | p50 "
        f"{statistics.median(delays):.0f}, p95 {percentile(delays, 0.95):.0f} | | |",
        f"| drain of {DRAIN_JOBS} jobs with a webhook: first row → last delivery (s) | "
        f"{spread([d['delivered_after'] for d in drained['sent']])} | | |",
    ]
    ends, per_job = drained["ends"], drained["per_job"]
    for what, cost in (
        ("what a webhook adds to a drained job: its end's added Postgres CPU",
         statistics.median(ends[0]) - statistics.median(ends[1])),
        ("what sending took meanwhile, on the same cores: the clock's and the receiver's CPU per drained job",
         1000 * statistics.median(d["sending_ms"] for d in drained["sent"])),
    ):  # fmt: skip
        lines.append(f"| {what}, over the machine's CPU per job without a webhook (µs) | {cost:.0f} / {per_job:.0f}: "
                     f"{100 * cost / per_job:.1f}% | | |")  # fmt: skip
    return lines + model_and_page_rows(measured)


def model_and_page_rows(measured: dict) -> list[str]:
    pages = measured["pages"]
    memory = zip(measured["memory_before"], measured["memory_after"], strict=True)
    web, worker = (f"{before:.1f} → {after:.1f}" for before, after in memory)
    lines = [
        f"| the page's first load: kB transferred; ms to interactive (DOMContentLoaded) | "
        f"{spread([p['transferred_kB'] for p in pages])}; {spread([p['interactive_ms'] for p in pages])} | | |",
        f"| the chart of a 1,000-day, 100,000-run simulation: ms to draw | "
        f"{spread([p['chart_ms'] for p in pages])} | | |",
        f"| memory across a {BIG_SWEEP_RUNS:,}-run sweep (MB): web process; worker | {web}; {worker} | | |",
        f"| R model POST → 200 minus a bare Rscript start-up, medians (ms) | {measured['r_gap']:.0f} | | |",
    ]
    for (ensemble, days), runs in measured["enkf"].items():
        seconds, megabytes = [run[0] for run in runs], [run[1] for run in runs]
        lines.append(f"| enkf, {ensemble:,} members over {days} days: seconds; peak MB of the R process | "
                     f"{spread(seconds)}; {spread(megabytes)} | | |")  # fmt: skip
    return lines


def main() -> None:
    os.environ |= {"REDIS_URL": REDIS, "DATABASE_URL": DATABASE}  # the Dramatiq and Huey modules read them here too
    prepare_database()
    web_port, base_port = 5191, 5192
    ENV["BENCH_PORT"] = str(web_port)
    figures: Figures = {}
    web_against_baseline(web_port, base_port, figures)
    drained = drains_against_others(figures)
    measured = service_figures(web_port, figures)
    text = "\n".join(table(figures, drained, measured))
    print(text)
    (ROOT / "bench" / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
