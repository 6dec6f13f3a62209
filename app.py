"""The HTTP API, its OpenAPI document and docs, its JSON errors, and create_app(): the one place that knows
every part.

Imports core, catalog, schemas, lifecycle, sweeps, webhooks, metrics, cli and dashboard. gunicorn serves
`app:create_app()`; the flask CLI finds create_app itself.
"""

import hmac
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import NoReturn

from flask import Request, current_app, json, redirect, request, stream_with_context
from flask_openapi3 import APIBlueprint, Info, OpenAPI, Tag
from flask_openapi3.types import ResponseDict
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import text
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
from werkzeug.wrappers import Response

from core import MAX_BODY_BYTES, QUEUE_NAMES, db, init_app, live_workers, load_settings, task_timeouts
from longjobs import catalog, lifecycle
from longjobs.catalog import Model
from longjobs.lifecycle.schemas import (
    ListQuery,
    ModelInfo,
    ModelList,
    Outcome,
    PendingOrUnknown,
    SubmitHeaders,
    SubmitQuery,
    TaskAccepted,
    TaskList,
    TaskPath,
    TaskView,
)
from longjobs.operations import cli
from longjobs.operations.dashboard import mount_dashboard
from longjobs.operations.schemas import Check, Health
from longjobs.push import metrics, webhooks
from longjobs.push.schemas import (
    DeliveryList,
    DeliveryQuery,
    WebhookCreated,
    WebhookList,
    WebhookPath,
    WebhookRequest,
    WebhookView,
)
from longjobs.validation import TERMINAL_STATUSES, ErrorBody, InvalidRequest, describe_errors, parse_json
from longjobs.workflows import schedules, sweeps
from longjobs.workflows.schemas import (
    ScheduleList,
    SchedulePath,
    ScheduleRequest,
    ScheduleView,
    SweepAccepted,
    SweepCanceled,
    SweepPath,
    SweepPending,
    SweepPendingOrUnknown,
    SweepQuery,
    SweepRequest,
    SweepTable,
)

log = logging.getLogger(__name__)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
POLL_AGAIN_SECONDS = "1"
# The page loads its own scripts, styles and images and talks to this origin alone: nothing inline, no CDN.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
RETRY_LATER_SECONDS = 5
STREAM_LOOK_SECONDS = 0.2  # how often an event stream looks for a change: progress is written at most 4 times a second
# A comment when nothing else was sent for this long: the next write after a client left is how its stream learns it
# (its slot is free again within two of these), and Heroku's router closes a stream that sends nothing for 55 s.
KEEPALIVE_SECONDS = 1.0
SUBMIT_ERRORS: ResponseDict = {400: ErrorBody, 413: ErrorBody, 422: ErrorBody, 503: ErrorBody}
TASK_TAG = [Tag(name="tasks", description="the lifecycle of every task, whatever its model")]
SERVICE_TAG = [Tag(name="service", description="whether the service can take and run tasks")]
MODELS_TAG = [Tag(name="models", description="the models tasks run: one file each in models/")]
OUTCOME_DESCRIPTION = (
    "200 once the task ended (finished with `result`, or failed, canceled or stopped with `error`), with the "
    "parameters it ran with; 404 with its status and progress until then."
)

api = APIBlueprint("api", __name__)


class StrictJSONRequest(Request):
    """A request whose body is read as strict JSON whatever its Content-Type, and is at most 64 KiB."""

    def get_json(self, force: bool = False, silent: bool = False, cache: bool = True) -> dict:
        try:
            body = self.get_data(cache=False)
            if len(body) > MAX_BODY_BYTES:
                raise RequestEntityTooLarge()
        except RequestEntityTooLarge:
            raise RequestEntityTooLarge(f"the body is over {MAX_BODY_BYTES} bytes; send a smaller one") from None
        try:
            data = parse_json(body)
        except InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data


@api.before_request
def require_api_token() -> None:
    """With API_TOKENS set, every API request needs `Authorization: Bearer <one of them>`."""
    tokens = current_app.config["API_TOKENS"]
    if not tokens:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    matched = False
    for token in tokens:  # every token compared every time: the timing tells nothing
        matched |= hmac.compare_digest(given.encode(), token.encode())
    if scheme.lower() != "bearer" or not matched:
        raise Unauthorized("send a valid API token as `Authorization: Bearer <token>`",
                           www_authenticate=WWWAuthenticate("bearer"))  # fmt: skip


@api.before_request
def refuse_repeated_query_parameters() -> None:
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise BadRequest(f"query parameter {name!r} appears more than once")


POLL_RESPONSES: ResponseDict = {404: PendingOrUnknown, 503: ErrorBody}


@api.get("/models", tags=MODELS_TAG, summary="The models tasks can run", responses={200: ModelList})
def list_models():
    """Each model's name, summary, language, URL and the JSON Schema of its parameters."""
    models = current_app.extensions["models"].values()
    infos = [ModelInfo(name=m.name, summary=m.summary, language=m.language, url=f"/models/{m.name}", params=m.schema)
             for m in models]  # fmt: skip
    return ModelList(models=infos).model_dump(mode="json")


def unknown_model(name: str, rest: str = "") -> NoReturn:
    """What the model routes do not match: a model that does not exist, or a task id not in canonical form."""
    if name in current_app.extensions["models"]:
        raise NotFound(f"no {name} task has the id {rest!r}")
    raise NotFound(f"there is no model named {name!r}; GET /models lists them")


def add_model_routes(api: APIBlueprint, model: Model) -> None:
    """POST a task of the model and GET its outcome, at /models/<name> and at its older URL if it has one."""
    tags = [Tag(name=model.name, description=model.summary)]
    media = {"schema": {"$ref": f"#/components/schemas/{model.name}_params"}}
    if model.example is not None:
        media["example"] = model.example
    request_body = {"requestBody": {"required": True, "content": {"application/json": media}}}

    def submit(query: SubmitQuery, header: SubmitHeaders):
        task_id = lifecycle.submit(model, request.get_json(), query.priority, header.idempotency_key)
        location = f"{model.result_path}/{task_id}"
        return TaskAccepted(task_id=task_id).model_dump(mode="json"), 202, {"Location": location}

    def outcome(path: TaskPath):
        found = lifecycle.poll(model, path.task_id)
        if isinstance(found, dict):
            return found
        return found.model_dump(mode="json"), 404, {"Retry-After": POLL_AGAIN_SECONDS, "Cache-Control": "no-store"}

    urls = {f"/models/{model.name}": model.name, model.result_path: f"{model.name}_older_url"}
    for url, endpoint in urls.items():
        api.post(url, endpoint=f"submit_{endpoint}", tags=tags, summary=f"Queue a {model.name} task",
                 description=f"{model.summary} Answers 202 at once with the task's id.",
                 responses={202: TaskAccepted, **SUBMIT_ERRORS}, openapi_extensions=request_body)(submit)  # fmt: skip
        api.get(f"{url}/<uuid:task_id>", endpoint=f"outcome_{endpoint}", tags=tags,
                summary=f"A {model.name} task's outcome", description=OUTCOME_DESCRIPTION,
                responses={200: Outcome, **POLL_RESPONSES})(outcome)  # fmt: skip


def openapi_schemas(model: Model) -> dict[str, dict]:
    """A model's parameter schema as OpenAPI components: its $defs hoisted beside it, their $refs renamed."""
    schema = {key: value for key, value in model.schema.items() if key != "$schema"}
    definitions = schema.pop("$defs", {})
    prefix = f"{model.name}_"
    text = json.dumps({"params": schema, **definitions}).replace('"#/$defs/', f'"#/components/schemas/{prefix}')
    return {f"{prefix}{name}": value for name, value in json.loads(text).items()}


def model_api(models: Mapping[str, Model]) -> APIBlueprint:
    """The routes of an app's models, made when the app is: the models are found at start-up."""
    api = APIBlueprint("models", __name__)
    api.before_request(require_api_token)
    api.before_request(refuse_repeated_query_parameters)
    for model in models.values():
        add_model_routes(api, model)
    return api


@api.get("/tasks/<uuid:task_id>", tags=TASK_TAG, summary="One task", responses={200: TaskView, 404: ErrorBody})
def get_task(path: TaskPath):
    return lifecycle.find(path.task_id).model_dump(mode="json")


@api.get("/tasks", tags=TASK_TAG, summary="Recent tasks, newest first", responses={200: TaskList, 400: ErrorBody})
def list_tasks(query: ListQuery):
    views, cursor = lifecycle.list_tasks(query)
    return TaskList(tasks=views, next_cursor=cursor).model_dump(mode="json")


@api.delete(
    "/tasks/<uuid:task_id>",
    tags=TASK_TAG,
    summary="Cancel a queued task or stop a running one",
    responses={200: TaskView, 202: TaskView, 404: ErrorBody, 409: ErrorBody},
)
def cancel_task(path: TaskPath):
    """200 with the task canceled; 202 while the worker stops a running one (it ends `stopped`); 409 once ended."""
    view = lifecycle.cancel(path.task_id)
    return view.model_dump(mode="json"), 200 if view.status == "canceled" else 202


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


@api.get("/tasks/<uuid:task_id>/events", tags=TASK_TAG, summary="A task's status and progress as they change",
         responses={200: EVENT_STREAM, 404: ErrorBody, 503: ErrorBody})  # fmt: skip
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


SWEEP_TAG = [Tag(name="sweeps", description="a model run over a grid of parameters, gathered into one table")]
SCHEDULE_TAG = [Tag(name="schedules", description="a model run on a clock (cron, UTC) by the clock process")]


@api.post("/sweeps", tags=SWEEP_TAG, summary="Run a model over a grid of parameters",
          responses={202: SweepAccepted, **SUBMIT_ERRORS})  # fmt: skip
def submit_sweep(query: SubmitQuery, header: SubmitHeaders, body: SweepRequest):
    """One run per combination of the grid's values, each an ordinary task; every run is validated first, and
    accepted (recorded and queued) with the others or not at all. 202 at once with the sweep's id."""
    sweep_id = sweeps.submit_sweep(body, query.priority, header.idempotency_key)
    return SweepAccepted(sweep_id=sweep_id).model_dump(mode="json"), 202, {"Location": f"/sweeps/{sweep_id}"}


@api.get("/sweeps/<uuid:sweep_id>", tags=SWEEP_TAG, summary="A sweep's table of results",
         responses={200: SweepTable, 404: SweepPendingOrUnknown, 400: ErrorBody})  # fmt: skip
def get_sweep(path: SweepPath, query: SweepQuery):
    """200 with every run's outcome in grid order once all have ended (`?format=csv`: as text/csv); 404 with its
    progress until then, or with an error for an unknown id."""
    found = sweeps.find_sweep(path.sweep_id)
    if isinstance(found, SweepPending):
        return found.model_dump(mode="json"), 404, {"Retry-After": POLL_AGAIN_SECONDS, "Cache-Control": "no-store"}
    if query.format == "csv":
        return Response(sweeps.sweep_csv(found), mimetype="text/csv")
    return found.model_dump(mode="json", exclude_unset=True)


@api.delete("/sweeps/<uuid:sweep_id>", tags=SWEEP_TAG, summary="Cancel or stop every run that has not ended",
            responses={202: SweepCanceled, 404: ErrorBody, 409: ErrorBody, 503: ErrorBody})  # fmt: skip
def cancel_sweep(path: SweepPath):
    """202 with how many runs were canceled and how many are stopping; 409 once every run has ended."""
    return SweepCanceled.model_validate(sweeps.cancel_sweep(path.sweep_id)).model_dump(mode="json"), 202


@api.post("/schedules", tags=SCHEDULE_TAG, summary="Run a model on a clock",
          responses={201: ScheduleView, 400: ErrorBody, 413: ErrorBody})  # fmt: skip
def create_schedule(body: ScheduleRequest):
    """The clock process queues a task of the model with these parameters each time the cron expression comes due
    (UTC); a time missed while no clock ran is run once."""
    schedule = schedules.create_schedule(body)
    return schedule.model_dump(mode="json"), 201, {"Location": f"/schedules/{schedule.schedule_id}"}


@api.get("/schedules", tags=SCHEDULE_TAG, summary="Every schedule", responses={200: ScheduleList})
def list_schedules():
    return ScheduleList(schedules=schedules.list_schedules()).model_dump(mode="json")


@api.get("/schedules/<uuid:schedule_id>", tags=SCHEDULE_TAG, summary="One schedule, with its recent runs",
         responses={200: ScheduleView, 404: ErrorBody})  # fmt: skip
def get_schedule(path: SchedulePath):
    return schedules.find_schedule(path.schedule_id).model_dump(mode="json")


@api.delete("/schedules/<uuid:schedule_id>", tags=SCHEDULE_TAG, summary="Delete a schedule (its runs stay)",
            responses={204: None, 404: ErrorBody})  # fmt: skip
def delete_schedule(path: SchedulePath):
    schedules.delete_schedule(path.schedule_id)
    return "", 204


WEBHOOK_TAG = [Tag(name="webhooks", description="task and sweep events POSTed to your URL, signed as Standard Webhooks "
                   "sign them")]  # fmt: skip


@api.post("/webhooks", tags=WEBHOOK_TAG, summary="Have events POSTed to a URL",
          responses={201: WebhookCreated, 400: ErrorBody, 413: ErrorBody})  # fmt: skip
def create_webhook(body: WebhookRequest):
    """Each event (task.finished, task.failed, task.canceled, task.stopped, sweep.finished) is POSTed, signed with the
    secret this answer alone shows, until a 2xx answers it within 10 s; retried with backoff (WEBHOOK_RETRY_SECONDS)."""
    webhook = webhooks.create_webhook(body)
    return webhook.model_dump(mode="json"), 201, {"Location": f"/webhooks/{webhook.webhook_id}"}


@api.get("/webhooks", tags=WEBHOOK_TAG, summary="Every webhook", responses={200: WebhookList})
def list_webhooks():
    return WebhookList(webhooks=webhooks.list_webhooks()).model_dump(mode="json")


@api.get("/webhooks/<uuid:webhook_id>", tags=WEBHOOK_TAG, summary="One webhook",
         responses={200: WebhookView, 404: ErrorBody})  # fmt: skip
def get_webhook(path: WebhookPath):
    return webhooks.find_webhook(path.webhook_id).model_dump(mode="json")


@api.delete("/webhooks/<uuid:webhook_id>", tags=WEBHOOK_TAG, summary="Delete a webhook and its pending deliveries",
            responses={204: None, 404: ErrorBody})  # fmt: skip
def delete_webhook(path: WebhookPath):
    webhooks.delete_webhook(path.webhook_id)
    return "", 204


@api.get("/webhooks/<uuid:webhook_id>/deliveries", tags=WEBHOOK_TAG, summary="A webhook's recent deliveries",
         responses={200: DeliveryList, 400: ErrorBody, 404: ErrorBody})  # fmt: skip
def list_deliveries(path: WebhookPath, query: DeliveryQuery):
    """Newest first: each event, its task or sweep, attempts, the last answer, and when it was delivered or is tried
    next."""
    return DeliveryList(deliveries=webhooks.list_deliveries(path.webhook_id, query.limit)).model_dump(mode="json")


@api.get(
    "/health",
    tags=SERVICE_TAG,
    summary="Whether Redis and the database answer, and the queues' state",
    responses={200: Health, 503: Health},
)
def health():
    """200 when Redis and the database answer (even with no worker running: see `workers`), else 503."""
    report = Health(redis=Check(ok=True), database=Check(ok=True), workers=0, queues={}, failed=0)
    try:
        redis = current_app.extensions["redis"]
        queues = current_app.extensions["queues"]
        policy = redis.info("memory").get("maxmemory_policy")
        if policy != "noeviction":  # an evicting Redis drops queued jobs to make room
            report.redis = Check(ok=False, error=f"maxmemory-policy is {policy}; Redis must run with noeviction")
        report.workers = len(live_workers(redis))
        report.queues = {name: queues[name].count for name in QUEUE_NAMES}
        report.failed = sum(queues[name].failed_job_registry.count for name in QUEUE_NAMES)
    except RedisError as exc:
        report.redis = Check(ok=False, error=f"{type(exc).__name__}: {exc}")
    try:
        db.session.execute(text("SELECT 1"))
    except OperationalError as exc:
        report.database = Check(ok=False, error=f"{type(exc).__name__}: {exc.orig}")
    return report.model_dump(mode="json", exclude_none=True), 200 if report.redis.ok and report.database.ok else 503


@api.get("/metrics", tags=SERVICE_TAG, summary="The service's figures, for Prometheus", responses={200: None})
def get_metrics():
    """Prometheus's text format: tasks accepted and ended (by model, by outcome), how long they ran, the queues'
    depth, the workers, the failed jobs; read from Postgres and Redis at each scrape, so right across processes."""
    return Response(metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)  # every Prometheus reads it


def show_page() -> Response:
    """The page for people (static/index.html): its scripts ask the API for everything, with a token if needed."""
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


def render_http_error(error: HTTPException) -> Response:
    """Every error answer, whatever raised it: the exception's status and headers, body {"error": ...}."""
    response = error.get_response()
    response.set_data(json.dumps({"error": error.description}))
    response.content_type = "application/json"
    return response


def render_validation_error(error: ValidationError) -> Response:
    return render_http_error(BadRequest(describe_errors(error)))


def render_redis_full(error: Exception) -> Response:
    log.error("Redis is out of memory on %s %s: %s", request.method, request.path, error)
    message = "the task queue is out of memory right now; nothing was queued, try again later"
    return render_http_error(ServiceUnavailable(message, retry_after=RETRY_LATER_SECONDS * 6))


def render_redis_down(error: Exception) -> Response:
    log.warning("Redis unreachable on %s %s: %s", request.method, request.path, error)
    message = "the task queue is unreachable right now; nothing was queued, try again shortly"
    return render_http_error(ServiceUnavailable(message, retry_after=RETRY_LATER_SECONDS))


def render_database_down(error: Exception) -> Response:
    log.warning("database unreachable on %s %s: %s", request.method, request.path, error.__cause__)
    message = "the database is unreachable right now; nothing was queued, try again shortly"
    return render_http_error(ServiceUnavailable(message, retry_after=RETRY_LATER_SECONDS))


def render_internal_error(error: Exception) -> Response:
    task_id = (request.view_args or {}).get("task_id")
    log.exception("unhandled error on %s %s (task %s)", request.method, request.path, task_id)
    return render_http_error(InternalServerError("internal error; it has been logged, try again later"))


def create_app(environ: Mapping[str, str] | None = None) -> OpenAPI:
    """Build the app from the environment (or the given mapping)."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    app = OpenAPI(
        __name__,
        info=Info(title="longjobs", version="1.0", description="Long jobs in the background: POST, get 202, poll."),
        security_schemes={},  # none yet; flask-openapi3 would otherwise emit an invalid null
        doc_prefix="/docs",  # Swagger UI (served from its PyPI package, no CDN) at /docs/swagger
        validation_error_status=400,
        validation_error_model=ErrorBody,
        validation_error_callback=render_validation_error,
    )
    app.request_class = StrictJSONRequest
    environ = os.environ if environ is None else environ
    app.config.from_mapping(load_settings(environ))
    # Heroku's router; Flask documents this assignment, which mypy takes for replacing a method.
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1, x_port=1)  # type: ignore[method-assign]
    init_app(app)
    models = catalog.load(app.config["MODELS_DIR"])
    app.extensions["models"] = models
    app.extensions["event_streams"] = threading.BoundedSemaphore(app.config["MAX_EVENT_STREAMS"])
    timeouts = {name: model.timeout for name, model in models.items()}
    app.config["TASK_TIMEOUTS"] = task_timeouts(environ, timeouts, app.config["MODEL_TIMEOUT"])
    app.register_api(api)
    app.register_api(model_api(models))
    app.add_url_rule("/models/<name>", "unknown_model", unknown_model, methods=["POST"])
    app.add_url_rule("/models/<name>/<path:rest>", "unknown_model_outcome", unknown_model)
    for model in models.values():  # the parameter schemas the model routes' request bodies refer to
        app.api_doc["components"]["schemas"].update(openapi_schemas(model))
    app.add_url_rule("/openapi.json", "openapi_document", lambda: app.api_doc)
    app.add_url_rule("/docs", "docs", lambda: redirect("/docs/swagger"))
    app.add_url_rule("/", "page", show_page)
    mount_dashboard(app)
    app.cli.add_command(cli.tasks_group)
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(RedisConnectionError, render_redis_down)
    app.register_error_handler(OutOfMemoryError, render_redis_full)
    app.register_error_handler(RedisTimeoutError, render_redis_down)
    app.register_error_handler(OperationalError, render_database_down)
    app.register_error_handler(Exception, render_internal_error)
    return app
