"""Recorder: store every tick from the WebSocket feed in SQLite.

Ticks are buffered and written in batches through one long-lived aiosqlite
connection, in WAL mode so the charts can read while it writes. It may start
before the server and reconnects whenever the server goes away.

Run it in its own terminal, alongside ``python fake_data.py``:

    python save2sql.py                  # ws://localhost:8766 -> stock.db
    python save2sql.py --help           # flags that override the constants below

Ctrl-C or SIGTERM flushes the buffer and exits with status 0: every tick received
before the signal is on disk. A restart appends to the existing table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import signal
import sqlite3
import time
from collections import Counter

import aiosqlite
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import backoff
from websockets.exceptions import ConnectionClosed

logger = logging.getLogger(__name__)

# --- Configuration: edit these, or override them with the flags in --help ---
URL = "ws://localhost:8766"  # WebSocket feed to record
DB_PATH = "stock.db"  # SQLite file; created if missing, appended to if present
BATCH_SIZE = 200  # ticks per write; a batch is flushed when it holds this many ...
FLUSH_INTERVAL_S = 0.1  # ... or when its oldest tick has waited this long, seconds
MAX_PENDING_TICKS = 100_000  # buffered ticks above which reading pauses until the disk catches up
MAX_TICK_BYTES = 1024  # a frame longer than this, bytes, is rejected without parsing
MAX_FRAME_BYTES = 64 * 1024  # a frame longer than this, bytes, closes the connection (then reconnect)
RECONNECT_MIN_S = 0.1  # first wait before reconnecting, seconds
RECONNECT_MAX_S = 1.0  # longest wait between reconnection attempts, seconds
STATUS_INTERVAL_S = 5.0  # seconds between status lines
WARN_INTERVAL_S = 5.0  # at most one warning about rejected frames per this many seconds
MAX_EPOCH_S = 1e11  # times past this (year 5138) are rejected as nonsense, epoch seconds

SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (
    id     INTEGER PRIMARY KEY,  -- arrival order; readers page on it
    time   REAL NOT NULL,        -- epoch seconds, as sent
    price  REAL NOT NULL,        -- currency units
    symbol TEXT                  -- NULL when the feed sends none
)
"""
# WAL lets the charts read while we write. synchronous=NORMAL is safe in WAL mode (a power
# loss can only undo the last commits, never corrupt) and much faster than FULL. After a
# checkpoint the WAL file is truncated to 16 MiB, so it cannot stay large.
SETUP_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA journal_size_limit=16777216",
    "PRAGMA busy_timeout=5000",
)
INSERT = "INSERT INTO trades (time, price, symbol) VALUES (?, ?, ?)"

Row = tuple[float, float, str | None]


class RejectedFrame(ValueError):
    """A frame that is not a valid tick; the message is the reason, for counting."""


def to_number(value: object, name: str) -> float:
    """Return ``value`` as a finite float; numbers and numeric strings are accepted."""
    # bool is a subclass of int, but true/false are not prices.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RejectedFrame(f"{name} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise RejectedFrame(f"{name} is not a number") from None
    if not math.isfinite(number):
        raise RejectedFrame(f"{name} is not finite")
    return number


def parse_tick(frame: str | bytes, max_bytes: int = MAX_TICK_BYTES) -> Row:
    """Validate one frame and return it as a database row, or raise RejectedFrame."""
    if isinstance(frame, bytes):
        raise RejectedFrame("binary frame")
    if len(frame) > max_bytes:
        raise RejectedFrame("frame too large")
    try:
        tick = json.loads(frame)
    except ValueError:
        raise RejectedFrame("invalid JSON") from None
    if not isinstance(tick, dict):
        raise RejectedFrame("not a JSON object")
    if "time" not in tick or "price" not in tick:
        raise RejectedFrame("missing time or price")
    when = to_number(tick["time"], "time")
    price = to_number(tick["price"], "price")
    symbol = tick.get("symbol")
    if not (0 < when < MAX_EPOCH_S):
        raise RejectedFrame("time out of range")
    if price <= 0:
        raise RejectedFrame("price not positive")
    if symbol is not None and not isinstance(symbol, str):
        raise RejectedFrame("symbol is not a string")
    return (when, price, symbol)


def ensure_schema_sql(columns: set[str]) -> list[str]:
    """Statements that bring an existing ``trades`` table up to SCHEMA without losing rows."""
    return [] if "symbol" in columns else ["ALTER TABLE trades ADD COLUMN symbol TEXT"]


class Stats:
    """Counters for the status line."""

    def __init__(self) -> None:
        self.received = 0
        self.written = 0
        self.rejected: Counter[str] = Counter()

    @property
    def skipped(self) -> int:
        """Frames rejected, whatever the reason."""
        return sum(self.rejected.values())


class RejectLog:
    """Count rejected frames and warn about them at most once per ``interval_s``."""

    def __init__(self, stats: Stats, interval_s: float = WARN_INTERVAL_S) -> None:
        self.stats = stats
        self.interval_s = interval_s
        self.next_warning = 0.0
        self.suppressed = 0

    def reject(self, reason: str, frame: str | bytes) -> None:
        """Count one rejected frame; log it unless a warning went out recently."""
        self.stats.rejected[reason] += 1
        now = time.monotonic()
        if now < self.next_warning:
            self.suppressed += 1
            return
        more = f" ({self.suppressed} more since the last warning)" if self.suppressed else ""
        logger.warning("skipped frame: %s: %.60r%s", reason, frame, more)
        self.suppressed = 0
        self.next_warning = now + self.interval_s


class BatchWriter:
    """Buffer rows and write them in batches: one executemany and one commit each.

    A batch is flushed when ``batch_size`` rows are buffered or its oldest row
    has waited ``flush_interval_s``. Rows added while a batch is being written
    go into the next batch. A failed write keeps its rows and is retried.
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        stats: Stats,
        *,
        batch_size: int = BATCH_SIZE,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_pending: int = MAX_PENDING_TICKS,
    ) -> None:
        self.db = db
        self.stats = stats
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.max_pending = max_pending
        self.buffer: list[Row] = []
        self.oldest_at = 0.0  # loop time when the oldest buffered row arrived
        self.has_rows = asyncio.Event()
        self.batch_full = asyncio.Event()
        self.has_room = asyncio.Event()
        self.has_room.set()
        self.in_flight: asyncio.Future[int] | None = None  # the flush run() started last

    def add(self, row: Row) -> None:
        """Buffer one row; never blocks."""
        if not self.buffer:
            self.oldest_at = asyncio.get_running_loop().time()
            self.has_rows.set()
        self.buffer.append(row)
        if len(self.buffer) >= self.batch_size:
            self.batch_full.set()
        if len(self.buffer) >= self.max_pending:
            self.has_room.clear()

    async def flush(self) -> int:
        """Write everything buffered now in one transaction; return the row count."""
        # Swap before the first await: rows that arrive during the write land in the new buffer.
        batch, self.buffer = self.buffer, []
        self.has_rows.clear()
        self.batch_full.clear()
        if not batch:
            return 0
        try:
            await self.db.executemany(INSERT, batch)
            await self.db.commit()
        except sqlite3.Error:
            await self.db.rollback()
            self.requeue(batch)
            raise
        self.stats.written += len(batch)
        if len(self.buffer) < self.max_pending:
            self.has_room.set()
        return len(batch)

    def requeue(self, batch: list[Row]) -> None:
        """Put an unwritten batch back in front of newer rows, keeping arrival order."""
        self.oldest_at = asyncio.get_running_loop().time()  # its retry is paced by run()
        self.buffer[:0] = batch
        self.has_rows.set()

    async def run(self) -> None:
        """Flush batches forever, as they fill up or grow old."""
        loop = asyncio.get_running_loop()
        retry_s = self.flush_interval_s
        while True:
            await self.has_rows.wait()
            remaining = self.oldest_at + self.flush_interval_s - loop.time()
            if remaining > 0 and not self.batch_full.is_set():
                try:
                    async with asyncio.timeout(remaining):
                        await self.batch_full.wait()
                except TimeoutError:
                    pass
            # Shielded: cancelling run() at shutdown must not abandon a batch halfway
            # through its transaction; close() waits for it instead.
            self.in_flight = asyncio.ensure_future(self.flush())
            try:
                await asyncio.shield(self.in_flight)
                retry_s = self.flush_interval_s
            except sqlite3.Error as exc:
                logger.warning("write failed, %d ticks kept for retry: %s", len(self.buffer), exc)
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, 5.0)

    async def close(self, attempts: int = 5) -> None:
        """Finish the write in progress, then write everything still buffered."""
        if self.in_flight is not None:
            await asyncio.gather(self.in_flight, return_exceptions=True)  # its rows are requeued on failure
        for attempt in range(attempts):
            try:
                await self.flush()
                return
            except sqlite3.Error as exc:
                logger.warning("final write failed (attempt %d): %s", attempt + 1, exc)
                await asyncio.sleep(0.2 * (attempt + 1))
        logger.error("%d ticks could not be written", len(self.buffer))


async def open_database(path: str) -> aiosqlite.Connection:
    """Open the writer connection and make the schema, WAL mode and settings ready."""
    db = await aiosqlite.connect(path)
    try:
        for pragma in SETUP_PRAGMAS:
            await db.execute(pragma)
        await db.execute(SCHEMA)
        columns = {row[1] async for row in await db.execute("PRAGMA table_info(trades)")}
        for statement in ensure_schema_sql(columns):
            logger.info("upgrading table trades: %s", statement)
            await db.execute(statement)
        await db.commit()
    except BaseException:
        await db.close()
        raise
    return db


async def consume(websocket: ClientConnection, writer: BatchWriter, rejects: RejectLog) -> None:
    """Store every valid tick from one connection until it closes."""
    async for frame in websocket:
        writer.stats.received += 1
        try:
            writer.add(parse_tick(frame))
        except RejectedFrame as exc:
            rejects.reject(str(exc), frame)
        if not writer.has_room.is_set():
            logger.warning("disk is behind by %d ticks; pausing the feed", len(writer.buffer))
            await writer.has_room.wait()


async def record(
    url: str,
    writer: BatchWriter,
    rejects: RejectLog,
    *,
    reconnect_min_s: float = RECONNECT_MIN_S,
    reconnect_max_s: float = RECONNECT_MAX_S,
    max_frame_bytes: int = MAX_FRAME_BYTES,
) -> None:
    """Connect to ``url`` and record from it forever, reconnecting after every outage."""
    delays = functools.partial(
        backoff, initial_delay=reconnect_min_s, min_delay=reconnect_min_s, max_delay=reconnect_max_s, factor=2
    )
    lost_at: float | None = None
    logger.info("connecting to %s", url)
    async for websocket in connect(url, compression=None, max_size=max_frame_bytes, reconnect_delays=delays):
        if lost_at is None:
            logger.info("connected to %s", url)
        else:
            logger.info("reconnected to %s after an outage of %.1f s", url, time.monotonic() - lost_at)
        try:
            await consume(websocket, writer, rejects)
            reason = f"closed by server (code {websocket.close_code})"
        except ConnectionClosed as exc:
            reason = f"lost ({exc})"
        except asyncio.CancelledError:
            await websocket.close()  # shutting down: say goodbye with a normal close
            raise
        lost_at = time.monotonic()
        logger.warning("connection to %s %s; reconnecting", url, reason)


def status_line(stats: Stats, rate: float) -> str:
    """The periodic one-line status."""
    return f"rows written {stats.written}, {rate:.1f} ticks/s, frames skipped {stats.skipped}"


async def report_status(stats: Stats, interval_s: float) -> None:
    """Log the status line every ``interval_s`` seconds."""
    loop = asyncio.get_running_loop()
    last_written, last_at = stats.written, loop.time()
    while True:
        await asyncio.sleep(interval_s)
        now = loop.time()
        rate = (stats.written - last_written) / (now - last_at)
        last_written, last_at = stats.written, now
        logger.info("%s", status_line(stats, rate))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; every flag defaults to the constant of the same name."""
    parser = argparse.ArgumentParser(description="Record a WebSocket tick feed into SQLite.")
    parser.add_argument("--url", default=URL, help="feed to record (default: %(default)s)")
    parser.add_argument("--db", default=DB_PATH, help="SQLite file (default: %(default)s)")
    parser.add_argument(
        "--batch-size", type=positive_int, default=BATCH_SIZE, help="ticks per write (default: %(default)s)"
    )
    parser.add_argument(
        "--flush-interval",
        type=positive_float,
        default=FLUSH_INTERVAL_S,
        help="longest wait of a buffered tick, seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--status-interval",
        type=positive_float,
        default=STATUS_INTERVAL_S,
        help="seconds between status lines (default: %(default)s)",
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


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


async def main(argv: list[str] | None = None) -> int:
    """Record until Ctrl-C or SIGTERM, then flush and close; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level=logging.INFO)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        db = await open_database(args.db)
    except sqlite3.Error as exc:
        logger.error("cannot open database %s: %s", args.db, exc)
        return 1
    stats = Stats()
    writer = BatchWriter(db, stats, batch_size=args.batch_size, flush_interval_s=args.flush_interval)
    tasks = [
        asyncio.create_task(record(args.url, writer, RejectLog(stats))),
        asyncio.create_task(writer.run()),
        asyncio.create_task(report_status(stats, args.status_interval)),
    ]
    logger.info("recording %s into %s", args.url, args.db)
    try:
        await stop.wait()
    finally:
        # Stop receiving first, then write what is buffered: nothing received is lost.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await writer.close()
        await db.close()
    logger.info(
        "stopped: received %d frames, wrote %d rows, skipped %d frames",
        stats.received,
        stats.written,
        stats.skipped,
    )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except KeyboardInterrupt:  # a second Ctrl-C after shutdown had begun: still no traceback
        raise SystemExit(130) from None
