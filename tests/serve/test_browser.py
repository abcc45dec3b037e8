"""The web page in a real headless Chromium against a real `emofusion serve` (uvicorn in a
subprocess on a free localhost port): the page loads the model description, a wav is uploaded
and a transcript typed, the prediction and each modality's opinion are drawn; a recording from
Chromium's fake microphone is predicted too; a bad upload shows the service's message.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them) and selenium;
skipped with the reason when they are missing.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LABELS, WORDS, voiced, wav_bytes

from emofusion.serve.server import background_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("headless browser test needs Chromium and its driver: "
                "apt-get install -y chromium chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@pytest.fixture(scope="module")
def served(fusion_model: Path) -> Iterator[str]:
    """`emofusion serve` on the late-fusion model in a subprocess; yields its base URL."""
    with background_server(fusion_model) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--window-size=1000,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER),
                              options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _predict_and_wait(browser, previous_label: str | None = None) -> str:
    browser.find_element(By.ID, "predict").click()
    wait = WebDriverWait(browser, 60)
    wait.until(expected_conditions.visibility_of_element_located((By.ID, "result")))
    wait.until(lambda b: b.find_element(By.ID, "busy").get_attribute("hidden") is not None)
    return browser.find_element(By.ID, "label").text


def _chart(browser, css: str) -> dict[str, float]:
    rows = browser.find_elements(By.CSS_SELECTOR, f"{css} .row")
    return {row.get_attribute("data-label"): float(row.get_attribute("data-probability"))
            for row in rows}


@pytest.mark.slow
def test_page_upload_record_and_errors(served: str, browser, tmp_path: Path) -> None:
    browser.get(served + "/")
    wait = WebDriverWait(browser, 30)
    wait.until(lambda b: "Classes:" in b.find_element(By.ID, "model-summary").text)
    assert browser.find_element(By.ID, "audio-section").is_displayed()
    assert browser.find_element(By.ID, "text-section").is_displayed()
    assert not browser.find_element(By.ID, "video-section").is_displayed()
    assert not browser.find_element(By.ID, "speaker-section").is_displayed()  # not adaptive

    clip = tmp_path / "angry.wav"
    clip.write_bytes(wav_bytes(voiced("anger", 1.5, rate=44100), rate=44100))
    browser.find_element(By.ID, "audio-file").send_keys(str(clip))
    browser.find_element(By.ID, "text").send_keys(WORDS["anger"])
    assert _predict_and_wait(browser) == "anger"
    assert browser.find_element(By.ID, "error").text == ""
    chart = _chart(browser, "#chart")
    assert list(chart) == LABELS and abs(sum(chart.values()) - 1) < 1e-3
    assert max(chart, key=chart.get) == "anger"
    bar = browser.find_element(By.CSS_SELECTOR, '#chart .row[data-label="anger"] .bar')
    assert float(bar.value_of_css_property("width").removesuffix("px")) > 0
    opinions = browser.find_elements(By.CSS_SELECTOR, "#modalities .opinion")
    assert [o.get_attribute("data-modality") for o in opinions] == ["logmel", "minilm"]
    assert set(_chart(browser, '.opinion[data-modality="minilm"]')) == set(LABELS)
    browser.save_screenshot(str(tmp_path / "page.png"))

    # Chromium's fake microphone plays a beep: recorded, encoded as WAV in the page, predicted
    browser.find_element(By.ID, "record").click()
    wait.until(lambda b: "recording" in b.find_element(By.ID, "recording-status").text)
    time.sleep(1.5)
    browser.find_element(By.ID, "record").click()
    wait.until(lambda b: "recorded" in b.find_element(By.ID, "recording-status").text)
    assert _predict_and_wait(browser) in LABELS
    assert browser.find_element(By.ID, "error").text == ""

    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("these are notes, not a recording\n" * 20)
    browser.find_element(By.ID, "audio-file").send_keys(str(not_audio))
    browser.find_element(By.ID, "predict").click()
    wait.until(lambda b: "wav, flac or ogg" in b.find_element(By.ID, "error").text)


@pytest.mark.slow
def test_page_enrols_a_speaker_for_a_speaker_adaptive_model(adaptive_model: Path, browser,
                                                            tmp_path: Path) -> None:
    """The speaker field appears for a speaker-adaptive model only; five enrolled utterances
    make the next prediction for that speaker adapt to it, and the page says so."""
    with background_server(adaptive_model) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 30)
        wait.until(lambda b: "Classes:" in b.find_element(By.ID, "model-summary").text)
        assert browser.find_element(By.ID, "speaker-section").is_displayed()
        assert not browser.find_element(By.ID, "text-section").is_displayed()
        clip = tmp_path / "sad.wav"
        clip.write_bytes(wav_bytes(voiced("sadness", 1.0, seed=3)))
        browser.find_element(By.ID, "audio-file").send_keys(str(clip))
        browser.find_element(By.ID, "enrol").click()
        wait.until(lambda b: "speaker's name" in b.find_element(By.ID, "error").text)
        browser.find_element(By.ID, "speaker").send_keys("caller-7")
        for count in range(1, 6):
            browser.find_element(By.ID, "enrol").click()
            wait.until(lambda b, n=count: f"{n} utterance(s)" in
                       b.find_element(By.ID, "enrol-status").text)
        assert "adapt to this speaker" in browser.find_element(By.ID, "enrol-status").text
        assert _predict_and_wait(browser) in LABELS
        assert browser.find_element(By.ID, "adaptation").text.startswith("Adapted to caller-7")
        assert browser.find_element(By.ID, "error").text == ""
