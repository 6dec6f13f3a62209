"""create_app(): the one place that knows every part. It builds the app from the settings, registers each area's
routes (tasks, models, event streams, sweeps, schedules, webhooks, the service's), the page, the docs, the dashboard
and the CLI, and the JSON error answers.

Imports core and the package's areas. gunicorn serves `app:create_app()`; the flask CLI finds create_app itself.
"""

import logging
import os
import threading
from collections.abc import Mapping

from flask import current_app, redirect
from flask_openapi3 import Info, OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from core import init_app, load_settings, task_timeouts
from longjobs import catalog
from longjobs.http import StrictJSONRequest, register_error_handlers, render_validation_error
from longjobs.lifecycle.models_api import catalog_api, model_api, openapi_schemas, unknown_model
from longjobs.lifecycle.tasks_api import tasks_api
from longjobs.operations import cli
from longjobs.operations.dashboard import mount_dashboard
from longjobs.operations.service_api import service_api
from longjobs.push.events_api import events_api
from longjobs.push.webhooks_api import webhooks_api
from longjobs.validation import ErrorBody
from longjobs.workflows.schedules_api import schedules_api
from longjobs.workflows.sweeps_api import sweeps_api

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The page loads its own scripts, styles and images and talks to this origin alone: nothing inline, no CDN.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def show_page() -> Response:
    """The page for people (static/index.html): its scripts ask the API for everything, with a token if needed."""
    response = current_app.send_static_file("index.html")
    response.headers["Content-Security-Policy"] = PAGE_POLICY
    return response


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
    for area in (catalog_api, tasks_api, events_api, sweeps_api, schedules_api, webhooks_api, service_api):
        app.register_api(area)
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
    register_error_handlers(app)
    return app
