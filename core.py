"""What the web app and the workers share: settings, the database and its models, Redis and the queues.

Imports nothing of ours. Nothing here connects, reads the environment or builds an app at import time.
"""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue, Worker
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker
from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, SmallInteger, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

DEFAULT_DATABASE_URL = "postgresql://localhost/longjobs"
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
QUEUE_NAMES = ("high", "default", "low")  # the order workers serve them in
MAX_BODY_BYTES = 65_536
# A second engine on the same database whose connections commit each statement as it runs: a lone write
# (a worker's result row) then needs no BEGIN and no COMMIT, nor a switch of the connection's mode.
AUTOCOMMIT = "autocommit"
# With Redis gone or silent, a request must answer 503 within a few seconds, not hang: one second to connect
# and two to answer. RQ's worker widens the read timeout for its own blocking pops.
REDIS_CONNECT_TIMEOUT_SECONDS = 1.0
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
# No retries: redis-py's retry sends a command (a whole MULTI/EXEC pipeline, a Lua script) again after a timeout,
# when Redis may only have been slow and runs it twice (a job queued twice). Whoever calls knows whether a
# command may be sent again; redis-py does not. (redis-py retries 3 times unless told otherwise.)
REDIS_RETRY = Retry(NoBackoff(), retries=0)
# A worker whose heartbeat is older is not counted (/health, /metrics, the dashboard): its host is gone. Its record
# stays in RQ's registry until it expires, which can be long after (RQ's TTL lasts a job's timeout).
WORKER_SILENT_SECONDS = 60


class Base(DeclarativeBase):
    pass


# Rows stay readable after commit: the API answers from them without reading them back.
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
migrate = Migrate(directory=str(Path(__file__).with_name("migrations")))


class Task(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """A task the API accepted: what to run, and how urgently. Kept after it ends, beside its result."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint("priority IN ('high', 'default', 'low')", name="tasks_priority"),
        Index("tasks_newest_first", "enqueued_at", "task_id"),
        Index("tasks_of_a_sweep", "sweep_id", "sweep_index", unique=True),
        Index("tasks_of_a_schedule", "schedule_id", "enqueued_at"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSONB)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sweep_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("sweeps.sweep_id"))  # a run of a sweep, and
    sweep_index: Mapped[int | None]  # its place in the sweep's grid
    schedule_id: Mapped[uuid.UUID | None]  # a run of a schedule (kept after the schedule is deleted)


class Result(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """The outcome of a task that reached a terminal state; one row per task, and only those."""

    __tablename__ = "results"
    __table_args__ = (
        CheckConstraint("status IN ('finished', 'failed', 'canceled', 'stopped')", name="results_status"),
    )

    task_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    result: Mapped[Any] = mapped_column(JSONB(none_as_null=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Sweep(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """A model run over a grid of parameters: one task per combination (tasks.sweep_id)."""

    __tablename__ = "sweeps"

    sweep_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSONB)  # the base parameters
    grid: Mapped[list] = mapped_column(JSONB)  # [[name, [values]], ...] in the order given
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Schedule(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """A model run on a clock: the clock process queues a task (tasks.schedule_id) each time next_run_at comes."""

    __tablename__ = "schedules"
    __table_args__ = (Index("schedules_due", "next_run_at"),)

    schedule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(Text)
    params: Mapped[dict] = mapped_column(JSONB)
    cron: Mapped[str] = mapped_column(Text)  # five fields, UTC
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Webhook(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """A receiver's URL and the events it is sent; its deliveries are signed with its secret."""

    __tablename__ = "webhooks"

    webhook_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list] = mapped_column(JSONB)  # e.g. ["task.finished", "sweep.finished"]
    secret: Mapped[str] = mapped_column(Text)  # whsec_ and base64, as Standard Webhooks have it
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Delivery(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """One event for one webhook: the outbox. A trigger on `results` writes it in the transaction that records the
    task's end (migration 0004), and the clock sends it until it is delivered or its retries are spent. No foreign
    key to its webhook (migration 0005): a trigger deletes a webhook's deliveries with it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("outcome IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_outcome"),
        Index("webhook_deliveries_newest_first", "webhook_id", "created_at"),
        Index("webhook_deliveries_due", "next_attempt_at", postgresql_where=text("outcome = 'pending'")),
    )

    delivery_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # its webhook-id is msg_<hex>
    webhook_id: Mapped[uuid.UUID]
    event: Mapped[str] = mapped_column(Text)
    task_id: Mapped[uuid.UUID | None]  # a task event's task
    sweep_id: Mapped[uuid.UUID | None]  # sweep.finished's sweep
    payload: Mapped[str | None] = mapped_column(Text)  # the body, made at the first attempt and sent as it is after
    attempts: Mapped[int] = mapped_column(server_default=text("0"))
    outcome: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    last_status: Mapped[int | None]  # the HTTP status of the last attempt, if it got one
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MetricTotal(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """Running totals for GET /metrics, kept by triggers as the rows they count are written (migration 0004). Each
    database connection adds to a shard of its own, so that writers never wait for each other's row lock."""

    __tablename__ = "metric_totals"

    metric: Mapped[str] = mapped_column(Text, primary_key=True)
    labels: Mapped[dict] = mapped_column(JSONB, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    sum: Mapped[float]


class IdempotencyKey(db.Model):  # type: ignore[name-defined]  # mypy takes no attribute as a base (mypy#8603)
    """A client's Idempotency-Key on one endpoint, the request it came with, and the task it made."""

    __tablename__ = "idempotency_keys"

    endpoint: Mapped[str] = mapped_column(Text, primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    task_id: Mapped[uuid.UUID]
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def database_url(url: str) -> str:
    """Point a Heroku-style Postgres URL at psycopg2, the driver we install."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgres", "postgresql", "postgresql+psycopg2"):
        raise ValueError(f"DATABASE_URL must be a postgres:// or postgresql:// URL, not {scheme!r}")
    return f"postgresql+psycopg2://{rest}"


def redis_url(url: str) -> str:
    """Accept rediss:// with a self-signed certificate (as Heroku Redis has) unless the URL says otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"REDIS_URL must be a redis:// or rediss:// URL, not {parts.scheme!r}")
    if parts.scheme != "rediss":
        return url
    query = dict(parse_qsl(parts.query))
    if "ssl_cert_reqs" not in query:
        query |= {"ssl_cert_reqs": "none", "ssl_check_hostname": "false"}
    return urlunsplit(parts._replace(query=urlencode(query)))


def _whole_number(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name, "")
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{name} must be a whole number, at least {minimum}, not {raw!r}")
    return int(raw)


def _switch(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").lower()
    if not raw:
        return default
    if raw not in ("on", "off"):
        raise ValueError(f"{name} must be on or off, not {raw!r}")
    return raw == "on"


def _seconds_list(environ: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    raw = environ.get(name, "")
    if not raw:
        return default
    parts = [part.strip() for part in raw.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{name} must be whole numbers of seconds separated by commas, not {raw!r}")
    return tuple(int(part) for part in parts)


def _host_list(raw: str) -> frozenset[str]:
    """Host names as urlsplit gives them: lowercase, IPv6 addresses without their brackets."""
    return frozenset(host.strip().lower().strip("[]") for host in raw.split(",") if host.strip())


def load_settings(environ: Mapping[str, str]) -> dict[str, Any]:
    """Build the Flask config from an environment mapping; a bad value raises ValueError naming it."""
    redis = redis_url(environ.get("REDIS_URL") or DEFAULT_REDIS_URL)
    database = database_url(environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    return {
        "SQLALCHEMY_DATABASE_URI": database,
        # The API's pool checks a connection before use: after Postgres restarts, each pool's idle connections are dead,
        # and each would answer its next request with a 503, however much later that comes. An UPDATE of many rows
        # (the webhook dispatcher's) is one round trip (psycopg2's execute_batch), not one per row.
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "executemany_mode": "values_plus_batch"},
        # The workers' result writes: no transactions, so its pool need not roll back each connection it gets back;
        # no check before use (a round trip per job), as a write on a dead connection keeps its outcome in Redis
        # until a watchman writes it, and SQLAlchemy then replaces the pool's other connections.
        "SQLALCHEMY_BINDS": {
            AUTOCOMMIT: {"url": database, "isolation_level": "AUTOCOMMIT", "pool_reset_on_return": None}
        },
        "REDIS_URL": redis,
        "RQ_DASHBOARD_REDIS_URL": redis,
        "MODEL_TIMEOUT": _whole_number(environ, "MODEL_TIMEOUT", 1800),
        "MODELS_DIR": environ.get("MODELS_DIR") or None,  # None: models/ beside the code
        "FAILED_JOB_TTL": _whole_number(environ, "FAILED_JOB_TTL", 7 * 24 * 3600),
        "RETRY_ATTEMPTS": _whole_number(environ, "RETRY_ATTEMPTS", 3, minimum=0),
        "RETRY_BACKOFF_SECONDS": _whole_number(environ, "RETRY_BACKOFF_SECONDS", 5, minimum=0),
        "RESULT_TTL": _whole_number(environ, "RESULT_TTL", 60, minimum=0),
        "MAX_QUEUE_DEPTH": _whole_number(environ, "MAX_QUEUE_DEPTH", 10_000),
        "MAX_SWEEP_RUNS": _whole_number(environ, "MAX_SWEEP_RUNS", 1_000),
        "WORKER_LIVENESS_SECONDS": _whole_number(environ, "WORKER_LIVENESS_SECONDS", 20, minimum=4),
        "WORKER_SHUTDOWN_GRACE": _whole_number(environ, "WORKER_SHUTDOWN_GRACE", 25, minimum=0),
        "WORKER_FAST_PATH": _switch(environ, "WORKER_FAST_PATH", True),
        "WORKER_MAX_MEMORY_MB": _whole_number(environ, "WORKER_MAX_MEMORY_MB", 400, minimum=64),
        # Standard Webhooks' advice: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the first attempt.
        "WEBHOOK_RETRY_SECONDS": _seconds_list(
            environ, "WEBHOOK_RETRY_SECONDS", (5, 300, 1800, 7200, 18000, 36000, 36000)
        ),
        "WEBHOOK_ALLOWED_HOSTS": _host_list(environ.get("WEBHOOK_ALLOWED_HOSTS", "")),
        "MAX_EVENT_STREAMS": _whole_number(environ, "MAX_EVENT_STREAMS", 100),
        "API_TOKENS": [token.strip() for token in environ.get("API_TOKENS", "").split(",") if token.strip()],
        "RQ_DASHBOARD_USERNAME": environ.get("RQ_DASHBOARD_USERNAME") or "admin",
        "RQ_DASHBOARD_PASSWORD": environ.get("RQ_DASHBOARD_PASSWORD") or None,
        # One byte over: werkzeug cuts a chunked body at this length silently, so the API must see
        # a byte past MAX_BODY_BYTES to know the body was too large.
        "MAX_CONTENT_LENGTH": MAX_BODY_BYTES + 1,
    }


def task_timeouts(environ: Mapping[str, str], declared: Mapping[str, int | None], default: int) -> dict[str, int]:
    """Each model's timeout in seconds: `<NAME>_TIMEOUT` from the environment, else its file's, else `default`."""
    return {name: _whole_number(environ, f"{name.upper()}_TIMEOUT", own or default) for name, own in declared.items()}


def connect_redis(url: str) -> Redis:
    """A Redis client for the service's Redis (REDIS_URL as load_settings gives it); connects lazily."""
    return Redis.from_url(
        url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_SECONDS, socket_timeout=REDIS_SOCKET_TIMEOUT_SECONDS,
        retry=REDIS_RETRY,
    )  # fmt: skip


def live_workers(redis: Redis) -> list[BaseWorker]:
    """RQ's workers, less those silent for over WORKER_SILENT_SECONDS (each live one beats every few seconds, busy
    or idle: recovery.Watchman)."""
    since = datetime.now(UTC) - timedelta(seconds=WORKER_SILENT_SECONDS)
    workers = Worker.all(connection=redis, serializer=JSONSerializer)
    return [worker for worker in workers if worker.last_heartbeat is not None and worker.last_heartbeat >= since]


def init_app(app: Flask) -> None:
    """Attach the database, migrations, the Redis client and the queues to an app; connects lazily."""
    db.init_app(app)
    migrate.init_app(app, db)
    redis = connect_redis(app.config["REDIS_URL"])
    app.extensions["redis"] = redis
    app.extensions["queues"] = {name: Queue(name, connection=redis, serializer=JSONSerializer) for name in QUEUE_NAMES}
