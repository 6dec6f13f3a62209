"""GET /metrics: the service's figures in Prometheus's text format, read when Prometheus scrapes.

Imports core. Every figure is read at scrape time from where it is kept for good: the task totals and durations from
Postgres (`tasks`, `results`: three GROUP BY queries), the queues, workers and failed jobs from Redis (one pipeline).
So the totals are right across every web and worker process, and after a restart of any of them, with no store
shared between processes to keep; `flask tasks prune` lowers them, which Prometheus takes for a counter reset.
"""

from collections.abc import Iterator

from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Worker
from sqlalchemy import Float, cast, func, select

from core import QUEUE_NAMES, Result, Task, db

# Seconds; a task runs from well under a second (multiply) to tens of minutes (a large simulation).
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
SECONDS = cast(func.extract("epoch", Result.ended_at - Result.started_at), Float)
DURATIONS = (
    select(
        Result.type,
        *(func.count().filter(SECONDS <= bound) for bound in DURATION_BUCKETS),
        func.count(),
        func.coalesce(func.sum(SECONDS), 0.0),
    )
    .where(Result.started_at.is_not(None))
    .group_by(Result.type)
)


class ServiceCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily("longjobs_tasks_accepted", "Tasks accepted, by model", labels=["type"])
        for name, count in db.session.execute(select(Task.type, func.count()).group_by(Task.type)):
            accepted.add_metric([name], count)
        ended = CounterMetricFamily("longjobs_tasks_ended", "Tasks ended, by model and outcome",
                                    labels=["type", "status"])  # fmt: skip
        for name, status, count in db.session.execute(
            select(Result.type, Result.status, func.count()).group_by(Result.type, Result.status)
        ):
            ended.add_metric([name, status], count)
        durations = HistogramMetricFamily("longjobs_task_duration_seconds", "How long ended tasks ran, by model",
                                          labels=["type"])  # fmt: skip
        for name, *counts, total, seconds in db.session.execute(DURATIONS):
            buckets = [(str(bound), count) for bound, count in zip(DURATION_BUCKETS, counts, strict=True)]
            durations.add_metric([name], buckets + [("+Inf", total)], seconds)
        db.session.rollback()  # end the read's transaction: the connection goes back to the pool idle
        yield from (accepted, ended, durations)

        redis, queues = current_app.extensions["redis"], current_app.extensions["queues"]
        with redis.pipeline(transaction=False) as pipeline:
            for name in QUEUE_NAMES:
                pipeline.llen(queues[name].key)
                pipeline.zcard(queues[name].failed_job_registry.key)
            replies = pipeline.execute()
        depth = GaugeMetricFamily("longjobs_queue_depth", "Jobs waiting in each queue", labels=["queue"])
        for name, count in zip(QUEUE_NAMES, replies[0::2], strict=True):
            depth.add_metric([name], count)
        yield depth
        yield GaugeMetricFamily("longjobs_workers", "Workers alive", value=Worker.count(connection=redis))
        yield GaugeMetricFamily("longjobs_failed_jobs", "Jobs in the failed registries (the dead-letter queue)",
                                value=sum(replies[1::2]))  # fmt: skip


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ServiceCollector())


def exposition() -> bytes:
    """The figures in Prometheus's text format."""
    return generate_latest(REGISTRY)
