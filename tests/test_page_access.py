"""The page for analysts in a real browser, as everyone reaches it: with an API token, on a phone, with the keyboard
alone, and its first load's size and timings; with PAGE_SCREENSHOT=1, test_write_the_readmes_screenshot writes
docs/page.png.
"""

import base64
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from tests.browser import (
    BROWSER_MARKS,
    FOCUSABLE,
    MAX_FIRST_LOAD_BYTES,
    TOKEN,
    chart,
    fill,
    finished_simulation,
    open_page,
    outcome,
    record,
    shown_id,
    until,
)
from tests.conftest import (
    ROOT,
    free_port,
    service_env,
    start_process,
    stop_process,
    wait_for_web,
)

pytestmark = BROWSER_MARKS


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


def assert_every_form_labels_its_inputs(browser: webdriver.Chrome) -> None:
    """Every model's form (the test models' too): each input has a label, and the form a legend naming its model."""
    for model in [option.get_attribute("value") for option in Select(browser.find_element(By.ID, "model")).options]:
        Select(browser.find_element(By.ID, "model")).select_by_value(model)  # every model's form, the test models' too
        unlabelled = browser.execute_script(
            """return [...document.querySelectorAll('input, select, textarea')].filter(e => !e.closest('[hidden]'))
                 .filter(e => !(e.labels.length && e.labels[0].textContent.trim()) && !e.getAttribute('aria-label'))
                 .map(e => e.id)"""
        )
        assert unlabelled == [], model
        assert browser.find_element(By.CSS_SELECTOR, "#fields fieldset > legend").text == f"Parameters of {model}"


def test_the_form_works_with_the_keyboard_alone_and_every_input_has_a_label(
    app: Flask, run_worker: Callable[[Flask], bool], web: str, browser: webdriver.Chrome, shoot: Callable[[str], Path]
) -> None:
    open_page(browser, web)
    assert_every_form_labels_its_inputs(browser)
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
