"""The schemas of a task's lifecycle: what POSTing a task takes, a task's views, its pending and ended answers,
and the models' list.

A pure module: imports validation alone.
"""

from typing import Any, Literal
from uuid import UUID

from flask_openapi3 import Tag
from pydantic import BaseModel, ConfigDict, Field, RootModel

from longjobs.validation import MODEL_NAME, ErrorBody, Priority, RequestPart, Status, Timestamp

# The OpenAPI tag of the routes every task has, whatever its model (tasks_api.py, and push/events_api.py).
TASK_TAG = [Tag(name="tasks", description="the lifecycle of every task, whatever its model")]


class SubmitQuery(RequestPart):
    """Query parameters of every POST that creates a task."""

    model_config = ConfigDict(extra="forbid")

    priority: Priority = Field("default", description="the queue: workers serve high, then default, then low")


class SubmitHeaders(RequestPart):
    """Headers of every POST that creates a task."""

    model_config = ConfigDict(extra="ignore")

    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        pattern=r"^[\x20-\x7e]{1,255}$",
        description="1-255 printable ASCII characters; a repeat of the same request answers the same 202",
    )


class TaskPath(BaseModel):
    task_id: UUID = Field(description="the task id, in canonical 8-4-4-4-12 form")


class ListQuery(RequestPart):
    """Query parameters of GET /tasks."""

    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    type: str | None = Field(None, pattern=MODEL_NAME, description="a model's name")
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, description="next_cursor of the previous page")


class TaskAccepted(BaseModel):
    task_id: UUID


class Progress(BaseModel):
    percent: int = Field(ge=0, le=100)
    message: str | None = None


class TaskPending(BaseModel):
    """The body of a result URL's 404 while the task is known but not done."""

    task_id: UUID
    status: Status
    progress: Progress


class PendingOrUnknown(RootModel[TaskPending | ErrorBody]):
    """A result URL's 404: the task is known but not done (status, progress), or unknown (error)."""


class Outcome(BaseModel):
    """A result URL's 200: the task ended."""

    task_id: UUID
    status: Status
    params: dict[str, Any] | None = Field(None, description="the parameters it ran with")
    result: Any = Field(None, description="present when finished: what the model returned")
    error: str | None = Field(None, description="present when failed, canceled or stopped")


class ModelInfo(BaseModel):
    name: str
    summary: str
    language: Literal["python", "r"]
    url: str = Field(description="POST parameters here; results at <url>/<task_id>")
    params: dict[str, Any] = Field(description="a JSON Schema (2020-12) of the parameters")


class ModelList(BaseModel):
    models: list[ModelInfo]


class TaskView(BaseModel):
    """Everything known about a task."""

    task_id: UUID
    type: str
    priority: Priority
    status: Status
    progress: Progress
    params: dict[str, Any] | None = Field(description="the parameters it runs with")
    enqueued_at: Timestamp | None
    started_at: Timestamp | None
    ended_at: Timestamp | None
    result_url: str
    error: str | None
    sweep_id: UUID | None = Field(None, description="the sweep it is a run of, if any")
    schedule_id: UUID | None = Field(None, description="the schedule it is a run of, if any")


class TaskList(BaseModel):
    tasks: list[TaskView]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last one")
