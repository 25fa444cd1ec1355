"""Make the README's pictures, docs/bokeh.png and docs/matplotlib.png, from a live run.

Starts fake_data.py and save2sql.py on a free port with a temporary database, lets ticks
flow for a few seconds, then photographs the Bokeh page in headless Chromium and the
matplotlib window on an Xvfb virtual screen. Needs Debian's chromium, chromium-driver
and xvfb (as the end-to-end tests do). From the repo root, in the project's venv:

    python docs/make_pictures.py
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from pipeline import chromium, grab_screen, page_state, pipeline, wait_until, xvfb  # noqa: E402

WARM_UP_TICKS = 300  # ticks on disk before the first picture (15 s at 20 ticks/s)


def photograph_bokeh(pipe, out: Path) -> None:
    """Open the page like a user and save what the browser shows."""
    _, url = pipe.start_bokeh()
    with chromium(width=1200, height=720) as driver:
        driver.get(url)
        wait_until(lambda: (s := page_state(driver)) and s["points"] >= WARM_UP_TICKS, 30, "the page's data")
        driver.save_screenshot(str(out))


def photograph_matplotlib(pipe, out: Path) -> None:
    """Show the desktop chart on a virtual screen and save the window."""
    with xvfb(1280, 800) as display:
        chart = pipe.start(
            "matplotlib",
            [sys.executable, "matplotlib_plot.py", "--db", str(pipe.db)],
            env={"DISPLAY": display, "MPLBACKEND": None},
        )
        chart.wait_for_log("charting")
        first_rows = pipe.rows()
        wait_until(lambda: pipe.rows() >= first_rows + 40, 20, "two seconds of new ticks")
        screen = grab_screen(display)
        chart.stop()
    screen.crop(screen.convert("L").getbbox()).save(out)  # trim the empty screen around the window


def main() -> int:
    """Run the pipeline and take both pictures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNG files (default: docs/)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, pipeline(Path(workdir)) as pipe:
        wait_until(lambda: pipe.rows() >= WARM_UP_TICKS, 60, f"{WARM_UP_TICKS} ticks on disk", step_s=0.2)
        photograph_bokeh(pipe, args.out / "bokeh.png")
        photograph_matplotlib(pipe, args.out / "matplotlib.png")
    print(f"wrote {args.out / 'bokeh.png'} and {args.out / 'matplotlib.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
