"""The HTTP API, its JSON errors, the dashboard mount, and create_app(): the one place that knows every part.

Imports core, schemas and tasks. gunicorn serves `app:create_app()`; the flask CLI finds create_app itself.
"""

import hmac
import logging
import os
import uuid
from collections.abc import Mapping

import rq_dashboard
import rq_dashboard.web
from flask import Blueprint, Flask, Response, current_app, json, request, url_for
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Callback
from rq.exceptions import InvalidJobOperation
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy.exc import OperationalError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    NotFound,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from werkzeug.middleware.proxy_fix import ProxyFix

import tasks
from core import MAX_BODY_BYTES, Result, db, init_app, load_settings
from schemas import InvalidRequest, MultiplyRequest, validate

log = logging.getLogger(__name__)
api = Blueprint("api", __name__)
DASHBOARD_PREFIX = "/rq"
POLL_AGAIN_SECONDS = "1"
RETRY_LATER_SECONDS = 5


def read_body() -> bytes:
    """The request body; 413 when it is over MAX_BODY_BYTES, chunked or not."""
    try:
        body = request.get_data(cache=False)
        if len(body) <= MAX_BODY_BYTES:
            return body
    except RequestEntityTooLarge:
        pass
    raise RequestEntityTooLarge(f"the body is over {MAX_BODY_BYTES} bytes; send a smaller one")


@api.post("/multiply")
def submit_multiplication() -> tuple[dict, int, dict]:
    """Queue a multiplication and answer 202 with its task id."""
    try:
        params = validate(MultiplyRequest, read_body())
    except InvalidRequest as exc:
        raise BadRequest(str(exc)) from None
    task_id = str(uuid.uuid4())
    current_app.extensions["queues"]["default"].enqueue(
        tasks.multiply,
        task_id,
        params.x,
        params.y,
        params.delay,
        job_id=task_id,
        description=f"multiply {task_id}",  # the dashboard shows it unescaped: never client data
        on_failure=Callback(tasks.record_failure),
    )
    log.info("task %s accepted (multiply, delay %s s)", task_id, params.delay)
    location = url_for("api.get_multiplication", task_id=task_id)
    return {"task_id": task_id}, 202, {"Location": location}


@api.get("/multiply/<uuid:task_id>")
def get_multiplication(task_id: uuid.UUID) -> tuple[dict, int, dict] | dict:
    """Answer 200 with the outcome once the task has one, else 404 saying where it is."""
    row = db.session.get(Result, task_id)
    if row is not None:
        if row.status == "finished":
            return {"task_id": str(task_id), "status": row.status, "result": row.result}
        return {"task_id": str(task_id), "status": row.status, "error": row.error}
    try:
        status = Job(str(task_id), connection=current_app.extensions["redis"]).get_status()
    except InvalidJobOperation:
        raise NotFound(f"no task has the id {task_id}") from None
    headers = {"Retry-After": POLL_AGAIN_SECONDS, "Cache-Control": "no-store"}
    return {"task_id": str(task_id), "status": status.value}, 404, headers


def render_http_error(error: HTTPException) -> Response:
    """Every error answer, whatever raised it: the exception's status and headers, body {"error": ...}."""
    response = error.get_response()
    response.set_data(json.dumps({"error": error.description}))
    response.content_type = "application/json"
    return response


def render_redis_down(error: Exception) -> Response:
    log.warning("Redis unreachable on %s %s: %s", request.method, request.path, error)
    message = "the task queue is unreachable right now; nothing was queued, try again shortly"
    return render_http_error(ServiceUnavailable(message, retry_after=RETRY_LATER_SECONDS))


def render_database_down(error: Exception) -> Response:
    log.warning("database unreachable on %s %s: %s", request.method, request.path, error.__cause__)
    message = "the results database is unreachable right now; try again shortly"
    return render_http_error(ServiceUnavailable(message, retry_after=RETRY_LATER_SECONDS))


def render_internal_error(error: Exception) -> Response:
    task_id = (request.view_args or {}).get("task_id")
    log.exception("unhandled error on %s %s (task %s)", request.method, request.path, task_id)
    return render_http_error(InternalServerError("internal error; it has been logged, try again later"))


def _matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def require_dashboard_login() -> None:
    """Let only the configured user into the dashboard; nobody while no password is set."""
    if request.path != DASHBOARD_PREFIX and not request.path.startswith(DASHBOARD_PREFIX + "/"):
        return
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


def mount_dashboard(app: Flask) -> None:
    """Serve rq-dashboard under /rq on our Redis and serializer, behind basic auth."""
    rq_dashboard.web.config.serializer = JSONSerializer
    rq_dashboard.web.setup_rq_connection(app)
    app.before_request(require_dashboard_login)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)


def create_app(environ: Mapping[str, str] | None = None) -> Flask:
    """Build the app from the environment (or the given mapping)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = Flask(__name__)
    app.config.from_mapping(load_settings(os.environ if environ is None else environ))
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # Heroku's router
    init_app(app)
    app.register_blueprint(api)
    mount_dashboard(app)
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(RedisConnectionError, render_redis_down)
    app.register_error_handler(RedisTimeoutError, render_redis_down)
    app.register_error_handler(OperationalError, render_database_down)
    app.register_error_handler(Exception, render_internal_error)
    return app
