"""Schedules: a model run on a clock (cron, UTC). The clock process queues each due run once (run_due_schedule);
each run is an ordinary task that names its schedule (tasks.schedule_id).

Imports core, lifecycle and the workflows' own schemas; its errors are werkzeug HTTP exceptions.
"""

import logging
import uuid
from datetime import UTC, datetime

from croniter import croniter
from sqlalchemy import func, select
from werkzeug.exceptions import BadRequest, NotFound

from core import Schedule, Task, db
from longjobs import lifecycle
from longjobs.workflows import model_named, validated
from longjobs.workflows.schemas import ScheduleRequest, ScheduleView

log = logging.getLogger(__name__)
RECENT_RUNS = 10  # a schedule's runs GET /schedules/<id> names


def _cron(expression: str) -> str:
    if len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise BadRequest(f"'cron' must be 5 cron fields (minute hour day month weekday, UTC), not {expression!r}")
    return expression


def next_run(cron: str, after: datetime) -> datetime:
    return croniter(cron, after).get_next(datetime)


def create_schedule(request: ScheduleRequest) -> ScheduleView:
    model = model_named(request.model)
    params = validated(model, request.params, "params")
    cron = _cron(request.cron)
    schedule = Schedule(schedule_id=uuid.uuid4(), model=model.name, params=params, cron=cron,
                        next_run_at=next_run(cron, datetime.now(UTC)))  # fmt: skip
    db.session.add(schedule)
    db.session.commit()
    log.info("schedule %s created (%s, %s)", schedule.schedule_id, model.name, cron)
    return describe_schedule(schedule, [])


def describe_schedule(schedule: Schedule, recent: list[uuid.UUID]) -> ScheduleView:
    return ScheduleView(schedule_id=schedule.schedule_id, model=schedule.model, params=schedule.params,
                        cron=schedule.cron, next_run_at=schedule.next_run_at, last_run_at=schedule.last_run_at,
                        recent_runs=recent)  # fmt: skip


def find_schedule(schedule_id: uuid.UUID) -> ScheduleView:
    if (schedule := db.session.get(Schedule, schedule_id)) is None:
        raise NotFound(f"no schedule has the id {schedule_id}")
    recent = db.session.scalars(
        select(Task.task_id).where(Task.schedule_id == schedule_id).order_by(Task.enqueued_at.desc()).limit(RECENT_RUNS)
    ).all()
    return describe_schedule(schedule, list(recent))


def list_schedules() -> list[ScheduleView]:
    schedules = db.session.scalars(select(Schedule).order_by(Schedule.created_at, Schedule.schedule_id)).all()
    return [describe_schedule(schedule, []) for schedule in schedules]


def delete_schedule(schedule_id: uuid.UUID) -> None:
    if (schedule := db.session.get(Schedule, schedule_id)) is None:
        raise NotFound(f"no schedule has the id {schedule_id}")
    db.session.delete(schedule)
    db.session.commit()
    log.info("schedule %s deleted", schedule_id)


DUE = select(Schedule).where(Schedule.next_run_at <= func.now()).with_for_update(skip_locked=True).limit(1)


def run_due_schedule() -> uuid.UUID | None:
    """Queue the run of one due schedule, if one is due: the run's task row and the schedule's next run time are
    committed together, under the schedule's row lock, so that two clocks never queue the same run, and a clock
    killed in between leaves the run undone (the next tick does it). A schedule missed for a while runs once: its
    next run time is the first one after now. The job is queued after the commit; if that fails (Redis down), the
    watchmen queue it (recovery.py). Returns the run's task id."""
    schedule = db.session.scalars(DUE).first()
    if schedule is None:
        db.session.rollback()
        return None
    now = datetime.now(UTC)
    task = Task(task_id=uuid.uuid4(), type=schedule.model, priority="default", params=schedule.params,
                schedule_id=schedule.schedule_id)  # fmt: skip
    db.session.execute(lifecycle.INSERT_TASK, lifecycle.task_row(task))
    schedule.last_run_at, schedule.next_run_at = now, next_run(schedule.cron, now)
    db.session.commit()
    try:
        lifecycle.enqueue(task)
    except Exception as fault:  # the row decides: the watchmen queue a recorded task whose job is missing
        log.warning("task %s (schedule %s): not queued yet (%s); the watchmen will", task.task_id,
                    schedule.schedule_id, fault)  # fmt: skip
    log.info("task %s queued for schedule %s (%s); next at %s", task.task_id, schedule.schedule_id, schedule.model,
             schedule.next_run_at.isoformat())  # fmt: skip
    return task.task_id
