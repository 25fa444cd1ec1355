"""Desktop chart: the live price and its moving average, read from the recorder's SQLite file.

Shows a rolling window of the latest ticks with their moving average, polling the
database every 100 ms and fetching only rows it has not seen. Run it while
``fake_data.py`` and ``save2sql.py`` are running (it waits for data if they are not):

    python matplotlib_plot.py           # reads stock.db
    python matplotlib_plot.py --help    # flags that override the constants below

It needs a display (an interactive matplotlib backend). Ctrl-C in its terminal, or
closing the window, ends it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sqlite3
from datetime import datetime
from pathlib import Path

import matplotlib
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends import BackendFilter, backend_registry
from matplotlib.figure import Figure
from numpy.lib.stride_tricks import sliding_window_view

logger = logging.getLogger(__name__)

# --- Configuration: edit these, or override them with the flags in --help ---
DB_PATH = "stock.db"  # SQLite file written by save2sql.py
WINDOW = 50  # ticks shown at once
MA_PERIOD = 15  # ticks in the moving average
POLL_INTERVAL_MS = 100  # milliseconds between database polls (and frames)
FIGSIZE_IN = (10.0, 5.0)  # window size, inches (width, height)
X_HEADROOM = 0.3  # free space kept right of the newest tick after a scroll, fraction of the window's span
Y_MARGIN = 0.1  # space above and below the prices after a rescale, fraction of their range

LOCAL_TZ = datetime.now().astimezone().tzinfo  # tick labels show the local time of day
SECONDS_PER_DAY = 86400.0  # matplotlib dates count days since 1970-01-01

# Newest rows first so that one query serves both the first poll (after_id = 0) and a
# poll that finds more new rows than the window holds; the primary key makes it
# O(log n + limit) however large the table grows.
RECENT_ROWS = "SELECT rowid AS id, time, price FROM trades WHERE rowid > ? ORDER BY rowid DESC LIMIT ?"


def moving_average(prices: np.ndarray, period: int) -> np.ndarray:
    """Trailing mean over ``period`` prices, aligned with ``prices``; NaN until ``period`` exist."""
    averages = np.full(len(prices), np.nan)
    if len(prices) >= period:
        averages[period - 1 :] = sliding_window_view(prices, period).mean(axis=1)
    return averages


def keep_latest(old: np.ndarray, new: np.ndarray, keep: int) -> np.ndarray:
    """Append ``new`` to ``old`` and keep the last ``keep`` values."""
    return np.concatenate((old, new))[-keep:]


def epoch_to_mpl(times_s: np.ndarray) -> np.ndarray:
    """Convert epoch seconds to matplotlib date numbers (days since 1970)."""
    return times_s / SECONDS_PER_DAY


def scrolled_xlim(
    current: tuple[float, float], first: float, last: float, headroom: float
) -> tuple[float, float] | None:
    """Return new x limits when the data left the current ones, else None.

    Like matplotlib's strip_chart example the view jumps ahead by part of the
    window instead of moving every frame, so most frames redraw only the lines.
    """
    lo, hi = current
    span = max(last - first, 1e-9)
    if first >= lo and last <= hi and (hi - lo) <= span * (2 + headroom):
        return None
    return (first, last + span * headroom)


def fitted_ylim(
    current: tuple[float, float], low: float, high: float, margin: float
) -> tuple[float, float] | None:
    """Return new y limits when the prices left the current ones, else None."""
    if current[0] <= low and high <= current[1]:
        return None
    pad = max((high - low) * margin, abs(high) * 1e-4, 1e-9)
    return (low - pad, high + pad)


def time_of_day_formatter(locator: mdates.AutoDateLocator) -> mdates.AutoDateFormatter:
    """Label ticks with the local time of day, adding milliseconds only when ticks are closer than 1 s."""
    formatter = mdates.AutoDateFormatter(locator, tz=LOCAL_TZ)
    formatter.scaled = {
        1.0: "%m-%d %H:%M",
        1 / 24: "%H:%M",
        1 / SECONDS_PER_DAY: "%H:%M:%S",
        1 / (SECONDS_PER_DAY * 1e6): lambda x, _pos: f"{mdates.num2date(x, LOCAL_TZ):%H:%M:%S.%f}"[:-3],
    }
    return formatter


def open_reader(path: str) -> sqlite3.Connection | None:
    """Open the database read-only, or return None while it does not exist yet."""
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return None


def fetch_recent(conn: sqlite3.Connection, after_id: int, limit: int) -> list[tuple[int, float, float]]:
    """Return up to ``limit`` of the newest rows with id > ``after_id``, oldest first."""
    rows = conn.execute(RECENT_ROWS, (after_id, limit)).fetchall()
    rows.reverse()
    return rows


class DatabaseFeed:
    """Read new ticks from the recorder's database, waiting patiently until it exists."""

    def __init__(self, path: str, keep: int) -> None:
        self.path = path
        self.keep = keep
        self.conn: sqlite3.Connection | None = None
        self.last_id = 0
        self.waiting_for: str | None = "the database"

    def read(self) -> list[tuple[int, float, float]]:
        """Return the rows added since the last read (at most ``keep``); [] while waiting."""
        if self.conn is None:
            self.conn = open_reader(self.path)
            if self.conn is None:
                return self.wait("the database")
        try:
            rows = fetch_recent(self.conn, self.last_id, self.keep)
        except sqlite3.Error as exc:  # logged once per reason, shown in the chart, retried next poll
            return self.wait(
                "the trades table" if "no such table" in str(exc) else f"a readable database ({exc})"
            )
        if rows:
            self.last_id = rows[-1][0]
            self.waiting_for = None
        elif self.last_id == 0:
            return self.wait("the first tick")
        return rows

    def wait(self, what: str) -> list[tuple[int, float, float]]:
        """Note what is missing, logging each new reason once."""
        if what != self.waiting_for:
            logger.info("waiting for %s in %s", what, self.path)
        self.waiting_for = what
        return []

    def close(self) -> None:
        """Close the database connection, if open."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class LiveChart:
    """A figure whose artists are made once and updated in place from new rows."""

    def __init__(
        self,
        ax: Axes,
        *,
        window: int,
        ma_period: int,
        title: str,
        x_headroom: float = X_HEADROOM,
        y_margin: float = Y_MARGIN,
    ) -> None:
        self.ax = ax
        self.x_headroom = x_headroom
        self.y_margin = y_margin
        self.window = window
        self.ma_period = ma_period
        self.keep = window + ma_period - 1  # the first shown tick needs ma_period - 1 before it
        self.times = np.empty(0)
        self.prices = np.empty(0)
        (self.price_line,) = ax.plot([], [], color="tab:blue", lw=1.5, label="Price")
        (self.ma_line,) = ax.plot([], [], color="tab:orange", lw=1.5, label=f"MA({ma_period})")
        self.readout = ax.text(0.01, 0.97, "", transform=ax.transAxes, va="top", family="monospace")
        self.status = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", color="0.4")
        ax.set_title(title)
        ax.set_xlabel("Time")
        ax.set_ylabel("Price")
        ax.grid(True, alpha=0.4)
        ax.legend(loc="upper right")
        ax.xaxis.set_major_locator(locator := mdates.AutoDateLocator(tz=LOCAL_TZ, minticks=3, maxticks=8))
        ax.xaxis.set_major_formatter(time_of_day_formatter(locator))
        ax.set_xlim(0, 1 / SECONDS_PER_DAY)  # replaced by the first data
        ax.set_ylim(0, 1)

    @property
    def artists(self) -> list[Artist]:
        """Every artist that changes between frames."""
        return [self.price_line, self.ma_line, self.readout, self.status]

    def update(self, rows: list[tuple[int, float, float]], waiting_for: str | None = None) -> list[Artist]:
        """Show ``rows`` (new ticks, oldest first) and return the artists to redraw."""
        self.status.set_text(f"Waiting for {waiting_for}…" if waiting_for else "")
        if rows:
            new = np.asarray(rows, dtype=float)
            self.times = keep_latest(self.times, new[:, 1], self.keep)
            self.prices = keep_latest(self.prices, new[:, 2], self.keep)
            shown = slice(-self.window, None)
            x = epoch_to_mpl(self.times[shown])
            y = self.prices[shown]
            ma = moving_average(self.prices, self.ma_period)[shown]
            self.price_line.set_data(x, y)
            self.ma_line.set_data(x, ma)
            last_time = datetime.fromtimestamp(self.times[-1], LOCAL_TZ)
            self.readout.set_text(f"{self.prices[-1]:.2f} at {last_time:%H:%M:%S}")
            self.rescale(x, np.concatenate((y, ma)))  # the average draws on older prices too
        return self.artists

    def rescale(self, x: np.ndarray, y: np.ndarray) -> None:
        """Move the view when the lines leave it; a full redraw then refreshes the tick labels."""
        low, high = float(np.nanmin(y)), float(np.nanmax(y))
        xlim = scrolled_xlim(self.ax.get_xlim(), x[0], x[-1], self.x_headroom)
        ylim = fitted_ylim(self.ax.get_ylim(), low, high, self.y_margin)
        if xlim is None and ylim is None:
            return
        if xlim is not None:
            self.ax.set_xlim(xlim)
            # Refit y on every scroll too, so the view also shrinks when prices calm down.
            ylim = fitted_ylim((np.inf, -np.inf), low, high, self.y_margin)
        self.ax.set_ylim(ylim)
        # Blitting redraws only the lines; labels and grid change only with a full draw.
        self.ax.figure.canvas.draw()


def build_chart(
    *, window: int, ma_period: int, title: str, figsize: tuple[float, float]
) -> tuple[Figure, LiveChart]:
    """Create the figure and the chart's artists, once."""
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    if fig.canvas.manager is not None:
        fig.canvas.manager.set_window_title(title)
    return fig, LiveChart(ax, window=window, ma_period=ma_period, title=title)


def animate(fig: Figure, chart: LiveChart, feed: DatabaseFeed, interval_ms: int) -> FuncAnimation:
    """Poll the feed every ``interval_ms`` and update the chart, redrawing only what changed."""

    def frame(_: int) -> list[Artist]:
        return chart.update(feed.read(), feed.waiting_for)

    # cache_frame_data=False: the stream is endless, so nothing should be kept per frame.
    return FuncAnimation(fig, frame, interval=interval_ms, blit=True, cache_frame_data=False)


def close_on_signals(fig: Figure) -> None:
    """Make Ctrl-C and SIGTERM close the window, which ends plt.show() cleanly.

    The default Ctrl-C handler would raise KeyboardInterrupt inside whichever GUI callback
    runs, where Tk prints it and carries on. A signal handler may also run in the middle
    of a frame, so it only schedules the close for the GUI loop's next turn.
    """
    closer = fig.canvas.new_timer(interval=1)
    closer.single_shot = True
    closer.add_callback(plt.close, fig)

    def close(_signum: int, _frame: object) -> None:
        closer.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, close)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; every flag defaults to the constant of the same name."""
    parser = argparse.ArgumentParser(description="Live desktop chart of the recorded price.")
    parser.add_argument("--db", default=DB_PATH, help="SQLite file to read (default: %(default)s)")
    parser.add_argument(
        "--window", type=positive_int, default=WINDOW, help="ticks shown (default: %(default)s)"
    )
    parser.add_argument(
        "--ma-period",
        type=positive_int,
        default=MA_PERIOD,
        help="ticks in the moving average (default: %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=positive_int,
        default=POLL_INTERVAL_MS,
        help="milliseconds between polls (default: %(default)s)",
    )
    return parser.parse_args(argv)


def positive_int(text: str) -> int:
    """argparse type: a whole number greater than zero."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than zero, got {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Show the live chart until the window is closed or Ctrl-C; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level=logging.INFO)
    if matplotlib.get_backend().lower() in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE):
        logger.error(
            "no display: matplotlib chose the %r backend; set DISPLAY or MPLBACKEND", matplotlib.get_backend()
        )
        return 1
    fig, chart = build_chart(
        window=args.window,
        ma_period=args.ma_period,
        title=f"Live price — {Path(args.db).name}",
        figsize=FIGSIZE_IN,
    )
    feed = DatabaseFeed(args.db, keep=chart.keep)
    anim = animate(fig, chart, feed, args.interval)  # noqa: F841 - unreferenced, it would stop
    close_on_signals(fig)
    logger.info("charting %s every %d ms", args.db, args.interval)
    try:
        plt.show()
    finally:
        feed.close()
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
