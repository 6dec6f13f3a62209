"""The page for analysts (GET /, static/) in a real browser: headless Debian chromium through /usr/bin/chromedriver,
against the Procfile's web and real workers. Each state is kept as a PNG in TEST_ARTIFACTS (default
test-artifacts/page/), with the figures measured (JSON); with PAGE_SCREENSHOT=1, test_write_the_readmes_screenshot
writes docs/page.png.
"""

import base64
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.conftest import (
    ROOT,
    free_port,
    service_env,
    start_process,
    stop_process,
    submit_task,
    wait_for,
    wait_for_web,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (bash .ci/run installs them)",
    ),
]

ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS", ROOT / "test-artifacts" / "page"))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip
TOKEN = "page-test-token"
MAX_FIRST_LOAD_BYTES = 300_000
# Long enough on a real worker (about 6 s of one core) for the page to show its progress move several times.
LONG_SIMULATION = {"days": "1000", "runs": "40000"}
SHORT_SIMULATION = {"population": 100_000, "initial_infected": 10, "r0": 2.5, "incubation_days": 4,
                    "infectious_days": 6, "days": 1000, "runs": 100, "seed": 3}  # fmt: skip


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    """Headless chromium with a fresh profile (nothing cached), a desktop-sized window, downloads into tmp_path."""
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    yield driver
    driver.quit()


@pytest.fixture
def shoot(browser: webdriver.Chrome, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Keep a full-page screenshot of the current state as an artifact: <test name>-<state>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def shot(state: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{state}.png"
        capture = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(capture["data"]))
        return path

    return shot


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


def test_a_simulation_from_the_form_shows_its_progress_then_its_chart(
    web: str, worker_process: subprocess.Popen, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    fill(browser, LONG_SIMULATION)
    shoot("form")
    watch_progress(browser)
    browser.find_element(By.ID, "run-button").click()
    task_id = shown_id(browser)
    until(browser, lambda b: 0 < b.execute_script("return document.getElementById('task-progress').value") < 100, 60)
    shoot("progress")
    svg = chart(browser, "infectious", 90)

    seen = seen_progress(browser)
    # The progress came by the event stream: the result URL was asked once, for the result.
    polls = fetched(browser, f"/simulations/{task_id}")
    assert polls == 1 and fetched(browser, f"/tasks/{task_id}/events") >= 1
    result = outcome(web, task_id)["result"]
    mapping = Mapping(svg)
    band = path_points(svg, "band")
    days = len(result["infectious"]["median"])
    assert days == 1001
    assert_drawn(mapping, path_points(svg, "median"), result["infectious"]["median"], "median")
    assert_drawn(mapping, band[:days], result["infectious"]["high"], "band's high edge")
    assert_drawn(mapping, band[days:][::-1], result["infectious"]["low"], "band's low edge")
    assert mapping.y_min == 0 and mapping.y_max >= max(result["infectious"]["high"])
    summary = browser.find_element(By.CSS_SELECTOR, "#task-result .summary").text
    for name in ("peak_day", "peak_size", "final_size"):
        low, median, high = (as_shown(result[name][edge]) for edge in ("low", "median", "high"))
        assert f"{name.replace('_', ' ')}\n{median} (90%: {low} to {high})" in summary
    assert "finished" in browser.find_element(By.ID, "task-status").text
    draw = browser.execute_script("return performance.getEntriesByName('chart').map(e => e.duration)")
    record("simulation-chart", {"chart_ms": draw, "points": days, "progress_seen": sorted(set(seen)), "polls": polls})
    shoot("chart")  # last: a full-page capture resizes the page, and the page redraws its chart for the new width


def test_without_the_event_stream_the_page_polls_the_result_url(
    web: str, worker_process: subprocess.Popen, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/events"]})  # as if the server had none
    open_page(browser, web)
    fill(browser, {"x": "2", "y": "3", "delay": "4"}, model="multiply")
    watch_progress(browser)
    browser.find_element(By.ID, "run-button").click()
    task_id = shown_id(browser)
    until(browser, lambda b: 0 < b.execute_script("return document.getElementById('task-progress').value") < 100, 30)
    shoot("progress")
    result = until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#task-result pre")), 30)
    assert json.loads(result.text) == 6 == outcome(web, task_id)["result"]
    seen_progress(browser)
    assert fetched(browser, f"/multiply/{task_id}") >= 3  # about once a second, as its Retry-After says
    shoot("result")


def test_an_enkf_from_the_form_shows_rt_with_its_band_and_the_cases(
    web: str, worker_process: subprocess.Popen, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    Select(browser.find_element(By.ID, "model")).select_by_value("enkf")
    cases = browser.find_element(By.ID, "f-enkf-cases")
    assert cases.get_attribute("value").startswith("5, 18, 11")  # the schema's example
    cases.clear()
    column = [5, 18, 11, 20, 26, 25, 29, 30, 42, 40, 60, 59, 60, 57, 59, 67, 67, 58, 46, 48, 46, 37, 39, 42]
    cases.send_keys("cases\n" + "\n".join(map(str, column)))  # a CSV column, pasted with its header
    shoot("form")
    browser.find_element(By.ID, "run-button").click()
    task_id = shown_id(browser)
    svg = chart(browser, "rt", 90)

    ended = outcome(web, task_id)
    assert ended["params"]["cases"] == column
    rt = ended["result"]["rt"]
    assert len(rt) == ended["result"]["days"] == len(column)
    mapping = Mapping(svg)
    assert_drawn(mapping, path_points(svg, "median"), [day["median"] for day in rt], "R(t) median")
    band = path_points(svg, "band")
    assert_drawn(mapping, band[: len(rt)], [day["high"] for day in rt], "R(t) band's high edge")
    assert_drawn(mapping, band[len(rt) :][::-1], [day["low"] for day in rt], "R(t) band's low edge")
    reference = svg.find_element(By.CSS_SELECTOR, "[data-series=reference]")
    assert abs(float(reference.get_attribute("y1")) - mapping.y(1)) <= 1

    bars = chart(browser, "cases")
    scale = Mapping(bars)
    rects = bars.find_elements(By.CSS_SELECTOR, "[data-series=cases] rect")
    assert len(rects) == len(column)
    for day, (rect, count) in enumerate(zip(rects, column, strict=True)):
        x, y, width = (float(rect.get_attribute(name)) for name in ("x", "y", "width"))
        assert abs(x + width / 2 - scale.x(day)) <= 1 and abs(y - scale.y(count)) <= 1, (day, count)
    assert (scale.x_min, scale.x_max) == (mapping.x_min, mapping.x_max)  # one day axis for both
    shoot("chart")


def test_a_queued_task_is_canceled_from_the_recent_tasks(
    web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    task_id = requests.post(f"{web}/multiply", json={"x": 2, "y": 3, "delay": 60}, timeout=10).json()["task_id"]
    open_page(browser, web)
    row = (By.CSS_SELECTOR, f"#recent-list tr[data-task-id='{task_id}']")
    until(browser, expected_conditions.text_to_be_present_in_element(row, "queued"))
    shoot("queued")
    browser.find_element(*row).find_element(By.XPATH, ".//button[text()='Cancel']").click()
    until(browser, expected_conditions.text_to_be_present_in_element(row, "canceled"))
    shoot("canceled")
    assert requests.get(f"{web}/tasks/{task_id}", timeout=10).json()["status"] == "canceled"
    assert "canceled" in browser.find_element(By.ID, "recent-status").text
    assert not browser.find_element(*row).find_element(By.XPATH, ".//button[text()='Cancel']").is_displayed()
    browser.find_element(*row).find_element(By.XPATH, ".//button[contains(@aria-label, 'Show')]").click()
    error = until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#task-result .error")))
    assert error.text == f"Task canceled: {outcome(web, task_id)['error']}"
    shoot("shown")


def test_a_running_task_is_stopped_from_the_recent_tasks(
    web: str, worker_process: subprocess.Popen, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    task_id = requests.post(f"{web}/multiply", json={"x": 2, "y": 3, "delay": 60}, timeout=10).json()["task_id"]
    open_page(browser, web)
    row = (By.CSS_SELECTOR, f"#recent-list tr[data-task-id='{task_id}']")
    until(browser, expected_conditions.text_to_be_present_in_element(row, "started"))
    browser.find_element(*row).find_element(By.XPATH, ".//button[text()='Cancel']").click()
    until(browser, expected_conditions.text_to_be_present_in_element(row, "stopped"), 30)
    shoot("stopped")
    assert requests.get(f"{web}/tasks/{task_id}", timeout=10).json()["status"] == "stopped"


def field_error(browser: webdriver.Chrome, model: str, name: str) -> str:
    """The message shown beside a field, once it is shown; the field is marked invalid and described by it."""
    error = until(browser, expected_conditions.visibility_of_element_located((By.ID, f"f-{model}-{name}-error")))
    field = browser.find_element(By.ID, f"f-{model}-{name}")
    assert field.get_attribute("aria-invalid") == "true"
    assert f"f-{model}-{name}-error" in field.get_attribute("aria-describedby").split()
    return error.text


def test_a_400_is_shown_beside_the_field_it_names(
    web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    fill(browser, {"r0": "30", "population": ""})
    browser.find_element(By.ID, "run-button").click()
    body = {"initial_infected": 20, "r0": 30, "incubation_days": 4, "infectious_days": 6, "days": 365, "runs": 1000,
            "seed": 7}  # fmt: skip
    expected = requests.post(f"{web}/simulations", json=body, timeout=10).json()["error"].split("; ")
    assert sorted(expected) == ["'r0' must be at most 20", "key 'population' is required"]
    assert field_error(browser, "simulation", "r0") == "'r0' must be at most 20"
    assert field_error(browser, "simulation", "population") == "key 'population' is required"
    assert not browser.find_element(By.ID, "f-simulation-days-error").is_displayed()
    shoot("errors")

    # A sweep's error names its run, and is shown beside the field too; one that names no field, above the button.
    fill(browser, {"population": "1000000", "r0": "2, 30"})
    browser.find_element(By.ID, "run-button").click()
    until(browser, lambda b: "run 1" in b.find_element(By.ID, "f-simulation-r0-error").text)
    assert field_error(browser, "simulation", "r0") == "run 1 (r0=30): 'r0' must be at most 20"
    assert not browser.find_element(By.ID, "f-simulation-population-error").is_displayed()
    fill(browser, {"r0": "two"})
    browser.find_element(By.ID, "run-button").click()
    until(
        browser, lambda b: b.find_element(By.ID, "f-simulation-r0-error").text == "'r0' must be a number, not \"two\""
    )
    # A message that names no field is shown once, above the button: here, a grid of 30 x 40 runs.
    fill(browser, {"r0": ", ".join(str(r / 10) for r in range(1, 31)), "days": ", ".join(map(str, range(1, 41)))})
    browser.find_element(By.ID, "run-button").click()
    general = until(browser, expected_conditions.visibility_of_element_located((By.ID, "form-error")))
    assert general.text == "the grid makes 1200 runs, over the 1000 allowed (MAX_SWEEP_RUNS)"
    assert not browser.find_element(By.ID, "f-simulation-r0-error").is_displayed()
    assert requests.get(f"{web}/tasks", timeout=10).json()["tasks"] == []  # nothing was accepted
    shoot("sweep-errors")


def test_a_sweep_from_the_form_shows_its_table_and_its_csv(
    app: Flask,
    run_worker: Callable[[Flask], bool],
    web: str,
    browser: webdriver.Chrome,
    shoot: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    open_page(browser, web)
    fill(browser, {"x": "1, 2, 3", "y": "2", "delay": "0"}, model="multiply")
    browser.find_element(By.ID, "run-button").click()
    sweep_id = shown_id(browser, "sweep")
    until(browser, expected_conditions.text_to_be_present_in_element((By.ID, "task-status"), "0 of 3 runs ended"))
    shoot("running")
    assert run_worker(app)
    table = until(browser, expected_conditions.presence_of_element_located((By.ID, "sweep-table")), 30)
    link = until(browser, expected_conditions.element_to_be_clickable((By.ID, "sweep-csv")))
    shoot("table")

    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in table.find_elements(By.TAG_NAME, "tr")
    ]
    rows = [row for row in rows if row]  # the head's cells are th
    assert rows == [["0", "1", "finished", "2"], ["1", "2", "finished", "4"], ["2", "3", "finished", "6"]]
    headers = [cell.text for cell in table.find_elements(By.TAG_NAME, "th")]
    assert headers == ["run", "x", "status", "result"]
    expected = requests.get(f"{web}/sweeps/{sweep_id}?format=csv", timeout=10).text
    assert link.get_attribute("href").startswith("blob:")
    link.click()  # the browser saves it into tmp_path (the browser fixture's download folder)
    saved = tmp_path / f"sweep-{sweep_id}.csv"
    wait_for(saved.exists, 20, "the CSV to be downloaded")
    assert saved.read_text() == expected
    assert expected.splitlines()[0] == "index,x,task_id,status,result,error"

    # A simulation's table has the medians of its result's bands (the CSV has their low and high too).
    fill(browser, {"r0": "1.5, 2.5", "days": "60", "runs": "20"})
    browser.find_element(By.ID, "run-button").click()
    sweep_id = shown_id(browser, "sweep", before=sweep_id)
    until(browser, expected_conditions.text_to_be_present_in_element((By.ID, "task-status"), "0 of 2 runs ended"))
    assert run_worker(app)
    until(browser, expected_conditions.element_to_be_clickable((By.ID, "sweep-csv")))
    headers = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#sweep-table th")]
    assert headers[:3] == ["run", "r0", "status"]
    assert {"peak_day.median", "final_size.median"} <= set(headers) and "final_size.low" not in headers
    table = requests.get(f"{web}/sweeps/{sweep_id}", timeout=10).json()
    column = headers.index("final_size.median")
    shown = [row.find_elements(By.TAG_NAME, "td")[column].text for row in browser.find_elements(
        By.CSS_SELECTOR, "#sweep-table tbody tr")]  # fmt: skip
    assert shown == [as_shown(run["result"]["final_size"]["median"]) for run in table["runs"]]
    shoot("simulation-table")


def test_with_api_tokens_the_page_asks_for_a_token_then_works(
    app: Flask, browser: webdriver.Chrome, shoot: Callable[[str], Path], tmp_path: Path
) -> None:
    port = free_port()
    process = start_process("web", tmp_path / "web.log", PORT=str(port), **service_env(API_TOKENS=f"other,{TOKEN}"))
    web = f"http://127.0.0.1:{port}"
    try:
        wait_for_web(process, web, tmp_path / "web.log")
        browser.get(web)
        token_input = until(browser, expected_conditions.visibility_of_element_located((By.ID, "token-input")))
        assert browser.find_element(By.ID, "token-input").get_attribute("type") == "password"
        shoot("asked")
        token_input.send_keys("wrong", Keys.ENTER)
        until(browser, expected_conditions.text_to_be_present_in_element((By.ID, "token-why"), "refused"))
        again = until(browser, expected_conditions.visibility_of_element_located((By.ID, "token-input")))
        again.send_keys(TOKEN, Keys.ENTER)
        until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#fields fieldset")))
        fill(browser, {"x": "6", "y": "7"}, model="multiply")
        browser.find_element(By.ID, "run-button").click()
        task_id = shown_id(browser)
        row = (By.CSS_SELECTOR, f"#recent-list tr[data-task-id='{task_id}']")
        until(browser, expected_conditions.text_to_be_present_in_element(row, "queued"))
        shoot("working")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{web}/tasks/{task_id}", headers=headers, timeout=10).json()["params"]["x"] == 6
        assert browser.execute_script("return sessionStorage.getItem('longjobs.token')") == TOKEN

        browser.refresh()  # once per tab: the token is kept
        until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#fields fieldset")))
        until(browser, expected_conditions.text_to_be_present_in_element(row, "queued"))
        assert not browser.find_element(By.ID, "token").is_displayed()
    finally:
        stop_process(process)


def test_on_a_phone_the_page_does_not_scroll_sideways_and_the_chart_fits(
    app: Flask, run_worker: Callable[[Flask], bool], web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    task_id = finished_simulation(app, run_worker)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})  # fmt: skip
    open_page(browser, f"{web}/#task={task_id}")
    svg = chart(browser, "infectious")
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert width == 375
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    box = browser.execute_script("return arguments[0].getBoundingClientRect().toJSON()", svg)
    assert box["left"] >= 0 and box["right"] <= width and box["width"] >= 280
    assert float(svg.get_attribute("data-plot-width")) < width  # drawn for this width, not shrunk from a wider one
    shoot("phone")
    Select(browser.find_element(By.ID, "model")).select_by_value("enkf")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    shoot("phone-enkf-form")


FOCUSABLE = "input:not([type=hidden]), select, textarea, button, a[href]"


def test_the_form_works_with_the_keyboard_alone_and_every_input_has_a_label(
    app: Flask, run_worker: Callable[[Flask], bool], web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    for model in [option.get_attribute("value") for option in Select(browser.find_element(By.ID, "model")).options]:
        Select(browser.find_element(By.ID, "model")).select_by_value(model)  # every model's form, the test models' too
        unlabelled = browser.execute_script(
            """return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.closest('[hidden]'))
                 .filter(e => !(e.labels.length && e.labels[0].textContent.trim()) && !e.getAttribute('aria-label'))
                 .map(e => e.id)"""
        )
        assert unlabelled == [], model
        assert browser.find_element(By.CSS_SELECTOR, "#fields fieldset > legend").text == f"Parameters of {model}"
    Select(browser.find_element(By.ID, "model")).select_by_value("simulation")

    def active() -> WebElement:
        return browser.switch_to.active_element

    def tab_to(element_id: str, limit: int = 40) -> None:
        for _ in range(limit):
            if active().get_attribute("id") == element_id:
                return
            active().send_keys(Keys.TAB)
        pytest.fail(f"TAB never reached #{element_id}")

    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # from the top of the page
    tab_to("model")
    assert browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle") == "solid"
    active().send_keys("m")  # a closed select takes the option whose name starts with the key typed
    until(browser, expected_conditions.presence_of_element_located((By.ID, "f-multiply-x")))
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.text == "multiply"
    reached = []
    for _ in range(12):
        active().send_keys(Keys.TAB)
        reached.append(active().get_attribute("id"))
        if reached[-1] == "run-button":
            break
    assert reached[:4] == ["f-multiply-x", "f-multiply-y", "f-multiply-delay", "run-button"]
    tab_to("f-multiply-x")  # around the page and back to the form
    for value in ("6", "7", "0"):
        active().send_keys(Keys.CONTROL, "a")
        active().send_keys(value, Keys.TAB)
    shoot("filled")
    browser.find_element(By.ID, "f-multiply-delay").send_keys(Keys.ENTER)  # submits the form
    task_id = shown_id(browser)
    assert run_worker(app)
    result = until(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "#task-result pre")))
    assert json.loads(result.text) == 42
    assert outcome(web, task_id)["result"] == 42
    shoot("result")
    # The recent tasks' buttons are in the TAB order too, and ENTER on one shows its task.
    show = until(browser, expected_conditions.presence_of_element_located(
        (By.CSS_SELECTOR, f"#recent-list tr[data-task-id='{task_id}'] button")))  # fmt: skip
    browser.execute_script("document.querySelector('#task-result pre').dataset.old = 'yes'")
    for _ in range(60):
        if active() == show:
            break
        active().send_keys(Keys.TAB)
    assert active() == show
    active().send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#task-result pre:not([data-old])"))
    reachable = browser.execute_script(
        f"""return [...document.querySelectorAll('{FOCUSABLE}')].filter(e => e.offsetParent && e.tabIndex < 0)
              .map(e => e.outerHTML)"""
    )
    assert reachable == []  # nothing visible is kept out of the TAB order


def test_the_first_load_is_small_and_its_timings_are_recorded(
    app: Flask, run_worker: Callable[[Flask], bool], web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    until(browser, lambda b: b.execute_script("return performance.getEntriesByName('page-ready').length"))
    load = browser.execute_script(
        """const [page] = performance.getEntriesByType('navigation');
           const all = [page, ...performance.getEntriesByType('resource')];
           return {bytes: all.reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize), 0),
                   files: all.map(e => [e.name, e.transferSize, e.encodedBodySize]),
                   interactive_ms: page.domInteractive, content_loaded_ms: page.domContentLoadedEventEnd,
                   ready_ms: performance.getEntriesByName('page-ready')[0].startTime}"""
    )
    shoot("loaded")
    assert {"/", "/static/page.js", "/static/page.css", "/models"} <= {re.sub(r"^http://[^/]+", "", n) for n, *_ in
                                                                         load["files"]}  # fmt: skip
    assert all(transfer > 0 for _, transfer, _ in load["files"])  # nothing came from a cache
    assert load["bytes"] < MAX_FIRST_LOAD_BYTES, load["files"]

    task_id = finished_simulation(app, run_worker)
    browser.get(f"{web}/#task={task_id}")
    chart(browser, "infectious")
    draw = browser.execute_script("return performance.getEntriesByName('chart').map(e => e.duration)")
    shoot("chart")
    figures = {"transferred_kB": round(load["bytes"] / 1000, 1), "dom_interactive_ms": load["interactive_ms"],
               "dom_content_loaded_ms": load["content_loaded_ms"], "page_ready_ms": load["ready_ms"]}  # fmt: skip
    record("first-load", figures | {"chart_ms_1001_points": draw})


@pytest.mark.skipif(not os.environ.get("PAGE_SCREENSHOT"), reason="writes docs/page.png when PAGE_SCREENSHOT=1")
def test_write_the_readmes_screenshot(app: Flask, run_worker: Callable[[Flask], bool], web: str,
                                      browser: webdriver.Chrome) -> None:  # fmt: skip
    """docs/page.png: the page at a desktop's size with the schema's example simulation finished."""
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False})  # fmt: skip
    open_page(browser, web)
    browser.find_element(By.ID, "run-button").click()  # the form as it comes: the schema's example
    shown_id(browser)
    assert run_worker(app)
    chart(browser, "infectious")
    until(browser, expected_conditions.text_to_be_present_in_element((By.CSS_SELECTOR, "#recent-list"), "finished"))
    browser.execute_script("document.activeElement.blur(); scrollTo(0, 0)")
    capture = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    png = base64.b64decode(capture["data"])
    assert len(png) < 150_000, f"{len(png)} bytes"
    (ROOT / "docs" / "page.png").write_bytes(png)
