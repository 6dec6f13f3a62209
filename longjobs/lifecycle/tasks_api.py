"""The tasks area: GET /tasks/<id>, GET /tasks, DELETE /tasks/<id>, whatever a task's model.

Imports lifecycle, its schemas and http.
"""

from longjobs import lifecycle
from longjobs.http import blueprint
from longjobs.lifecycle.schemas import TASK_TAG, ListQuery, TaskList, TaskPath, TaskView
from longjobs.validation import ErrorBody

tasks_api = blueprint("tasks")


@tasks_api.get("/tasks/<uuid:task_id>", tags=TASK_TAG, summary="One task", responses={200: TaskView, 404: ErrorBody})
def get_task(path: TaskPath):
    return lifecycle.find(path.task_id).model_dump(mode="json")


@tasks_api.get("/tasks", tags=TASK_TAG, summary="Recent tasks, newest first", responses={200: TaskList, 400: ErrorBody})
def list_tasks(query: ListQuery):
    views, cursor = lifecycle.list_tasks(query)
    return TaskList(tasks=views, next_cursor=cursor).model_dump(mode="json")


@tasks_api.delete(
    "/tasks/<uuid:task_id>",
    tags=TASK_TAG,
    summary="Cancel a queued task or stop a running one",
    responses={200: TaskView, 202: TaskView, 404: ErrorBody, 409: ErrorBody},
)
def cancel_task(path: TaskPath):
    """200 with the task canceled; 202 while the worker stops a running one (it ends `stopped`); 409 once ended."""
    view = lifecycle.cancel(path.task_id)
    return view.model_dump(mode="json"), 200 if view.status == "canceled" else 202
