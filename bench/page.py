"""The page's figures (GET /, static/) in headless Debian chromium, as the browser tests run it: the first load's
transferred size and timings (Navigation and Resource Timing), and how long a simulation's chart takes to draw (the
page's `chart` performance measure).

    measure("http://127.0.0.1:5000", "/simulations/<task_id>")   # a finished 1,000-day, 100,000-run simulation

or `python -m bench.page <base URL> [<result URL>]`, which prints the figures as JSON. The service must run without
API_TOKENS. Imports nothing of ours.
"""

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urljoin

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900")  # fmt: skip
LOAD_SECONDS = 30
CHART_SECONDS = 60
FIRST_LOAD = """
    const [page] = performance.getEntriesByType('navigation');
    const entries = [page, ...performance.getEntriesByType('resource')];
    return {bytes: entries.reduce((sum, e) => sum + (e.transferSize || e.encodedBodySize), 0),
            dom_interactive_ms: page.domInteractive, content_loaded_ms: page.domContentLoadedEventEnd,
            ready_ms: performance.getEntriesByName('page-ready')[0].startTime}"""


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """Headless chromium with a profile of its own, so that nothing of the page is cached."""
    with tempfile.TemporaryDirectory(prefix="bench-page-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        driver.set_page_load_timeout(LOAD_SECONDS)
        try:
            yield driver
        finally:
            driver.quit()


def measure(base_url: str, simulation_result_url: str | None = None) -> dict:
    """transferred_kB and the timings (ms from navigation start) of the first load: dom_interactive_ms,
    interactive_ms (DOMContentLoaded ended: the page's script has run), form_ready_ms (the form is built from
    GET /models); and chart_ms, the draw of the given finished simulation's chart (None without one)."""
    base = base_url.rstrip("/") + "/"
    with chromium() as browser:
        browser.get(base)
        WebDriverWait(browser, LOAD_SECONDS).until(
            lambda b: b.execute_script("return performance.getEntriesByName('page-ready').length")
        )
        load = browser.execute_script(FIRST_LOAD)
        figures = {
            "transferred_kB": round(load["bytes"] / 1000, 1),
            "dom_interactive_ms": round(load["dom_interactive_ms"], 1),
            "interactive_ms": round(load["content_loaded_ms"], 1),
            "form_ready_ms": round(load["ready_ms"], 1),
            "chart_ms": None,
        }
        if simulation_result_url:
            task_id = urljoin(base, simulation_result_url).rstrip("/").rsplit("/", 1)[-1]
            browser.get("about:blank")  # a new page, not a change of the fragment of this one
            browser.get(f"{base}#task={task_id}")
            durations = WebDriverWait(browser, CHART_SECONDS).until(
                lambda b: b.execute_script("return performance.getEntriesByName('chart').map(e => e.duration)")
            )
            figures["chart_ms"] = round(durations[0], 1)
    return figures


if __name__ == "__main__":
    print(json.dumps(measure(*sys.argv[1:3]), indent=2))
