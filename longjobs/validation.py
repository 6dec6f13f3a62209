"""The API's shared vocabulary and strict JSON parsing: priorities, statuses and timestamps as the API writes them,
the error body, and the words a person reads when a request is refused. Each capability's request and response
schemas (its `schemas.py`) build on these; the OpenAPI document is generated from them.

A pure module: imports nothing of ours.
"""

import json
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    PlainSerializer,
    ValidationError,
)

PRIORITIES = ("high", "default", "low")
MODEL_NAME = r"^[a-z][a-z0-9_]{0,39}$"
TERMINAL_STATUSES = ("finished", "failed", "canceled", "stopped")
STATUSES = ("queued", "started", "deferred", "scheduled", *TERMINAL_STATUSES)
Priority = Literal["high", "default", "low"]
# ISO 8601 in UTC with an explicit offset (+00:00), whatever the database session's time zone.
Timestamp = Annotated[datetime, PlainSerializer(lambda moment: moment.astimezone(UTC).isoformat(), return_type=str)]
Status = Literal["queued", "started", "deferred", "scheduled", "finished", "failed", "canceled", "stopped"]


class InvalidRequest(ValueError):
    """A request body that does not follow its schema; the message says why, for a person."""


_SCHEMAS: dict[type, dict[str, Any]] = {}


class RequestPart(BaseModel):
    """Base of query and header models: flask-openapi3 reads their JSON schema on every request (about
    a fifth of a POST's time), so the default one is made once per model."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        if cls not in _SCHEMAS:
            _SCHEMAS[cls] = super().model_json_schema()
        return _SCHEMAS[cls]


class ErrorBody(BaseModel):
    error: str


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise InvalidRequest(f"key {', '.join(map(repr, repeated))} appears more than once")
    return dict(pairs)


def _reject_constant(name: str) -> None:
    raise InvalidRequest(f"{name} is not a number JSON allows; send a finite number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise InvalidRequest(f"{text[:40]} is too large for a number; send a finite number")
    return number


def parse_json(body: bytes) -> Any:
    """Parse a body as strict JSON: no repeated keys, no NaN or Infinity, no number that overflows."""
    try:
        return json.loads(
            body, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant, parse_float=_finite
        )
    except InvalidRequest:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, over-long integers
        raise InvalidRequest(f"the body is not valid JSON ({exc})") from None


def _describe(error: Any, where: str) -> str:
    field = ".".join(str(part) for part in error["loc"])
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return f"{where} '{field}' is required"
    if kind == "extra_forbidden":
        return f"unknown {where} '{field}'"
    if kind == "finite_number":
        return f"'{field}' must be a finite number"
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = "at most" if kind == "less_than_equal" else "at least"
        return f"'{field}' must be {bound} {ctx.get('le', ctx.get('ge')):g}"
    if kind == "string_pattern_mismatch":
        return f"'{field}' must match {ctx['pattern']}"
    if kind in ("float_type", "int_type"):
        expected = "a number" if kind == "float_type" else "an integer"
        return f"'{field}' must be {expected}, not {json.dumps(error['input'])[:40]}"
    return f"'{field}': {error['msg']}"


def describe_errors(exc: ValidationError) -> str:
    """Every problem a validation found, in words that name the field."""
    where = "query parameter" if exc.title.endswith("Query") else "header" if exc.title.endswith("Headers") else "key"
    return "; ".join(_describe(error, where) for error in exc.errors())


TYPE_NAMES = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
              "array": "an array", "object": "an object", "null": "null"}  # fmt: skip
BOUNDS = {"minimum": "at least", "maximum": "at most", "exclusiveMinimum": "over", "exclusiveMaximum": "under"}


def _number(bound: float) -> str:
    return str(bound) if isinstance(bound, int) and abs(bound) < 10**15 else f"{bound:g}"


def _describe_schema_error(error: Any) -> str:
    """One jsonschema error in the words _describe uses for pydantic's."""
    field = ".".join(str(part) for part in error.absolute_path)
    kind, expected, value = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = [name for name in expected if name not in value]
        return "; ".join(f"key '{'.'.join(filter(None, (field, name)))}' is required" for name in missing)
    if kind == "additionalProperties":
        unknown = [name for name in value if name not in error.schema.get("properties", {})]
        return "; ".join(f"unknown key '{'.'.join(filter(None, (field, name)))}'" for name in unknown)
    if kind == "type":
        names = [TYPE_NAMES.get(name, name) for name in ([expected] if isinstance(expected, str) else expected)]
        return f"'{field}' must be {' or '.join(names)}, not {json.dumps(value)[:40]}"
    if kind in BOUNDS:
        return f"'{field}' must be {BOUNDS[kind]} {_number(expected)}"
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return f"'{field}' must have {bound} {expected} items, not {len(value)}"
    if kind in ("minLength", "maxLength"):
        return f"'{field}' must be {'at least' if kind == 'minLength' else 'at most'} {expected} characters long"
    if kind == "enum":
        return f"'{field}' must be one of {', '.join(json.dumps(option) for option in expected)}"
    return f"'{field}': {error.message}"


def describe_schema_errors(errors: list[Any]) -> str:
    """Every problem a JSON Schema validation found, in words that name the field, in the order of the fields."""
    ordered = sorted(errors, key=lambda error: [str(part) for part in error.absolute_path])
    # jsonschema reports each missing key as an error of its own, and each such error names every missing key.
    return "; ".join(dict.fromkeys(_describe_schema_error(error) for error in ordered))
