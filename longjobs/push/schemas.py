"""The schemas of webhooks and their deliveries.

A pure module: imports validation alone.
"""

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from longjobs.validation import RequestPart, Timestamp

WEBHOOK_EVENTS = ("task.finished", "task.failed", "task.canceled", "task.stopped", "sweep.finished")
DeliveryOutcome = Literal["pending", "delivered", "failed"]


class WebhookRequest(BaseModel):
    """The body of POST /webhooks."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="where deliveries are POSTed: http or https, not to a loopback, private, link-local "
                     "or multicast address", examples=["https://example.com/hooks/longjobs"])  # fmt: skip
    events: list[str] = Field(description=f"the events it is sent: any of {', '.join(WEBHOOK_EVENTS)}")


class WebhookPath(BaseModel):
    webhook_id: UUID = Field(description="the webhook id, in canonical 8-4-4-4-12 form")


class WebhookView(BaseModel):
    webhook_id: UUID
    url: str
    events: list[str]
    created_at: Timestamp


class WebhookCreated(WebhookView):
    secret: str = Field(description="whsec_...: what its deliveries' signatures are verified with; shown only here")


class WebhookList(BaseModel):
    webhooks: list[WebhookView]


class DeliveryQuery(RequestPart):
    model_config = ConfigDict(extra="forbid")
    limit: int = Field(20, ge=1, le=100)


class DeliveryView(BaseModel):
    message_id: str = Field(description="the webhook-id header of each of its attempts")
    event: str
    task_id: UUID | None = Field(description="a task event's task")
    sweep_id: UUID | None = Field(description="sweep.finished's sweep")
    outcome: DeliveryOutcome = Field(description="failed: every retry was spent")
    attempts: int
    last_status: int | None = Field(description="the HTTP status of the last attempt, if it got an answer")
    last_error: str | None
    delivered_at: Timestamp | None
    next_attempt_at: Timestamp | None = Field(description="when it is tried next, while pending")
    created_at: Timestamp


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView] = Field(description="newest first")
