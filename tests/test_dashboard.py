"""The dashboard in a real browser: headless Chromium (Debian's, driven by Selenium) loads the page from
a running drylocal, submits a job from the playground, sees its live preview and its result."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests import flux_checkpoint
from tests.conftest import live_server
from tests.user_models import register_models, tiny_flux_entry

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"

# Installed by DevTools before the page's own script (and outside its Content-Security-Policy): every
# violation the policy reports lands in window.__cspViolations for the test to read.
CSP_RECORDER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def csp_violations(driver) -> list[str]:
    return driver.execute_script("return window.__cspViolations || []")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian's chromium and chromium-driver are needed: scripts/setup.sh installs them")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1100"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_RECORDER})
    yield driver
    driver.quit()


@pytest.fixture
def server(settings, tmp_path):
    flux = flux_checkpoint.build_tiny_flux(tmp_path / "flux")
    register_models(settings, tiny_flux_entry(flux))
    with live_server(settings) as live:
        yield live


def test_playground_job_shows_live_preview_result_and_model_memory(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import Select, WebDriverWait

    key, _ = server.new_key("dashboard")
    wait = WebDriverWait(browser, 60)
    browser.get(server.url + "/")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "socket-state"), "connected"))

    wait.until(lambda d: any(o.get_attribute("value").endswith("/txt2img") for o in d.find_elements(By.CSS_SELECTOR, "#task option")))
    Select(browser.find_element(By.ID, "task")).select_by_visible_text("txt2img")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#field-model option[value='TinyFlux']"))
    Select(browser.find_element(By.ID, "field-model")).select_by_value("TinyFlux")
    for name, value in {"prompt": "a red cat", "width": "64", "height": "48", "steps": "4", "seed": "3"}.items():
        field = browser.find_element(By.ID, f"field-{name}")
        field.clear()
        field.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#playground button[type=submit]").click()
    wait.until(ready.text_to_be_present_in_element((By.ID, "message"), "Submitted"))
    request_id = browser.find_element(By.ID, "message").text.split()[-1]

    row = f"#jobs tr[data-request-id='{request_id}']"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} img.preview[data-source='live']"))
    link = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} a.result-link"))[0]
    assert "/results/" in link.get_attribute("href") and "signature=" in link.get_attribute("href")
    assert browser.find_element(By.CSS_SELECTOR, f"{row} .pill").text == "done"
    preview = browser.find_element(By.CSS_SELECTOR, f"{row} img.preview").get_attribute("src")
    assert preview.startswith("data:image/jpeg;base64,")

    wait.until(ready.text_to_be_present_in_element((By.ID, "models"), "TinyFlux"))
    assert " MB of " in browser.find_element(By.ID, "memory-text").text
    assert csp_violations(browser) == []
    OUTPUT.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(OUTPUT / "dashboard.png"))
    assert (OUTPUT / "dashboard.png").stat().st_size > 10_000
