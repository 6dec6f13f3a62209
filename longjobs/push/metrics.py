"""GET /metrics: the service's figures in Prometheus's text format, read when Prometheus scrapes.

Imports core. The counters are counted where things happen, in Postgres: triggers add to running totals
(`metric_totals`, migration 0004) in the transaction that accepts a task, records its end or ends a webhook delivery,
so they are right across every web, worker and clock process and through restarts, and a scrape reads a few hundred
rows however many tasks the tables hold. The gauges are read at scrape time: the queues, workers and failed jobs from
Redis (one pipeline), the deliveries waiting from Postgres (a partial index of them).
"""

from collections.abc import Iterator

from flask import current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core import QUEUE_NAMES, Delivery, MetricTotal, db, live_workers

# Seconds; a task runs from well under a second (multiply) to tens of minutes (a large simulation). Migration 0004
# buckets each duration by these bounds as it is counted.
DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0)
DELIVERY_OUTCOMES = ("delivered", "failed")
TOTALS = select(
    MetricTotal.metric, MetricTotal.labels, func.sum(MetricTotal.count), func.sum(MetricTotal.sum)
).group_by(MetricTotal.metric, MetricTotal.labels)
WAITING = select(func.count()).where(Delivery.outcome == "pending")


def _histogram(buckets: dict[tuple[str, str], tuple[int, float]]) -> HistogramMetricFamily:
    """The duration histogram from the totals of each bucket (a count and a sum of seconds), by model and bound."""
    family = HistogramMetricFamily("longjobs_task_duration_seconds", "How long ended tasks ran, by model",
                                   labels=["type"])  # fmt: skip
    for name in sorted({name for name, _ in buckets}):
        cumulative, count, seconds = [], 0, 0.0
        for bound in (*DURATION_BUCKETS, None):  # None: +Inf
            in_bucket, summed = buckets.get((name, "+Inf" if bound is None else f"{bound:g}"), (0, 0.0))
            count, seconds = count + in_bucket, seconds + summed
            cumulative.append(("+Inf" if bound is None else str(bound), count))
        family.add_metric([name], cumulative, seconds)
    return family


class ServiceCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        accepted = CounterMetricFamily("longjobs_tasks_accepted", "Tasks accepted, by model", labels=["type"])
        ended = CounterMetricFamily("longjobs_tasks_ended", "Tasks ended, by model and outcome (a requeued task that "
                                    "ends again counts again)", labels=["type", "status"])  # fmt: skip
        deliveries = CounterMetricFamily("longjobs_webhook_deliveries", "Webhook deliveries ended: delivered, or "
                                         "failed once every retry was spent", labels=["outcome"])  # fmt: skip
        outcomes = dict.fromkeys(DELIVERY_OUTCOMES, 0)
        durations: dict[tuple[str, str], tuple[int, float]] = {}
        for metric, labels, count, seconds in db.session.execute(TOTALS):
            if metric == "tasks_accepted":
                accepted.add_metric([labels["type"]], count)
            elif metric == "tasks_ended":
                ended.add_metric([labels["type"], labels["status"]], count)
            elif metric == "task_duration":
                durations[(labels["type"], labels["le"])] = (count, seconds)
            elif metric == "webhook_deliveries":
                outcomes[labels["outcome"]] = count
        for outcome, count in outcomes.items():
            deliveries.add_metric([outcome], count)
        waiting = db.session.execute(WAITING).scalar_one()
        db.session.rollback()  # end the read's transaction: the connection goes back to the pool idle
        yield from (accepted, ended, _histogram(durations), deliveries)
        yield GaugeMetricFamily("longjobs_webhook_deliveries_waiting", "Webhook deliveries not yet delivered nor "
                                "given up: due, or waiting for a retry", value=waiting)  # fmt: skip

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
        yield GaugeMetricFamily("longjobs_workers", "Workers alive", value=len(live_workers(redis)))
        yield GaugeMetricFamily("longjobs_failed_jobs", "Jobs in the failed registries (the dead-letter queue)",
                                value=sum(replies[1::2]))  # fmt: skip


REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(ServiceCollector())


def exposition() -> bytes:
    """The figures in Prometheus's text format."""
    return generate_latest(REGISTRY)
