"""A task's event stream, GET /tasks/<id>/events: Server-Sent Events on the web's gevent workers, MAX_EVENT_STREAMS
per web process.

Imports lifecycle, its schemas and http.
"""

import logging
import threading
import time
from collections.abc import Iterator

from flask import current_app, stream_with_context
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import ServiceUnavailable
from werkzeug.wrappers import Response

from longjobs import lifecycle
from longjobs.http import RETRY_LATER_SECONDS, blueprint
from longjobs.lifecycle.schemas import TASK_TAG, TaskPath, TaskView
from longjobs.validation import TERMINAL_STATUSES, ErrorBody

log = logging.getLogger(__name__)
STREAM_LOOK_SECONDS = 0.2  # how often an event stream looks for a change: progress is written at most 4 times a second
# A comment when nothing else was sent for this long: the next write after a client left is how its stream learns it
# (its slot is free again within two of these), and Heroku's router closes a stream that sends nothing for 55 s.
KEEPALIVE_SECONDS = 1.0
events_api = blueprint("events")


def _event(name: str, view: TaskView) -> str:
    return f"event: {name}\ndata: {view.model_dump_json()}\n\n"


def _task_events(view: TaskView, views: Iterator[TaskView | None]) -> Iterator[str]:
    """The stream: `status` at once and at each change, keep-alive comments meanwhile, `end` once the task ended."""
    yield _event("status", view)
    written = time.monotonic()
    try:
        while view.status not in TERMINAL_STATUSES:
            time.sleep(STREAM_LOOK_SECONDS)
            if (changed := next(views)) is not None:
                view, written = changed, time.monotonic()
                yield _event("status", view)
            elif time.monotonic() - written >= KEEPALIVE_SECONDS:
                written = time.monotonic()
                yield ":\n"
    except (RedisError, OperationalError) as fault:  # the client's reconnect is answered 503 until they are back
        log.warning("task %s: its event stream ends: %s: %s", view.task_id, type(fault).__name__, fault)
        return
    yield _event("end", view)


EVENT_STREAM = {"description": "Server-Sent Events: `status` (the task as GET /tasks/<id> shows it) at once and at "
                "each change of status or progress, comment lines meanwhile, `end` once it has ended; then it closes",
                "content": {"text/event-stream": {"schema": {"type": "string"}}}}  # fmt: skip


@events_api.get(
    "/tasks/<uuid:task_id>/events",
    tags=TASK_TAG,
    summary="A task's status and progress as they change",
    responses={200: EVENT_STREAM, 404: ErrorBody, 503: ErrorBody},
)
def task_events(path: TaskPath):
    """text/event-stream until the task ends; 503 when this web process has MAX_EVENT_STREAMS open (poll instead)."""
    slots: threading.BoundedSemaphore = current_app.extensions["event_streams"]
    if not slots.acquire(blocking=False):
        raise ServiceUnavailable(f"this server has {current_app.config['MAX_EVENT_STREAMS']} event streams open, its "
                                 "most; poll GET /tasks/<id> instead, or try again later",
                                 retry_after=RETRY_LATER_SECONDS)  # fmt: skip
    try:
        views = lifecycle.follow(path.task_id)
        first = next(views)  # 404 here, before the stream begins
        assert first is not None  # follow's first look is the task's view
    except BaseException:
        slots.release()
        raise
    response = Response(stream_with_context(_task_events(first, views)), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})  # fmt: skip
    response.call_on_close(slots.release)  # the server closes the response however the stream ended
    return response
