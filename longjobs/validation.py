"""Request and response schemas, and strict JSON parsing: the one place that says what the API takes
and gives. The OpenAPI document is generated from these models.

A pure module: imports nothing of ours.
"""

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    ValidationError,
)

PRIORITIES = ("high", "default", "low")
MODEL_NAME = r"^[a-z][a-z0-9_]{0,39}$"
TERMINAL_STATUSES = ("finished", "failed", "canceled", "stopped")
STATUSES = ("queued", "started", "deferred", "scheduled", *TERMINAL_STATUSES)
Priority = Literal["high", "default", "low"]
# ISO 8601 in UTC with an explicit offset (+00:00), whatever the database session's time zone.
Timestamp = Annotated[datetime, PlainSerializer(lambda moment: moment.astimezone(UTC).isoformat(), return_type=str)]
Status = Literal["queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped"]


class InvalidRequest(ValueError):
    """A request body that does not follow its schema; the message says why, for a person."""


_SCHEMAS: dict[type, dict[str, Any]] = {}


class RequestPart(BaseModel):
    """Base of query and header models: flask-openapi3 reads their JSON schema on every request (about
    a fifth of a POST's time), so the default one is made once per model."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _SCHEMAS:
            _SCHEMAS[cls] = super().model_json_schema()
        return _SCHEMAS[cls]


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


class ErrorBody(BaseModel):
    error: str


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


class SweepRequest(BaseModel):
    """The body of POST /sweeps."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="the model's name (GET /models)")
    params: dict[str, Any] = Field(default_factory=dict, description="the base parameters of every run")
    grid: dict[str, list[Any]] = Field(
        description="parameter: its values; one run per combination, keys in the order given, the last varying fastest"
    )


class SweepAccepted(BaseModel):
    sweep_id: UUID


class SweepPath(BaseModel):
    sweep_id: UUID = Field(description="the sweep id, in canonical 8-4-4-4-12 form")


class SweepQuery(RequestPart):
    model_config = ConfigDict(extra="forbid")
    format: Literal["json", "csv"] = Field("json", description="csv: the same table as text/csv")


class SweepProgress(BaseModel):
    total: int
    ended: int
    percent: int = Field(ge=0, le=100)


class SweepPending(BaseModel):
    """GET /sweeps/<id> while a run has not ended (404)."""

    sweep_id: UUID
    status: Literal["running"]
    progress: SweepProgress


class SweepPendingOrUnknown(RootModel[SweepPending | ErrorBody]):
    """GET /sweeps/<id>'s 404: the sweep is known but not done (status, progress), or unknown (error)."""


class SweepRun(BaseModel):
    index: int
    params: dict[str, Any] = Field(description="its grid values")
    task_id: UUID
    status: Status
    result: Any = Field(None, description="present when finished")
    error: str | None = Field(None, description="present when failed, canceled or stopped")


class SweepTable(BaseModel):
    """GET /sweeps/<id> once every run has ended (200): the runs in grid order."""

    sweep_id: UUID
    model: str
    status: Literal["finished"]
    counts: dict[str, int] = Field(description="runs by status: finished, failed, canceled, stopped")
    runs: list[SweepRun]


class SweepCanceled(BaseModel):
    sweep_id: UUID
    canceled: int = Field(description="runs canceled before they started")
    stopping: int = Field(description="runs their workers are stopping")


class ScheduleRequest(BaseModel):
    """The body of POST /schedules."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(description="the model's name (GET /models)")
    params: dict[str, Any] = Field(default_factory=dict)
    cron: str = Field(description="5 cron fields (minute hour day month weekday), in UTC", examples=["0 6 * * *"])


class SchedulePath(BaseModel):
    schedule_id: UUID = Field(description="the schedule id, in canonical 8-4-4-4-12 form")


class ScheduleView(BaseModel):
    schedule_id: UUID
    model: str
    params: dict[str, Any]
    cron: str
    next_run_at: Timestamp
    last_run_at: Timestamp | None
    recent_runs: list[UUID] = Field(description="task ids of its latest runs, newest first (GET /schedules/<id>)")


class ScheduleList(BaseModel):
    schedules: list[ScheduleView]


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


class Check(BaseModel):
    ok: bool
    error: str | None = None


class Health(BaseModel):
    redis: Check
    database: Check
    workers: int
    queues: dict[str, int]
    failed: int


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidRequest(f"key {', '.join(map(repr, repeated))} appears more than once")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise InvalidRequest(f"{name} is not a number JSON allows; send a finite number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise InvalidRequest(f"{text[:40]} is too large for a number; send a finite number")
    return number


def parse_json(body: bytes) -> Any:
    """Parse a body as strict JSON: no repeated keys, no NaN or Infinity, no number that overflows."""
    try:
        return json.loads(
            body, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant, parse_float=_finite
        )
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, over-long integers
        raise InvalidRequest(f"the body is not valid JSON ({exc})") from None


def _describe(error: Any, where: str) -> str:
    field = ".".join(str(part) for part in error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return f"{where} '{field}' is required"
    if kind == "extra_forbidden":
        return f"unknown {where} '{field}'"
    if kind == "finite_number":
        return f"'{field}' must be a finite number"
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = "at most" if kind == "less_than_equal" else "at least"
        return f"'{field}' must be {bound} {ctx.get('le', ctx.get('ge')):g}"
    if kind == "string_pattern_mismatch":
        return f"'{field}' must match {ctx['pattern']}"
    if kind in ("float_type", "int_type"):
        expected = "a number" if kind == "float_type" else "an integer"
        return f"'{field}' must be {expected}, not {json.dumps(error['input'])[:40]}"
    return f"'{field}': {error['msg']}"


def describe_errors(exc: ValidationError) -> str:
    """Every problem a validation found, in words that name the field."""
    where = "query parameter" if exc.title.endswith("Query") else "header" if exc.title.endswith("Headers") else "key"
    return "; ".join(_describe(error, where) for error in exc.errors())


TYPE_NAMES = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
              "array": "an array", "object": "an object", "null": "null"}  # fmt: skip
BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "over", "exclusiveMaximum": "under"}


def _number(bound: float) -> str:
    return str(bound) if isinstance(bound, int) and abs(bound) < 10**15 else f"{bound:g}"


def _describe_schema_error(error: Any) -> str:
    """One jsonschema error in the words _describe uses for pydantic's."""
    field = ".".join(str(part) for part in error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = [name for name in expected if name not in value]
        return "; ".join(f"key '{'.'.join(filter(None, (field, name)))}' is required" for name in missing)
    if kind == "additionalProperties":
        unknown = [name for name in value if name not in error.schema.get("properties", {})]
        return "; ".join(f"unknown key '{'.'.join(filter(None, (field, name)))}'" for name in unknown)
    if kind == "type":
        names = [TYPE_NAMES.get(name, name) for name in ([expected] if isinstance(expected, str) else expected)]
        return f"'{field}' must be {' or '.join(names)}, not {json.dumps(value)[:40]}"
    if kind in BOUNDS:
        return f"'{field}' must be {BOUNDS[kind]} {_number(expected)}"
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return f"'{field}' must have {bound} {expected} items, not {len(value)}"
    if kind in ("minLength", "maxLength"):
        return f"'{field}' must be {'at least' if kind == 'minLength' else 'at most'} {expected} characters long"
    if kind == "enum":
        return f"'{field}' must be one of {', '.join(json.dumps(option) for option in expected)}"
    return f"'{field}': {error.message}"


def describe_schema_errors(errors: list[Any]) -> str:
    """Every problem a JSON Schema validation found, in words that name the field, in the order of the fields."""
    ordered = sorted(errors, key=lambda error: [str(part) for part in error.absolute_path])
    # jsonschema reports each missing key as an error of its own, and each such error names every missing key.
    return "; ".join(dict.fromkeys(_describe_schema_error(error) for error in ordered))
