"""Baseline clients for the benchmarks, run as processes beside save2sql.py.

    python bench/clients.py receive URL [--clients N]   # only receives; counts frames
    python bench/clients.py naive URL DB                # the obvious first recorder
    python bench/clients.py probe DB SECONDS            # commit latency of the rows save2sql writes

``receive`` and ``naive`` run until SIGTERM, then at once print the recorder's closing
line, ``stopped: received N frames, wrote M rows``, plus the span between the first and
last frame, so the benchmark reads all three recorders the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sqlite3
import sys
import time

from websockets.asyncio.client import ClientConnection, connect

NAIVE_ROWS_PER_CONNECTION = 2  # the naive writer opens a new connection for every 2 rows
NAIVE_SCHEMA = "CREATE TABLE IF NOT EXISTS trades (time REAL, price REAL, symbol TEXT)"


class Counter:
    """Frames received, and when the first and last arrived."""

    def __init__(self) -> None:
        self.frames = 0
        self.written = 0
        self.first = 0.0
        self.last = 0.0

    def count(self) -> None:
        """Count one frame now."""
        now = time.perf_counter()
        if not self.frames:
            self.first = now
        self.frames += 1
        self.last = now

    def report(self) -> None:
        """Print the closing line the benchmark parses."""
        print(
            f"stopped: received {self.frames} frames, wrote {self.written} rows, "
            f"span {self.last - self.first:.6f} s",
            flush=True,
        )


async def receive(websocket: ClientConnection, counter: Counter) -> None:
    """Only receive: the fastest any client can take the feed."""
    async for _ in websocket:
        counter.count()


async def naive_write(websocket: ClientConnection, counter: Counter, db: str) -> None:
    """Parse each tick and write every 2 rows through a brand-new connection, blocking the loop."""
    import json  # noqa: PLC0415 - part of the baseline's own cost, kept beside it

    pending: list[tuple] = []
    async for frame in websocket:
        counter.count()
        tick = json.loads(frame)
        pending.append((tick["time"], tick["price"], tick.get("symbol")))
        if len(pending) >= NAIVE_ROWS_PER_CONNECTION:
            conn = sqlite3.connect(db)
            conn.execute(NAIVE_SCHEMA)
            conn.executemany("INSERT INTO trades VALUES (?, ?, ?)", pending)
            conn.commit()
            conn.close()
            counter.written += len(pending)
            pending.clear()


async def run_clients(url: str, clients: int, mode: str, db: str | None) -> None:
    """Connect ``clients`` times and consume until SIGTERM."""
    counter = Counter()
    naive = mode == "naive"

    def report_and_exit(_signum: int, _frame: object) -> None:
        # A plain handler runs between two bytecodes, so the count is taken at the signal
        # even when the naive writer keeps the event loop busy and never yields.
        if not naive:
            counter.written = counter.frames
        counter.report()
        os._exit(0)

    signal.signal(signal.SIGTERM, report_and_exit)
    connections = [await connect(url, compression=None, max_size=2**20) for _ in range(clients)]
    print(f"connected to {url} ({clients} clients)", flush=True)
    if naive:
        jobs = [naive_write(ws, counter, db) for ws in connections]  # type: ignore[arg-type]
    else:
        jobs = [receive(ws, counter) for ws in connections]
    await asyncio.gather(*jobs)


def probe(db: str, seconds: float, poll_s: float = 0.001) -> None:
    """Poll for new rows every millisecond; print when each became visible, less its tick time."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    last_id = conn.execute("SELECT coalesce(max(rowid), 0) FROM trades").fetchone()[0]
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        now = time.time()
        for rowid, tick_time in conn.execute("SELECT rowid, time FROM trades WHERE rowid > ?", (last_id,)):
            latencies.append(now - tick_time)
            last_id = rowid
        time.sleep(poll_s)  # the probe's sampling period
    conn.close()
    print(" ".join(f"{value:.6f}" for value in latencies), flush=True)


def main() -> int:
    """Dispatch on the mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    receive_parser = sub.add_parser("receive")
    receive_parser.add_argument("url")
    receive_parser.add_argument("--clients", type=int, default=1)
    naive_parser = sub.add_parser("naive")
    naive_parser.add_argument("url")
    naive_parser.add_argument("db")
    probe_parser = sub.add_parser("probe")
    probe_parser.add_argument("db")
    probe_parser.add_argument("seconds", type=float)
    args = parser.parse_args()
    if args.mode == "probe":
        probe(args.db, args.seconds)
    else:
        clients = getattr(args, "clients", 1)
        asyncio.run(run_clients(args.url, clients, args.mode, getattr(args, "db", None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
