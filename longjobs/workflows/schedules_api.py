"""The schedules area: POST /schedules, GET /schedules, GET and DELETE /schedules/<id>.

Imports schedules, the workflows' schemas and http.
"""

from flask_openapi3 import Tag

from longjobs.http import blueprint
from longjobs.validation import ErrorBody
from longjobs.workflows import schedules
from longjobs.workflows.schemas import ScheduleList, SchedulePath, ScheduleRequest, ScheduleView

SCHEDULE_TAG = [Tag(name="schedules", description="a model run on a clock (cron, UTC) by the clock process")]
schedules_api = blueprint("schedules")


@schedules_api.post(
    "/schedules",
    tags=SCHEDULE_TAG,
    summary="Run a model on a clock",
    responses={201: ScheduleView, 400: ErrorBody, 413: ErrorBody},
)
def create_schedule(body: ScheduleRequest):
    """The clock process queues a task of the model with these parameters each time the cron expression comes due
    (UTC); a time missed while no clock ran is run once."""
    schedule = schedules.create_schedule(body)
    return schedule.model_dump(mode="json"), 201, {"Location": f"/schedules/{schedule.schedule_id}"}


@schedules_api.get("/schedules", tags=SCHEDULE_TAG, summary="Every schedule", responses={200: ScheduleList})
def list_schedules():
    return ScheduleList(schedules=schedules.list_schedules()).model_dump(mode="json")


@schedules_api.get(
    "/schedules/<uuid:schedule_id>",
    tags=SCHEDULE_TAG,
    summary="One schedule, with its recent runs",
    responses={200: ScheduleView, 404: ErrorBody},
)
def get_schedule(path: SchedulePath):
    return schedules.find_schedule(path.schedule_id).model_dump(mode="json")


@schedules_api.delete(
    "/schedules/<uuid:schedule_id>",
    tags=SCHEDULE_TAG,
    summary="Delete a schedule (its runs stay)",
    responses={204: None, 404: ErrorBody},
)
def delete_schedule(path: SchedulePath):
    schedules.delete_schedule(path.schedule_id)
    return "", 204
