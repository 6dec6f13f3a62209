"""The operator CLI, `flask tasks ...`: submit a task and watch it to the end, run a sweep and print its table,
list schedules, list and requeue failed tasks, prune old ones.

Imports core, validation, lifecycle, sweeps, schedules and their schemas; every command runs in the app context
the flask CLI provides.
"""

import csv
import io
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, cast

import click
from flask import current_app
from flask.cli import AppGroup
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import CursorResult, delete, select
from werkzeug.exceptions import BadRequest, HTTPException

from core import QUEUE_NAMES, Delivery, IdempotencyKey, Result, Sweep, Task, db
from longjobs import lifecycle
from longjobs.validation import PRIORITIES, TERMINAL_STATUSES
from longjobs.workflows import schedules, sweeps
from longjobs.workflows.schemas import SweepPending, SweepRequest

IDEMPOTENCY_KEY_MINIMUM_AGE = timedelta(hours=24)  # the contract keeps keys at least this long
AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
POLL_SECONDS = 0.25
SHORT_RESULT_CHARS = 300  # a result up to this long is printed whole, as JSON
BRIEF_CHARS = 60
CELL_CHARS = 24  # a sweep table's columns are at most this wide on screen (the CSV has them whole)

tasks_group = AppGroup("tasks", help="Submit and watch tasks and sweeps, list schedules, requeue failed tasks, prune.")


def _parse_params(pairs: tuple[str, ...]) -> dict[str, object]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="PARAMS")
        try:
            params[key] = json.loads(value)
        except ValueError:
            raise click.BadParameter(
                f"the value of {key!r} must be a JSON value, e.g. 3 or 2.5", param_hint="PARAMS"
            ) from None
    return params


@tasks_group.command("models")
def models_command() -> None:
    """List the models tasks can run (one file each in models/)."""
    for model in current_app.extensions["models"].values():
        click.echo(f"{model.name:16} {model.language:6}  {model.summary}")


@tasks_group.command("submit")
@click.argument("model_name", metavar="MODEL")
@click.argument("params", nargs=-1, metavar="KEY=VALUE...")
@click.option("--priority", type=click.Choice(PRIORITIES), default="default", show_default=True)
@click.option("--watch/--no-watch", default=True, show_default=True, help="Follow the task with a progress bar.")
def submit_command(model_name: str, params: tuple[str, ...], priority: str, watch: bool) -> None:
    """Queue a task of MODEL (`flask tasks models` lists them), e.g. `flask tasks submit multiply x=6 y=7 delay=10`."""
    logging.getLogger().setLevel(logging.WARNING)  # the progress bar and the result, not the service's log lines
    models = current_app.extensions["models"]
    if model_name not in models:
        raise click.UsageError(f"there is no model named {model_name!r}; the models are {', '.join(models)}")
    model = models[model_name]
    try:
        task_id = lifecycle.submit(model, _parse_params(params), priority)
    except BadRequest as exc:
        raise click.UsageError(exc.description) from None
    except HTTPException as exc:
        raise click.ClickException(cast(str, exc.description)) from None  # lifecycle's errors all have one
    click.echo(f"task {task_id} queued; its result will be at {model.result_path}/{task_id}")
    if watch:
        watch_task(task_id)


@tasks_group.command("watch")
@click.argument("task_id", type=click.UUID)
def watch_command(task_id: uuid.UUID) -> None:
    """Follow a task with a progress bar until it ends and show its result; exit 1 unless it finished."""
    logging.getLogger().setLevel(logging.WARNING)
    watch_task(task_id)


def watch_task(task_id: uuid.UUID) -> None:
    try:
        view = lifecycle.find(task_id)
    except HTTPException as exc:
        raise click.ClickException(cast(str, exc.description)) from None  # lifecycle's errors all have one
    with click.progressbar(length=100, label=view.status, show_percent=True, show_eta=False) as bar:
        while view.status not in TERMINAL_STATUSES:
            bar.label = f"{view.status} {view.progress.message or ''}".strip()
            bar.update(view.progress.percent - bar.pos)
            time.sleep(POLL_SECONDS)
            db.session.commit()  # end the snapshot, so the next look sees the worker's writes
            view = lifecycle.find(task_id)
        bar.label = view.status
        bar.update(view.progress.percent - bar.pos)
    if view.status != "finished":
        raise click.ClickException(f"task {task_id} {view.status}: {view.error}")
    if (ended := db.session.get(Result, task_id)) is None:  # its outcome waits in Redis for the watchmen
        raise click.ClickException(f"task {task_id} finished, but the database cannot take its result yet; "
                                   f"`flask tasks watch {task_id}` shows it once it can")  # fmt: skip
    result = ended.result
    if len(text := json.dumps(result)) <= SHORT_RESULT_CHARS:
        click.echo(text)
        return
    for line in summarize(result):
        click.echo(line)
    click.echo(f"(a summary; the whole result: GET {view.result_url})")


def _brief(value: Any, depth: int = 0) -> str:
    text = json.dumps(value)
    if len(text) <= BRIEF_CHARS:
        return text
    if isinstance(value, list):
        return f"[{len(value)} items: {_brief(value[0], depth + 1)} ... {_brief(value[-1], depth + 1)}]"
    if isinstance(value, dict) and depth < 2:
        return "{" + ", ".join(f"{key}: {_brief(item, depth + 1)}" for key, item in value.items()) + "}"
    return text[: BRIEF_CHARS - 3] + "..."


def summarize(result: Any) -> list[str]:
    """A large result in a few lines: one per key, long lists as their length and ends."""
    if isinstance(result, dict):
        return [f"{key}: {_brief(value, 1)}" for key, value in result.items()]
    return [_brief(result)]


def _parse_grid(items: tuple[str, ...]) -> dict[str, list[object]]:
    grid: dict[str, list[object]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE,VALUE,...", param_hint="--grid")
        try:
            grid[key] = [json.loads(value) for value in values.split(",")]
        except ValueError:
            raise click.BadParameter(f"the values of {key!r} must be JSON values, e.g. 1.5,2,2.5",
                                     param_hint="--grid") from None  # fmt: skip
    return grid


@tasks_group.command("sweep")
@click.argument("model_name", metavar="MODEL")
@click.argument("params", nargs=-1, metavar="KEY=VALUE...")
@click.option("--grid", "grid", multiple=True, required=True, metavar="KEY=V1,V2,...",
              help="A parameter and its values (repeat for more; the last varies fastest).")  # fmt: skip
@click.option("--priority", type=click.Choice(PRIORITIES), default="default", show_default=True)
@click.option("--csv", "csv_file", type=click.File("w"), help="Write the table as CSV to this file too.")
def sweep_command(model_name: str, params: tuple[str, ...], grid: tuple[str, ...], priority: str,
                  csv_file: TextIO | None) -> None:  # fmt: skip
    """Run MODEL over a grid of parameters (KEY=VALUE: the base parameters of every run), follow the runs with a
    progress bar and print the table, e.g. `flask tasks sweep simulation days=120 --grid r0=1.5,2.5 --grid
    infectious_days=5,7`."""
    logging.getLogger().setLevel(logging.WARNING)
    body = SweepRequest(model=model_name, params=_parse_params(params), grid=_parse_grid(grid))
    try:
        sweep_id = sweeps.submit_sweep(body, priority)
    except BadRequest as exc:
        raise click.UsageError(cast(str, exc.description)) from None
    except HTTPException as exc:
        raise click.ClickException(cast(str, exc.description)) from None
    found = sweeps.find_sweep(sweep_id)
    total = found.progress.total if isinstance(found, SweepPending) else len(found.runs)
    click.echo(f"sweep {sweep_id} queued: {total} runs; its table will be at /sweeps/{sweep_id}")
    with click.progressbar(length=total, label="runs ended", show_percent=True, show_eta=False) as bar:
        while isinstance(found, SweepPending):
            bar.update(found.progress.ended - bar.pos)
            time.sleep(POLL_SECONDS)
            db.session.commit()  # end the snapshot, so the next look sees the workers' writes
            found = sweeps.find_sweep(sweep_id)
        bar.update(total - bar.pos)
    table = sweeps.sweep_csv(found)
    rows = list(csv.reader(io.StringIO(table)))
    widths = [min(max(len(row[column]) for row in rows), CELL_CHARS) for column in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(_clip(cell, width).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if csv_file is not None:
        csv_file.write(table)
    counts = ", ".join(f"{count} {status}" for status, count in found.counts.items() if count)
    click.echo(f"sweep {sweep_id}: {counts}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@tasks_group.command("schedules")
def schedules_command() -> None:
    """List the schedules (POST /schedules makes them; the clock process runs them)."""
    listed = schedules.list_schedules()
    for schedule in listed:
        last = schedule.last_run_at.isoformat() if schedule.last_run_at else "never"
        click.echo(f"{schedule.schedule_id}  {schedule.model:12} {schedule.cron:16} "
                   f"next {schedule.next_run_at.isoformat()}  last {last}  {json.dumps(schedule.params)}")  # fmt: skip
    click.echo(f"{len(listed)} schedule(s)")


def _failed_jobs() -> list[Job]:
    queues = current_app.extensions["queues"]
    ids = [job_id for name in QUEUE_NAMES for job_id in queues[name].failed_job_registry.get_job_ids()]
    jobs = Job.fetch_many(ids, connection=current_app.extensions["redis"], serializer=JSONSerializer)
    return sorted((job for job in jobs if job is not None), key=lambda job: job.ended_at or datetime.min)


@tasks_group.command("failed")
def failed_command() -> None:
    """List the tasks in RQ's failed registry (the dead-letter queue), oldest first."""
    jobs = _failed_jobs()
    for job in jobs:
        result = job.latest_result()
        reason = result.exc_string.strip().splitlines()[-1] if result and result.exc_string else ""
        click.echo(f"{job.id}  {job.meta.get('type', '?'):10}  {job.origin:7}  {job.ended_at}  {reason}")
    click.echo(f"{len(jobs)} failed task(s)")


@tasks_group.command("requeue")
@click.argument("task_ids", nargs=-1, type=click.UUID)
@click.option("--all", "every", is_flag=True, help="Requeue every failed task.")
def requeue_command(task_ids: tuple[uuid.UUID, ...], every: bool) -> None:
    """Run failed tasks again; each ends with the row of its new outcome."""
    if every == bool(task_ids):
        raise click.UsageError("name the failed tasks to requeue, or pass --all")
    failed = {job.id: job for job in _failed_jobs()}
    wanted = list(failed) if every else [str(task_id) for task_id in task_ids]
    missing = [task_id for task_id in wanted if task_id not in failed]
    if missing:
        raise click.ClickException(f"not in the failed registry: {', '.join(missing)}")
    for task_id in wanted:
        failed[task_id].requeue()
        click.echo(f"task {task_id} requeued")


def _parse_age(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise click.BadParameter("give an age like 90s, 45m, 12h or 30d", param_hint="--older-than")
    return timedelta(**{AGE_UNITS[match[2]]: int(match[1])})


@tasks_group.command("prune")
@click.option("--older-than", "age", required=True, help="Age like 90s, 45m, 12h or 30d.")
def prune_command(age: str) -> None:
    """Delete tasks that ended longer ago than AGE (rows and results), webhook deliveries that ended as long ago, and
    idempotency keys past 24 h. The totals of /metrics stay: they count what happened."""
    cutoff = datetime.now(UTC) - _parse_age(age)
    ended = delete(Result).where(Result.ended_at < cutoff).returning(Result.task_id)
    task_ids = db.session.scalars(ended).all()
    db.session.execute(delete(Task).where(Task.task_id.in_(task_ids)))
    db.session.execute(delete(Sweep).where(~select(Task.task_id).where(Task.sweep_id == Sweep.sweep_id).exists()))
    oldest_key = min(cutoff, datetime.now(UTC) - IDEMPOTENCY_KEY_MINIMUM_AGE)
    deleted = db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < oldest_key))
    keys = cast(CursorResult[Any], deleted).rowcount  # a DELETE's result is a CursorResult
    ended_deliveries = delete(Delivery).where(Delivery.outcome != "pending", Delivery.created_at < cutoff)
    deliveries = cast(CursorResult[Any], db.session.execute(ended_deliveries)).rowcount
    db.session.commit()
    click.echo(
        f"pruned {len(task_ids)} ended task(s), {deliveries} webhook delivery(ies) and {keys} idempotency key(s)"
    )
