"""The schemas of sweeps and schedules.

A pure module: imports validation alone.
"""

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, RootModel

from longjobs.validation import ErrorBody, RequestPart, Status, Timestamp


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
