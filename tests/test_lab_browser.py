"""The lab in a real headless Chromium on the tiny models: generate a take by clicking, play it, keep it into a
manifest, and a render of that manifest delivers the same samples. Same browser setup and skip rule as
``tests/test_browser.py``; the screenshot goes to ``ASSETGEN_SCREENSHOT_DIR`` when set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from assetgen.lab.engine import Lab
from assetgen.lab.server import create_app
from tests.test_browser import _screenshot, driver, pytestmark  # noqa: F401  (fixture and skip rule)
from tests.test_report_helpers import serve_in_thread

PLAY = """
const done = arguments[arguments.length - 1];
const a = document.querySelector('article.take[data-state="done"] audio');
const finish = () => a.play().then(() => { const t = a.currentTime; a.pause();
  done({ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null, played: true}); },
  (e) => done({ready: a.readyState, duration: a.duration, error: String(e), played: false}));
if (a.readyState >= 2) finish(); else { a.addEventListener('canplay', finish, {once: true}); a.load(); }
"""


def test_click_play_keep_and_render_the_same_samples(driver, tmp_path: Path, tiny_models) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from assetgen.cli import app
    from assetgen.store.index import Index

    (tmp_path / "manifests").mkdir()
    lab = Lab(tmp_path / "out", model_dir=tiny_models, device="cpu", manifest_root=tmp_path / "manifests")
    try:
        with serve_in_thread(create_app(lab)) as port:
            driver.get(f"http://127.0.0.1:{port}/")
            assert driver.title == "assetgen lab"
            for field, value in (("s-prompt", "rain on a tin roof"), ("s-model", "sfx"), ("s-duration", "2"),
                                 ("s-seed", "11")):
                box = driver.find_element(By.ID, field)
                box.clear()
                box.send_keys(value)
            driver.find_element(By.ID, "s-go").click()
            card = WebDriverWait(driver, 120).until(
                lambda d: d.find_element(By.CSS_SELECTOR, 'article.take[data-state="done"]'))
            played = driver.execute_async_script(PLAY)
            assert played["error"] is None and played["played"] and played["duration"] == pytest.approx(2.0), played
            lufs = card.find_element(By.CSS_SELECTOR, ".lufs").text
            assert lufs == "-23.0 LUFS" and card.find_element(By.CSS_SELECTOR, ".seed").text == "11"
            form = card.find_element(By.CSS_SELECTOR, "form.keep")
            for name, value in (("manifest", "browser.csv"), ("scene", "yard"), ("asset", "rain")):
                box = form.find_element(By.NAME, name)
                box.clear()
                box.send_keys(value)
            form.find_element(By.TAG_NAME, "button").click()
            WebDriverWait(driver, 30).until(lambda d: card.find_element(By.CSS_SELECTOR, ".kept").text)
            assert card.find_element(By.CSS_SELECTOR, ".kept").text.startswith("kept: ")
            _screenshot(driver, tmp_path, "lab.png")
        [take] = lab.takes()
    finally:
        lab.close()
    out = tmp_path / "render"
    result = CliRunner().invoke(app, ["render", "--fail-on", "error", str(tmp_path / "manifests" / "browser.csv"), "--out", str(out),
                                      "--model-dir", str(tiny_models), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [row] = Index(out).rows()
    assert row["content_key"] == take.key
    rendered, _ = sf.read(out / row["path"], dtype="float32")
    mine, _ = sf.read(take.path, dtype="float32")
    assert np.array_equal(rendered, mine)
