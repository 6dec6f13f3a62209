"""Sweeps: a model run over a grid of parameters, gathered into one table.

A sweep's runs are ordinary tasks that name it (tasks.sweep_id), accepted and queued as lifecycle accepts any task,
and recovered as any task is. Shared by the HTTP API and the CLI. Imports core, catalog, lifecycle and the
workflows' own schemas; its errors are werkzeug HTTP exceptions.
"""

import csv
import io
import itertools
import json
import logging
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import select
from werkzeug.exceptions import BadRequest, Conflict, NotFound, ServiceUnavailable

from core import Result, Sweep, Task, db
from longjobs import lifecycle
from longjobs.catalog import Model
from longjobs.workflows import model_named, validated
from longjobs.workflows.schemas import (
    SweepPending,
    SweepProgress,
    SweepRequest,
    SweepTable,
)

log = logging.getLogger(__name__)


def combinations(model: Model, request: SweepRequest) -> list[dict[str, Any]]:
    """Each run's grid values, in grid order (keys as given, the last varying fastest); 400 naming what is wrong."""
    names = list(request.grid)
    if not names:
        raise BadRequest("'grid' must name at least one parameter")
    parameters = model.schema.get("properties", {})
    for name in names:
        if name not in parameters:
            raise BadRequest(f"grid key {name!r} is not a parameter of {model.name}; its parameters are "
                             f"{', '.join(parameters)}")  # fmt: skip
        if not request.grid[name]:
            raise BadRequest(f"grid key {name!r} has no values; give at least one")
    runs = 1
    for values in request.grid.values():
        runs *= len(values)
    if runs > (most := current_app.config["MAX_SWEEP_RUNS"]):
        raise BadRequest(f"the grid makes {runs} runs, over the {most} allowed (MAX_SWEEP_RUNS)")
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*request.grid.values())]


def submit_sweep(request: SweepRequest, priority: str = "default", key: str | None = None) -> uuid.UUID:
    """Accept a sweep: every run validated first (400 naming the run's index), then every run recorded and queued
    in one transaction, or none. A repeated idempotency key gives the first sweep."""
    model = model_named(request.model)
    grid = combinations(model, request)
    runs = [validated(model, request.params | values, f"run {index} ({_describe(values)})")
            for index, values in enumerate(grid)]  # fmt: skip
    lifecycle.check_room(priority, len(runs))
    sweep_id = uuid.uuid4()
    fingerprint = lifecycle.fingerprint(request.model_dump(mode="json"), priority)
    if key is not None and (earlier := lifecycle.claim_key("sweeps", key, fingerprint, sweep_id)):
        log.info("sweep %s requested again with its idempotency key", earlier)
        return earlier
    db.session.add(Sweep(sweep_id=sweep_id, model=model.name, params=request.params,
                         grid=[[name, values] for name, values in request.grid.items()]))  # fmt: skip
    db.session.flush()
    batch = [Task(task_id=uuid.uuid4(), type=model.name, priority=priority, params=params, sweep_id=sweep_id,
                  sweep_index=index) for index, params in enumerate(runs)]  # fmt: skip
    db.session.execute(lifecycle.INSERT_TASK, [lifecycle.task_row(task) for task in batch])
    lifecycle.queue_and_commit(batch)
    log.info("sweep %s accepted (%s, %d runs, priority %s)", sweep_id, model.name, len(batch), priority)
    return sweep_id


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in values.items())


RUNS = (
    select(Task.sweep_index, Task.task_id, Result.status, Result.result, Result.error)
    .outerjoin(Result, Result.task_id == Task.task_id)
    .order_by(Task.sweep_index)
)


def find_sweep(sweep_id: uuid.UUID) -> SweepTable | SweepPending:
    """The sweep's table once every run has ended, else its progress; 404 if unknown. One SELECT of its runs."""
    sweep = db.session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFound(f"no sweep has the id {sweep_id}")
    rows = db.session.execute(RUNS.where(Task.sweep_id == sweep_id)).all()
    ended = sum(row.status is not None for row in rows)
    if ended < len(rows):
        progress = SweepProgress(total=len(rows), ended=ended, percent=100 * ended // len(rows))
        return SweepPending(sweep_id=sweep_id, status="running", progress=progress)
    names = [name for name, _ in sweep.grid]
    grid = list(itertools.product(*(values for _, values in sweep.grid)))  # the values as given, not as validated
    counts = dict.fromkeys(("finished", "failed", "canceled", "stopped"), 0)
    runs = []
    for row in rows:
        counts[row.status] += 1
        params = dict(zip(names, grid[row.sweep_index], strict=True))
        run = {"index": row.sweep_index, "params": params, "task_id": row.task_id, "status": row.status}
        runs.append(run | ({"result": row.result} if row.status == "finished" else {"error": row.error}))
    return SweepTable.model_validate(
        {"sweep_id": sweep_id, "model": sweep.model, "status": "finished", "counts": counts, "runs": runs}
    )


def _flatten(value: Any, prefix: str, into: dict[str, Any]) -> None:
    """A result's numbers and strings, nested objects' as dotted names; lists and nulls are left out."""
    if isinstance(value, dict):
        for name, inner in value.items():
            _flatten(inner, f"{prefix}.{name}" if prefix else name, into)
    elif isinstance(value, bool | int | float | str):
        into[prefix or "result"] = value


def sweep_csv(table: SweepTable) -> str:
    """The sweep's table as CSV: index, the grid parameters, task_id, status, the results' columns, error."""
    names = list(table.runs[0].params) if table.runs else []
    flat = []
    for run in table.runs:
        values: dict[str, Any] = {}
        if run.status == "finished":
            _flatten(run.result, "", values)
        flat.append(values)
    columns = list(dict.fromkeys(name for values in flat for name in values))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["index", *names, "task_id", "status", *columns, "error"])
    for run, values in zip(table.runs, flat, strict=True):
        writer.writerow([run.index, *(_cell(run.params[name]) for name in names), run.task_id, run.status,
                         *(_cell(values.get(column)) for column in columns), run.error or ""])  # fmt: skip
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else json.dumps(value) if isinstance(value, bool | list | dict) else value


def cancel_sweep(sweep_id: uuid.UUID) -> dict[str, Any]:
    """Cancel or stop every run that has not ended; 409 once all have. A run being handed to a worker at that moment
    (a matter of milliseconds) makes it a 503 to ask again: the others are canceled already."""
    if db.session.get(Sweep, sweep_id) is None:
        raise NotFound(f"no sweep has the id {sweep_id}")
    open_runs = db.session.scalars(
        select(Task.task_id).outerjoin(Result, Result.task_id == Task.task_id)
        .where(Task.sweep_id == sweep_id, Result.task_id.is_(None)).order_by(Task.sweep_index)
    ).all()  # fmt: skip
    if not open_runs:
        raise Conflict(f"every run of sweep {sweep_id} has already ended")
    canceled: list[uuid.UUID] = []
    stopping: list[uuid.UUID] = []
    later: list[uuid.UUID] = []
    for task_id in open_runs:
        try:
            view = lifecycle.cancel(task_id)
        except Conflict:
            continue  # it ended meanwhile
        except ServiceUnavailable:
            later.append(task_id)
            continue
        (canceled if view.status == "canceled" else stopping).append(task_id)
    if later:
        raise ServiceUnavailable(f"{len(later)} runs of sweep {sweep_id} are being handed to a worker: ask again in a "
                                 "moment (the others are canceled or stopping)",
                                 retry_after=lifecycle.RETRY_HANDOVER_SECONDS)  # fmt: skip
    log.info("sweep %s: %d runs canceled, %d stopping", sweep_id, len(canceled), len(stopping))
    return {"sweep_id": str(sweep_id), "canceled": len(canceled), "stopping": len(stopping)}
