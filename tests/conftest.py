"""Shared fixtures: Agg for matplotlib, free loopback ports, scripts run as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before any script imports pyplot

import pytest
from websockets.asyncio.server import ServerConnection, serve

import save2sql

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port that was free on loopback a moment ago, for a script run as a process."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.02) -> None:
    """Poll ``predicate`` until it is true, failing with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(step_s)


async def wait_until_async(
    predicate: Callable[[], object], timeout_s: float, what: str, step_s: float = 0.02
) -> None:
    """Async twin of ``wait_until``: poll with a deadline without blocking the loop."""
    try:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                await asyncio.sleep(step_s)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}") from None


class Script:
    """One of the repo's scripts running as a separate process, its log in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log_path = log_path
        self.log_file = log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )

    @property
    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout_s: float = 15.0, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log; fail early if the process died."""

        def seen() -> bool:
            if self.proc.poll() is not None and self.log.count(text) < count:
                raise AssertionError(f"{self.args[1]} exited ({self.proc.returncode}):\n{self.log}")
            return self.log.count(text) >= count

        wait_until(seen, timeout_s, f"{text!r} in the log of {self.args[1]}")

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 15.0) -> int:
        """Send ``sig`` and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        """End the process at once, if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log_file.close()


@pytest.fixture
def run_script(tmp_path: Path) -> Iterator[Callable[..., Script]]:
    """Start repo scripts as processes; any still running at the end are killed."""
    started: list[Script] = []

    def start(script: str, *args: str, env: dict[str, str] | None = None) -> Script:
        log = tmp_path / f"{Path(script).stem}-{len(started)}.log"
        proc = Script([sys.executable, script, *args], log, env)
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
