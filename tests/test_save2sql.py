"""save2sql.py: validation, batching, storage, restarts and clean shutdown."""

from __future__ import annotations

import asyncio
import re
import signal
import sqlite3
from pathlib import Path

import pytest
from conftest import (
    NumberedFeed,
    db_conn,
    frame_server,
    read_rows,
    recording,
    tick_frame,
    wait_until_async,
)
from pipeline import LOOPBACK, free_port, stopped_counts
from websockets.asyncio.server import serve

import bokeh_plot
import matplotlib_plot
import save2sql

VALID = [
    ('{"time": 1700000000.5, "price": 145.2, "symbol": "SIM"}', (1700000000.5, 145.2, "SIM")),
    ('{"time": 1700000000, "price": "145.20"}', (1700000000.0, 145.2, None)),  # the original server's form
    ('{"price": 1, "time": 1700000000, "extra": [1]}', (1700000000.0, 1.0, None)),
]
INVALID = [
    ("not json", "invalid JSON"),
    (b'{"time": 1, "price": 2}', "binary frame"),
    ("[1, 2]", "not a JSON object"),
    ('"145.2"', "not a JSON object"),
    ('{"time": 1700000000}', "missing time or price"),
    ('{"price": 145}', "missing time or price"),
    ('{"time": 1700000000, "price": true}', "price is not a number"),
    ('{"time": 1700000000, "price": null}', "price is not a number"),
    ('{"time": 1700000000, "price": "abc"}', "price is not a number"),
    ('{"time": 1700000000, "price": [145]}', "price is not a number"),
    ('{"time": 1700000000, "price": NaN}', "price is not finite"),
    ('{"time": 1700000000, "price": Infinity}', "price is not finite"),
    ('{"time": 1700000000, "price": "-inf"}', "price is not finite"),
    ('{"time": 1700000000, "price": 0}', "price not positive"),
    ('{"time": 1700000000, "price": -3}', "price not positive"),
    ('{"time": "yesterday", "price": 1}', "time is not a number"),
    ('{"time": -5, "price": 1}', "time out of range"),
    ('{"time": 1e300, "price": 1}', "time out of range"),
    ('{"time": 1700000000, "price": 1, "symbol": 7}', "symbol is not a string"),
    ('{"time": 1700000000, "price": 1, "pad": "' + "x" * 2000 + '"}', "frame too large"),
]


@pytest.mark.parametrize(("frame", "row"), VALID)
def test_parse_tick_accepts_valid_frames(frame: str, row: tuple) -> None:
    """Numbers and numeric strings are accepted; the symbol is optional."""
    assert save2sql.parse_tick(frame) == row


@pytest.mark.parametrize(("frame", "reason"), INVALID)
def test_parse_tick_rejects_bad_frames_with_a_reason(frame: str | bytes, reason: str) -> None:
    """Every kind of bad frame is rejected with a reason that names it."""
    with pytest.raises(save2sql.RejectedFrame, match=re.escape(reason)):
        save2sql.parse_tick(frame)


async def open_writer(db_path: Path, **kwargs) -> tuple[save2sql.BatchWriter, save2sql.Stats]:
    """The recorder's database connection and batch writer on ``db_path``."""
    db = await save2sql.open_database(str(db_path))
    stats = save2sql.Stats()
    return save2sql.BatchWriter(db, stats, **kwargs), stats


async def record_frames(frames: list[str | bytes], db_path: Path) -> save2sql.Stats:
    """Record everything a test server sends, until it closes, and flush."""
    writer, stats = await open_writer(db_path)
    try:
        async with frame_server(frames) as url, save2sql.connect(url) as ws, asyncio.timeout(20):
            await save2sql.consume(ws, writer, save2sql.RejectLog(stats))
        await writer.flush()
    finally:
        await writer.db.close()
    return stats


async def test_recorder_stores_every_tick_in_order(tmp_path: Path) -> None:
    """Every tick the server sends is stored once, in the order sent."""
    frames = [tick_frame(n) for n in range(1000)]
    stats = await record_frames(frames, tmp_path / "t.db")
    assert read_rows(tmp_path / "t.db") == [save2sql.parse_tick(f) for f in frames]
    assert stats.received == stats.written == 1000


async def test_bad_frames_are_skipped_and_counted_while_good_ones_are_stored(tmp_path: Path, caplog) -> None:
    """Bad frames between good ones are counted and logged; only the good ones are written."""
    bad = [frame for frame, _ in INVALID]
    frames = [item for n, junk in enumerate(bad) for item in (tick_frame(n), junk)]
    frames += ["garbage"] * 500 + [tick_frame(999)]
    stats = await record_frames(frames, tmp_path / "t.db")
    good = [tick_frame(n) for n in range(len(bad))] + [tick_frame(999)]
    assert read_rows(tmp_path / "t.db") == [save2sql.parse_tick(f) for f in good]
    assert stats.skipped == len(bad) + 500
    assert stats.rejected["invalid JSON"] == 501
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "skipped frame" in r.message]
    assert 1 <= len(warnings) <= 3  # rate-limited: not one line per frame


async def test_restart_appends_to_existing_rows(tmp_path: Path) -> None:
    """A second run keeps the first run's rows and appends after them."""
    db_path = tmp_path / "t.db"
    await record_frames([tick_frame(n) for n in range(10)], db_path)
    await record_frames([tick_frame(n) for n in range(10, 25)], db_path)
    assert read_rows(db_path) == [save2sql.parse_tick(tick_frame(n)) for n in range(25)]


async def test_legacy_table_without_symbol_is_upgraded_not_dropped(tmp_path: Path) -> None:
    """A trades(time, price) table from an older recorder gains a symbol column, rows intact."""
    db_path = tmp_path / "old.db"
    with db_conn(db_path) as conn:
        conn.execute("CREATE TABLE trades (time REAL, price REAL)")
        conn.execute("INSERT INTO trades VALUES (1700000000, 145.0)")
    await record_frames([tick_frame(1)], db_path)
    assert read_rows(db_path) == [(1700000000.0, 145.0, None), save2sql.parse_tick(tick_frame(1))]


@pytest.mark.parametrize("query", [matplotlib_plot.RECENT_ROWS, bokeh_plot.RECENT_ROWS], ids=["mpl", "bokeh"])
async def test_database_uses_wal_and_plot_queries_use_the_primary_key(tmp_path: Path, query: str) -> None:
    """WAL mode is on, and the charts' queries search the key instead of scanning the table."""
    db_path = tmp_path / "t.db"
    await record_frames([tick_frame(n) for n in range(5)], db_path)
    with db_conn(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        plan = conn.execute(f"EXPLAIN QUERY PLAN {query}", (2, 10)).fetchall()
    details = " ".join(row[-1] for row in plan)
    assert "INTEGER PRIMARY KEY" in details
    assert "TEMP B-TREE" not in details


async def test_full_batch_is_flushed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    """BATCH_SIZE buffered ticks are written at once, long before the flush interval."""
    writer, stats = await open_writer(tmp_path / "t.db", batch_size=5, flush_interval_s=60)
    runner = asyncio.create_task(writer.run())
    try:
        for n in range(5):
            writer.add(save2sql.parse_tick(tick_frame(n)))
        await wait_until_async(lambda: stats.written == 5, 5, "a full batch to be written")
    finally:
        runner.cancel()
        await writer.db.close()


async def test_partial_batch_is_flushed_after_the_interval(tmp_path: Path) -> None:
    """A lone tick is written once it has waited the flush interval."""
    writer, stats = await open_writer(tmp_path / "t.db", batch_size=1000, flush_interval_s=0.05)
    runner = asyncio.create_task(writer.run())
    try:
        loop = asyncio.get_running_loop()
        added = loop.time()
        writer.add(save2sql.parse_tick(tick_frame(0)))
        await wait_until_async(lambda: stats.written == 1, 5, "the lone tick to be written", step_s=0.005)
        assert loop.time() - added >= 0.05
    finally:
        runner.cancel()
        await writer.db.close()
    assert len(read_rows(tmp_path / "t.db")) == 1


async def test_ticks_arriving_during_a_flush_are_kept_exactly_once(tmp_path: Path) -> None:
    """Rows added while a batch is being written go into the next batch: none lost, none twice."""
    db_path = tmp_path / "t.db"
    writer, _ = await open_writer(db_path)
    rows = [save2sql.parse_tick(tick_frame(n)) for n in range(20)]
    for row in rows[:10]:
        writer.add(row)
    # Hold SQLite's write lock from another connection so the flush stays in progress.
    blocker = sqlite3.connect(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    flushing = asyncio.create_task(writer.flush())
    await wait_until_async(lambda: not writer.buffer, 5, "the flush to take its batch")
    for row in rows[10:]:
        writer.add(row)
    blocker.rollback()
    blocker.close()
    try:
        assert await flushing == 10
        assert await writer.flush() == 10
    finally:
        await writer.db.close()
    assert read_rows(db_path) == rows


async def test_failed_write_keeps_its_rows_for_the_retry(tmp_path: Path) -> None:
    """A batch that cannot be written (database locked) stays buffered, in order, and lands later."""
    db_path = tmp_path / "t.db"
    writer, stats = await open_writer(db_path)
    await writer.db.execute("PRAGMA busy_timeout=0")
    rows = [save2sql.parse_tick(tick_frame(n)) for n in range(6)]
    for row in rows[:4]:
        writer.add(row)
    blocker = sqlite3.connect(db_path)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await writer.flush()
        for row in rows[4:]:
            writer.add(row)
        assert writer.buffer == rows
    finally:
        blocker.rollback()
        blocker.close()
    try:
        assert await writer.flush() == 6
    finally:
        await writer.db.close()
    assert read_rows(db_path) == rows
    assert stats.written == 6


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_signal_flushes_every_received_tick(run_script, tmp_path: Path, sig: int) -> None:
    """On Ctrl-C or SIGTERM the recorder writes its whole buffer and exits 0."""
    db_path = tmp_path / "t.db"
    # A long flush interval keeps everything in the buffer until the signal arrives.
    unflushed = ("--flush-interval", "60", "--batch-size", "100000")
    async with recording(run_script, db_path, 0.002, *unflushed) as (feed, recorder):
        await wait_until_async(lambda: len(feed.sent) >= 300, 20, "300 ticks sent")
        assert read_rows(db_path) == []
        recorder.proc.send_signal(sig)
        assert await asyncio.to_thread(recorder.proc.wait, 15) == 0
    received, written, _ = stopped_counts(recorder.log)
    rows = read_rows(db_path)
    assert len(rows) == received == written >= 300
    assert rows == [save2sql.parse_tick(f) for f in feed.sent[: len(rows)]]
    assert "Traceback" not in recorder.log


async def test_recorder_waits_for_a_server_that_starts_later(run_script, tmp_path: Path) -> None:
    """Started before the server, the recorder keeps retrying and records once it is up."""
    port = free_port()
    db_path = tmp_path / "t.db"
    recorder = run_script("save2sql.py", "--url", f"ws://{LOOPBACK}:{port}", "--db", str(db_path))
    await asyncio.to_thread(recorder.wait_for_log, "connect failed", 15, 2)
    feed = NumberedFeed(interval_s=0.01)
    async with serve(feed.handler, LOOPBACK, port):
        await asyncio.to_thread(recorder.wait_for_log, "connected to", 10)
        await wait_until_async(lambda: len(read_rows(db_path)) >= 20, 10, "20 rows on disk", step_s=0.05)
    assert await asyncio.to_thread(recorder.stop, signal.SIGTERM) == 0


def test_unwritable_database_is_a_one_line_error(run_script, tmp_path: Path) -> None:
    """A database path that cannot be opened gives one clear error and exit status 1."""
    recorder = run_script("save2sql.py", "--db", str(tmp_path / "missing-dir" / "t.db"))
    assert recorder.proc.wait(15) == 1
    assert "cannot open database" in recorder.log
    assert "Traceback" not in recorder.log


def test_status_line_reports_rows_rate_and_skips() -> None:
    """The status line names rows written, ticks per second and frames skipped."""
    line = save2sql.status_line(save2sql.Stats(), rate=20.0)
    assert re.fullmatch(r"rows written 0, 20\.0 ticks/s, frames skipped 0", line)
