"""bokeh_plot.py on a real Bokeh Document: backfill, streaming with rollover, waiting, cleanup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from bokeh.document import Document
from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent
from bokeh.models import Div
from conftest import add_trades, db_conn, make_trades_db

import bokeh_plot
import save2sql

START = 1_700_000_000.0


def build(db_path: Path, **kwargs) -> tuple[Document, object, object]:
    """A fresh document built by the app, as for one browser session."""
    doc = Document()
    source, poll = bokeh_plot.build_document(doc, db=str(db_path), **kwargs)
    return doc, source, poll


def text_of(doc: Document, name: str) -> str:
    """The text of the Div called ``name``."""
    div = doc.select_one({"name": name})
    assert isinstance(div, Div)
    return div.text


def test_page_opens_with_recent_history(tmp_path: Path) -> None:
    """A new session starts with the last WINDOW ticks and their moving average."""
    make_trades_db(tmp_path / "t.db", 2000)
    doc, source, _ = build(tmp_path / "t.db", window=100, ma_period=15)
    data = source.data
    assert list(data["id"]) == list(range(1901, 2001))
    prices = 100 + np.arange(2000) / 10
    np.testing.assert_allclose(data["price"], prices[-100:])
    expected_ma = pd.Series(prices).rolling(15).mean().to_numpy()[-100:]
    np.testing.assert_allclose(data["ma"], expected_ma)
    assert "299.90 at " in text_of(doc, "readout")
    assert text_of(doc, "status") == ""


def test_new_rows_are_streamed_with_rollover(tmp_path: Path) -> None:
    """A poll sends only the new rows, and the page keeps at most WINDOW of them."""
    db_path = tmp_path / "t.db"
    make_trades_db(db_path, 120)
    doc, source, poll = build(db_path, window=100, ma_period=15)
    events: list = []
    doc.on_change(events.append)
    with db_conn(db_path) as conn:
        add_trades(conn, 120, 30, START, 0.05)
    poll()
    streamed = [e for e in events if isinstance(e, ColumnsStreamedEvent)]
    assert len(streamed) == 1
    assert streamed[0].rollover == 100
    assert len(streamed[0].data["price"]) == 30
    assert not [e for e in events if isinstance(e, ColumnDataChangedEvent)]  # no full resend
    assert len(source.data["price"]) == 100
    assert source.data["id"][-1] == 150
    # The moving average continues across polls as if computed over the whole history.
    prices = 100 + np.arange(150) / 10
    np.testing.assert_allclose(source.data["ma"], pd.Series(prices).rolling(15).mean().to_numpy()[-100:])
    events.clear()
    poll()
    assert not [e for e in events if isinstance(e, ColumnsStreamedEvent)]  # nothing new, nothing sent


def test_times_are_datetimes_in_local_time(tmp_path: Path) -> None:
    """The x column holds datetimes that read as the local wall-clock time of each tick."""
    make_trades_db(tmp_path / "t.db", 3, start_time=START)
    _, source, _ = build(tmp_path / "t.db")
    first = pd.Timestamp(source.data["time"][0])
    local = pd.Timestamp(START, unit="s", tz="UTC").tz_convert(bokeh_plot.LOCAL_TZ).tz_localize(None)
    assert first == local


@pytest.mark.parametrize("setup", ["no file", "no table", "no rows"])
def test_missing_data_says_waiting_then_plots(tmp_path: Path, setup: str) -> None:
    """Without a database, table or row the page says it is waiting; data that appears is plotted."""
    db_path = tmp_path / "t.db"
    if setup != "no file":
        with db_conn(db_path) as conn:
            if setup == "no rows":
                conn.execute(save2sql.SCHEMA)
    doc, source, poll = build(db_path)
    assert text_of(doc, "status").startswith("Waiting for")
    assert len(source.data["price"]) == 0
    poll()
    make_trades_db(db_path, 20)
    poll()
    assert text_of(doc, "status") == ""
    assert len(source.data["price"]) == 20


def test_each_session_has_its_own_connection_closed_on_destroy(tmp_path: Path) -> None:
    """Two sessions hold two read-only connections; destroying a session closes its own."""
    db_path = tmp_path / "t.db"
    make_trades_db(db_path, 10)
    me = psutil.Process()

    def open_count() -> int:
        return sum(1 for f in me.open_files() if Path(f.path) == db_path)

    before = open_count()
    first, _, _ = build(db_path)
    second, _, _ = build(db_path)
    assert open_count() == before + 2
    for callback in first.session_destroyed_callbacks:
        callback(None)
    assert open_count() == before + 1
    for callback in second.session_destroyed_callbacks:
        callback(None)
    assert open_count() == before


def test_chart_has_tools_hover_and_follows_the_end(tmp_path: Path) -> None:
    """Pan, wheel zoom, reset and hover tools; the x range follows the newest tick."""
    make_trades_db(tmp_path / "t.db", 5)
    doc, _, _ = build(tmp_path / "t.db")
    plot = doc.select_one({"name": "chart"})
    tool_names = {type(tool).__name__ for tool in plot.tools}
    assert {"PanTool", "WheelZoomTool", "ResetTool", "HoverTool"} <= tool_names
    assert plot.x_range.follow == "end"
    assert plot.sizing_mode == "stretch_width"
    assert [r.glyph.y for r in plot.renderers] == ["price", "ma"]


def test_a_file_that_is_not_a_database_is_reported_not_fatal(tmp_path: Path) -> None:
    """A corrupt or foreign file shows as a waiting reason in the page instead of an exception."""
    db_path = tmp_path / "t.db"
    db_path.write_bytes(b"this is not a database" * 100)
    doc, source, poll = build(db_path)
    poll()
    assert "readable database" in text_of(doc, "status")
    assert len(source.data["price"]) == 0
