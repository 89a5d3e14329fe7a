"""The report in a real headless Chromium: players load, images render, filters work, Approve updates the index
(a placeholder take only after a confirmation and a reason).

Needs Debian ``chromium`` and ``chromium-driver`` (/usr/bin/chromium, /usr/bin/chromedriver); skipped without.
Screenshots go to the test's tmp dir and, when ``ASSETGEN_SCREENSHOT_DIR`` is set, are copied there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from assetgen.report import build_report
from assetgen.report.approval import read_overrides
from assetgen.report.review import create_app
from assetgen.store.index import Index
from tests.test_report_helpers import add_asset, serve_in_thread, texture, tone

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                       reason="headless browser tests need Debian packages chromium and chromium-driver "
                              "(/usr/bin/chromium, /usr/bin/chromedriver)"),
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    add_asset(root, "forest", "birds", tone(freq=300))
    add_asset(root, "forest", "birds", texture(seconds=2, seed=1), lufs=-26.5)
    add_asset(root, "forest", "wind", texture(seconds=4, seed=2), loop_start=8_000, loop_end=56_000,
              seam_score=0.02, model="tiny/sfx", placeholder=1, category="loops")
    add_asset(root, "city", "horn", tone(seconds=1, sr=48_000, freq=900, channels=1), sr=48_000, true_peak_dbtp=-0.9)
    return root


@pytest.fixture
def driver(tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_AVOID_STATS", "true")  # selenium-manager: no telemetry (no network here)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1100"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    drv.set_page_load_timeout(60)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def _screenshot(drv, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert drv.save_screenshot(str(path)) and path.stat().st_size > 10_000
    target = os.environ.get("ASSETGEN_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, Path(target) / name)
    return path


LOAD_ALL_AUDIO = """
const done = arguments[arguments.length - 1];
const players = Array.from(document.querySelectorAll('audio'));
Promise.all(players.map(a => new Promise(resolve => {
  const finish = () => resolve({src: a.getAttribute('src'), ready: a.readyState,
                                error: a.error ? a.error.code : null, duration: a.duration});
  if (a.readyState >= 1) return finish();
  a.addEventListener('loadedmetadata', finish, {once: true});
  a.addEventListener('error', finish, {once: true});
  a.load();
}))).then(done);
"""

LOAD_ALL_IMAGES = """
const done = arguments[arguments.length - 1];
const imgs = Array.from(document.querySelectorAll('img'));
Promise.all(imgs.map(img => { img.scrollIntoView(); img.loading = 'eager';
  return img.decode().then(() => img.naturalWidth, () => -1); })).then(widths => {
  window.scrollTo(0, 0); done(widths); });
"""


def test_static_report_in_chromium(root: Path, driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page = build_report(root, workers=1)
    driver.get(page.as_uri())
    assert "assetgen review" in driver.title
    # birds: current + previous, wind: current + loop audition, horn: current
    assert len(driver.find_elements(By.TAG_NAME, "audio")) == 5
    assert len(driver.find_elements(By.TAG_NAME, "img")) == 3
    assert all(a.get_attribute("preload") == "none" for a in driver.find_elements(By.TAG_NAME, "audio"))

    players = driver.execute_async_script(LOAD_ALL_AUDIO)
    assert len(players) == 5
    for p in players:
        assert p["error"] is None and p["ready"] >= 1, p
    durations = {p["src"].rsplit("/", 1)[-1]: round(p["duration"], 2) for p in players}
    assert durations["birds_v002.wav"] == 2.0 and durations["horn_v001.wav"] == 1.0
    assert [d for name, d in durations.items() if name.endswith("_seam.wav")] == [3.0]  # 1.5 s + 1.5 s
    assert driver.execute_async_script(LOAD_ALL_IMAGES) == [480, 480, 480]

    assert driver.find_element(By.ID, "placeholder-banner").is_displayed()
    buttons = driver.find_elements(By.CSS_SELECTOR, "button[data-status]")
    assert len(buttons) == 6 and not any(b.is_enabled() for b in buttons)  # read-only from disk
    _screenshot(driver, tmp_path, "report.png")

    def visible() -> list[str]:
        return [c.get_attribute("data-asset") for c in driver.find_elements(By.CSS_SELECTOR, "article.card")
                if c.is_displayed()]

    assert visible() == ["horn", "birds", "wind"]  # scene, asset order: city before forest
    Select(driver.find_element(By.ID, "f-scene")).select_by_visible_text("forest")
    assert visible() == ["birds", "wind"]
    driver.find_element(By.ID, "f-failing").click()
    assert visible() == ["birds"]
    assert driver.find_element(By.ID, "shown").text == "1 of 3 shown"
    Select(driver.find_element(By.ID, "f-scene")).select_by_index(0)
    assert visible() == ["horn", "birds"]
    Select(driver.find_element(By.ID, "f-category")).select_by_visible_text("loops")
    assert visible() == []
    driver.find_element(By.ID, "f-failing").click()
    assert visible() == ["wind"]


@pytest.fixture
def review_server(root: Path):
    build_report(root, workers=1)
    with serve_in_thread(create_app(root)) as port:
        yield f"http://127.0.0.1:{port}"


def test_approve_in_review_server(root: Path, review_server: str, driver, tmp_path: Path, monkeypatch) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(review_server + "/")
    assert driver.current_url.endswith("/report/index.html")
    players = driver.execute_async_script(LOAD_ALL_AUDIO)  # served over HTTP too
    assert len(players) == 5 and all(p["error"] is None and p["ready"] >= 1 for p in players), players

    # wind is placeholder audio: approving it asks for a confirmation and a reason, recorded with the user
    monkeypatch.setenv("ASSETGEN_USER", "mara")
    card = driver.find_element(By.CSS_SELECTOR, 'article.card[data-scene="forest"][data-asset="wind"]')
    approve = card.find_element(By.CSS_SELECTOR, "button.approve")
    assert approve.is_enabled()
    approve.click()
    alert = WebDriverWait(driver, 20).until(EC.alert_is_present())
    assert "placeholder audio" in alert.text
    alert.dismiss()  # cancelled: nothing changes
    WebDriverWait(driver, 20).until(lambda d: card.find_element(By.CSS_SELECTOR, ".msg").text == "not approved")
    assert Index(root).get("forest", "wind")["status"] == "rendered" and read_overrides(root) == []
    approve.click()
    WebDriverWait(driver, 20).until(EC.alert_is_present()).accept()
    prompt = WebDriverWait(driver, 20).until(EC.alert_is_present())
    assert "Why approve forest/wind v1" in prompt.text
    prompt.send_keys("temp audio for the vertical slice")
    prompt.accept()
    WebDriverWait(driver, 20).until(lambda d: card.get_attribute("data-status") == "approved")
    assert card.find_element(By.CSS_SELECTOR, ".badge.status").text.lower() == "approved"
    assert Index(root).get("forest", "wind")["status"] == "approved"
    [override] = read_overrides(root)
    assert (override["user"], override["reason"]) == ("mara", "temp audio for the vertical slice")

    birds = driver.find_element(By.CSS_SELECTOR, 'article.card[data-asset="birds"]')
    birds.find_element(By.CSS_SELECTOR, "button.reject").click()
    WebDriverWait(driver, 20).until(lambda d: birds.get_attribute("data-status") == "rejected")
    assert Index(root).get("forest", "birds", 2)["status"] == "rejected"
    assert Index(root).get("forest", "birds", 1)["status"] == "rendered"  # only the version on screen
    assert driver.find_element(By.ID, "n-approved").text == "1" and driver.find_element(By.ID, "n-rejected").text == "1"
    driver.execute_script("window.scrollTo(0, 0)")
    _screenshot(driver, tmp_path, "review.png")

    driver.refresh()  # the page is rendered from the index: the change persists
    card = driver.find_element(By.CSS_SELECTOR, 'article.card[data-asset="wind"]')
    assert card.get_attribute("data-status") == "approved"
