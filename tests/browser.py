"""What the browser tests share (test_page.py, test_page_access.py): headless Debian chromium through
/usr/bin/chromedriver, a screenshot of each state kept in TEST_ARTIFACTS (default test-artifacts/page/), reading the
page's charts back, and the figures measured (JSON).
"""

import json
import re
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import ARTIFACTS, submit_task

BROWSER_MARKS = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (bash .ci/run installs them)",
    ),
]

TOKEN = "page-test-token"
MAX_FIRST_LOAD_BYTES = 300_000
# Long enough on a real worker (about 6 s of one core) for the page to show its progress move several times.
LONG_SIMULATION = {"days": "1000", "runs": "40000"}
SHORT_SIMULATION = {"population": 100_000, "initial_infected": 10, "r0": 2.5, "incubation_days": 4,
                    "infectious_days": 6, "days": 1000, "runs": 100, "seed": 3}  # fmt: skip


def until(browser: webdriver.Chrome, condition: Callable, timeout: float = 20) -> Any:
    return WebDriverWait(browser, timeout).until(condition)


def open_page(browser: webdriver.Chrome, url: str) -> None:
    """Load the page and wait until its form is built from GET /models."""
    browser.get(url)
    until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#fields fieldset")))


def fill(browser: webdriver.Chrome, values: dict[str, str], model: str = "simulation") -> None:
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    for name, value in values.items():
        field = browser.find_element(By.ID, f"f-{model}-{name}")
        field.clear()
        field.send_keys(value)


def shown_id(browser: webdriver.Chrome, kind: str = "task", before: str | None = None) -> str:
    """The id of the task (or sweep) the page shows, once it is not `before`: the page names it in its URL."""

    def named(b: webdriver.Chrome) -> str | None:
        match = re.fullmatch(rf"#{kind}=([0-9a-f-]{{36}})", b.execute_script("return location.hash"))
        return match and match.group(1) != before and match.group(1)

    return until(browser, named)


def chart(browser: webdriver.Chrome, name: str, timeout: float = 60) -> WebElement:
    drawn = expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"svg[data-chart={name}]"))
    return until(browser, drawn, timeout)


class Mapping:
    """The data-to-pixel mapping a chart declares on its SVG, to turn data into the pixels it must be drawn at."""

    def __init__(self, element: WebElement) -> None:
        number = lambda name: float(element.get_attribute(f"data-{name}"))  # noqa: E731
        self.x_min, self.x_max, self.y_min, self.y_max = (number(n) for n in ("x-min", "x-max", "y-min", "y-max"))
        self.left, self.top = number("plot-left"), number("plot-top")
        self.width, self.height = number("plot-width"), number("plot-height")

    def x(self, value: float) -> float:
        return self.left + (value - self.x_min) / (self.x_max - self.x_min) * self.width

    def y(self, value: float) -> float:
        return self.top + (1 - (value - self.y_min) / (self.y_max - self.y_min)) * self.height


def path_points(element: WebElement, series: str) -> list[tuple[float, float]]:
    d = element.find_element(By.CSS_SELECTOR, f"[data-series={series}]").get_attribute("d")
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", d)]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def assert_drawn(mapping: Mapping, points: list[tuple[float, float]], values: list[float], what: str) -> None:
    """Each drawn point is where value i (at day i) belongs, within a pixel."""
    assert len(points) == len(values), f"{what}: {len(points)} points drawn for {len(values)} values"
    for day, ((px, py), value) in enumerate(zip(points, values, strict=True)):
        assert abs(px - mapping.x(day)) <= 1 and abs(py - mapping.y(value)) <= 1, (what, day, value, px, py)


def as_shown(number: float) -> str:
    """A number as the page writes it: grouped by thousands, up to 4 decimals."""
    return f"{number:,.4f}".rstrip("0").rstrip(".")


def outcome(web: str, task_id: str) -> dict:
    task = requests.get(f"{web}/tasks/{task_id}", timeout=10).json()
    answer = requests.get(f"{web}{task['result_url']}", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def record(name: str, figures: dict) -> None:
    """Print figures and keep them as a JSON artifact (timings are recorded, never asserted: this machine is shared)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(name, figures)


def finished_simulation(app: Flask, run_worker: Callable[[Flask], bool]) -> str:
    """A 1,000-day simulation, run by an in-process worker: cheap (its cost is in the runs) and as long as the page's
    longest chart."""
    task_id = submit_task(app, "simulation", **SHORT_SIMULATION)
    assert run_worker(app)
    return task_id


def watch_progress(browser: webdriver.Chrome) -> None:
    """Have the page note every percent it shows, as it shows it (read back with seen_progress)."""
    browser.execute_script("""
        window.seen = [];
        new MutationObserver(() => seen.push(document.getElementById('task-progress').value))
          .observe(document.getElementById('task-status'), {childList: true, characterData: true, subtree: true});""")


def seen_progress(browser: webdriver.Chrome) -> list[int]:
    seen = browser.execute_script("return window.seen")
    assert len({percent for percent in seen if percent < 100}) >= 2, f"the progress shown did not move: {seen}"
    assert seen[-1] == 100
    return seen


def fetched(browser: webdriver.Chrome, path: str) -> int:
    """How many times the page has fetched a path, by its Resource Timing entries."""
    return browser.execute_script(
        "return performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === arguments[0]).length",
        path,
    )


def field_error(browser: webdriver.Chrome, model: str, name: str) -> str:
    """The message shown beside a field, once it is shown; the field is marked invalid and described by it."""
    error = until(browser, expected_conditions.visibility_of_element_located((By.ID, f"f-{model}-{name}-error")))
    field = browser.find_element(By.ID, f"f-{model}-{name}")
    assert field.get_attribute("aria-invalid") == "true"
    assert f"f-{model}-{name}-error" in field.get_attribute("aria-describedby").split()
    return error.text


FOCUSABLE = "input:not([type=hidden]), select, textarea, button, a[href]"
