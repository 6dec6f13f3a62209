"""What the equivalence tests play and compare (test_equivalence.py): the jobs, the scenarios, and what is observed of
Redis and of RQ's readers (keys, registries, `rq info`, rq-dashboard's pages) once the state is made comparable."""

import re
import time
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, Retry, SimpleWorker, get_current_job
from rq.cli.cli import main as rq_cli
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.registry import clean_registries
from rq.serializers import JSONSerializer
from rq.suspension import resume, suspend
from rq.worker import Worker

from core import QUEUE_NAMES
from longjobs.workers.fastworker import SUSPENSION_CHECK_SECONDS
from tests.conftest import (
    DASHBOARD_PASSWORD,
    TEST_REDIS_URL,
    basic,
)
from worker import build_worker

JSONSERIALIZER = "rq.serializers.JSONSerializer"


UPDATED = re.compile(r"Updated: .*|\d+\.\d+\.\d+\.\d+:\d+")  # when `rq info` ran; a worker's connection


GENERATED_ID = re.compile(r"[0-9a-f]{32}")


SEEN: list[object] = []  # what a job saw of the state while it ran (the workers run in this process)


DASHBOARD: list[FlaskClient] = []


DASHBOARD_AUTH = basic("admin", DASHBOARD_PASSWORD)


REGISTRIES = ["queued", "started", "finished", "failed", "deferred", "scheduled", "canceled"]  # fmt: skip


STABLE_FIELDS = {"status", "origin", "result_ttl", "failure_ttl", "timeout", "retries_left", "current_job", "state",
                 "successful_job_count", "failed_job_count", "type", "queues", "dependency_ids"}  # fmt: skip


# The jobs of the scenarios.
def multiply(x: int, y: int) -> int:
    return x * y


def fail() -> None:
    raise RuntimeError("as asked")


def fail_once() -> str:
    if get_current_job().connection.incr("test:fail-once") == 1:
        raise RuntimeError("transient")
    return "second time"


def sleep(seconds: float) -> None:
    time.sleep(seconds)


def look_while_running(seconds: float) -> None:
    time.sleep(seconds)
    SEEN.append(observe(get_current_job().connection, {}))


def suspend_workers(wait: bool = True) -> None:
    suspend(get_current_job().connection)
    if wait:  # our worker's own check then sees it (it looks at most once a second); else its next take does
        time.sleep(SUSPENSION_CHECK_SECONDS + 0.2)


# What is compared.
def normal(text: str | bytes, labels: dict[str, str]) -> str:
    text = text.decode(errors="replace") if isinstance(text, bytes) else text
    for task_id, label in labels.items():
        text = text.replace(task_id, label)
    return GENERATED_ID.sub("<id>", text)


def expiry(redis: Redis, key: bytes) -> str:
    ttl = redis.ttl(key)
    return "kept" if ttl == -1 else "long" if ttl > 480 else "expires"


def keys(redis: Redis, labels: dict[str, str]) -> dict[str, object]:
    """Every `rq:` key: its type, expiry class and content, with stamps and generated ids by name only."""
    state: dict[str, object] = {}
    for key in redis.scan_iter("rq:*"):
        kind = redis.type(key).decode()
        content: object
        if kind == "hash":
            content = {
                normal(field, labels): normal(value, labels) if field.decode() in STABLE_FIELDS else "*"
                for field, value in redis.hgetall(key).items()
            }
        elif kind == "zset":
            members = redis.zrange(key, 0, -1, withscores=True)
            content = sorted((normal(member, labels), score == float("inf")) for member, score in members)
        elif kind == "list":
            content = [normal(member, labels) for member in redis.lrange(key, 0, -1)]
        elif kind == "set":
            content = sorted(normal(member, labels) for member in redis.smembers(key))
        elif kind == "stream":
            content = [
                {normal(f, labels): normal(v, labels) if f == b"type" else "*" for f, v in fields.items()}
                for _, fields in redis.xrange(key)
            ]
        else:
            content = "*"
        state[normal(key, labels)] = (kind, expiry(redis, key), content)
    return dict(sorted(state.items()))


def readers(redis: Redis, labels: dict[str, str]) -> dict[str, object]:
    """What RQ's readers answer about the jobs, the queues and the workers, and what `rq info` prints."""
    jobs: dict[str, object] = {}
    for job_id, label in labels.items():
        try:
            job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        except NoSuchJobError:
            jobs[label] = None
            continue
        latest = job.latest_result()
        results = [(result.type.name, result.return_value) for result in job.results()]
        jobs[label] = (job.get_status(), latest and latest.type.name, results, job.retries_left, job.get_position())
    queues = {}
    for name in QUEUE_NAMES:
        queue = Queue(name, connection=redis, serializer=JSONSerializer)
        registries = {
            kind: [normal(job_id, labels) for job_id in registry.get_job_ids()]
            for kind, registry in [
                ("started", queue.started_job_registry),
                ("finished", queue.finished_job_registry),
                ("failed", queue.failed_job_registry),
                ("deferred", queue.deferred_job_registry),
                ("scheduled", queue.scheduled_job_registry),
                ("canceled", queue.canceled_job_registry),
            ]  # fmt: skip
        }
        queues[name] = ([normal(job_id, labels) for job_id in queue.get_job_ids()], registries)
    workers = sorted(
        (
            worker.state,
            normal(worker.get_current_job_id() or "", labels),
            worker.successful_job_count,
            worker.failed_job_count,
        )  # fmt: skip
        for worker in Worker.all(connection=redis, serializer=JSONSerializer)
    )
    info = CliRunner().invoke(rq_cli, ["info", "--url", TEST_REDIS_URL, "--serializer", JSONSERIALIZER])
    rq_info = (info.exit_code, normal(UPDATED.sub("", info.output), labels))
    return {"jobs": jobs, "queues": queues, "workers": workers, "rq info": rq_info}


def dashboard(labels: dict[str, str]) -> dict[str, int]:
    """What rq-dashboard answers for each of its pages and data endpoints: every queue's every registry, the
    workers, and each job's page. None may fail (a 404 for a job Redis no longer holds is an answer)."""
    [client] = DASHBOARD
    pages = ["/rq/0/view/queues", "/rq/0/data/queues.json", "/rq/0/view/workers", "/rq/0/data/workers.json",
             "/rq/0/view/jobs"]  # fmt: skip
    pages += [f"/rq/0/data/jobs/{queue}/{registry}/8/asc/1.json" for queue in QUEUE_NAMES for registry in REGISTRIES]
    pages += [f"/rq/0/view/job/{job_id}" for job_id in labels]
    # rq-dashboard 0.9.0's job data fails (500) for a job with dependencies under RQ 2, whichever worker ran it;
    # tasks have none.
    redis = client.application.extensions["redis"]
    pages += [
        f"/rq/0/data/job/{job_id}.json" for job_id in labels if not redis.exists(f"rq:job::{job_id}:dependencies")
    ]
    answers = {normal(page, labels): client.get(page, headers=DASHBOARD_AUTH).status_code for page in pages}
    assert all(status < 500 for status in answers.values()), answers
    return answers


def observe(redis: Redis, labels: dict[str, str]) -> dict[str, object]:
    return {"keys": keys(redis, labels), "readers": readers(redis, labels), "dashboard": dashboard(labels)}


def maintain_past_every_ttl(redis: Redis) -> None:
    """RQ's maintenance, as if the clock had moved past every TTL: keys that expire are gone, and every registry,
    queue and intermediate list is cleaned up as a worker's maintenance cleans them."""
    for key in list(redis.scan_iter("rq:*")):
        if redis.ttl(key) > 0:
            redis.delete(key)
    later = time.time() + 10**7
    janitor = SimpleWorker(
        [Queue(name, connection=redis, serializer=JSONSerializer) for name in QUEUE_NAMES],
        connection=redis,
        serializer=JSONSerializer,
    )
    for queue in janitor.queues:
        for registry in (queue.started_job_registry, queue.finished_job_registry, queue.failed_job_registry):
            registry.cleanup(timestamp=later)
        clean_registries(queue)
        queue.intermediate_queue.cleanup(janitor, queue)


Scenario = Callable[[dict[str, Queue]], dict[str, str]]  # enqueues jobs; returns their ids and labels


def play(app: Flask, scenario: Scenario, make_worker: Callable[[], Worker]) -> list[object]:
    """The scenario on an emptied Redis: the state while jobs ran, once the worker stopped, and after maintenance."""
    redis = app.extensions["redis"]
    redis.flushdb()
    SEEN.clear()
    labels = scenario(app.extensions["queues"])
    make_worker().work(burst=True, logging_level="WARNING")
    resume(redis)
    stopped = observe(redis, labels)
    maintain_past_every_ttl(redis)
    return [list(SEEN), stopped, observe(redis, labels)]


def rq_worker(app: Flask) -> Callable[[], Worker]:
    queues = app.extensions["queues"]
    return lambda: SimpleWorker(
        [queues[name] for name in QUEUE_NAMES], connection=app.extensions["redis"], serializer=JSONSerializer
    )


def our_worker(app: Flask) -> Callable[[], Worker]:
    return lambda: build_worker(app)


def enqueue(queue: Queue, label: str, func: Callable, *args: Any, **options: Any) -> tuple[str, str]:
    job = queue.enqueue(func, *args, job_id=label, **options)
    return job.id, label


SCENARIOS: dict[str, Scenario] = {
    "success": lambda queues: dict([enqueue(queues["default"], "ok", multiply, 6, 7)]),
    "several successes and priorities": lambda queues: dict(
        [enqueue(queues["low"], "low", multiply, 1, 2), enqueue(queues["high"], "high", multiply, 2, 3)]
        + [enqueue(queues["default"], f"quick-{n}", multiply, n, n) for n in range(5)]
    ),
    "failure": lambda queues: dict([enqueue(queues["default"], "fails", fail)]),
    "transient failure, retried": lambda queues: dict(
        [enqueue(queues["default"], "flaky", fail_once, retry=Retry(max=2))]
    ),
    "timeout": lambda queues: dict([enqueue(queues["default"], "slow", sleep, 3, job_timeout=1)]),
    "result not kept (ttl 0)": lambda queues: dict([enqueue(queues["default"], "gone", multiply, 1, 1, result_ttl=0)]),
    "result kept for good (ttl -1)": lambda queues: dict(
        [enqueue(queues["default"], "kept", multiply, 1, 1, result_ttl=-1)]
    ),
    "a dependent job": lambda queues: dict(
        [
            enqueue(queues["default"], "parent", multiply, 1, 1),
            enqueue(queues["default"], "child", multiply, 2, 2, depends_on="parent"),
        ]
    ),
    "suspended while jobs wait, longer than their TTL": lambda queues: dict(
        [enqueue(queues["default"], "suspends", suspend_workers)]
        + [enqueue(queues["default"], f"waits-{n}", multiply, n, n) for n in range(3)]
    ),
    "a drain, seen by each job as it runs": lambda queues: dict(
        [
            enqueue(queues["low"], "looks-low", look_while_running, 0),
            enqueue(queues["high"], "looks-high", look_while_running, 0),
        ]
        + [enqueue(queues["default"], f"looks-{n}", look_while_running, 0) for n in range(3)]
    ),
    "suspended as the next job is taken": lambda queues: dict(
        [enqueue(queues["default"], "suspends", suspend_workers, False)]
        + [enqueue(queues["default"], f"waits-{n}", multiply, n, n) for n in range(2)]
    ),
    "a long job behind a quick one (its TTL, the worker's record)": lambda queues: dict(
        [
            enqueue(queues["default"], "quick", multiply, 1, 1),
            enqueue(queues["default"], "long", look_while_running, 0.8, job_timeout=900),
        ]
    ),
}
