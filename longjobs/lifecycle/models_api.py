"""The models area: GET /models, and for each model POST /models/<name> and GET /models/<name>/<task_id> (and the
older URL of a model that has one, /multiply, /simulations), made when the app is: the models are found at start-up.

Imports catalog, lifecycle, its schemas and http.
"""

from collections.abc import Mapping
from typing import NoReturn

from flask import current_app, json, request
from flask_openapi3 import APIBlueprint, Tag
from flask_openapi3.types import ResponseDict
from werkzeug.exceptions import NotFound

from longjobs import lifecycle
from longjobs.catalog import Model
from longjobs.http import PENDING_HEADERS, SUBMIT_ERRORS, blueprint
from longjobs.lifecycle.schemas import (
    ModelInfo,
    ModelList,
    Outcome,
    PendingOrUnknown,
    SubmitHeaders,
    SubmitQuery,
    TaskAccepted,
    TaskPath,
)
from longjobs.validation import ErrorBody

MODELS_TAG = [Tag(name="models", description="the models tasks run: one file each in models/")]
OUTCOME_DESCRIPTION = (
    "200 once the task ended (finished with `result`, or failed, canceled or stopped with `error`), with the "
    "parameters it ran with; 404 with its status and progress until then."
)
POLL_RESPONSES: ResponseDict = {404: PendingOrUnknown, 503: ErrorBody}
catalog_api = blueprint("catalog")


@catalog_api.get("/models", tags=MODELS_TAG, summary="The models tasks can run", responses={200: ModelList})
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
        return found.model_dump(mode="json"), 404, PENDING_HEADERS

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
    api = blueprint("models", operations="models")
    for model in models.values():
        add_model_routes(api, model)
    return api
