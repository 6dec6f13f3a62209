"""rq-dashboard mounted at /rq: on the app's Redis client and JSON serializer, behind basic auth, its
state-changing actions refused unless they come from its own pages, and nothing a client sent rendered
unescaped (its job page shows a job's fields as HTML; a model's result, error and progress messages may
carry client text).

Imports core (for live_workers); app.py mounts it.
"""

import hmac
import html
from typing import Any, cast

import rq_dashboard
import rq_dashboard.web
from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from rq.exceptions import NoSuchJobError
from rq.job import requeue_job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from core import live_workers

DASHBOARD_PREFIX = "/rq"
# rq-dashboard's endpoints that change state (requeue_all and the others accept GET too).
DASHBOARD_ACTIONS = {
    f"rq_dashboard.{name}"
    for name in ("delete_job_view", "requeue_job_view", "requeue_all", "empty_queue", "compact_queue")
}
# The fields of a job that its page renders as HTML, as they are (rq-dashboard's job.html).
FREE_TEXT = ("description", "exc_info", "metadata", "result")
NOT_STORED = {"Cache-Control": "no-store"}  # as rq-dashboard answers its data requests


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _from_own_origin() -> bool:
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin == request.host_url.rstrip("/")
    return request.headers.get("Referer", "").startswith(request.host_url + DASHBOARD_PREFIX.lstrip("/"))


def require_dashboard_login() -> None:
    """Let only the configured user into the dashboard (nobody while no password is set), and only the
    dashboard's own pages change anything: browsers resend basic auth to any site that asks."""
    if request.path != DASHBOARD_PREFIX and not request.path.startswith(DASHBOARD_PREFIX + "/"):
        return
    if request.endpoint in DASHBOARD_ACTIONS and not _from_own_origin():
        raise Forbidden("the dashboard's actions work only from its own pages")
    password = current_app.config["RQ_DASHBOARD_PASSWORD"]
    auth = request.authorization
    if password and auth and auth.type == "basic" and auth.username and auth.password is not None:
        # Both compared every time, so the answer's timing tells nothing about which was wrong.
        user_ok = _matches(auth.username, current_app.config["RQ_DASHBOARD_USERNAME"])
        if _matches(auth.password, password) & user_ok:
            return
    message = "log in with the dashboard's username and password"
    if not password:
        message = "the dashboard is locked: set RQ_DASHBOARD_PASSWORD to open it"
    raise Unauthorized(message, www_authenticate=WWWAuthenticate("basic", {"realm": "rq-dashboard"}))


def share_redis_with_dashboard() -> None:
    # rq-dashboard builds a new client from its URL on every request; hand it the app's one instead.
    # (The attribute is rq-dashboard's, unknown to Flask's types.)
    current_app.redis_conn = current_app.extensions["redis"]  # type: ignore[attr-defined]


def requeue_failed_job(job_id: str) -> dict:
    """rq-dashboard's requeue button, on the JSON serializer (its own saves the job back with pickle)."""
    requeue_job(job_id, connection=current_app.extensions["redis"], serializer=JSONSerializer)
    return {"status": "OK"}


def requeue_all_failed_jobs(queue_name: str) -> dict:
    """rq-dashboard's "requeue all", on the JSON serializer."""
    registry = FailedJobRegistry(queue_name, connection=current_app.extensions["redis"], serializer=JSONSerializer)
    job_ids = registry.get_job_ids(cleanup=False)
    for job_id in job_ids:
        registry.requeue(job_id)
    return {"status": "OK", "count": len(job_ids)}


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    return value


def escaped_job_info(view: Any) -> Any:
    """rq-dashboard's job data with its free-text fields HTML-escaped, for its job page."""
    data_of = view.__wrapped__  # the view's function under rq-dashboard's jsonify (functools.wraps)

    def job_info(instance_number: int, job_id: str) -> ResponseReturnValue:
        data = data_of(instance_number=instance_number, job_id=job_id)
        return data | {field: _escaped(data.get(field)) for field in FREE_TEXT}, NOT_STORED

    return job_info


def list_workers(instance_number: int) -> ResponseReturnValue:
    """rq-dashboard's workers data, of the live workers (core.live_workers), with each one's current job read on
    the JSON serializer (its own reads it with pickle and fails while a job runs)."""
    workers = []
    for worker in live_workers(current_app.extensions["redis"]):
        job = worker.get_current_job()
        current = "idle" if job is None else {"job_id": job.id, "description": html.escape(job.description or ""),
                                              "created_at": rq_dashboard.web.serialize_date(job.created_at),
                                              "call_string": html.escape(cast(str, job.func_name))}  # fmt: skip
        workers.append(
            {
                "name": worker.name,
                "pid": worker.pid,
                "queues": [queue.name for queue in worker.queues],
                "state": str(worker.get_state()),
                "current_job": current,
                "last_heartbeat": worker.last_heartbeat,
                "birth_date": worker.birth_date,
                "successful_job_count": worker.successful_job_count,
                "failed_job_count": worker.failed_job_count,
                "total_working_time": worker.total_working_time,
                "version": worker.version,
                "python_version": worker.python_version,
            }  # fmt: skip
        )
    return {"workers": sorted(workers, key=lambda w: (w["state"], w["queues"], w["name"]))}, NOT_STORED


def job_gone(error: NoSuchJobError) -> ResponseReturnValue:
    """A dashboard page of a job Redis no longer holds (RQ drops a finished job after RESULT_TTL): a 404 that says
    where the task's outcome is, rather than rq-dashboard's 500."""
    if request.blueprint != rq_dashboard.blueprint.name:
        raise error
    job_id = (request.view_args or {}).get("job_id", "")
    message = f"job {job_id} is no longer in Redis (RQ keeps a job until its result or failure TTL lapses)"
    return {"error": f"{message}; its task's outcome is at /tasks/{job_id}"}, 404


def mount_dashboard(app: Flask) -> None:
    """Serve rq-dashboard under /rq on our Redis client and serializer, behind basic auth."""
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.setup_rq_connection(app)
    app.before_request(require_dashboard_login)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)
    # Runs after the blueprint's own before_request, which set a client of its own.
    app.before_request_funcs.setdefault(rq_dashboard.blueprint.name, []).append(share_redis_with_dashboard)
    app.view_functions["rq_dashboard.requeue_job_view"] = requeue_failed_job
    app.view_functions["rq_dashboard.requeue_all"] = requeue_all_failed_jobs
    app.view_functions["rq_dashboard.job_info"] = escaped_job_info(app.view_functions["rq_dashboard.job_info"])
    app.view_functions["rq_dashboard.list_workers"] = list_workers
    app.register_error_handler(NoSuchJobError, job_gone)
