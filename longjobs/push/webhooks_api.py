"""The webhooks area: POST, GET and DELETE /webhooks, and a webhook's deliveries.

Imports webhooks, the push's schemas and http.
"""

from flask_openapi3 import Tag

from longjobs.http import blueprint
from longjobs.push import webhooks
from longjobs.push.schemas import (
    DeliveryList,
    DeliveryQuery,
    WebhookCreated,
    WebhookList,
    WebhookPath,
    WebhookRequest,
    WebhookView,
)
from longjobs.validation import ErrorBody

WEBHOOK_TAG = [Tag(name="webhooks", description="task and sweep events POSTed to your URL, signed as Standard Webhooks "
                   "sign them")]  # fmt: skip


webhooks_api = blueprint("webhooks")


@webhooks_api.post(
    "/webhooks",
    tags=WEBHOOK_TAG,
    summary="Have events POSTed to a URL",
    responses={201: WebhookCreated, 400: ErrorBody, 413: ErrorBody},
)
def create_webhook(body: WebhookRequest):
    """Each event (task.finished, task.failed, task.canceled, task.stopped, sweep.finished) is POSTed, signed with the
    secret this answer alone shows, until a 2xx answers it within 10 s; retried with backoff (WEBHOOK_RETRY_SECONDS)."""
    webhook = webhooks.create_webhook(body)
    return webhook.model_dump(mode="json"), 201, {"Location": f"/webhooks/{webhook.webhook_id}"}


@webhooks_api.get("/webhooks", tags=WEBHOOK_TAG, summary="Every webhook", responses={200: WebhookList})
def list_webhooks():
    return WebhookList(webhooks=webhooks.list_webhooks()).model_dump(mode="json")


@webhooks_api.get(
    "/webhooks/<uuid:webhook_id>", tags=WEBHOOK_TAG, summary="One webhook", responses={200: WebhookView, 404: ErrorBody}
)
def get_webhook(path: WebhookPath):
    return webhooks.find_webhook(path.webhook_id).model_dump(mode="json")


@webhooks_api.delete(
    "/webhooks/<uuid:webhook_id>",
    tags=WEBHOOK_TAG,
    summary="Delete a webhook and its pending deliveries",
    responses={204: None, 404: ErrorBody},
)
def delete_webhook(path: WebhookPath):
    webhooks.delete_webhook(path.webhook_id)
    return "", 204


@webhooks_api.get(
    "/webhooks/<uuid:webhook_id>/deliveries",
    tags=WEBHOOK_TAG,
    summary="A webhook's recent deliveries",
    responses={200: DeliveryList, 400: ErrorBody, 404: ErrorBody},
)
def list_deliveries(path: WebhookPath, query: DeliveryQuery):
    """Newest first: each event, its task or sweep, attempts, the last answer, and when it was delivered or is tried
    next."""
    return DeliveryList(deliveries=webhooks.list_deliveries(path.webhook_id, query.limit)).model_dump(mode="json")
