"""The models users add, one file each in models/: found at start-up, each made one record (name, summary,
language, parameter schema, validation, timeout, how it runs) from which routes, OpenAPI, CLI and jobs derive.

- Python: `models/<name>.py` with `Params` (a pydantic model), `run(params, progress)`, an optional `TIMEOUT`
  and a docstring whose first line is the summary.
- R: `models/<name>.R` with `models/<name>.json`: `{"summary", "timeout" (optional), "params": <JSON Schema>}`;
  rscript.py runs it.
Files whose names start with `_` are helpers, not models. A broken model raises ModelError naming the file.

Imports rscript and validation (pure modules); nothing here connects or reads the environment.
"""

import importlib.util
import inspect
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import BaseModel, ValidationError

from longjobs.catalog import rscript
from longjobs.validation import InvalidRequest, describe_errors, describe_schema_errors

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
# The result URLs the first two models had before models were files; every other model's is /models/<name>.
RESULT_PATHS = {"multiply": "/multiply", "simulation": "/simulations"}


def result_path(name: str) -> str:
    """Where the results of a model's tasks are, by its name (whether or not the model is still there)."""
    return RESULT_PATHS.get(name, f"/models/{name}")


class ModelError(Exception):
    """A model file that cannot be served; the message names the file and the problem."""


class ModelFailed(Exception):
    """A model's run ended without a result it could give; the message says why, for a person."""


Progress = Callable[..., None]


@dataclass(frozen=True)
class Model:
    """One model: what it takes (a JSON Schema, checked with jsonschema; a Python model's pydantic Params
    then builds its argument) and how it runs."""

    name: str
    summary: str
    language: str  # "python" or "r"
    file: Path
    schema: dict[str, Any]
    timeout: int | None  # seconds, from its file; None: the MODEL_TIMEOUT setting
    params_class: type[BaseModel] | None = None
    function: Callable[[Any, Progress], Any] | None = None
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "validator", Draft202012Validator(self.schema))

    @property
    def result_path(self) -> str:
        return result_path(self.name)

    @property
    def example(self) -> Any:
        return (self.schema.get("examples") or [None])[0]

    def validate(self, data: Any) -> dict[str, Any]:
        """The parameters to store and run with, from a request body; InvalidRequest names what is wrong."""
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        if errors := list(self.validator.iter_errors(data)):
            raise InvalidRequest(describe_schema_errors(errors))
        if self.params_class is None:
            return data
        try:  # JSON Schema had the last word on types; lax mode takes 1000.0 for an integer, as it does
            return self.params_class.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidRequest(describe_errors(exc)) from None

    def run(self, params: dict[str, Any], progress: Progress, **runner: Any) -> Any:
        """Run the model on stored parameters; `runner` goes to rscript.run for an R model."""
        if self.function is not None:
            assert self.params_class is not None  # a Python model has both
            return self.function(self.params_class.model_validate(params), progress)
        try:
            return rscript.run(self.file, params, progress=progress, **runner)
        except rscript.RScriptFailed as exc:
            raise ModelFailed(str(exc)) from None


def _object_schema(schema: Any, where: Path) -> dict[str, Any]:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise ModelError(f"{where}: the parameter schema must be a JSON Schema of type object")
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ModelError(f"{where}: the parameter schema is invalid: {exc.message}") from None
    # Unknown keys are a 400 for every model, whatever its schema says.
    return schema | {"additionalProperties": False}


def _timeout(value: Any, where: Path) -> int | None:
    if value is None:
        return None
    if type(value) is not int or value < 1:
        raise ModelError(f"{where}: the timeout must be a whole number of seconds, at least 1, not {value!r}")
    return value


def _python_model(name: str, file: Path) -> Model:
    spec = importlib.util.spec_from_file_location(f"models.{name}", file)
    assert spec is not None and spec.loader is not None  # a .py file always has both
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import does: pydantic resolves the module's annotations there
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a model file that does not import: any error at all stops the start-up
        del sys.modules[spec.name]
        raise ModelError(f"{file}: it does not import: {type(exc).__name__}: {exc}") from exc
    params = getattr(module, "Params", None)
    if not (inspect.isclass(params) and issubclass(params, BaseModel)):
        raise ModelError(f"{file}: it must define Params, a pydantic model of its parameters")
    run = getattr(module, "run", None)
    if not callable(run):
        raise ModelError(f"{file}: it must define run(params, progress)")
    summary = (module.__doc__ or "").strip().partition("\n")[0]
    if not summary:
        raise ModelError(f"{file}: its docstring's first line, the model's summary, is missing")
    try:
        schema = params.model_json_schema()
    except Exception as exc:  # pydantic raises several kinds for types JSON Schema cannot describe
        raise ModelError(f"{file}: Params has no JSON Schema: {exc}") from exc
    return Model(name, summary, "python", file, _object_schema(schema, file), _timeout(getattr(module, "TIMEOUT", None),
                 file), params_class=params, function=run)  # fmt: skip


def _r_model(name: str, file: Path) -> Model:
    spec_file = file.with_suffix(".json")
    try:
        spec = json.loads(spec_file.read_text())
    except FileNotFoundError:
        raise ModelError(f"{file}: it needs {spec_file.name} beside it (summary, timeout, params)") from None
    except ValueError as exc:
        raise ModelError(f"{spec_file}: it is not valid JSON: {exc}") from None
    if not isinstance(spec, dict) or set(spec) - {"summary", "timeout", "params"}:
        raise ModelError(f"{spec_file}: it must be an object with summary, params and optionally timeout")
    if not isinstance(spec.get("summary"), str) or not spec["summary"].strip():
        raise ModelError(f"{spec_file}: summary must be a non-empty string")
    schema = _object_schema(spec.get("params"), spec_file)
    return Model(name, spec["summary"].strip(), "r", file, schema, _timeout(spec.get("timeout"), spec_file))


def load(directory: str | Path | None = None) -> dict[str, Model]:
    """Every model in a directory (the MODELS_DIR setting; None: models/ beside the code), by name; ModelError
    names the first broken file."""
    directory = Path(directory or MODELS_DIR)
    models: dict[str, Model] = {}
    files = sorted(p for p in directory.iterdir() if p.suffix in (".py", ".R", ".json") and p.name[0] not in "_.")
    for file in files:
        name = file.stem
        if not NAME.fullmatch(name):
            raise ModelError(f"{file}: a model's name must match [a-z][a-z0-9_]{{0,39}}; rename the file")
        if file.suffix == ".json":
            if not file.with_suffix(".R").exists():
                raise ModelError(f"{file}: it describes an R model, but {name}.R is missing")
            continue
        if name in models:
            raise ModelError(f"{file}: another file defines a model named {name!r} already")
        models[name] = _python_model(name, file) if file.suffix == ".py" else _r_model(name, file)
    return models
