"""Webhooks: the subscriptions (POST/GET/DELETE /webhooks) and their deliveries' log. A URL passes the address guard
(guard.py) when it is registered; the outbox (outbox.py) sends the deliveries.

Imports core, the push's schemas, the guard and the outbox; its errors are werkzeug HTTP exceptions.
"""

import base64
import logging
import secrets
import uuid
from typing import cast

from flask import current_app
from sqlalchemy import select, text
from werkzeug.exceptions import BadRequest, NotFound

from core import Delivery, Webhook, db
from longjobs.push import guard, outbox
from longjobs.push.schemas import (
    WEBHOOK_EVENTS,
    DeliveryOutcome,
    DeliveryView,
    WebhookCreated,
    WebhookRequest,
    WebhookView,
)

log = logging.getLogger(__name__)


def _events(events: list[str]) -> list[str]:
    if not events:
        raise BadRequest(f"'events' must name at least one event: {', '.join(WEBHOOK_EVENTS)}")
    for event in events:
        if event not in WEBHOOK_EVENTS:
            raise BadRequest(f"unknown event {event!r} in 'events'; the events are {', '.join(WEBHOOK_EVENTS)}")
    if len(set(events)) < len(events):
        raise BadRequest("'events' names an event more than once")
    return events


def create_webhook(request: WebhookRequest) -> WebhookCreated:
    """Register a receiver for some events; 400 for a bad URL, an unknown event or an address deliveries may not go
    to (unless its host is in WEBHOOK_ALLOWED_HOSTS). Its secret is shown here only."""
    events = _events(request.events)
    parts = guard.parse_url(request.url)
    if parts.hostname not in current_app.config["WEBHOOK_ALLOWED_HOSTS"]:
        try:
            guard.resolve(parts.hostname or "", guard.port_of(parts))
        except guard.RefusedAddress as exc:
            raise BadRequest(f"'url' cannot receive deliveries: {exc} (WEBHOOK_ALLOWED_HOSTS lets a host in)") from None
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    webhook = Webhook(webhook_id=uuid.uuid4(), url=request.url, events=events, secret=secret)
    db.session.add(webhook)
    db.session.commit()
    log.info("webhook %s created: %s for %s", webhook.webhook_id, ", ".join(events), parts.hostname)
    return WebhookCreated(**_view(webhook).model_dump(), secret=secret)


def _view(webhook: Webhook) -> WebhookView:
    return WebhookView(webhook_id=webhook.webhook_id, url=webhook.url, events=webhook.events,
                       created_at=webhook.created_at)  # fmt: skip


def _get(webhook_id: uuid.UUID) -> Webhook:
    if (webhook := db.session.get(Webhook, webhook_id)) is None:
        raise NotFound(f"no webhook has the id {webhook_id}")
    return webhook


def find_webhook(webhook_id: uuid.UUID) -> WebhookView:
    return _view(_get(webhook_id))


def list_webhooks() -> list[WebhookView]:
    webhooks = db.session.scalars(select(Webhook).order_by(Webhook.created_at, Webhook.webhook_id)).all()
    return [_view(webhook) for webhook in webhooks]


def delete_webhook(webhook_id: uuid.UUID) -> None:
    """Delete a webhook and, with it, its deliveries: those not yet delivered are never sent (one under way ends).

    The deliveries go with it by a trigger (migration 0005). The table is locked first, against every reader, for the
    moment the delete takes: a task's end recorded meanwhile waits, and then no longer sees the webhook; one already
    under way holds the table, and so has committed its delivery before the trigger deletes them. Without the lock, an
    end whose statement began while the delete was not yet committed wrote a delivery for a webhook gone: never sent,
    and pending for good."""
    db.session.execute(text("LOCK TABLE webhooks IN ACCESS EXCLUSIVE MODE"))  # before reading: no lock upgrade
    db.session.delete(_get(webhook_id))
    db.session.commit()
    log.info("webhook %s deleted, with its deliveries", webhook_id)


def list_deliveries(webhook_id: uuid.UUID, limit: int) -> list[DeliveryView]:
    """A webhook's latest deliveries, newest first."""
    _get(webhook_id)
    deliveries = db.session.scalars(
        select(Delivery).where(Delivery.webhook_id == webhook_id)
        .order_by(Delivery.created_at.desc(), Delivery.delivery_id.desc()).limit(limit)
    ).all()  # fmt: skip
    return [DeliveryView(message_id=outbox.message_id(delivery.delivery_id), event=delivery.event,
                         task_id=delivery.task_id,
                         sweep_id=delivery.sweep_id, outcome=cast(DeliveryOutcome, delivery.outcome),
                         attempts=delivery.attempts, last_status=delivery.last_status, last_error=delivery.last_error,
                         delivered_at=delivery.delivered_at, next_attempt_at=delivery.next_attempt_at,
                         created_at=delivery.created_at) for delivery in deliveries]  # fmt: skip
