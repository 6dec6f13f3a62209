"""The page for analysts (GET /, static/) in a real browser, against the Procfile's web and real workers: a run from
the form, its live progress and its result (charts, a sweep's table and CSV), canceling, and a 400 beside its field.
Each state is kept as a PNG in TEST_ARTIFACTS (tests/browser.py).
"""

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from tests.browser import (
    BROWSER_MARKS,
    LONG_SIMULATION,
    Mapping,
    as_shown,
    assert_drawn,
    chart,
    fetched,
    field_error,
    fill,
    open_page,
    outcome,
    path_points,
    record,
    seen_progress,
    shown_id,
    until,
    watch_progress,
)
from tests.conftest import (
    wait_for,
)

pytestmark = BROWSER_MARKS


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
