"""Opening the report in a real headless Chromium (Debian's chromium and chromedriver,
installed by `make browser`), shared by the report tests and the `make demo` test."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "<script>alert(1)</script>"


def payload_of(html: str) -> dict:
    """The data document inside a report page."""
    text = re.search(r'<script id="hs-data" type="application/json">(.*?)</script>', html, re.S).group(1)
    return json.loads(text)


def browser():
    """Headless Debian chromium through its chromedriver; skipped locally when absent,
    a failure in CI (where `make browser` installs both)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail("chromium/chromedriver missing: CI must run `make browser`")
        pytest.skip("chromium and chromedriver not installed (run `make browser`)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1400,1100"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def check_in_browser(html: Path, shot: str, hostile: bool = True) -> None:
    """Load the report, find no console error, open a card, and (``hostile``: the book has
    an account named :data:`HOSTILE`, as the shared scoring book does) find that name
    through the filter, shown as text."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ARTIFACTS.mkdir(exist_ok=True)
    driver = browser()
    try:
        driver.get(html.resolve().as_uri())
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018  (no script from the data ran)
        driver.save_screenshot(str(ARTIFACTS / f"{shot}-portfolio.png"))
        # The monitoring section says whether the score can be trusted, with its tables.
        assert driver.find_element(By.ID, "monitor-verdict").text
        assert driver.find_elements(By.CSS_SELECTOR, "#monitoring-body table")
        rows = driver.find_elements(By.CSS_SELECTOR, "#account-table tbody tr")
        assert rows
        if hostile:
            # Filtering by the hostile name finds it, shown as plain text.
            box = driver.find_element(By.ID, "filter")
            box.send_keys("alert(1)")
            rows = driver.find_elements(By.CSS_SELECTOR, "#account-table tbody tr")
            assert rows, "the filter finds no account named " + HOSTILE
            assert rows[0].find_elements(By.TAG_NAME, "td")[0].text == HOSTILE
            box.clear()
            box.send_keys(" ")  # an input event: the filter redraws with no query
        first = driver.find_element(By.CSS_SELECTOR, "#account-table tbody tr")
        account = first.get_attribute("data-account")
        first.click()
        card = driver.find_element(By.ID, "card")
        WebDriverWait(driver, 10).until(lambda d: card.is_displayed())
        assert driver.find_element(By.ID, "card-title").text
        assert driver.find_elements(By.CSS_SELECTOR, "#card-waterfall svg rect")
        assert driver.find_elements(By.CSS_SELECTOR, "#card-history svg path")
        assert driver.find_elements(By.CSS_SELECTOR, "#card-metrics svg path")
        assert driver.current_url.endswith("#account=" + account)
        driver.save_screenshot(str(ARTIFACTS / f"{shot}-card.png"))
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert not errors, errors
    finally:
        driver.quit()


