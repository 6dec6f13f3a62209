"""Request and response schemas, and strict JSON parsing: the one place that says what the API takes
and gives. The OpenAPI document is generated from these models.

A pure module: imports nothing of ours.
"""

import json
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

MAX_MAGNITUDE = 1e150
MAX_DELAY_SECONDS = 300.0
PRIORITIES = ("high", "default", "low")
TERMINAL_STATUSES = ("finished", "failed", "canceled", "stopped")
STATUSES = ("queued", "started", "deferred", "scheduled", *TERMINAL_STATUSES)
Priority = Literal["high", "default", "low"]
# ISO 8601 in UTC with an explicit offset (+00:00), whatever the database session's time zone.
Timestamp = Annotated[datetime, PlainSerializer(lambda moment: moment.astimezone(UTC).isoformat(), return_type=str)]
Status = Literal["queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped"]


class InvalidRequest(ValueError):
    """A request body that does not follow its schema; the message says why, for a person."""


def _exact_magnitude(value: Any) -> Any:
    # An integer just past 10**150 would round to 1e150 as a float: compare it as the integer it is.
    if type(value) is int and abs(value) > 10**150:
        raise PydanticCustomError("out_of_range", "magnitude must be at most 1e+150")
    return value


Operand = Annotated[
    float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False), BeforeValidator(_exact_magnitude)
]


class MultiplyRequest(BaseModel):
    """The body of POST /multiply."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x: Operand
    y: Operand
    delay: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False)] = 0.0


class SimulationRequest(BaseModel):
    """The body of POST /simulations: a stochastic SEIR epidemic, `runs` times over `days` days."""

    model_config = ConfigDict(extra="forbid", strict=True)

    population: Annotated[int, Field(ge=1, le=1_000_000_000, description="people in the population")]
    initial_infected: Annotated[int, Field(ge=1, description="infectious people on day 0, at most population")]
    r0: Annotated[float, Field(ge=0, le=20, allow_inf_nan=False, description="basic reproduction number")]
    incubation_days: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False, description="mean latent period")]
    infectious_days: Annotated[float, Field(ge=0.1, le=60, allow_inf_nan=False, description="mean infectious period")]
    days: Annotated[int, Field(ge=1, le=1000, description="days to simulate")]
    runs: Annotated[int, Field(ge=1, le=100_000, description="replicate runs")]
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="random seed; one is drawn if absent")] = Field(
        default_factory=lambda: secrets.randbits(63)
    )

    @field_validator("initial_infected")
    @classmethod
    def _at_most_population(cls, value: int, info: ValidationInfo) -> int:
        population = info.data.get("population")
        if population is not None and value > population:
            raise PydanticCustomError(
                "too_many", "must be at most population ({population})", {"population": population}
            )
        return value


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
    type: Literal["multiply", "simulation"] | None = None
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


class MultiplyOutcome(BaseModel):
    task_id: UUID
    status: Status
    result: float | None = Field(None, description="present when finished")
    error: str | None = Field(None, description="present when failed, canceled or stopped")


class Band(BaseModel):
    low: float = Field(description="5th percentile across runs")
    median: float
    high: float = Field(description="95th percentile across runs")


class InfectiousCurve(BaseModel):
    low: list[float]
    median: list[float]
    high: list[float]


class SimulationSummary(BaseModel):
    days: int
    runs: int
    seed: int
    infectious: InfectiousCurve = Field(description="infectious people per day, day 0 first")
    peak_day: Band
    peak_size: Band
    final_size: Band = Field(description="people ever infected")
    died_out: float = Field(description="share of runs with nobody exposed or infectious at the end")


class SimulationOutcome(BaseModel):
    task_id: UUID
    status: Status
    result: SimulationSummary | None = Field(None, description="present when finished")
    error: str | None = Field(None, description="present when failed, canceled or stopped")


class TaskView(BaseModel):
    """Everything known about a task."""

    task_id: UUID
    type: str
    priority: Priority
    status: Status
    progress: Progress
    enqueued_at: Timestamp | None
    started_at: Timestamp | None
    ended_at: Timestamp | None
    result_url: str
    error: str | None


class TaskList(BaseModel):
    tasks: list[TaskView]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last one")


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


def parse_json(body: bytes) -> Any:
    """Parse a body as strict JSON: no repeated keys, no NaN or Infinity."""
    try:
        return json.loads(body, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
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
