"""Per-job isolation without a fork per job: the Procfile's worker supervises its worker process, so a job
that kills that process, or leaks memory, does not take the worker down for good."""

import os
import signal
import time
from pathlib import Path

import pytest
from flask import Flask
from rq import Worker
from rq.job import Job, JobStatus
from rq.results import Result as RQResult
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend

from tests.conftest import row, service_env, start_process, stop_process, submit_failing, submit_task, wait_for
from worker import SCHEDULER_CHECK_SECONDS

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(120)]


def worker_names(app: Flask) -> list[str]:
    return [worker.name for worker in Worker.all(connection=app.extensions["redis"]) if worker.get_state() == "idle"]


def finished(app: Flask, task_id: str) -> float | None:
    found = row(app, task_id)
    return found.result if found is not None and found.status == "finished" else None


@pytest.mark.parametrize("worker_process", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_job_that_kills_its_worker_process_runs_again_on_a_fresh_one(
    app: Flask, worker_process, tmp_path: Path
) -> None:
    process, log = worker_process, tmp_path / "worker.log"
    [first] = worker_names(app)
    task_id = submit_task(app, "crash", x=6, y=7, crashes=1)
    submitted = time.monotonic()

    assert wait_for(lambda: finished(app, task_id), 60, "the task to finish on a fresh worker process") == 42
    print(f"\na job killed its worker process: it completed {time.monotonic() - submitted:.1f} s after it was queued")
    assert process.poll() is None
    text = log.read_text()
    assert f"was killed by signal 9 running task {task_id}; starting another in 1 s" in text
    assert f"task {task_id}: its worker {first} is gone; queued again" in text
    assert first not in worker_names(app)
    assert "Redis connection timeout" not in text  # the fresh process's first wait for jobs, after counting the crash


@pytest.mark.parametrize("worker_process", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_a_job_that_kills_every_worker_process_fails_after_three(app: Flask, worker_process, tmp_path: Path) -> None:
    process, log = worker_process, tmp_path / "worker.log"
    deadly = submit_task(app, "crash", x=6, y=7, crashes=99)
    submitted = time.monotonic()

    failed = wait_for(lambda: (found := row(app, deadly)) and found.status == "failed" and found, 100, "it to fail")
    print(f"\njob that kills every worker process: failed {time.monotonic() - submitted:.1f} s after it was queued")
    assert failed.error == "its worker process died 3 times while running it (a crash, or killed for its memory)"
    assert int(app.extensions["redis"].get(f"test:runs:{deadly}")) == 3
    assert app.extensions["queues"]["default"].failed_job_registry.get_job_ids() == [deadly]
    assert process.poll() is None
    after = submit_task(app, "crash", x=4, y=5, crashes=0)
    assert wait_for(lambda: finished(app, after), 60, "the next task to finish") == 20
    assert log.read_text().count(f"running task {deadly}; starting another") == 3


@pytest.mark.parametrize("worker_process", [{"WORKER_MAX_MEMORY_MB": "300"}], indirect=True)
def test_a_worker_process_past_its_memory_limit_retires_for_a_fresh_one(
    app: Flask, worker_process, tmp_path: Path
) -> None:
    process, log = worker_process, tmp_path / "worker.log"
    [first] = worker_names(app)
    leaky = submit_task(app, "leak", x=2, y=3, megabytes=250)
    assert wait_for(lambda: finished(app, leaky), 60, "the leaking task to finish") == 6
    ended = time.monotonic()

    wait_for(lambda: worker_names(app) and first not in worker_names(app), 30, "a fresh worker process")
    print(f"\nleaking job: a fresh worker process waited for jobs {time.monotonic() - ended:.1f} s after it ended")
    after = submit_task(app, "leak", x=4, y=5, megabytes=1)
    assert wait_for(lambda: finished(app, after), 60, "the next task to finish") == 20
    assert process.poll() is None
    text = log.read_text()
    assert f"worker {first} retires: it reached" in text
    assert "retired; a fresh one takes over" in text


def test_sigterm_to_the_supervisor_alone_stops_its_worker_and_exits_0(app: Flask, worker_process) -> None:
    process = worker_process
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    os.kill(process.pid, signal.SIGTERM)  # not the group: as `kill <pid>` does
    assert process.wait(timeout=15) == 0
    assert not any(Path(f"/proc/{child}").exists() for child in children)
    assert worker_names(app) == []


def test_a_bad_setting_stops_the_worker_at_once(app: Flask, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    process = start_process("worker", log, **service_env(WORKER_MAX_MEMORY_MB="lots"))
    try:
        assert process.wait(timeout=30) != 0
    finally:
        stop_process(process)
    assert "WORKER_MAX_MEMORY_MB must be a whole number, at least 64, not 'lots'" in log.read_text()


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_process_killed_leaves_no_process_of_its_own_behind(app: Flask, worker_process) -> None:
    [worker] = children(worker_process.pid)
    left = wait_for(lambda: children(worker), 10, "RQ's scheduler process")  # the worker runs it beside itself
    os.kill(worker, signal.SIGKILL)  # as the OOM killer would
    wait_for(lambda: not any(map(exists, left)), 10, "what the worker process ran to end with it")
    wait_for(lambda: worker_names(app), 30, "a fresh worker process")
    assert worker_process.poll() is None


@pytest.mark.parametrize("worker_process", [{"WORKER_LIVENESS_SECONDS": "4"}], indirect=True)
def test_jobs_finished_around_one_that_kills_its_worker_read_as_finished(app: Flask, worker_process) -> None:
    redis, queue = app.extensions["redis"], app.extensions["queues"]["default"]
    suspend(redis)  # the jobs wait until all are queued, and run in one drain
    quick = [submit_task(app, "multiply", x=n, y=2) for n in range(40)]
    deadly = submit_task(app, "crash", x=1, y=1, crashes=1)  # kills its worker process amid the drain
    resume(redis)
    wait_for(lambda: all(row(app, task_id) for task_id in [*quick, deadly]), 60, "every task to end")

    def recorded() -> bool:
        jobs = Job.fetch_many(quick, connection=redis, serializer=JSONSerializer)
        return not queue.started_job_registry.get_job_ids() and all(
            job is None or job.get_status() == JobStatus.FINISHED for job in jobs
        )

    wait_for(recorded, 30, "RQ's record of every finished job to say so")
    job = Job.fetch(quick[-1], connection=redis, serializer=JSONSerializer)
    assert job.latest_result().type == RQResult.Type.SUCCESSFUL and 0 < redis.ttl(job.key) <= 60


def test_rqs_scheduler_comes_back_after_it_dies(app: Flask, worker_process) -> None:
    """RQ's scheduler process ends on any Redis error (out of memory, say); RQ starts it again in its maintenance,
    which this worker runs every SCHEDULER_CHECK_SECONDS, idle or not, rather than every 10 minutes."""
    [worker] = children(worker_process.pid)
    [scheduler] = wait_for(lambda: children(worker), 10, "RQ's scheduler process")
    os.kill(scheduler, signal.SIGKILL)
    fresh = lambda: [pid for pid in children(worker) if pid != scheduler]  # noqa: E731
    wait_for(fresh, SCHEDULER_CHECK_SECONDS * 2, "a fresh scheduler process")
    retried = submit_failing(app, failures=1, fault="connection")  # its retry waits in the scheduler's registry
    wait_for(lambda: (found := row(app, retried)) and found.status == "finished", 30, "the retry to run")
