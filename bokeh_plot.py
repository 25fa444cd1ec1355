"""Browser chart: the live price and its moving average, served by Bokeh.

Each browser tab gets its own document and its own read-only connection to the
recorder's SQLite file. Every 500 ms the page receives only the rows added since
the last poll; it starts with the recent history. Run it while ``fake_data.py``
and ``save2sql.py`` are running (it waits for data if they are not):

    bokeh serve --show bokeh_plot.py                      # reads stock.db
    bokeh serve --show bokeh_plot.py --args --db my.db    # flags override the constants below
    bokeh serve bokeh_plot.py --args --help

Drag to pan, scroll to zoom, and press the reset tool to follow the latest data again.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pandas as pd
from bokeh.document import Document
from bokeh.io import curdoc
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, CustomJS, DatetimeTickFormatter, Div, HoverTool
from bokeh.plotting import figure

# bokeh serve runs this file as a module with a random name, so the logger's name is fixed.
logger = logging.getLogger("bokeh_plot")

# --- Configuration: edit these, or override them with --args and the flags in --help ---
DB_PATH = "stock.db"  # SQLite file written by save2sql.py
WINDOW = 1000  # ticks kept in the page (the rollover); older ones scroll out
MA_PERIOD = 15  # ticks in the moving average
POLL_INTERVAL_MS = 500  # milliseconds between database polls
PLOT_HEIGHT_PX = 450  # chart height in pixels; the width follows the page

LOCAL_TZ = datetime.now().astimezone().tzinfo  # times are shown in the server's local time

# Newest rows first so that one query serves both the page's first load (after_id = 0)
# and later polls; the primary key makes it O(log n + limit) however large the table.
RECENT_ROWS = "SELECT rowid AS id, time, price FROM trades WHERE rowid > ? ORDER BY rowid DESC LIMIT ?"
COLUMNS = ("id", "time", "price", "ma")

# Runs in the browser when the page loses its server (say, bokeh serve was restarted).
# BokehJS reconnects by itself but cannot restore the history the new server session
# would send, so the page says what happened and reloads once the server answers again.
RELOAD_WHEN_BACK_JS = """
if (window.streamingPlotReloading) return;  // each failed reconnection fires this event again
window.streamingPlotReloading = true;
status.text = "Connection to the chart server lost; this page reloads when it is back.";
// Any HTTP answer means the server is up (bokeh serve answers HEAD with 405, creating no
// session); a network error means it is not.
const retry = () => fetch(window.location.href, {method: "HEAD", cache: "no-store"})
    .then(() => window.location.reload())
    .catch(() => setTimeout(retry, 1000));
setTimeout(retry, 1000);
"""


def empty_columns() -> dict[str, list]:
    """Every column of the chart's data source, empty."""
    return {name: [] for name in COLUMNS}


def to_local_time(epoch_s: pd.Series) -> pd.Series:
    """Epoch seconds to naive local datetimes, which Bokeh's datetime axis shows as they are."""
    return pd.to_datetime(epoch_s, unit="s", utc=True).dt.tz_convert(LOCAL_TZ).dt.tz_localize(None)


def moving_average(prices: pd.Series, history: pd.Series, period: int) -> pd.Series:
    """Trailing mean of ``period`` prices for each of ``prices``, preceded by ``history``."""
    joined = pd.concat([history, prices], ignore_index=True)
    averages = joined.rolling(period, min_periods=period).mean()
    return averages.iloc[len(history) :].reset_index(drop=True)


def open_reader(path: str) -> sqlite3.Connection | None:
    """Open the database read-only, or return None while it does not exist yet."""
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return None


def fetch_recent(conn: sqlite3.Connection, after_id: int, limit: int) -> pd.DataFrame:
    """Up to ``limit`` of the newest rows with id > ``after_id``, oldest first."""
    rows = pd.read_sql_query(RECENT_ROWS, conn, params=(after_id, limit))
    return rows.iloc[::-1].reset_index(drop=True)


class PriceStream:
    """One browser session's view of the database: what it has sent, and how to get more."""

    def __init__(self, path: str, *, window: int, ma_period: int) -> None:
        self.path = path
        self.window = window
        self.ma_period = ma_period
        self.conn: sqlite3.Connection | None = None
        self.last_id = 0
        self.history = pd.Series(dtype=float)  # the last ma_period - 1 prices, for the next average
        self.waiting_for: str | None = "the database"

    def poll(self) -> dict[str, object] | None:
        """Return the new rows as columns for ``ColumnDataSource.stream``, or None if there are none."""
        if self.conn is None:
            self.conn = open_reader(self.path)
            if self.conn is None:
                return self.wait("the database")
        try:
            rows = fetch_recent(self.conn, self.last_id, self.window + self.ma_period - 1)
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:  # logged once, shown in the page, retried
            return self.wait(
                "the trades table" if "no such table" in str(exc) else f"a readable database ({exc})"
            )
        if rows.empty:
            return self.wait("the first tick") if self.last_id == 0 else None
        self.waiting_for = None
        self.last_id = int(rows["id"].iloc[-1])
        rows["ma"] = moving_average(rows["price"], self.history, self.ma_period)
        rows["time"] = to_local_time(rows["time"])
        self.history = pd.concat([self.history, rows["price"]]).tail(self.ma_period - 1)
        shown = rows.tail(self.window)
        return {name: shown[name].to_numpy() for name in COLUMNS}

    def wait(self, what: str) -> None:
        """Note what is missing, logging each new reason once."""
        if what != self.waiting_for:
            logger.info("waiting for %s in %s", what, self.path)
        self.waiting_for = what

    def close(self) -> None:
        """Close the session's database connection."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def readout_html(data: dict[str, object]) -> str:
    """The last price and its time, as shown above the chart."""
    price = data["price"][-1]  # type: ignore[index]
    when = pd.Timestamp(data["time"][-1])  # type: ignore[index]
    return f"<b>Last price</b> {price:.2f} at {when:%H:%M:%S}"


def build_figure(source: ColumnDataSource, *, title: str, ma_period: int, height: int) -> figure:
    """The chart: price and moving-average lines on a datetime axis that follows the data."""
    p = figure(
        title=title,
        name="chart",
        x_axis_type="datetime",
        sizing_mode="stretch_width",
        height=height,
        tools="pan,wheel_zoom,box_zoom,reset,save",
        active_scroll="wheel_zoom",
        x_axis_label="Time",
        y_axis_label="Price",
    )
    # Follow the newest tick, as Bokeh's ohlc example does; reset resumes following after a pan.
    p.x_range.follow = "end"
    p.x_range.range_padding = 0
    p.xaxis.formatter = DatetimeTickFormatter(
        milliseconds="%H:%M:%S.%3N", seconds="%H:%M:%S", minsec="%H:%M:%S", minutes="%H:%M", hourmin="%H:%M"
    )
    price = p.line("time", "price", source=source, color="#1f77b4", line_width=2, legend_label="Price")
    p.line("time", "ma", source=source, color="#ff7f0e", line_width=2, legend_label=f"MA({ma_period})")
    p.add_tools(
        HoverTool(
            renderers=[price],
            tooltips=[("time", "@time{%H:%M:%S.%3N}"), ("price", "@price{0.00}"), ("MA", "@ma{0.00}")],
            formatters={"@time": "datetime"},
            mode="vline",
        )
    )
    p.legend.location = "top_left"
    return p


def build_document(
    doc: Document,
    *,
    db: str = DB_PATH,
    window: int = WINDOW,
    ma_period: int = MA_PERIOD,
    interval: int = POLL_INTERVAL_MS,
) -> tuple[ColumnDataSource, Callable[[], None]]:
    """Lay out one browser session's page and start polling; return the source and the poll."""
    stream = PriceStream(db, window=window, ma_period=ma_period)
    source = ColumnDataSource(data=empty_columns(), name="prices")
    readout = Div(text="", name="readout", styles={"font-size": "1.4em"})
    status = Div(text="", name="status", styles={"color": "#a33", "font-weight": "bold"})
    plot = build_figure(
        source, title=f"Live price — {Path(db).name}", ma_period=ma_period, height=PLOT_HEIGHT_PX
    )

    def poll() -> None:
        new = stream.poll()
        status.text = f"Waiting for {stream.waiting_for} in {db}…" if stream.waiting_for else ""
        if new is not None:
            # stream() sends only the new rows; rollover caps what the page keeps.
            source.stream(new, rollover=window)
            readout.text = readout_html(new)

    poll()  # the page opens with the recent history, not an empty chart
    doc.add_periodic_callback(poll, interval)
    doc.on_session_destroyed(lambda _context: stream.close())
    doc.js_on_event("connection_lost", CustomJS(args={"status": status}, code=RELOAD_WHEN_BACK_JS))
    doc.add_root(column(readout, status, plot, sizing_mode="stretch_width"))
    doc.title = "streaming-plot"
    return source, poll


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Read ``--args`` from ``bokeh serve``; every flag defaults to the constant of the same name."""
    parser = argparse.ArgumentParser(
        prog="bokeh serve bokeh_plot.py --args", description="Live browser chart of the recorded price."
    )
    parser.add_argument("--db", default=DB_PATH, help="SQLite file to read (default: %(default)s)")
    parser.add_argument(
        "--window", type=positive_int, default=WINDOW, help="ticks kept in the page (default: %(default)s)"
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


if __name__.startswith("bokeh_app_"):
    build_document(curdoc(), **vars(parse_args(sys.argv[1:])))
