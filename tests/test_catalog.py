"""Finding models at start-up: a broken model file stops release, web and worker, naming the file."""

import shutil
from pathlib import Path

import pytest

from longjobs import catalog
from longjobs.catalog import ModelError
from tests.conftest import ROOT, service_env, start_process

GOOD_PYTHON = '''"""A model."""
from pydantic import BaseModel


class Params(BaseModel):
    n: int


def run(params, progress):
    return params.n
'''
GOOD_SPEC = '{"summary": "An R model.", "params": {"type": "object", "properties": {"n": {"type": "integer"}}}}'

BROKEN = {
    "syntax error": ({"bad.py": "def run(:\n"}, "bad.py: it does not import: SyntaxError"),
    "raises at import": ({"bad.py": "raise RuntimeError('no data')\n"}, "it does not import: RuntimeError: no data"),
    "no Params": ({"bad.py": '"""A model."""\ndef run(params, progress): pass\n'}, "bad.py: it must define Params"),
    "no run": ({"bad.py": GOOD_PYTHON.replace("def run", "def go")}, "bad.py: it must define run(params, progress)"),
    "no docstring": ({"bad.py": GOOD_PYTHON.replace('"""A model."""', "")}, "bad.py: its docstring's first line"),
    "bad timeout": ({"bad.py": GOOD_PYTHON + "TIMEOUT = 'long'\n"}, "bad.py: the timeout must be a whole number"),
    "bad name": ({"Bad-Model.py": GOOD_PYTHON}, "Bad-Model.py: a model's name must match"),
    "R without json": ({"bad.R": "cat(1)"}, "bad.R: it needs bad.json beside it"),
    "json without R": ({"bad.json": GOOD_SPEC}, "bad.json: it describes an R model, but bad.R is missing"),
    "json not JSON": ({"bad.R": "cat(1)", "bad.json": "{summary: 1}"}, "bad.json: it is not valid JSON"),
    "no summary": ({"bad.R": "cat(1)", "bad.json": '{"params": {"type": "object"}}'}, "bad.json: summary must be"),
    "unknown key": ({"bad.R": "", "bad.json": GOOD_SPEC[:-1] + ', "memory": 5}'}, "bad.json: it must be an object"),
    "invalid schema": (
        {"bad.R": "cat(1)", "bad.json": '{"summary": "s", "params": {"type": "object", "properties": 5}}'},
        "bad.json: the parameter schema is invalid",
    ),
    "schema not an object": (
        {"bad.R": "cat(1)", "bad.json": '{"summary": "s", "params": {"type": "array"}}'},
        "bad.json: the parameter schema must be a JSON Schema of type object",
    ),
    "two files one name": ({"twice.py": GOOD_PYTHON, "twice.R": "", "twice.json": GOOD_SPEC}, "named 'twice' already"),
}


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


@pytest.mark.parametrize(("files", "words"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_model_file_is_refused_naming_the_file_and_the_problem(
    tmp_path: Path, files: dict, words: str
) -> None:
    with pytest.raises(ModelError, match=None) as refused:
        catalog.load(write(tmp_path / "models", {"good.py": GOOD_PYTHON, **files}))
    assert words in str(refused.value)
    assert str(tmp_path / "models") in str(refused.value)


def test_good_models_and_helper_files_load(tmp_path: Path) -> None:
    files = {"good.py": GOOD_PYTHON + "TIMEOUT = 5\n", "rmodel.R": "cat(1)", "rmodel.json": GOOD_SPEC,
             "_helpers.R": "f <- 1", "_shared.py": "x = 1", "README.md": "notes"}  # fmt: skip
    models = catalog.load(write(tmp_path / "models", files))
    assert set(models) == {"good", "rmodel"}
    assert (models["good"].language, models["good"].timeout, models["good"].summary) == ("python", 5, "A model.")
    assert (models["rmodel"].language, models["rmodel"].timeout) == ("r", None)
    assert models["good"].validate({"n": 3.0}) == {"n": 3}


@pytest.mark.slow
@pytest.mark.parametrize("process", ["release", "web", "worker"])
def test_a_broken_model_stops_each_process_at_start_naming_the_file(process: str, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models, ignore=shutil.ignore_patterns("__pycache__"))
    write(models, {"broken.py": "import numpy\nraise ImportError('no module named scipy')\n"})
    log = tmp_path / f"{process}.log"
    started = start_process(process, log, **service_env(MODELS_DIR=str(models), PORT="0"))
    assert started.wait(timeout=60) != 0
    assert f"{models / 'broken.py'}: it does not import: ImportError: no module named scipy" in log.read_text()
