"""The page (GET /) in a real headless browser, Debian's chromium driven by Selenium: it lists the
models with their live figures, classifies an uploaded PNG of a known held-out digit, shows a bad
file's error as readable text, and says when a model is untrained. ``PAGE_SCREENSHOT=docs/page.png``
saves the page after the digit's result (the README's picture)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DIGITS = "digits-lenet5"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,860")


@pytest.fixture
def browser(tmp_path):
    """Headless chromium with a fresh profile, driven by Debian's chromedriver (no downloads)."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "chromium and chromium-driver are installed by scripts/install.sh (apt)"
    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    options.binary_location = chromium
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def known_digit(model_repo: Path, out: Path) -> tuple[Path, str]:
    """A held-out digit's PNG from scripts/write_digit_pngs.py and its true label."""
    result = subprocess.run([sys.executable, "scripts/write_digit_pngs.py", "--out", str(out), "--count", "1",
                             "--model-dir", str(model_repo / DIGITS)], cwd=ROOT, capture_output=True, text=True,
                            timeout=540)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.split()[0])
    return path, path.stem.split("label")[1]


def row_cells(driver, model: str) -> list[str]:
    """The texts of a model's row in the live panel, read at once (the panel is redrawn every 2 s)."""
    return driver.execute_script(
        "return [...document.querySelectorAll(`#models tr[data-model='${arguments[0]}'] td`)].map(td => td.textContent)",
        model)


def wait(driver, condition, timeout: float = 60):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d))


def test_the_page_classifies_a_digit_and_explains_errors(start_server, model_repo, browser, tmp_path):
    server = start_server()
    png, label = known_digit(model_repo, tmp_path / "digits")
    browser.get(f"{server.http_url}/?model={DIGITS}")
    wait(browser, lambda d: row_cells(d, DIGITS))
    Select(browser.find_element(By.ID, "model")).select_by_value(DIGITS)
    assert browser.find_element(By.ID, "untrained").is_displayed() is False

    browser.find_element(By.ID, "file").send_keys(str(png))
    first = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#top li .label"))[0]
    assert first.text == label
    assert len(browser.find_elements(By.CSS_SELECTOR, "#top li")) == 5
    assert "server-side latency" in browser.find_element(By.ID, "latency").text
    cells = wait(browser, lambda d: (c := row_cells(d, DIGITS)) and c[3] not in ("–", "0.0") and c, timeout=60)
    assert cells[1] == "yes" and cells[2] == "yes", cells
    if os.environ.get("PAGE_SCREENSHOT"):
        browser.save_screenshot(str(ROOT / os.environ["PAGE_SCREENSHOT"]))

    bad = tmp_path / "not-an-image.png"
    bad.write_text("this is text, not a PNG")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    error = wait(browser, lambda d: d.find_element(By.ID, "error").is_displayed() and d.find_element(By.ID, "error"))
    assert error.text.startswith("400: ") and "expected a PNG or JPEG image" in error.text
    assert "Traceback" not in error.text and not browser.find_elements(By.CSS_SELECTOR, "#top li")

    samples = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.sample"))
    samples[7].click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#top li .label"))
    assert browser.find_element(By.CSS_SELECTOR, "#top li .label").text == samples[7].get_attribute("data-label")

    Select(browser.find_element(By.ID, "model")).select_by_value("cifar-tiny")
    notice = browser.find_element(By.ID, "untrained")
    assert notice.is_displayed() and "UNTRAINED" in notice.text


def test_the_page_asks_for_the_token_of_a_protected_server(start_server, browser):
    server = start_server(env={"CONVNET_AUTH_TOKEN": "page-token"})
    browser.get(server.http_url + "/")
    field = wait(browser, lambda d: d.find_element(By.ID, "auth").is_displayed() and d.find_element(By.ID, "token"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")
    field.send_keys("page-token\n")
    wait(browser, lambda d: row_cells(d, DIGITS))


def test_the_page_opens_on_the_model_classify_uses_by_default(start_server, browser):
    """Issue 24: the page opened on the first model by name (cifar-tiny, untrained); now it opens on
    ``classify``'s default, fashion, with its samples and no UNTRAINED notice."""
    server = start_server()
    browser.get(server.http_url + "/")
    wait(browser, lambda d: row_cells(d, "fashion"))
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.get_attribute("value") == "fashion"
    assert browser.find_element(By.ID, "untrained").is_displayed() is False
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.sample"))
