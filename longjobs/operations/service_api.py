"""The service area: GET /health and GET /metrics.

Imports core, metrics, the operations' schemas and http.
"""

from flask import current_app
from flask_openapi3 import Tag
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from werkzeug.wrappers import Response

from core import QUEUE_NAMES, db, live_workers
from longjobs.http import blueprint
from longjobs.operations.schemas import Check, Health
from longjobs.push import metrics

SERVICE_TAG = [Tag(name="service", description="whether the service can take and run tasks")]
service_api = blueprint("service")


@service_api.get(
    "/health",
    tags=SERVICE_TAG,
    summary="Whether Redis and the database answer, and the queues' state",
    responses={200: Health, 503: Health},
)
def health():
    """200 when Redis and the database answer (even with no worker running: see `workers`), else 503."""
    report = Health(redis=Check(ok=True), database=Check(ok=True), workers=0, queues={}, failed=0)
    try:
        redis = current_app.extensions["redis"]
        queues = current_app.extensions["queues"]
        policy = redis.info("memory").get("maxmemory_policy")
        if policy != "noeviction":  # an evicting Redis drops queued jobs to make room
            report.redis = Check(ok=False, error=f"maxmemory-policy is {policy}; Redis must run with noeviction")
        report.workers = len(live_workers(redis))
        report.queues = {name: queues[name].count for name in QUEUE_NAMES}
        report.failed = sum(queues[name].failed_job_registry.count for name in QUEUE_NAMES)
    except RedisError as exc:
        report.redis = Check(ok=False, error=f"{type(exc).__name__}: {exc}")
    try:
        db.session.execute(text("SELECT 1"))
    except OperationalError as exc:
        report.database = Check(ok=False, error=f"{type(exc).__name__}: {exc.orig}")
    return report.model_dump(mode="json", exclude_none=True), 200 if report.redis.ok and report.database.ok else 503


@service_api.get("/metrics", tags=SERVICE_TAG, summary="The service's figures, for Prometheus", responses={200: None})
def get_metrics():
    """Prometheus's text format: tasks accepted and ended (by model, by outcome), how long they ran, the queues'
    depth, the workers, the failed jobs; read from Postgres and Redis at each scrape, so right across processes."""
    return Response(metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)  # every Prometheus reads it
