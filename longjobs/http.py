"""What every area's routes share: the blueprint each area registers its routes on (with the API's token check and
its refusal of repeated query parameters), the strict JSON request, and the JSON error answers.

Imports core and validation; create_app (app.py) registers the areas' blueprints and the error handlers.
"""

import hmac
import logging

from flask import Flask, Request, current_app, json, request
from flask_openapi3 import APIBlueprint
from flask_openapi3.types import ResponseDict
from flask_openapi3.utils import get_operation_id_for_path
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import OperationalError
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    InternalServerError,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from werkzeug.wrappers import Response

from core import MAX_BODY_BYTES
from longjobs.validation import ErrorBody, InvalidRequest, describe_errors, parse_json

log = logging.getLogger(__name__)
POLL_AGAIN_SECONDS = "1"
RETRY_LATER_SECONDS = 5
SUBMIT_ERRORS: ResponseDict = {400: ErrorBody, 413: ErrorBody, 422: ErrorBody, 503: ErrorBody}
PENDING_HEADERS = {"Retry-After": POLL_AGAIN_SECONDS, "Cache-Control": "no-store"}  # a result URL's 404


def blueprint(name: str, operations: str = "api") -> APIBlueprint:
    """An area's blueprint. Its operations' ids in the OpenAPI document begin with `operations` (`api`: every area
    but the models' own routes), as they did when every route was on one blueprint of that name."""

    def operation_id(*, name: str, path: str, method: str) -> str:
        return get_operation_id_for_path(bp_name=operations, name=name, path=path, method=method)

    area = APIBlueprint(name, __name__, operation_id_callback=operation_id)
    area.before_request(require_api_token)
    area.before_request(refuse_repeated_query_parameters)
    return area


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


def refuse_repeated_query_parameters() -> None:
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise BadRequest(f"query parameter {name!r} appears more than once")


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


def register_error_handlers(app: Flask) -> None:
    """Every error a JSON body {"error": ...}: HTTP errors with their status, Redis and database outages as 503."""
    app.register_error_handler(HTTPException, render_http_error)
    app.register_error_handler(RedisConnectionError, render_redis_down)
    app.register_error_handler(OutOfMemoryError, render_redis_full)
    app.register_error_handler(RedisTimeoutError, render_redis_down)
    app.register_error_handler(OperationalError, render_database_down)
    app.register_error_handler(Exception, render_internal_error)
