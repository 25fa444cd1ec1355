"""End to end, as a user sees it: the scripts run as processes, a real browser, a real window.

Needs Debian's chromium, chromium-driver and xvfb (``.ci/run`` installs them). Where one
is missing the test is skipped with a reason, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline import (
    Unavailable,
    check_chromium,
    chromium,
    console_errors,
    grab_screen,
    page_state,
    pipeline,
    read_text,
    wait_until,
    xvfb,
)

pytestmark = pytest.mark.e2e

ROLLOVER = 60  # points kept by the page in these tests, small so the cap is reached quickly
ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", "")) if os.environ.get("E2E_ARTIFACTS") else None


def unavailable(reason: str) -> None:
    """Skip for a missing browser or screen, but never in CI, where they are installed."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture
def browser_ok() -> None:
    """Skip (or fail in CI) without Debian's chromium and chromedriver."""
    try:
        check_chromium()
    except Unavailable as exc:
        unavailable(str(exc))


def save_picture(image_or_driver, tmp_path: Path, name: str) -> Path:
    """Save a screenshot into tmp_path (and E2E_ARTIFACTS, when set)."""
    paths = [tmp_path / name] + ([ARTIFACTS / name] if ARTIFACTS else [])
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(image_or_driver, "save_screenshot"):
            assert image_or_driver.save_screenshot(str(path))
        else:
            image_or_driver.save(path)
    return paths[0]


def loaded_state(driver, timeout_s: float = 30) -> dict:
    """Wait until the Bokeh page has rendered its first data and return its state."""
    return wait_until(
        lambda: (s := page_state(driver)) and s["points"] > 0 and s, timeout_s, "the page's data"
    )


def test_browser_page_shows_history_streams_and_stays_bounded(browser_ok, tmp_path: Path) -> None:
    """The page opens with history, then its newest time, x range and readout advance, capped by rollover."""
    with pipeline(tmp_path) as pipe:
        wait_until(lambda: pipe.rows() >= 40, 20, "40 ticks on disk")
        bokeh, url = pipe.start_bokeh(window=ROLLOVER)
        with chromium() as driver:
            driver.get(url)
            first = loaded_state(driver)
            assert first["points"] >= 40  # history at once, not an empty chart
            states = [first]
            for _ in range(4):  # four successive polls with new data
                previous = states[-1]
                states.append(
                    wait_until(
                        lambda p=previous: (s := page_state(driver)) and s["last_id"] > p["last_id"] and s,
                        10,
                        "new points in the page",
                    )
                )
            save_picture(driver, tmp_path, "bokeh-page.png")
            errors = console_errors(driver)
        assert bokeh.proc.poll() is None  # the server took every poll in its stride
    times = [s["last_time"] for s in states]
    assert times == sorted(times) and len(set(times)) == len(times)
    for state in states:
        assert state["points"] <= ROLLOVER
        assert state["x_end"] == pytest.approx(state["last_time"], abs=1000)  # follows, within a poll
        assert state["status"] == ""
    assert states[-1]["points"] == ROLLOVER
    assert len({s["readout"] for s in states}) > 1
    assert errors == []


def test_two_pages_show_the_same_data(browser_ok, tmp_path: Path) -> None:
    """Two browser sessions at once, each with its own document, plot identical ticks."""
    script = (
        "const s = Bokeh.documents[0].get_model_by_name('prices');"
        "const col = (n) => Array.from(s.data instanceof Map ? s.data.get(n) : s.data[n]);"
        "return [col('id'), col('price')];"
    )
    with pipeline(tmp_path) as pipe:
        wait_until(lambda: pipe.rows() >= 20, 20, "20 ticks on disk")
        _, url = pipe.start_bokeh(window=ROLLOVER)
        with chromium() as one, chromium() as two:
            one.get(url)
            two.get(url)
            loaded_state(one)
            loaded_state(two)
            ids_one, prices_one = one.execute_script(script)
            ids_two, prices_two = two.execute_script(script)
    by_id_one = dict(zip(ids_one, prices_one, strict=True))
    by_id_two = dict(zip(ids_two, prices_two, strict=True))
    common = by_id_one.keys() & by_id_two.keys()
    assert len(common) >= 15
    assert all(by_id_one[i] == by_id_two[i] for i in common)


def test_page_reloads_with_full_history_after_bokeh_serve_restarts(browser_ok, tmp_path: Path) -> None:
    """A restart of bokeh serve shows a plain message, then the page reloads and plots again, gap-free."""
    with pipeline(tmp_path) as pipe:
        bokeh, url = pipe.start_bokeh(window=1000)
        port = url.split(":")[2].split("/")[0]
        with chromium() as driver:
            driver.get(url)
            before = loaded_state(driver)
            assert bokeh.stop() == 0
            lost = wait_until(
                lambda: (s := page_state(driver)) and "lost" in s["status"] and s,
                15,
                "the lost-connection message",
            )
            assert "reloads" in lost["status"]
            pipe.start_bokeh(port=int(port), window=1000, name="bokeh-again")

            def resumed() -> dict | None:
                try:
                    state = page_state(driver)
                except Exception:  # noqa: BLE001 - the page is reloading
                    return None
                return (
                    state
                    if state and state["status"] == "" and state["last_id"] > before["last_id"]
                    else None
                )

            wait_until(resumed, 30, "the page to plot again after the restart")
            ids = driver.execute_script(
                "const s = Bokeh.documents[0].get_model_by_name('prices');"
                "return Array.from(s.data instanceof Map ? s.data.get('id') : s.data['id']);"
            )
    assert ids[0] == 1 and np.all(np.diff(ids) == 1)  # the whole history, no gap from the outage


def is_drawn(image) -> bool:
    """Whether a screenshot shows both chart lines: matplotlib's tab:blue and tab:orange pixels."""
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)

    def count(rgb: tuple[int, int, int]) -> int:
        return int((np.abs(pixels - rgb).sum(axis=1) < 30).sum())

    return count((31, 119, 180)) > 200 and count((255, 127, 14)) > 200


def test_matplotlib_window_on_a_virtual_screen(tmp_path: Path) -> None:
    """The desktop chart opens a real window, keeps moving, and Ctrl-C closes it cleanly."""
    with ExitStack() as stack:
        try:
            display = stack.enter_context(xvfb())
            read_text(Image.new("RGB", (8, 8)))
        except Unavailable as exc:
            unavailable(str(exc))
        pipe = stack.enter_context(pipeline(tmp_path))
        # No MPLBACKEND: matplotlib picks its default interactive backend, as for a user.
        chart = pipe.start(
            "matplotlib",
            [sys.executable, "matplotlib_plot.py", "--db", str(pipe.db)],
            env={"DISPLAY": display, "MPLBACKEND": None},
        )
        chart.wait_for_log("charting")
        first = wait_until(lambda: (img := grab_screen(display)) and is_drawn(img) and img, 30, "both lines")
        rows_at_first = pipe.rows()
        wait_until(lambda: pipe.rows() >= rows_at_first + 20, 10, "20 more ticks")
        second = wait_until(
            lambda: (img := grab_screen(display)) and is_drawn(img) and img != first and img,
            10,
            "the window to change",
        )
        save_picture(first, tmp_path, "matplotlib-1.png")
        save_picture(second, tmp_path, "matplotlib-2.png")
        status = chart.stop(signal.SIGINT, timeout_s=5)
    for image in (first, second):
        assert re.search(r"\d\d:\d\d:\d\d", read_text(image)), "no time-of-day tick label on screen"
    assert status == 0
    assert "Traceback" not in chart.log
    assert "stopped" in chart.log
