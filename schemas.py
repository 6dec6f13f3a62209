"""Request schemas and strict JSON parsing: the one place that says what a valid request is.

A pure module: imports nothing of ours.
"""

import json
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_MAGNITUDE = 1e150
MAX_DELAY_SECONDS = 300.0


class InvalidRequest(ValueError):
    """A request body that does not follow its schema; the message says why, for a person."""


class MultiplyRequest(BaseModel):
    """The body of POST /multiply."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x: Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
    y: Annotated[float, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
    delay: Annotated[float, Field(ge=0, le=MAX_DELAY_SECONDS, allow_inf_nan=False)] = 0.0


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidRequest(f"key {', '.join(map(repr, repeated))} appears more than once")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise InvalidRequest(f"{name} is not a number JSON allows; send a finite number")


def parse_json(body: bytes) -> Any:
    """Parse a body as strict JSON: no repeated keys, no NaN or Infinity."""
    try:
        return json.loads(body, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, over-long integers
        raise InvalidRequest(f"the body is not valid JSON ({exc})") from None


def _describe(error: Any, schema: type[BaseModel]) -> str:
    field = ".".join(str(part) for part in error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return f"'{field}' is required"
    if kind == "extra_forbidden":
        return f"unknown key '{field}'; the keys are {', '.join(schema.model_fields)}"
    if kind == "finite_number":
        return f"'{field}' must be a finite number"
    if kind == "less_than_equal":
        return f"'{field}' must be at most {ctx['le']:g}"
    if kind == "greater_than_equal":
        return f"'{field}' must be at least {ctx['ge']:g}"
    if kind == "float_type" and type(error["input"]) is int:  # too large to be a float
        return f"'{field}' is out of range"
    if kind == "float_type":
        return f"'{field}' must be a number, not {json.dumps(error['input'])[:40]}"
    return f"'{field}': {error['msg']}"


Schema = TypeVar("Schema", bound=BaseModel)


def validate(schema: type[Schema], body: bytes) -> Schema:
    """Parse and validate a request body, raising InvalidRequest with every problem named."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object with the keys {', '.join(schema.model_fields)}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest("; ".join(_describe(error, schema) for error in exc.errors())) from None
