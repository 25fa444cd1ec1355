"""Soak: memory stays flat over long runs. Prints the resident memory at checkpoints.

    python bench/soak.py            # about a minute

- the recorder (save2sql.py) over 1,000,000 ticks from fake_data.py at full speed;
- one Bokeh session (bokeh_plot.py's document) over 100,000 streamed points;
- the server (fake_data.py) while clients connect and leave 10,000 times.

Every process talks over 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bokeh.document import Document  # noqa: E402
from pipeline import Process, newest_rowid, start_market  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

import bokeh_plot  # noqa: E402
import save2sql  # noqa: E402

PYTHON = sys.executable
RECORDER_TICKS = 1_000_000
BOKEH_POINTS = 100_000
BOKEH_ROWS_PER_POLL = 100
SERVER_CONNECTIONS = 10_000
SERVER_CONCURRENCY = 20
DEADLINE_S = 300  # no part of the soak may take longer than this


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process, MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def soak_recorder(workdir: Path) -> list[tuple[int, float]]:
    """save2sql.py's memory at every 100,000 rows up to RECORDER_TICKS."""
    market, url = start_market(workdir, "soak-market", "--interval", "0")
    db = workdir / "soak.db"
    recorder = Process("soak-recorder", [PYTHON, "save2sql.py", "--url", url, "--db", str(db)], workdir)
    samples = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        recorder.wait_for_log("connected to")
        for checkpoint in range(100_000, RECORDER_TICKS + 1, 100_000):
            while newest_rowid(db) < checkpoint:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"recorder soak stopped at {newest_rowid(db)} rows")
                time.sleep(0.05)  # sampling period
            samples.append((checkpoint, rss_mb(recorder.proc.pid)))
    finally:
        recorder.stop(signal.SIGTERM)
        market.stop(signal.SIGTERM)
    return samples


def soak_bokeh(workdir: Path) -> list[tuple[int, float]]:
    """This process's memory while one Bokeh session streams BOKEH_POINTS points."""
    db = workdir / "bokeh.db"
    conn = sqlite3.connect(db)
    conn.execute(save2sql.SCHEMA)
    doc = Document()
    _, poll = bokeh_plot.build_document(doc, db=str(db))
    samples = []
    for n in range(0, BOKEH_POINTS, BOKEH_ROWS_PER_POLL):
        conn.executemany(
            "INSERT INTO trades (time, price, symbol) VALUES (?, ?, 'SIM')",
            [(1.7e9 + i * 0.05, 100 + (i % 997) / 100) for i in range(n, n + BOKEH_ROWS_PER_POLL)],
        )
        conn.commit()
        poll()
        streamed = n + BOKEH_ROWS_PER_POLL
        if streamed % 10_000 == 0:
            gc.collect()
            samples.append((streamed, rss_mb()))
    conn.close()
    for callback in doc.session_destroyed_callbacks:
        callback(None)
    return samples


async def churn(url: str, count: int, counter: list[int]) -> None:
    """Connect, take one tick and leave, ``count`` times."""
    for _ in range(count):
        async with connect(url, open_timeout=10, close_timeout=2) as ws:
            await ws.recv()
        counter[0] += 1


def soak_server(workdir: Path) -> list[tuple[int, float]]:
    """fake_data.py's memory as clients connect and leave SERVER_CONNECTIONS times."""
    market, url = start_market(workdir, "churn-market", "--interval", "0.005")
    samples: list[tuple[int, float]] = []

    async def run() -> None:
        counter = [0]
        per_task = SERVER_CONNECTIONS // SERVER_CONCURRENCY
        tasks = [asyncio.create_task(churn(url, per_task, counter)) for _ in range(SERVER_CONCURRENCY)]
        next_sample = 1_000
        async with asyncio.timeout(DEADLINE_S):
            while not all(task.done() for task in tasks):
                if counter[0] >= next_sample:
                    samples.append((counter[0], rss_mb(market.proc.pid)))
                    next_sample += 1_000
                await asyncio.sleep(0.05)  # sampling period
        await asyncio.gather(*tasks)
        samples.append((counter[0], rss_mb(market.proc.pid)))

    try:
        asyncio.run(run())
    finally:
        market.stop(signal.SIGTERM)
    return samples


def show(title: str, unit: str, samples: list[tuple[int, float]]) -> None:
    """Print one soak's checkpoints and its growth after the first."""
    print(f"\n{title}")
    for count, mb in samples:
        print(f"  {count:>9,} {unit}: {mb:6.1f} MiB")
    first, last = samples[0][1], samples[-1][1]
    print(f"  growth from the first checkpoint to the last: {last - first:+.1f} MiB")


def main() -> int:
    """Run the three soaks and print their memory."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streaming-plot-soak-") as tmp:
        workdir = Path(tmp)
        show("save2sql.py, resident memory by rows written", "rows", soak_recorder(workdir))
        show("one Bokeh session (this process), by points streamed", "points", soak_bokeh(workdir))
        show("fake_data.py, by client connections opened and closed", "connections", soak_server(workdir))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
