"""Reliability: nothing lost under faults, load and bad input. The scripts run as processes."""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import random
import re
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import psutil
import pytest
from conftest import db_conn, read_rows, recording, tick_frame, wait_until_async
from pipeline import LOOPBACK, free_port, stopped_counts, wait_until
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

import bokeh_plot
import matplotlib_plot
import save2sql

REPO = Path(__file__).resolve().parent.parent


# --- Server restart -------------------------------------------------------------------


def test_recorder_survives_a_killed_server_and_reconnects_quickly(run_script, tmp_path: Path) -> None:
    """kill -9 of the market: the outage is logged, the recorder is back within 2 s, nothing is lost."""
    port = str(free_port())
    market_args = ("--host", LOOPBACK, "--port", port, "--interval", "0.01")
    market = run_script("fake_data.py", *market_args)
    market.wait_for_log("serving ticks on")
    db_path = tmp_path / "t.db"
    recorder = run_script("save2sql.py", "--url", f"ws://{LOOPBACK}:{port}", "--db", str(db_path))
    recorder.wait_for_log("connected to")
    wait_until(lambda: len(read_rows(db_path)) >= 100, 15, "100 rows before the crash")
    market.proc.kill()
    market.proc.wait(10)
    recorder.wait_for_log("reconnecting")
    outage_s = 1.5
    time.sleep(outage_s)  # the outage itself, not synchronization: nothing is waited for here
    market = run_script("fake_data.py", *market_args)
    market.wait_for_log("serving ticks on")
    back_at = time.monotonic()
    recorder.wait_for_log("reconnected to", timeout_s=10)
    reconnect_s = time.monotonic() - back_at
    rows_at_return = len(read_rows(db_path))
    wait_until(lambda: len(read_rows(db_path)) >= rows_at_return + 100, 15, "100 rows after the return")
    assert recorder.stop(signal.SIGTERM) == 0
    received, written, skipped = stopped_counts(recorder.log)
    rows = read_rows(db_path)
    times = [row[0] for row in rows]
    print(f"\nreconnected {reconnect_s:.2f} s after the market's return; {len(rows)} rows, none lost")
    assert reconnect_s < 2.0
    assert len(rows) == received == written and skipped == 0
    assert len(set(times)) == len(times)  # no duplicates
    assert times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a > 0.5]
    assert len(gaps) == 1 and gaps[0] >= outage_s  # the outage is the only gap
    outage = re.search(r"reconnected to \S+ after an outage of ([\d.]+) s", recorder.log)
    assert outage and float(outage.group(1)) >= outage_s
    assert "Traceback" not in recorder.log


# --- Recorder killed mid-stream -------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "seed"),
    [(signal.SIGTERM, 1), (signal.SIGINT, 2), (signal.SIGTERM, 3), (signal.SIGINT, 4)],
    ids=["SIGTERM-1", "SIGINT-2", "SIGTERM-3", "SIGINT-4"],
)
async def test_signal_at_a_random_moment_stores_a_gap_free_prefix(
    run_script, tmp_path: Path, sig, seed
) -> None:
    """SIGTERM or SIGINT at a random moment of a 1 ms feed: stored = received, a gap-free prefix."""
    db_path = tmp_path / "t.db"
    async with recording(run_script, db_path, 0.001) as (feed, recorder):
        await wait_until_async(lambda: len(feed.sent) >= 200, 20, "the feed to start")
        target = len(feed.sent) + random.Random(seed).randrange(100, 3000)
        await wait_until_async(lambda: len(feed.sent) >= target, 30, f"{target} ticks sent", step_s=0.001)
        recorder.proc.send_signal(sig)
        assert await asyncio.to_thread(recorder.proc.wait, 15) == 0
    received, written, _ = stopped_counts(recorder.log)
    rows = read_rows(db_path)
    print(
        f"\n{sig.name}: received {received}, stored {len(rows)}, a gap-free prefix of {len(feed.sent)} sent"
    )
    assert len(rows) == received == written > 0
    assert rows == [save2sql.parse_tick(frame) for frame in feed.sent[: len(rows)]]


async def test_sigkill_loses_at_most_the_unflushed_batch(run_script, tmp_path: Path) -> None:
    """After SIGKILL the database is intact and misses at most what was not yet flushed."""
    db_path = tmp_path / "t.db"
    async with recording(run_script, db_path, 0.001) as (feed, recorder):
        await wait_until_async(lambda: len(feed.sent) >= 2000, 30, "2000 ticks sent")
        recorder.proc.kill()
        sent_at_kill = len(feed.sent)
        await asyncio.to_thread(recorder.proc.wait, 10)
    rows = read_rows(db_path)
    with db_conn(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert rows == [save2sql.parse_tick(frame) for frame in feed.sent[: len(rows)]]
    # Unflushed: at most a full batch, or what arrived within one flush interval (100 ticks
    # at 1 ms), plus what was still in flight in the socket buffers when the kill came.
    in_flight = 200
    print(f"\nSIGKILL: {sent_at_kill} sent before the kill, {len(rows)} stored, integrity ok")
    assert sent_at_kill - len(rows) <= max(save2sql.BATCH_SIZE, 100) + in_flight


# --- Readers and the writer together --------------------------------------------------


def read_like_the_charts(db_path: Path, stop: threading.Event, errors: list[str], polls: list[int]) -> None:
    """Poll as both charts do, back to back, until ``stop``."""
    feed = matplotlib_plot.DatabaseFeed(str(db_path), keep=64)
    stream = bokeh_plot.PriceStream(str(db_path), window=1000, ma_period=15)
    try:
        while not stop.is_set():
            try:
                feed.read()
                stream.poll()
                polls[0] += 1
            except Exception as exc:  # noqa: BLE001 - every failure is the finding
                errors.append(repr(exc))
    finally:
        feed.close()
        stream.close()


def test_charts_reading_never_block_the_writer_at_full_speed(run_script, tmp_path: Path) -> None:
    """30 s of full-speed writing with both charts' queries in a loop: no lock errors, WAL bounded."""
    port = str(free_port())
    run_script("fake_data.py", "--host", LOOPBACK, "--port", port, "--interval", "0").wait_for_log("serving")
    db_path = tmp_path / "t.db"
    recorder = run_script("save2sql.py", "--url", f"ws://{LOOPBACK}:{port}", "--db", str(db_path))
    recorder.wait_for_log("connected to")
    wait_until(lambda: db_path.exists() and len(read_rows(db_path)) > 0, 10, "the first rows")
    stop, errors, polls = threading.Event(), [], [0]
    readers = [
        threading.Thread(target=read_like_the_charts, args=(db_path, stop, errors, polls)) for _ in range(2)
    ]
    for reader in readers:
        reader.start()
    wal = Path(f"{db_path}-wal")
    wal_sizes = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        wal_sizes.append(wal.stat().st_size if wal.exists() else 0)
        time.sleep(0.25)  # sampling period of the WAL size, not synchronization
    stop.set()
    for reader in readers:
        reader.join(10)
    assert recorder.stop(signal.SIGTERM) == 0
    received, written, _ = stopped_counts(recorder.log)
    wal_mb = max(wal_sizes) / 2**20
    print(f"\n30 s: {written} rows written, {polls[0]} reader polls, WAL at most {wal_mb:.1f} MiB")
    assert errors == []
    assert polls[0] > 100
    assert written == received == len(read_rows(db_path)) > 100_000
    assert "locked" not in recorder.log and "write failed" not in recorder.log
    # Checkpoints run: the WAL stays near SQLite's 1000-page autocheckpoint, far below the data.
    assert max(wal_sizes) < 32 * 1024 * 1024
    assert db_path.stat().st_size > max(wal_sizes)


# --- Hostile input to the recorder ----------------------------------------------------

HOSTILE = [
    "{not json",
    b"\x00\x01binary",
    '{"price": 145}',
    '{"time": 1700000000}',
    '{"time": 1700000000, "price": "abc"}',
    '{"time": 1700000000, "price": true}',
    '{"time": 1700000000, "price": null}',
    '{"time": 1700000000, "price": NaN}',
    '{"time": Infinity, "price": 1}',
    '{"time": 1700000000, "price": 0}',
    '{"time": 1700000000, "price": -1}',
    "[]",
    '{"time": 1700000000, "price": 1, "pad": "' + "x" * 5000 + '"}',
]
TOO_BIG_FOR_THE_CONNECTION = json.dumps({"time": 1700000000, "price": 1, "pad": "x" * (100 * 1024)})


class HostileFeed:
    """Sends one segment of frames per connection; the first ends with a frame that closes it."""

    def __init__(self, segments: list[list[str | bytes]]) -> None:
        self.segments = segments
        self.connections = 0
        self.done = asyncio.Event()

    async def handler(self, websocket: ServerConnection) -> None:
        segment = self.segments[min(self.connections, len(self.segments) - 1)]
        self.connections += 1
        try:
            for frame in segment:
                await websocket.send(frame)
            if self.connections >= len(self.segments):
                self.done.set()
            await websocket.wait_closed()
        except ConnectionClosed:
            pass


async def test_hostile_frames_are_rejected_and_valid_ticks_between_them_kept(
    run_script, tmp_path: Path
) -> None:
    """Every kind of bad frame is rejected, counted and rate-logged; good ticks between them land."""
    good = [tick_frame(n) for n in range(2 * len(HOSTILE) + 2)]
    first = [item for pair in zip(good, HOSTILE, strict=False) for item in pair] + [
        TOO_BIG_FOR_THE_CONNECTION
    ]
    rest = good[len(HOSTILE) :]
    repeated_time = json.dumps({"time": 1_700_000_000.0, "price": 50})  # time goes back and repeats
    second = [rest[0], *HOSTILE, *(["garbage"] * 20_000), rest[1], repeated_time, repeated_time, *rest[2:]]
    feed = HostileFeed([first, second])
    async with serve(feed.handler, LOOPBACK, 0, max_size=None) as server:
        url = f"ws://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        db_path = tmp_path / "t.db"
        recorder = run_script("save2sql.py", "--url", url, "--db", str(db_path))
        async with asyncio.timeout(60):
            await feed.done.wait()
        expected = [save2sql.parse_tick(f) for f in (*good[: len(HOSTILE)], rest[0], rest[1])]
        expected += [save2sql.parse_tick(repeated_time)] * 2 + [save2sql.parse_tick(f) for f in rest[2:]]
        await wait_until_async(lambda: len(read_rows(db_path)) >= len(expected), 20, "the good ticks on disk")
        rss_mb = psutil.Process(recorder.proc.pid).memory_info().rss / 2**20
        assert recorder.proc.poll() is None  # still up
        recorder.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(recorder.proc.wait, 15) == 0
    assert read_rows(db_path) == expected
    _, written, skipped = stopped_counts(recorder.log)
    print(
        f"\nhostile: {written} stored, {skipped} rejected, {recorder.log.count('skipped frame:')} warnings, "
        f"{rss_mb:.0f} MiB resident"
    )
    assert written == len(expected)
    assert skipped == 2 * len(HOSTILE) + 20_000
    warnings = recorder.log.count("skipped frame:")
    assert 1 <= warnings <= 5  # rate-limited: about one line per 5 s, not 20,000
    assert "message too big" in recorder.log or "1009" in recorder.log  # the oversized frame closed it
    assert feed.connections == 2  # and the recorder came back for the rest
    assert rss_mb < 150


# --- Hostile and slow clients to the server -------------------------------------------


async def garbage_sender(url: str, stop: asyncio.Event) -> None:
    """Keeps sending text the server has no use for."""
    async with connect(url, close_timeout=1) as ws:
        while not stop.is_set():
            await ws.send("garbage" * 10)
            await asyncio.sleep(0.001)


async def abrupt_leaver(url: str, stop: asyncio.Event) -> None:
    """Connects, takes a tick and drops the TCP connection without a closing handshake."""
    while not stop.is_set():
        async with connect(url, close_timeout=1) as ws:
            await ws.recv()
            ws.transport.abort()


async def oversize_sender(url: str, stop: asyncio.Event) -> None:
    """Connects and sends a frame over the server's limit, again and again."""
    while not stop.is_set():
        async with connect(url, close_timeout=1) as ws:
            await ws.send("x" * 5000)
            await ws.wait_closed()


async def stalled_reader(url: str, port: int) -> None:
    """Connects with a tiny receive buffer and never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((LOOPBACK, port))
    ws = await connect(url, sock=sock)
    ws.transport.pause_reading()
    try:
        await ws.wait_closed()
    finally:
        ws.transport.abort()  # paused, it would wait out the closing handshake's timeout


async def test_server_keeps_time_for_good_clients_among_hostile_ones(run_script) -> None:
    """Garbage senders, abrupt disconnects, oversized frames and a stalled reader do not disturb others."""
    port = free_port()
    market = run_script("fake_data.py", "--host", LOOPBACK, "--port", str(port), "--interval", "0.001")
    await asyncio.to_thread(market.wait_for_log, "serving ticks on")
    url = f"ws://{LOOPBACK}:{port}"
    stop = asyncio.Event()
    hostile = [
        asyncio.create_task(job(url, stop)) for job in (garbage_sender, abrupt_leaver, oversize_sender)
    ]
    stalled = asyncio.create_task(stalled_reader(url, port))  # never ends by itself: it cannot see the drop
    async with connect(url) as good:
        loop = asyncio.get_running_loop()
        start = loop.time()
        received = 0
        async with asyncio.timeout(60):
            # Until the stalled reader has been dropped, and for at least 5 s.
            while received % 500 or loop.time() - start < 5 or "dropping slow client" not in market.log:
                json.loads(await good.recv())
                received += 1
        elapsed = loop.time() - start
    stalled.cancel()
    stop.set()
    await asyncio.gather(*hostile, stalled, return_exceptions=True)
    print(f"\namong hostile clients: {received / elapsed:.0f} ticks/s to the good client at 1 ms")
    # At 1 ms the good client gets ticks at (close to) the scheduled rate the whole time.
    assert received / elapsed > 0.8 * 1000
    assert "dropping slow client" in market.log
    assert market.proc.poll() is None
    assert await asyncio.to_thread(market.stop) == 0
    assert "Traceback" not in market.log


async def test_200_clients_each_receive_every_tick_in_the_same_order(run_script) -> None:
    """200 clients at 20 ticks/s for 30 s: identical sequences, none missing."""
    port = free_port()
    market = run_script("fake_data.py", "--host", LOOPBACK, "--port", str(port))
    await asyncio.to_thread(market.wait_for_log, "serving ticks on")
    url = f"ws://{LOOPBACK}:{port}"
    clients = [await connect(url) for _ in range(200)]
    await asyncio.to_thread(market.wait_for_log, "client connected", 20, 200)
    # Everyone is subscribed now: every tick stamped from here on must reach all 200.
    start = time.time() + 0.2
    end = start + 30

    async def collect(ws) -> list[tuple[float, float]]:
        ticks = []
        async with asyncio.timeout(60):
            while True:
                tick = json.loads(await ws.recv())
                if tick["time"] > end:
                    return ticks
                if tick["time"] >= start:
                    ticks.append((tick["time"], tick["price"]))

    sequences = await asyncio.gather(*(collect(ws) for ws in clients))
    for ws in clients:
        await ws.close()
    identical = all(s == sequences[0] for s in sequences)
    print(f"\n200 clients: {len(sequences[0])} ticks each in 30 s, identical: {identical}")
    assert identical
    # The clock-paced schedule delivers 20 ticks/s; allow a tick or two at the window's edges.
    assert abs(len(sequences[0]) - 30 * 20) <= 2
    times = [t for t, _ in sequences[0]]
    assert all(0 < b - a < 0.5 for a, b in itertools.pairwise(times))
    assert await asyncio.to_thread(market.stop) == 0


# --- Safe defaults --------------------------------------------------------------------


def test_server_binds_to_loopback_by_default(run_script) -> None:
    """With no --host the market listens on localhost only."""
    port = str(free_port())
    market = run_script("fake_data.py", "--port", port)
    market.wait_for_log("serving ticks on")
    listening = re.findall(r"serving ticks on ws://(\S+):" + port, market.log)
    assert listening and set(listening) <= {"127.0.0.1", "::1"}
    assert market.stop() == 0


async def test_server_closes_a_client_that_sends_an_oversized_frame(run_script) -> None:
    """Frames over MAX_INCOMING_BYTES close the sender with 1009 (message too big)."""
    port = free_port()
    market = run_script("fake_data.py", "--host", LOOPBACK, "--port", str(port))
    await asyncio.to_thread(market.wait_for_log, "serving ticks on")
    async with connect(f"ws://{LOOPBACK}:{port}") as ws, asyncio.timeout(10):
        await ws.send("x" * 5000)
        await ws.wait_closed()
    assert ws.close_code == 1009
    assert await asyncio.to_thread(market.stop) == 0


def test_sql_is_always_parameterized() -> None:
    """Every query the scripts run is a constant string; values travel as parameters."""
    calls = 0
    for script in ("save2sql.py", "matplotlib_plot.py", "bokeh_plot.py"):
        tree = ast.parse((REPO / script).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") in {
                "execute",
                "executemany",
                "read_sql_query",
            }:
                calls += 1
                sql = node.args[0]
                assert isinstance(sql, ast.Name | ast.Constant), f"{script}:{node.lineno} builds SQL"
                assert not isinstance(sql, ast.JoinedStr | ast.BinOp)
    assert calls >= 5


def test_database_path_is_used_as_given_with_no_shell(run_script, tmp_path: Path) -> None:
    """A path with spaces, quotes and shell syntax names exactly that file, and runs nothing."""
    odd = tmp_path / "my ticks; touch pwned $(touch pwned2) 'q'.db"
    recorder = run_script("save2sql.py", "--url", f"ws://{LOOPBACK}:{free_port()}", "--db", str(odd))
    recorder.wait_for_log("recording")
    assert recorder.stop(signal.SIGTERM) == 0
    assert odd.exists()
    with sqlite3.connect(f"file:{odd.as_posix().replace('?', '%3f')}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT count(*) FROM trades").fetchone() == (0,)
    assert not (REPO / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert not (REPO / "pwned2").exists()
