"""The dashboard against hostile data, in a real browser: markup in a bench report, a job's error, a model's
name or a job's model stays text and runs nothing; the page and its files carry a strict
Content-Security-Policy and refuse framing; the API key lives in sessionStorage, not localStorage."""

from __future__ import annotations

import json

import pytest

from server.dashboard import last_bench_report_path
from tests import flux_checkpoint
from tests.conftest import live_server
from tests.test_dashboard import browser, csp_violations  # noqa: F401  (browser is a fixture)
from tests.user_models import register_models, tiny_flux_entry, toml_value

BENCH_MODEL = '<img src=x onerror="window.__pwned=1">'
BENCH_TASK = "<script>window.__pwned=2</script>"
BENCH_COLUMN = '<img src=y onerror="window.__pwned=3">'
JOB_MODEL = '<img src=z onerror="window.__pwned=4">'
JOB_ERROR = '<img src=w onerror="window.__pwned=5">the job failed'
MODEL_NAME = '<img src=v onerror="window.__pwned=6">Tiny FLUX'


@pytest.fixture
def hostile_server(settings, tmp_path):
    """A user's model whose name is markup, a bench report full of markup, and a failed job whose model and
    error message are markup, all for the account of the key it yields."""
    flux = flux_checkpoint.build_tiny_flux(tmp_path / "flux")
    register_models(settings, tiny_flux_entry(flux).replace('name = "TinyFlux"', f"name = {toml_value(MODEL_NAME)}"))
    with live_server(settings) as live:
        report = last_bench_report_path(live.engine)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(
            {"models": {BENCH_MODEL: {"task": BENCH_TASK, "model": BENCH_MODEL, "jobs": 3, BENCH_COLUMN: 1.5}}}
        ))
        key, account = live.new_key("hostile")
        job = live.engine.jobs.create(account, task="txt2img", model=JOB_MODEL, params={}, inputs={}, price=0.0)
        assert live.engine.jobs.fail(job.id, "internal_error", JOB_ERROR)
        yield live, key


@pytest.fixture
def server(settings):
    with live_server(settings) as live:
        yield live


def sign_in(browser, url: str, key: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    browser.find_element(By.ID, "key").send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#key-form button").click()
    WebDriverWait(browser, 60).until(ready.text_to_be_present_in_element((By.ID, "socket-state"), "connected"))


def test_markup_in_bench_report_jobs_and_model_names_shows_as_text(browser, hostile_server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    server, key = hostile_server
    wait = WebDriverWait(browser, 60)
    sign_in(browser, server.url, key)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#bench table tbody tr") and d.find_elements(By.CSS_SELECTOR, "#jobs tbody tr"))
    wait.until(lambda d: any(o.get_attribute("value").endswith("/txt2img") for o in d.find_elements(By.CSS_SELECTOR, "#task option")))
    Select(browser.find_element(By.ID, "task")).select_by_visible_text("txt2img")
    option = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#field-model option[value='TinyFlux']"))[0]

    assert browser.execute_script("return window.__pwned") is None
    bench = browser.find_element(By.ID, "bench").text
    assert BENCH_MODEL in bench and BENCH_TASK in bench and BENCH_COLUMN in bench
    jobs = browser.find_element(By.ID, "jobs").text
    assert JOB_MODEL in jobs and JOB_ERROR in jobs
    assert option.text == MODEL_NAME
    assert browser.find_elements(By.CSS_SELECTOR, "#bench img, #bench script, #jobs img, #jobs script") == []
    assert csp_violations(browser) == []


@pytest.mark.parametrize("path", ["/", "/dashboard-assets/dashboard.js", "/dashboard-assets/dashboard.css"])
def test_page_and_its_files_carry_strict_csp_and_refuse_framing(api, path):
    headers = api.client.get(path).headers
    policy = {d.split()[0]: d.split()[1:] for d in headers["content-security-policy"].split(";") if d.strip()}
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in headers["content-security-policy"] and "'unsafe-eval'" not in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_typed_key_is_kept_in_session_storage_not_local_storage(browser, server):
    key, _ = server.new_key("typed")
    sign_in(browser, server.url, key)
    assert browser.execute_script("return sessionStorage.getItem('drylocal-key')") == key
    assert browser.execute_script("return localStorage.getItem('drylocal-key')") is None


def test_key_left_in_local_storage_moves_to_session_storage(browser, server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    key, _ = server.new_key("legacy")
    browser.get(server.url + "/")
    browser.execute_script("localStorage.setItem('drylocal-key', arguments[0])", key)
    browser.refresh()
    WebDriverWait(browser, 60).until(ready.text_to_be_present_in_element((By.ID, "socket-state"), "connected"))
    assert browser.execute_script("return sessionStorage.getItem('drylocal-key')") == key
    assert browser.execute_script("return localStorage.getItem('drylocal-key')") is None
    assert csp_violations(browser) == []
