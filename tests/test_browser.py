"""The web pages in a real browser: headless Debian chromium, driven through /usr/bin/chromedriver."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import DASHBOARD_PASSWORD, basic, submit_failing, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("chromium") and shutil.which("chromedriver")),
        reason="needs Debian's chromium and chromium-driver (bash .ci/run installs them)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def log_in(browser: webdriver.Chrome, credentials: dict[str, str]) -> None:
    """Send basic-auth credentials with every request, as a browser does once the user typed them."""
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": credentials})


def test_the_dashboard_shows_a_queued_task_after_logging_in(web: str, browser: webdriver.Chrome) -> None:
    task_id = requests.post(f"{web}/multiply", json={"x": 2, "y": 3}, timeout=5).json()["task_id"]

    browser.get(f"{web}/rq/")
    assert not browser.find_elements(By.ID, "queues")  # no credentials, no dashboard

    log_in(browser, basic("admin", DASHBOARD_PASSWORD))
    browser.get(f"{web}/rq/")
    queued = (By.CSS_SELECTOR, "#queues a[href*='/default/queued/']")
    WebDriverWait(browser, 20).until(expected_conditions.text_to_be_present_in_element(queued, "1"))
    browser.find_element(*queued).click()
    WebDriverWait(browser, 20).until(expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "body"), task_id))
    assert f"multiply {task_id}" in browser.find_element(By.TAG_NAME, "body").text


def test_the_docs_page_shows_the_endpoints(web: str, browser: webdriver.Chrome) -> None:
    browser.get(f"{web}/docs")
    paths = WebDriverWait(browser, 30).until(
        expected_conditions.presence_of_all_elements_located((By.CSS_SELECTOR, ".opblock-summary-path"))
    )
    shown = {element.text.replace("\u200b", "") for element in paths}
    assert {"/multiply", "/multiply/{task_id}", "/simulations", "/tasks", "/health"} <= shown
    submit = next(element for element in paths if element.text.replace("\u200b", "") == "/simulations")
    submit.click()
    WebDriverWait(browser, 20).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "body"), "initial_infected")
    )


def test_the_dashboards_own_requeue_button_works(app: Flask, run_worker, web: str, browser: webdriver.Chrome) -> None:
    task_id = submit_failing(app, failures=1, fault="data")
    run_worker(app)
    failed = app.extensions["queues"]["default"].failed_job_registry
    assert task_id in failed

    log_in(browser, basic("admin", DASHBOARD_PASSWORD))
    browser.get(f"{web}/rq/0/view/job/{task_id}")
    button = WebDriverWait(browser, 20).until(
        expected_conditions.visibility_of_element_located((By.ID, "requeue-job-btn"))
    )
    button.click()
    queued = app.extensions["queues"]["default"]
    wait_for(lambda: task_id not in failed and queued.get_job_ids() == [task_id], 20, "the dashboard's requeue")
