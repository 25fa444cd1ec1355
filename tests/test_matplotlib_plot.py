"""matplotlib_plot.py on the Agg backend: window, moving average, axes and waiting."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import add_trades, db_conn, make_trades_db

import matplotlib_plot as mp
import save2sql


@pytest.fixture
def chart():
    """A real figure with the live chart's artists, closed after the test."""
    fig, live = mp.build_chart(window=50, ma_period=15, title="test", figsize=mp.FIGSIZE_IN)
    yield live
    plt.close(fig)


def reference_ma(prices: np.ndarray, period: int) -> np.ndarray:
    """Trailing mean by the definition, one window at a time."""
    return np.array(
        [prices[i + 1 - period : i + 1].mean() if i + 1 >= period else np.nan for i in range(len(prices))]
    )


def test_moving_average_matches_definition() -> None:
    """Each value is the mean of the last `period` prices; NaN before that many exist."""
    prices = np.random.default_rng(1).normal(100, 1, 40)
    np.testing.assert_allclose(mp.moving_average(prices, 15), reference_ma(prices, 15))
    assert np.isnan(mp.moving_average(prices[:10], 15)).all()


def test_update_shows_last_window_and_moving_average(chart, tmp_path: Path) -> None:
    """After 100 ticks the lines hold the last 50 prices and a 15-tick average defined at every point."""
    make_trades_db(tmp_path / "t.db", 100)
    feed = mp.DatabaseFeed(str(tmp_path / "t.db"), keep=chart.keep)
    chart.update(feed.read(), feed.waiting_for)
    all_prices = 100 + np.arange(100) / 10
    np.testing.assert_allclose(chart.price_line.get_ydata(), all_prices[-50:])
    np.testing.assert_allclose(chart.ma_line.get_ydata(), reference_ma(all_prices, 15)[-50:])
    assert not np.isnan(chart.ma_line.get_ydata()).any()
    assert chart.readout.get_text().startswith("109.90 at ")
    assert chart.status.get_text() == ""


def test_incremental_polls_fetch_only_new_rows(chart, tmp_path: Path) -> None:
    """A poll after new rows arrive fetches just those rows and slides the window."""
    db_path = tmp_path / "t.db"
    make_trades_db(db_path, 60)
    feed = mp.DatabaseFeed(str(db_path), keep=chart.keep)
    chart.update(feed.read())
    with db_conn(db_path) as conn:
        add_trades(conn, 60, 7, 1_700_000_000.0, 0.05)
    new = feed.read()
    assert [row[0] for row in new] == list(range(61, 68))
    chart.update(new)
    np.testing.assert_allclose(chart.price_line.get_ydata(), (100 + np.arange(67) / 10)[-50:])
    assert feed.read() == []


def test_artists_are_updated_in_place(chart, tmp_path: Path) -> None:
    """Frames reuse the same two lines instead of re-plotting."""
    make_trades_db(tmp_path / "t.db", 80)
    feed = mp.DatabaseFeed(str(tmp_path / "t.db"), keep=chart.keep)
    chart.update(feed.read())
    chart.ax.figure.canvas.draw()
    lines_before = list(chart.ax.lines)
    with db_conn(tmp_path / "t.db") as conn:
        add_trades(conn, 80, 5, 1_700_000_000.0, 0.05)
    chart.update(feed.read())
    assert list(chart.ax.lines) == lines_before == [chart.price_line, chart.ma_line]


def test_x_axis_shows_time_of_day_and_follows_the_data(chart, tmp_path: Path) -> None:
    """Tick labels read HH:MM:SS, and the view contains the newest tick after every poll."""
    db_path = tmp_path / "t.db"
    make_trades_db(db_path, 50)
    feed = mp.DatabaseFeed(str(db_path), keep=chart.keep)
    for first in range(50, 300, 10):
        chart.update(feed.read())
        x = chart.price_line.get_xdata()
        lo, hi = chart.ax.get_xlim()
        assert lo <= x[0] and x[-1] <= hi
        ylo, yhi = chart.ax.get_ylim()
        for line in (chart.price_line, chart.ma_line):
            assert ylo <= np.nanmin(line.get_ydata()) and np.nanmax(line.get_ydata()) <= yhi
        with db_conn(db_path) as conn:
            add_trades(conn, first, 10, 1_700_000_000.0, 0.05)
    chart.ax.figure.canvas.draw()
    labels = [t.get_text() for t in chart.ax.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d\d:\d\d:\d\d", label) for label in labels)
    assert chart.ax.get_xlabel() == "Time" and chart.ax.get_ylabel() == "Price"


def test_view_scrolls_in_jumps_not_every_frame() -> None:
    """The x limits stay put while the data fits and jump ahead when it reaches the edge."""
    assert mp.scrolled_xlim((0.0, 15.0), 2.0, 12.0, 0.5) is None
    assert mp.scrolled_xlim((0.0, 15.0), 6.0, 16.0, 0.5) == (6.0, 21.0)
    assert mp.fitted_ylim((90.0, 110.0), 95.0, 105.0, 0.1) is None
    assert mp.fitted_ylim((90.0, 110.0), 95.0, 111.0, 0.1) == pytest.approx((93.4, 112.6))


@pytest.mark.parametrize("setup", ["no file", "no table", "no rows"])
def test_missing_data_shows_waiting_then_plots(chart, tmp_path: Path, setup: str) -> None:
    """Without a database, table or row it says it is waiting; data that appears later is plotted."""
    db_path = tmp_path / "t.db"
    if setup != "no file":
        with db_conn(db_path) as conn:
            if setup == "no rows":
                conn.execute(save2sql.SCHEMA)
    feed = mp.DatabaseFeed(str(db_path), keep=chart.keep)
    for _ in range(3):
        chart.update(feed.read(), feed.waiting_for)
        assert chart.status.get_text().startswith("Waiting for")
        assert len(chart.price_line.get_ydata()) == 0
    chart.ax.figure.canvas.draw()  # draws without data, without errors
    make_trades_db(db_path, 20)
    chart.update(feed.read(), feed.waiting_for)
    assert chart.status.get_text() == ""
    assert len(chart.price_line.get_ydata()) == 20


def test_animation_draws_frames_with_blitting(chart, tmp_path: Path) -> None:
    """The FuncAnimation polls the database and draws its frames on a real Agg canvas."""
    make_trades_db(tmp_path / "t.db", 70)
    feed = mp.DatabaseFeed(str(tmp_path / "t.db"), keep=chart.keep)
    anim = mp.animate(chart.ax.figure, chart, feed, 100)
    chart.ax.figure.canvas.draw()  # the first draw starts the animation
    for _ in range(3):
        anim._step()  # one timer tick: what the GUI loop does every 100 ms
    assert len(chart.price_line.get_ydata()) == 50
    assert chart.price_line.get_animated()  # blitted, so frames redraw only the lines
    anim.pause()


def test_without_a_display_it_says_so_in_one_line(run_script) -> None:
    """With only a non-interactive backend the script exits 1 with one clear line, no traceback."""
    chart = run_script("matplotlib_plot.py", env={"MPLBACKEND": "Agg", "DISPLAY": None})
    assert chart.proc.wait(30) == 1
    assert "no display" in chart.log
    assert "Traceback" not in chart.log


def test_a_file_that_is_not_a_database_is_reported_not_fatal(chart, tmp_path: Path) -> None:
    """A corrupt or foreign file shows as a waiting reason in the chart instead of an exception."""
    db_path = tmp_path / "t.db"
    db_path.write_bytes(b"this is not a database" * 100)
    feed = mp.DatabaseFeed(str(db_path), keep=chart.keep)
    chart.update(feed.read(), feed.waiting_for)
    assert "readable database" in chart.status.get_text()
