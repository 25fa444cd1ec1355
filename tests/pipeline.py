"""Run the pipeline as a user does, and look at it as a user does.

Used by the end-to-end tests and by ``docs/make_pictures.py``: the four scripts run as
separate processes on free loopback ports with their own database; the Bokeh page is
opened in Debian's headless Chromium (never a browser a tool downloads), and the
matplotlib window is shown on an Xvfb virtual screen.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from PIL import ImageGrab

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--window-size=1200,800",
)

# Reads the page's live Bokeh document: the models are found by the names bokeh_plot.py gives them.
PAGE_STATE_JS = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const source = doc.get_model_by_name("prices");
const chart = doc.get_model_by_name("chart");
const column = (name) => Array.from(source.data instanceof Map ? source.data.get(name) : source.data[name]);
const times = column("time");
return {
    points: times.length,
    last_time: times.length ? times[times.length - 1] : null,
    last_id: times.length ? column("id")[times.length - 1] : null,
    x_end: chart.x_range.end,
    readout: doc.get_model_by_name("readout").text,
    status: doc.get_model_by_name("status").text,
};
"""


class Unavailable(RuntimeError):
    """A browser or virtual screen this machine does not have."""


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something true, failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


def merged_env(changes: dict[str, str | None] | None) -> dict[str, str]:
    """This process's environment with ``changes`` applied; a None value removes the variable."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


class Process:
    """A command from the README, run from the repo with its output in a log file."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str | None] | None = None
    ) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=merged_env(env),
        )

    @property
    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 20.0, count: int = 1) -> None:
        """Wait until ``text`` is in the log ``count`` times, failing early if the process exits."""

        def seen() -> bool:
            if self.log.count(text) >= count:
                return True
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}):\n{self.log}")
            return False

        wait_until(seen, timeout_s, f"{text!r} from {self.name}")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        """Send ``sig``, wait, and return the exit status (killing it if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"{self.name} ignored signal {sig} for {timeout_s} s:\n{self.log}") from None
        finally:
            self._log.close()

    def kill(self) -> None:
        """End the process at once, if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def start_market(workdir: Path, name: str, *args: str, port: int | None = None) -> tuple[Process, str]:
    """Start fake_data.py on loopback with ``args``; return it, once serving, and its URL."""
    port = port or free_port()
    market = Process(
        name, [sys.executable, "fake_data.py", "--host", LOOPBACK, "--port", str(port), *args], workdir
    )
    market.wait_for_log("serving ticks on")
    return market, f"ws://{LOOPBACK}:{port}"


def stopped_counts(log: str) -> tuple[int, int, int]:
    """(received, written, skipped) from a recorder's closing line; the bench's clients skip none."""
    found = re.search(r"stopped: received (\d+) frames, wrote (\d+) rows(?:, skipped (\d+) frames)?", log)
    if not found:
        raise AssertionError(f"no closing line in:\n{log[-2000:]}")
    return int(found.group(1)), int(found.group(2)), int(found.group(3) or 0)


def newest_rowid(db: Path) -> int:
    """The id of the newest stored tick (= the row count, as rows are only appended); 0 if none."""
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT coalesce(max(rowid), 0) FROM trades").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


class Pipeline:
    """fake_data.py, save2sql.py and, on demand, the charts, on free ports and a private database."""

    def __init__(self, workdir: Path, interval_s: float = 0.05) -> None:
        self.workdir = workdir
        self.db = workdir / "stock.db"
        self.market_port = free_port()
        self.url = f"ws://{LOOPBACK}:{self.market_port}"
        self.processes: list[Process] = []
        self.feed_args = ["--interval", str(interval_s), "--seed", "42"]

    def start(self, name: str, args: list[str], env: dict[str, str | None] | None = None) -> Process:
        """Start one process of the pipeline."""
        proc = Process(name, args, self.workdir, env)
        self.processes.append(proc)
        return proc

    def start_feed(self) -> tuple[Process, Process]:
        """Start the market and the recorder, as in terminals 1 and 2 of the README."""
        market, _ = start_market(self.workdir, "market", *self.feed_args, port=self.market_port)
        self.processes.append(market)
        recorder = self.start(
            "recorder", [sys.executable, "save2sql.py", "--url", self.url, "--db", str(self.db)]
        )
        recorder.wait_for_log("connected to")
        return market, recorder

    def start_bokeh(
        self, port: int | None = None, name: str = "bokeh", window: int | None = None
    ) -> tuple[Process, str]:
        """Start ``bokeh serve bokeh_plot.py`` on loopback; return it and the page's URL."""
        port = port or free_port()
        address = f"{LOOPBACK}:{port}"
        serve = ["serve", "bokeh_plot.py", "--address", LOOPBACK, "--port", str(port)]
        app_args = ["--db", str(self.db), *(["--window", str(window)] if window else [])]
        proc = self.start(
            name,
            [sys.executable, "-m", "bokeh", *serve, "--allow-websocket-origin", address, "--args", *app_args],
        )
        proc.wait_for_log("Bokeh app running at")
        return proc, f"http://{address}/bokeh_plot"

    def rows(self) -> int:
        """How many ticks are on disk now."""
        return newest_rowid(self.db)

    def close(self) -> None:
        """Stop every process that still runs, newest first."""
        for proc in reversed(self.processes):
            if proc.proc.poll() is None:
                with suppress(AssertionError):  # already reported by the test
                    proc.stop(signal.SIGTERM)


@contextmanager
def pipeline(workdir: Path, interval_s: float = 0.05) -> Iterator[Pipeline]:
    """A running market and recorder; everything started through it is stopped afterwards."""
    pipe = Pipeline(workdir, interval_s)
    try:
        pipe.start_feed()
        yield pipe
    finally:
        pipe.close()


def check_chromium() -> None:
    """Raise Unavailable unless Debian's chromium and chromedriver are installed."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            raise Unavailable(f"{path} not found: install Debian's chromium and chromium-driver")


@contextmanager
def chromium(width: int = 1200, height: int = 800):
    """A headless Chromium driven by Selenium through the system chromedriver."""
    check_chromium()
    # Imported here: the benchmarks use this module's process helpers without the test extras.
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_state(driver) -> dict | None:
    """The live state of the Bokeh page, read through BokehJS; None before it has loaded."""
    return driver.execute_script(PAGE_STATE_JS)


def console_errors(driver) -> list[str]:
    """Messages the page logged at error level."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@contextmanager
def xvfb(width: int = 1280, height: int = 800) -> Iterator[str]:
    """An Xvfb virtual screen; yields its DISPLAY value."""
    binary = shutil.which("Xvfb")
    if binary is None:
        raise Unavailable("Xvfb not found: install Debian's xvfb")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [binary, "-displayfd", str(write_fd), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()  # Xvfb writes its display number once it is ready
        if not number:
            raise Unavailable("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def read_text(image) -> str:
    """The words tesseract reads in ``image`` (enlarged twice, which helps with small fonts)."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise Unavailable("tesseract not found: install Debian's tesseract-ocr")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "screen.png"
        image.convert("L").resize((image.width * 2, image.height * 2)).save(path)
        result = subprocess.run(
            [binary, str(path), "-", "--psm", "11"], check=True, capture_output=True, text=True, timeout=60
        )
    return result.stdout


def grab_screen(display: str):
    """A screenshot of the whole virtual screen, as a PIL image."""
    return ImageGrab.grab(xdisplay=display)
