"""The rendered e2e report in a real headless Chromium (Debian's package), kept off the network."""

import json
from pathlib import Path

import pandas as pd
import pytest

from ptmeval.report import render_report
from tests.conftest import REPO
from tests.system import require_debian_packages

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = REPO / "test-artifacts"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_debian_packages(
        {"chromium": CHROMIUM, "chromedriver": CHROMEDRIVER}, ["chromium", "chromium-driver"]
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--proxy-server=127.0.0.1:9",
        "--proxy-bypass-list=<-loopback>",  # nothing reaches a network
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def full_screenshot(driver, path: Path) -> None:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(int(height) + 100, 16000))
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


def test_e2e_report_in_chromium(browser, e2e_workdir):
    report = e2e_workdir / "reports" / "e2e" / "index.html"
    browser.get(report.as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    figures = browser.execute_script(
        "return [...document.querySelectorAll('figure svg')].map(s => {"
        " const r = s.getBoundingClientRect(); return [r.width, r.height]; })"
    )
    assert len(figures) >= 4  # 2 learning curves, a cost figure, Pareto views
    assert all(w > 50 and h > 50 for w, h in figures), figures
    rows = browser.execute_script(
        "return document.querySelectorAll('#scorecard-table tr.scorecard-row').length"
    )
    models = pd.read_parquet(e2e_workdir / "results" / "aggregate" / "e2e" / "scorecard.parquet")[
        "model"
    ]
    assert rows == len(models) == 3
    assert "Recommendation." in browser.find_element("id", "recommendation").text
    full_screenshot(browser, ARTIFACTS / "e2e-report.png")
    assert (ARTIFACTS / "e2e-report.png").stat().st_size > 50_000
    tables = e2e_workdir / "reports" / "e2e" / "tables"
    assert (tables / "scorecard.csv").exists() and json.loads(
        (tables / "scorecard.json").read_text()
    )


def test_hostile_strings_stay_inert(browser, tmp_path):
    """A model named with a <script> payload and a label with HTML render as text: nothing runs."""
    payload = "<script>window.__pwned = 1; document.title = 'pwned'</script>"
    label = '<img src=x onerror="window.__pwned = 2">'
    results = pd.DataFrame(
        [
            {
                "model": payload,
                "task": label,
                "init": "pretrained",
                "method": "full",
                "fraction": 1.0,
                "seed": s,
                "n_train": 10,
                "metric": m,
                "value": 0.5 + 0.1 * s,
            }
            for s in (0, 1)
            for m in ("accuracy", "macro_f1", "ece")
        ]
    )
    from ptmeval.aggregate import learning_curves

    tables = {
        "results": results,
        "learning_curve": learning_curves(results),
        "tasks": pd.DataFrame(
            [
                {
                    "task": label,
                    "split": "test",
                    "label": 0,
                    "label_name": payload,
                    "count": 3,
                    "modality": "text",
                }
            ]
        ),
    }
    out = render_report(tables, tmp_path / "index.html", title=f"title {payload}", config_hash="x")
    browser.get(out.as_uri())
    assert browser.execute_script("return window.__pwned === undefined")
    assert browser.title.startswith("title <script>")  # shown as text, not executed
    assert payload in browser.find_element("tag name", "body").text
