"""The worker leaves the state RQ's own SimpleWorker leaves (issue: a worker RQ's own tools can trust).

Each scenario runs once through a plain RQ SimpleWorker and once through ours (the fast path, or RQ's own code paths
with WORKER_FAST_PATH=off), on an emptied Redis database, and the two are compared: every `rq:` key's type, fields
(stable values; stamps and generated ids only by name), members and expiry class, and what RQ's readers answer (the
jobs' status and results, registries, queues, workers, `rq info`), while a job runs, when the worker has stopped,
and after RQ's maintenance has run with the clock moved past every TTL. Scenarios RQ's SimpleWorker cannot play
(stopping a job, a shutdown hand-back) compare the fast path with RQ's own code paths.
"""

import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis.exceptions import ConnectionError as RedisConnectionError
from rq import Queue
from rq.command import send_stop_job_command
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import Worker

from longjobs.workers import scripts
from longjobs.workers.appworker import AppWorker
from longjobs.workers.fastworker import FastWorker
from longjobs.workers.recovery import ALIVE_PREFIX, Watchman
from longjobs.workers.scripts import Scripts
from tasks import ProgressReporter
from tests.conftest import (
    clean,
    service_env,
    start_process,
    stop_process,
    submit,
    wait_for,
)
from tests.equivalence import (
    DASHBOARD,
    SCENARIOS,
    Scenario,
    maintain_past_every_ttl,
    multiply,
    observe,
    our_worker,
    play,
    rq_worker,
)
from worker import build_worker


@pytest.fixture(autouse=True)
def dashboard_client(app: Flask) -> Iterator[None]:
    """The app's dashboard, for `observe` (the jobs observe too, from the worker, in this process)."""
    DASHBOARD[:] = [app.test_client()]
    yield
    DASHBOARD.clear()


@pytest.mark.parametrize("name", SCENARIOS)
def test_our_worker_leaves_the_state_rqs_simple_worker_leaves(app: Flask, name: str) -> None:
    theirs = play(app, SCENARIOS[name], rq_worker(app))
    ours = play(app, SCENARIOS[name], our_worker(app))
    assert ours == theirs


def test_progress_is_written_as_rqs_save_meta_writes_it_but_never_to_a_job_redis_lost(app: Flask) -> None:
    redis = app.extensions["redis"]
    queue = Queue("default", connection=redis, serializer=JSONSerializer)
    ours, theirs = (queue.enqueue(multiply, 1, 2, meta={"type": "multiply"}) for _ in range(2))
    ProgressReporter(ours).report(40, "day 4")
    theirs.meta["progress"] = {"percent": 40, "message": "day 4"}
    theirs.save_meta()  # RQ's own
    assert redis.hget(ours.key, "meta") == redis.hget(theirs.key, "meta")
    assert Job.fetch(ours.id, connection=redis, serializer=JSONSerializer).get_meta() == theirs.get_meta()
    redis.delete(ours.key, theirs.key)  # as a FLUSHALL loses them
    ProgressReporter(ours).report(50)
    theirs.save_meta()
    assert (redis.exists(ours.key), redis.hkeys(theirs.key)) == (0, [b"meta"])  # RQ's makes a hash of meta alone


def test_the_comparison_sees_a_difference(app: Flask) -> None:
    """The comparison is not blind: a job whose result is kept differs from one whose result is not."""
    kept = play(app, SCENARIOS["result kept for good (ttl -1)"], rq_worker(app))
    not_kept = play(app, SCENARIOS["result not kept (ttl 0)"], rq_worker(app))
    assert kept != not_kept


# Scenarios RQ's SimpleWorker cannot play: the fast path against RQ's own code paths (WORKER_FAST_PATH=off).
def fast_and_rqs_own(app: Flask, client: FlaskClient, scenario: Callable[[], dict[str, str]]) -> None:
    outcomes = []
    for fast in (False, True):
        app.config["WORKER_FAST_PATH"] = fast
        app.extensions["redis"].flushdb()
        labels = scenario()
        worker = our_worker(app)()
        assert isinstance(worker, FastWorker) == fast and isinstance(worker, AppWorker)
        worker.work(burst=True, logging_level="WARNING")
        stopped = observe(app.extensions["redis"], labels)
        statuses = {label: client.get(f"/tasks/{task_id}").json["status"] for task_id, label in labels.items()}
        maintain_past_every_ttl(app.extensions["redis"])
        outcomes.append([stopped, statuses, observe(app.extensions["redis"], labels)])
    assert outcomes[1] == outcomes[0]


def test_a_job_stopped_while_it_runs_leaves_the_state_rqs_own_code_leaves(app: Flask, client: FlaskClient) -> None:
    def scenario() -> dict[str, str]:
        task_id = submit(client, x=1, y=1, delay=5)

        def stop_once_it_runs() -> None:
            wait_for(lambda: client.get(f"/tasks/{task_id}").json["status"] == "started", 10, "the task to start")
            send_stop_job_command(app.extensions["redis"], task_id, serializer=JSONSerializer)

        threading.Thread(target=stop_once_it_runs, daemon=True).start()
        return {task_id: "stopped"}

    fast_and_rqs_own(app, client, scenario)


def test_a_job_stopped_before_it_began_leaves_the_state_rqs_own_code_leaves(app: Flask, client: FlaskClient) -> None:
    """The job waits in its queue, and is canceled there."""

    def scenario() -> dict[str, str]:
        running, waiting = submit(client, x=1, y=1, delay=1), submit(client, x=2, y=2)

        def stop_the_waiting_one() -> None:
            wait_for(lambda: client.get(f"/tasks/{running}").json["status"] == "started", 10, "the first to start")
            assert client.delete(f"/tasks/{waiting}").status_code in (200, 202)

        threading.Thread(target=stop_the_waiting_one, daemon=True).start()
        return {running: "running", waiting: "stopped before it began"}

    fast_and_rqs_own(app, client, scenario)


def test_a_job_handed_back_leaves_the_state_rqs_own_code_leaves(app: Flask, client: FlaskClient) -> None:
    fast_and_rqs_own(app, client, lambda: {submit(client, "/models/hand_back"): "handed back"})


def test_a_job_handed_back_at_a_sigterm_leaves_the_state_rqs_own_code_leaves(app: Flask, client: FlaskClient) -> None:
    app.config["WORKER_SHUTDOWN_GRACE"] = 0
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        fast_and_rqs_own(app, client, lambda: {submit(client, "/models/shutdown"): "handed back"})
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def kill_mid_drain(app: Flask, tmp_path: Path, fast: str) -> dict[str, object]:
    """Quick tasks, a slow one and more behind it; the worker killed while the slow one runs, then a fresh one."""
    client, redis = app.test_client(), app.extensions["redis"]
    clean(app)
    settings = service_env(WORKER_FAST_PATH=fast, WORKER_LIVENESS_SECONDS="4")
    labels = {submit(client, x=n, y=1): f"quick-{n}" for n in range(6)}
    slow = submit(client, x=1, y=1, delay=3)
    labels |= {slow: "slow"} | {submit(client, x=n, y=2): f"behind-{n}" for n in range(3)}
    worker = start_process("worker", tmp_path / f"worker-{fast}.log", **settings)
    wait_for(lambda: client.get(f"/tasks/{slow}").json["status"] == "started", 30, "the slow task to start")
    time.sleep(0.2)
    stop_process(worker)  # SIGKILL, the whole process group
    fresh = start_process("worker", tmp_path / f"fresh-{fast}.log", **settings)
    try:
        statuses = lambda: {client.get(f"/tasks/{task_id}").json["status"] for task_id in labels}  # noqa: E731
        wait_for(lambda: statuses() == {"finished"}, 60, "every task to finish")
        jobs = lambda: Job.fetch_many(list(labels), connection=redis, serializer=JSONSerializer)  # noqa: E731
        wait_for(lambda: all(job.get_status() == "finished" for job in jobs()), 30, "RQ's records to say finished")
    finally:
        stop_process(fresh)
    maintain_past_every_ttl(redis)
    state = observe(redis, labels)
    state["readers"]["workers"] = []  # type: ignore[index]  # the killed worker's record, expired or not
    return state


def test_a_worker_killed_mid_drain_leaves_the_state_rqs_own_code_leaves(app: Flask, tmp_path: Path) -> None:
    """SIGKILL of a worker (supervisor and process) while a slow job runs behind quick ones, then a fresh worker:
    every task ends once, and the state after RQ's maintenance is the same both ways."""
    assert kill_mid_drain(app, tmp_path, "on") == kill_mid_drain(app, tmp_path, "off")


def test_a_reply_lost_mid_round_trip_leaves_the_state_rqs_simple_worker_leaves(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reply to the round trip that records a success and starts the next job is lost after Redis ran it: the
    worker quits, nothing is recorded twice, and the job it started goes back to its queue once its liveness mark has
    expired (a watchman's sweep) and runs once. Two workers run one after the other, for RQ's too; the dead workers'
    own records (how many jobs each ran) are left out."""
    lost: list[bool] = []
    execute = Scripts.execute

    def reply_lost(pipeline: Any, calls: dict) -> list:
        replies = execute(pipeline, calls)
        sent = {script.script for script, _, _ in calls.values()}
        if not lost and {scripts.FINISH, scripts.TAKE} <= sent:
            lost.append(True)
            raise RedisConnectionError("the connection dropped before the reply came")
        return replies

    class OneAfterTheOther:
        def __init__(self, make: Callable[[], Worker]) -> None:
            self.make = make

        def work(self, **options: Any) -> None:
            first = self.make()
            first.work(**options)
            app.extensions["redis"].delete(f"{ALIVE_PREFIX}{first.name}")  # as once the liveness period is over
            with app.app_context():
                for _ in range(2):
                    Watchman(app, first).sweep()
            self.make().work(**options)

    def enqueue_task(queue: Queue, label: str, *args: Any) -> tuple[str, str]:
        """A job with a task's id (the watchman's sweep reads them), ordered as the labels are: a registry lists the
        jobs of one score by id."""
        return queue.enqueue(multiply, *args, job_id=str(uuid.UUID(int=labels.index(label)))).id, label

    labels = sorted(["low", "high", *(f"quick-{n}" for n in range(5))])
    scenario: Scenario = lambda queues: dict(  # noqa: E731
        [enqueue_task(queues["low"], "low", 1, 2), enqueue_task(queues["high"], "high", 2, 3)]
        + [enqueue_task(queues["default"], f"quick-{n}", n, n) for n in range(5)]
    )
    theirs = play(app, scenario, lambda: OneAfterTheOther(rq_worker(app)))
    monkeypatch.setattr(Scripts, "execute", staticmethod(reply_lost))
    ours = play(app, scenario, lambda: OneAfterTheOther(our_worker(app)))
    for outcome in (ours, theirs):
        outcome[1]["keys"] = {key: value for key, value in outcome[1]["keys"].items() if key != "rq:worker:<id>"}
    assert (ours, bool(lost) or not isinstance(build_worker(app), FastWorker)) == (theirs, True)
