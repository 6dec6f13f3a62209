"""Sweeps (a model over a grid of parameters) and schedules (a model on a clock): what they share."""

from typing import Any

from flask import current_app
from werkzeug.exceptions import BadRequest

from longjobs.catalog import Model
from longjobs.validation import InvalidRequest


def model_named(name: str) -> Model:
    """The app's model of that name; 400 if there is none."""
    if (model := current_app.extensions["models"].get(name)) is None:
        raise BadRequest(f"there is no model named {name!r}; GET /models lists them")
    return model


def validated(model: Model, params: Any, what: str) -> dict[str, Any]:
    """The parameters as the model checks them; 400 naming `what` (the run, the field) if they are wrong."""
    try:
        return model.validate(params)
    except InvalidRequest as exc:
        raise BadRequest(f"{what}: {exc}") from None
