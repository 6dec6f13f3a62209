"""The README's "Add your model" examples work when pasted: its files, in a models directory of their own,
are served and run, and answer as the README shows."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from tests.conftest import ROOT, make_app, submit

pytestmark = pytest.mark.slow


def readme_model_files() -> dict[str, str]:
    """Each code block of the README's "Add your model" section under the last models/<file> named before it."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Add your model", 1)[1].split("\n## ", 1)[0]
    parts = re.split(r"```\w*\n(.*?)```", section, flags=re.DOTALL)  # text, code, text, code, ...
    files = {}
    for text, code in zip(parts[0::2], parts[1::2], strict=False):
        if named := re.findall(r"`models/(\w+\.(?:py|R|json))`", text):
            files[named[-1]] = code
    return files


@pytest.fixture
def readme_app(migrated_database: str, tmp_path: Path) -> Iterator[Flask]:
    files = readme_model_files()
    assert set(files) == {"logistic.py", "growth.R", "growth.json"}
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    yield from make_app(MODELS_DIR=str(tmp_path))


def test_the_readme_models_run_as_the_readme_shows(readme_app: Flask, run_worker) -> None:
    client = readme_app.test_client()
    assert {model["name"] for model in client.get("/models").json["models"]} == {"logistic", "growth"}
    growth = submit(client, "/models/growth", initial=10, rate=0.1, days=30)
    logistic = submit(client, "/models/logistic", initial=10, rate=0.3, capacity=1000, days=30)
    refused = client.post("/models/growth", json={"initial": 10, "rate": 2, "days": 30})
    assert refused.json == {"error": "'rate' must be at most 1"}
    run_worker(readme_app)

    done = client.get(f"/models/growth/{growth}").json
    assert done["params"] == {"initial": 10, "rate": 0.1, "days": 30}
    assert done["result"]["final"] == pytest.approx(10 * 2.718281828459045**3)
    assert len(done["result"]["sizes"]) == 31
    result = client.get(f"/models/logistic/{logistic}").json["result"]
    assert len(result["sizes"]) == 31 and 900 < result["final"] < 1000
