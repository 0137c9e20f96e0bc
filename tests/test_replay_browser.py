"""The replay page in real headless Chromium: it loads a run, personas move, a screenshot is saved."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from ga_sim.compress import compress
from ga_sim.replay import ReplayServer
from ga_sim.simulation import Simulation

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def chrome(width: int = 1280, height: int = 800):  # type: ignore[no-untyped-def]
    """A headless Chromium driven by selenium (Debian's chromium + chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.chrome.service import Service

    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-dev-shm-usage", f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def wait_for(driver, script: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {script!r}; state: {driver.execute_script('return window.replayState')}"
    )


def replay_in_browser(results: Path, name: str, screenshot: Path, shot_step: int) -> dict:  # type: ignore[type-arg]
    """Open the replay of ``name``, check that personas move and the controls work, save a
    screenshot of step ``shot_step``; returns the figures of the checks."""
    with ReplayServer(results, port=0, quiet=True) as server:
        driver = chrome()
        try:
            driver.get(f"{server.url}/?name={name}&step=0&speed=8&zoom=0.8")
            wait_for(driver, "return window.replayState.loaded || window.replayState.error")
            assert driver.execute_script("return window.replayState.error") is None
            first = driver.execute_script("return window.replayState.positions")
            wait_for(driver, "return window.replayState.step >= 6")
            later = driver.execute_script("return window.replayState.positions")
            moved = sorted(n for n in first if first[n] != later[n])
            # Pause, jump with the time slider, read the clock.
            driver.find_element("id", "play").click()
            wait_for(driver, "return window.replayState.playing === false", timeout=10)
            slide = "const s = document.getElementById('slider'); s.value = %d; s.dispatchEvent(new Event('input'));"
            driver.execute_script(slide % 3)
            wait_for(driver, "return window.replayState.step === 3")
            clock = driver.find_element("id", "clock").text
            driver.execute_script(slide % shot_step)
            wait_for(driver, f"return window.replayState.step === {shot_step}")
            time.sleep(0.3)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(screenshot))
            # Keyboard panning moves the camera.
            from selenium.webdriver.common.keys import Keys

            before = driver.execute_script("return window.replayState.camera")
            driver.find_element("id", "stage").send_keys(Keys.ARROW_RIGHT)
            after = wait_for(
                driver, f"return window.replayState.camera[0] !== {before[0]} && window.replayState.camera"
            )
            status = driver.execute_script("return fetch('/?name=no-such-run').then(r => r.status)")
            # The Diffusion panel (ga-compress's figures): its numbers and its three plots, loaded.
            causes = wait_for(driver, "return window.replayState.diffusion")
            images = (
                "return ['awareness', 'cascades', 'degree'].map(k => document.getElementById(k + 'img').naturalWidth)"
            )
            widths = wait_for(driver, images.replace("return ", "const w = ") + "; return w.every(x => x > 0) && w")
            panel = driver.execute_script("return document.getElementById('diffusionfigures').textContent")  # collapsed
        finally:
            driver.quit()
    return {
        "moved": moved,
        "clock": clock,
        "pan": after[0] - before[0],
        "unknown_status": status,
        "diffusion": {"causes": causes, "widths": widths, "panel": panel},
    }


def test_replay_in_headless_chromium(tmp_path: Path) -> None:
    sim = Simulation.create(
        tmp_path, "town", ["env.max_agents=8"], start="2023-02-13 07:00", stride=10, mind="generative"
    )
    sim.run(24, progress=False)
    compress(tmp_path, "town")
    shot = ARTIFACTS / "replay.png"
    figures = replay_in_browser(tmp_path, "town", shot, shot_step=20)
    assert len(figures["moved"]) >= 1, "no persona moved on the canvas"
    assert figures["clock"] == "Monday 2023-02-13 07:30"  # state 3 = start + 3 strides
    assert figures["pan"] == 48
    assert figures["unknown_status"] == 404
    diffusion = figures["diffusion"]
    assert set(diffusion["causes"]) == {"artist_collective"} and len(diffusion["widths"]) == 3
    assert "artist_collective:" in diffusion["panel"] and "non-members exposed" in diffusion["panel"]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
