"""The outbox's sender: the Dispatcher, which the clock runs, claims due deliveries, POSTs them and records what came
back.

Deliveries are an outbox in Postgres (`webhook_deliveries`): a trigger writes one for each webhook that takes the event,
in the transaction that records a task's end (migration 0004), so no end goes undelivered whatever process dies or
whatever Redis forgets. The Dispatcher claims due deliveries for a while (so that two clocks never send one at once,
and one whose sender died is sent again), POSTs each as Standard Webhooks sign them from a few threads of its own (a
slow receiver delays only its own deliveries, and never a task), and records what came back: a 2xx within
TIMEOUT_SECONDS delivers it; anything else is tried again on the WEBHOOK_RETRY_SECONDS schedule, under the same
webhook-id, until the schedule is spent. While jobs wait in a task queue it claims only a few deliveries a second, so
that they take little from the workers behind them. Each attempt's addresses pass the guard (guard.py) after DNS, and
the attempt connects to the address checked; redirects are never followed.

Imports core, lifecycle, sweeps and the guard; the clock (clock.py) runs it.
"""

import json
import logging
import os
import queue
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import urllib3
from flask import Flask, current_app
from redis.exceptions import RedisError
from sqlalchemy import Interval, bindparam, case, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks import Webhook as Signer
from werkzeug.exceptions import NotFound

from core import Delivery, Webhook, db
from longjobs import lifecycle
from longjobs.push import guard
from longjobs.workflows import sweeps

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 10.0  # a 2xx answer within this delivers
# A claimed delivery is its sender's for this long: its attempt is over within TIMEOUT_SECONDS, unless its sender died.
LEASE_SECONDS = 30
SENDERS = 16  # attempts under way at once, each in a thread of its own
NICENESS = 19  # the dispatcher's threads': behind the other threads of their scheduling group (see Dispatcher)
LOOK_SECONDS = 0.5  # how often the dispatcher looks for due deliveries while it has none under way
# While jobs wait in a task queue, at most PACED_BATCH deliveries are claimed in PACE_SECONDS: the workers are behind,
# and a delivery's CPU (the clock's, Postgres's, the receiver's) would be taken from them. Ends of minute-long tasks
# come far more slowly than that; a burst of short ones has the rest of its deliveries once the queues are empty.
PACE_SECONDS = 1.0
PACED_BATCH = 8
GATHER_SECONDS = 0.05  # outcomes that come this soon after another are recorded with it, in one statement
MAX_ANSWER_BYTES = 65_536  # of a receiver's answer's body, read (and dropped) so that its connection can serve again
USER_AGENT = "longjobs-webhooks"
# A connection kept open for each sender and receiver (urllib3 keeps one by default, and closed the others).
HTTP = urllib3.PoolManager(num_pools=64, maxsize=SENDERS, retries=False, timeout=urllib3.Timeout(total=TIMEOUT_SECONDS))


def message_id(delivery_id: uuid.UUID) -> str:
    return f"msg_{delivery_id.hex}"


def post(url: str, body: bytes, headers: dict[str, str], allowed: frozenset[str]) -> int:
    """POST a delivery and return the HTTP status of the answer (redirects are not followed). Unless its host is
    allowed, the host's addresses are checked (guard.RefusedAddress) and the one connected to is one checked: DNS is not
    asked again between the check and the connection."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", guard.port_of(parts)
    address = host if host in allowed else guard.resolve(host, port)[0]
    # Certificates and SNI are those of the host name, whatever address is connected to.
    tls = {"server_hostname": host, "assert_hostname": host} if parts.scheme == "https" and address != host else {}
    pool = HTTP.connection_from_host(address, port, parts.scheme, pool_kwargs=tls)
    target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    response = pool.urlopen("POST", target, body=body, headers=headers | {"Host": parts.netloc}, redirect=False,
                            assert_same_host=False, preload_content=False)  # fmt: skip
    try:
        response.read(MAX_ANSWER_BYTES)
        if response.read(1):  # more than we read: the connection cannot serve another request
            response.close()
    finally:
        response.release_conn()
    return response.status


@dataclass(frozen=True)
class Attempt:
    """A delivery claimed for one attempt, with what sending it takes."""

    delivery_id: uuid.UUID
    webhook_id: uuid.UUID
    event: str
    subject: str  # "task <id>" or "sweep <id>", for the log
    url: str
    secret: str
    payload: str
    number: int  # 1 for the first attempt


# The due deliveries, oldest first, each locked (FOR UPDATE) so that another dispatcher passes it by.
DUE = (
    select(Delivery.delivery_id, Delivery.webhook_id, Delivery.event, Delivery.task_id, Delivery.sweep_id,
           Delivery.payload, Delivery.attempts, Delivery.created_at, Webhook.url, Webhook.secret)
    .join(Webhook, Webhook.webhook_id == Delivery.webhook_id)
    .where(Delivery.outcome == "pending", Delivery.next_attempt_at <= func.now())
    .order_by(Delivery.next_attempt_at).limit(bindparam("room")).with_for_update(of=Delivery, skip_locked=True)
)  # fmt: skip
# A delivery claimed for an attempt, its body kept (made now, at its first attempt, or before).
CLAIMED = (
    update(Delivery)
    .where(Delivery.delivery_id == bindparam("b_id"))
    .values(attempts=Delivery.attempts + 1, next_attempt_at=func.now() + timedelta(seconds=LEASE_SECONDS),
            payload=func.coalesce(bindparam("b_payload"), Delivery.payload))
)  # fmt: skip
# An attempt's outcome; not written over a newer attempt's (one claimed again once this one's claim lapsed).
RECORDED = (
    update(Delivery)
    .where(Delivery.delivery_id == bindparam("b_id"), Delivery.outcome == "pending",
           Delivery.attempts == bindparam("b_number"))
    .values(outcome=bindparam("b_outcome"), last_status=bindparam("b_status"), last_error=bindparam("b_error"),
            delivered_at=case((bindparam("b_outcome") == "delivered", func.now())),
            next_attempt_at=func.now() + bindparam("b_backoff", type_=Interval))  # NULL: none
)  # fmt: skip


def _gather(ended: "queue.SimpleQueue[Any]", under_way: int) -> list[Any]:
    """The outcomes of attempts that ended: the first within LOOK_SECONDS, with those that end right after it."""
    try:
        outcomes = [ended.get(timeout=LOOK_SECONDS)]
    except queue.Empty:
        return []
    until = time.monotonic() + GATHER_SECONDS
    while len(outcomes) < under_way and (left := until - time.monotonic()) > 0:
        try:
            outcomes.append(ended.get(timeout=left))
        except queue.Empty:
            break
    return outcomes


def _jobs_waiting() -> bool:
    """Whether a task queue has jobs waiting. With Redis unreachable no worker takes one either: then, no."""
    try:
        return any(task_queue.count for task_queue in current_app.extensions["queues"].values())
    except RedisError:
        return False


class Dispatcher:
    """Sends due deliveries, up to SENDERS at once, and records each attempt's outcome (see the module's docstring).

    While jobs wait in a task queue, it claims at most PACED_BATCH deliveries every PACE_SECONDS, and catches up once
    the queues are empty: where the clock shares the workers' machine, what deliveries cost there would slow the workers
    down, and a nice value does not stop that. Its threads run at the lowest CPU priority, but that ranks them only
    behind the processes they share a scheduling group with: on Linux with autogroups (sched(7)), processes of
    different sessions (as Heroku and `make run` start each) share the CPU as equals whatever their nice values."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.allowed: frozenset[str] = app.config["WEBHOOK_ALLOWED_HOSTS"]
        self.retries: tuple[int, ...] = app.config["WEBHOOK_RETRY_SECONDS"]

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; then the attempts under way end (within TIMEOUT_SECONDS) and are recorded.

        Deliveries are claimed, and outcomes recorded, in batches (a few round trips each, whatever its size): up to
        twice as many as there are senders are claimed at once, so each waits for at most one round of attempts
        before its own, well within its claim."""
        os.nice(NICENESS)  # this thread's, and so its senders' (on Linux, a thread's own; elsewhere the process's)
        ended: queue.SimpleQueue[tuple[Attempt, tuple[int | None, str | None]]] = queue.SimpleQueue()
        under_way, paced_until = 0, 0.0
        with ThreadPoolExecutor(SENDERS, thread_name_prefix="webhook") as senders:
            while not stop.is_set() or under_way:
                try:
                    with self.app.app_context():
                        if not stop.is_set() and under_way <= SENDERS and time.monotonic() >= paced_until:
                            paced = _jobs_waiting()
                            room = (PACED_BATCH if paced else 2 * SENDERS) - under_way
                            for attempt in self.claim(room) if room > 0 else []:
                                senders.submit(self._send_into, attempt, ended)
                                under_way += 1
                            if paced:
                                paced_until = time.monotonic() + PACE_SECONDS
                        if not under_way:
                            stop.wait(LOOK_SECONDS)
                            continue
                        outcomes = _gather(ended, under_way)
                        under_way -= len(outcomes)
                        self.record(outcomes)
                except (SQLAlchemyError, RedisError) as fault:  # the claims lapse, and those deliveries are sent again
                    log.warning("webhook deliveries skipped a turn: %s: %s", type(fault).__name__, fault)
                    stop.wait(LOOK_SECONDS)
                except Exception:  # a bug of ours: were this thread to end, no webhook would be sent again
                    log.exception("webhook deliveries skipped a turn; the dispatcher goes on")
                    stop.wait(LOOK_SECONDS)

    def claim(self, room: int) -> list[Attempt]:
        """The due deliveries (at most `room`), each claimed for LEASE_SECONDS, the body of each made at its first
        attempt: the event, its time, and the task as GET /tasks/<id> shows it (or the sweep's table). Those whose
        task or sweep is no longer kept (pruned) fail."""
        rows = db.session.execute(DUE, {"room": room}).all()
        new = [row for row in rows if row.payload is None]
        ended = lifecycle.ended([row.task_id for row in new if row.task_id is not None])
        payloads, gone = {}, []
        for row in new:
            data = ended.get(row.task_id) if row.task_id is not None else self._sweep(row.sweep_id)
            if data is None:
                gone.append(row.delivery_id)
                continue
            event = {"type": row.event, "timestamp": row.created_at.astimezone(UTC).isoformat(), "data": data}
            payloads[row.delivery_id] = json.dumps(event, separators=(",", ":"))
        if gone:
            db.session.execute(update(Delivery).where(Delivery.delivery_id.in_(gone)).values(
                outcome="failed", next_attempt_at=None, last_error="its task or sweep is no longer kept"))  # fmt: skip
        attempts = [
            Attempt(row.delivery_id, row.webhook_id, row.event,
                    f"task {row.task_id}" if row.task_id else f"sweep {row.sweep_id}", row.url, row.secret,
                    row.payload or payloads[row.delivery_id], row.attempts + 1)
            for row in rows if row.delivery_id not in gone
        ]  # fmt: skip
        if attempts:  # Core's executemany, one round trip: the ORM's bulk path refuses it
            claims = [
                {"b_id": attempt.delivery_id, "b_payload": payloads.get(attempt.delivery_id)} for attempt in attempts
            ]
            db.session.connection().execute(CLAIMED, claims)
        db.session.commit()
        return attempts

    def _sweep(self, sweep_id: uuid.UUID | None) -> dict[str, Any] | None:
        try:
            return sweeps.find_sweep(cast(uuid.UUID, sweep_id)).model_dump(mode="json", exclude_unset=True)
        except NotFound:
            return None

    def _send_into(self, attempt: Attempt, ended: "queue.SimpleQueue[Any]") -> None:
        ended.put((attempt, self.send(attempt)))

    def send(self, attempt: Attempt) -> tuple[int | None, str | None]:
        """POST one attempt, signed now; its HTTP status and what went wrong, if anything did."""
        identifier, now = message_id(attempt.delivery_id), datetime.now(UTC)
        headers = {
            "webhook-id": identifier,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Signer(attempt.secret).sign(identifier, now, attempt.payload),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            status = post(attempt.url, attempt.payload.encode(), headers, self.allowed)
        except guard.RefusedAddress as exc:
            return None, f"not sent: {exc}"
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of the timeout: refused, unreachable
            return None, f"could not connect: {exc}"
        except urllib3.exceptions.TimeoutError:
            return None, f"no answer within {TIMEOUT_SECONDS:g} s"
        except urllib3.exceptions.HTTPError as exc:
            return None, f"could not read an answer: {exc}"
        except Exception as exc:  # a bug of ours, or of a library's: the attempt failed, the dispatcher goes on
            log.exception("webhook %s: %s of %s could not be sent", attempt.webhook_id, attempt.event, attempt.subject)
            return None, f"could not be sent: {type(exc).__name__}: {exc}"
        if time.monotonic() - started > TIMEOUT_SECONDS:
            return status, f"answered after more than {TIMEOUT_SECONDS:g} s"
        if 300 <= status < 400:
            return status, f"answered {status}: redirects are not followed"
        return status, None if 200 <= status < 300 else f"answered {status}"

    def record(self, outcomes: list[tuple[Attempt, tuple[int | None, str | None]]]) -> None:
        """Write each attempt's outcome: delivered, due again after its backoff, or failed once the retries are
        spent."""
        rows = []
        for attempt, (status, error) in outcomes:
            row = {"b_id": attempt.delivery_id, "b_number": attempt.number, "b_status": status, "b_error": error,
                   "b_outcome": "pending", "b_backoff": None}  # fmt: skip
            if error is None:
                row["b_outcome"] = "delivered"
                log.info("webhook %s: %s of %s delivered (HTTP %s, attempt %d)", attempt.webhook_id, attempt.event,
                         attempt.subject, status, attempt.number)  # fmt: skip
            elif attempt.number <= len(self.retries):
                backoff = self.retries[attempt.number - 1]
                row["b_backoff"] = timedelta(seconds=backoff)
                log.warning("webhook %s: %s of %s, attempt %d: %s; trying again in %d s", attempt.webhook_id,
                            attempt.event, attempt.subject, attempt.number, error, backoff)  # fmt: skip
            else:
                row["b_outcome"] = "failed"
                log.error("webhook %s: %s of %s failed for good after %d attempts: %s", attempt.webhook_id,
                          attempt.event, attempt.subject, attempt.number, error)  # fmt: skip
            rows.append(row)
        if rows:
            db.session.connection().execute(RECORDED, rows)  # Core's executemany: the ORM's bulk path refuses it
            db.session.commit()
