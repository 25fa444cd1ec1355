"""Shared fixtures: Agg for matplotlib, free loopback ports, scripts run as real processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before any script imports pyplot

import pytest
from pipeline import LOOPBACK, Process
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import save2sql


async def wait_until_async(
    predicate: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.02
) -> None:
    """Async twin of ``pipeline.wait_until``: poll with a deadline without blocking the loop."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(step_s)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


@pytest.fixture
def run_script(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start repo scripts as processes; any still running at the end are killed."""
    started: list[Process] = []

    def start(script: str, *args: str, env: dict[str, str | None] | None = None) -> Process:
        proc = Process(f"{Path(script).stem}-{len(started)}", [sys.executable, script, *args], tmp_path, env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


def tick_frame(n: int, price: float | None = None) -> str:
    """A valid wire tick whose time and price encode ``n``, so order and gaps are visible."""
    return json.dumps(
        {
            "time": 1_700_000_000 + n / 1000,
            "price": 100 + n / 100 if price is None else price,
            "symbol": "SIM",
        }
    )


@asynccontextmanager
async def frame_server(frames: list[str | bytes]) -> AsyncIterator[str]:
    """A real WebSocket server on loopback that sends ``frames`` to each client, then closes."""

    async def handler(websocket: ServerConnection) -> None:
        for frame in frames:
            await websocket.send(frame)
        await websocket.close()

    async with serve(handler, LOOPBACK, 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://{LOOPBACK}:{port}"


@contextmanager
def db_conn(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection that commits and is closed on leaving the block."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


class NumberedFeed:
    """A test feed sending numbered ticks every ``interval_s`` until stopped; remembers what it sent."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.sent: list[str] = []

    async def handler(self, websocket: ServerConnection) -> None:
        try:
            while True:
                frame = tick_frame(len(self.sent))
                await websocket.send(frame)
                self.sent.append(frame)
                await asyncio.sleep(self.interval_s)
        except ConnectionClosed:
            pass


@asynccontextmanager
async def recording(
    run_script: Callable[..., Process], db_path: Path, interval_s: float, *recorder_args: str
) -> AsyncIterator[tuple[NumberedFeed, Process]]:
    """save2sql.py, as a process, recording a NumberedFeed served on loopback."""
    feed = NumberedFeed(interval_s)
    async with serve(feed.handler, LOOPBACK, 0) as server:
        url = f"ws://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        yield feed, run_script("save2sql.py", "--url", url, "--db", str(db_path), *recorder_args)


def read_rows(db_path: Path) -> list[tuple[float, float, str | None]]:
    """All stored ticks in id order."""
    with db_conn(db_path) as conn:
        return conn.execute("SELECT time, price, symbol FROM trades ORDER BY rowid").fetchall()


def make_trades_db(path: Path, count: int, start_time: float = 1_700_000_000.0, step_s: float = 0.05) -> None:
    """Create a database as save2sql.py does and fill it with ``count`` ticks."""
    with db_conn(path) as conn:
        conn.execute(save2sql.SCHEMA)
        add_trades(conn, 0, count, start_time, step_s)


def add_trades(conn: sqlite3.Connection, first: int, count: int, start_time: float, step_s: float) -> None:
    """Append ticks number ``first`` .. ``first + count - 1``; tick n costs 100 + n / 10."""
    conn.executemany(
        "INSERT INTO trades (time, price, symbol) VALUES (?, ?, 'SIM')",
        ((start_time + n * step_s, 100 + n / 10) for n in range(first, first + count)),
    )
    conn.commit()
