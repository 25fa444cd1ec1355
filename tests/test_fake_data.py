"""fake_data.py: the price process, the wire format, fan-out, pacing and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import signal
import socket

import numpy as np
import pytest
from pipeline import LOOPBACK, free_port
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

import fake_data


def gbm_path(n: int, seed: int = 7) -> np.ndarray:
    """The first ``n`` prices of the default process for ``seed``."""
    rng = np.random.default_rng(seed)
    prices = fake_data.gbm_prices(fake_data.S0, fake_data.MU, fake_data.SIGMA, fake_data.DT_YEARS, rng)
    return np.fromiter(itertools.islice(prices, n), float, n)


def test_gbm_log_returns_match_mu_sigma_and_dt() -> None:
    """Log returns have mean (mu - sigma^2/2) dt and standard deviation sigma sqrt(dt)."""
    n = 200_000
    returns = np.diff(np.log(gbm_path(n + 1)))
    expected_mean = (fake_data.MU - fake_data.SIGMA**2 / 2) * fake_data.DT_YEARS
    expected_std = fake_data.SIGMA * math.sqrt(fake_data.DT_YEARS)
    # The sample mean's standard error is std / sqrt(n) (1.2e-5 here, a tenth of the drift);
    # 4 standard errors is a bound that a correct process fails once in 16,000 seeds.
    assert abs(returns.mean() - expected_mean) < 4 * expected_std / math.sqrt(n)
    # The sample std's relative standard error is 1 / sqrt(2n) = 0.16%: allow 1%.
    assert returns.std(ddof=1) == pytest.approx(expected_std, rel=0.01)


def test_gbm_starts_at_s0_and_stays_positive() -> None:
    """The path starts at S0 and, being exponential, never reaches zero."""
    path = gbm_path(50_000)
    assert path[0] == fake_data.S0
    assert (path > 0).all()


def test_gbm_same_seed_same_path() -> None:
    """A fixed seed repeats the path; another seed does not."""
    assert np.array_equal(gbm_path(3000, seed=1), gbm_path(3000, seed=1))
    assert not np.array_equal(gbm_path(3000, seed=1), gbm_path(3000, seed=2))


def test_tick_wire_format_has_time_price_symbol() -> None:
    """A tick is a compact JSON object with epoch time, a price in cents and the symbol."""
    frame = fake_data.encode_tick(fake_data.make_tick(1_764_780_000.25, 145.23456, "SIM"))
    assert json.loads(frame) == {"time": 1_764_780_000.25, "price": 145.23, "symbol": "SIM"}
    assert " " not in frame


def test_parse_args_flags_override_constants() -> None:
    """Flags override the constants at the top of the script."""
    args = fake_data.parse_args(["--host", "127.0.0.1", "--port", "0", "--interval", "0.01", "--seed", "3"])
    assert (args.host, args.port, args.interval, args.seed) == ("127.0.0.1", 0, 0.01, 3)
    defaults = fake_data.parse_args([])
    assert (defaults.host, defaults.port, defaults.interval) == ("localhost", 8766, 0.05)


@pytest.fixture
async def market():
    """fake_data's handler and producer on an ephemeral loopback port; yields its URL and server."""

    async def start(interval_s: float = 0.01, max_backlog_bytes: int = fake_data.MAX_BACKLOG_BYTES):
        server = await serve(fake_data.handle_client, LOOPBACK, 0, compression=None)
        prices = fake_data.gbm_prices(145, 0.05, 0.1, 1 / 365, np.random.default_rng(0))
        task = asyncio.create_task(
            fake_data.produce(
                server, prices, interval_s=interval_s, symbol="SIM", max_backlog_bytes=max_backlog_bytes
            )
        )
        started.append((server, task))
        return f"ws://{LOOPBACK}:{server.sockets[0].getsockname()[1]}", server

    started: list = []
    yield start
    for server, task in started:
        task.cancel()
        server.close()
        await server.wait_closed()


async def receive(url: str, count: int) -> list[dict]:
    """Connect and return the next ``count`` ticks."""
    async with connect(url) as ws:
        return [json.loads(await ws.recv()) for _ in range(count)]


async def test_two_clients_receive_identical_ticks(market) -> None:
    """Two clients connected at once receive the same tick sequence."""
    url, _ = await market(0.005)
    async with connect(url) as first, connect(url) as second, asyncio.timeout(10):
        a = [json.loads(await first.recv()) for _ in range(40)]
        b = [json.loads(await second.recv()) for _ in range(40)]
    # The second handshake may finish a tick or two after the first one; from then on
    # both receive the very same ticks.
    start = a.index(b[0])
    assert start <= 5
    assert a[start:] == b[: 40 - start]
    assert all(set(t) == {"time", "price", "symbol"} and t["price"] > 0 for t in a)


async def test_late_client_joins_at_current_price(market) -> None:
    """A client that connects later continues the shared path instead of restarting at S0."""
    url, _ = await market(0.005)
    async with connect(url) as early, asyncio.timeout(10):
        seen = [json.loads(await early.recv()) for _ in range(30)]
        async with connect(url) as late:
            first_late = json.loads(await late.recv())
            while seen[-1]["time"] < first_late["time"]:
                seen.append(json.loads(await early.recv()))
    assert first_late in seen[30:]
    assert first_late["time"] > seen[29]["time"]


async def test_tick_rate_holds_over_seconds(market) -> None:
    """At 50 ms the feed delivers 20 ticks/s over 3 s, without drifting."""
    url, _ = await market(0.05)
    async with connect(url) as ws, asyncio.timeout(15):
        await ws.recv()  # start the clock on a tick boundary
        loop = asyncio.get_running_loop()
        start = loop.time()
        ticks = [json.loads(await ws.recv()) for _ in range(60)]
        elapsed = loop.time() - start
    # 60 ticks are due in 3.0 s. A loaded 2-core machine may deliver a tick late, but
    # the clock-based schedule catches up, so the total stays within 10%.
    assert elapsed == pytest.approx(3.0, rel=0.1)
    stamped = ticks[-1]["time"] - ticks[0]["time"]
    assert stamped == pytest.approx(59 * 0.05, rel=0.1)


async def test_slow_client_is_dropped_and_others_keep_ticking(market) -> None:
    """A client that never reads is disconnected once its backlog is full; others go on."""
    url, server = await market(0.0005, max_backlog_bytes=16 * 1024)
    # A tiny receive buffer on the stalled client makes the server's buffer fill quickly.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((LOOPBACK, int(url.rsplit(":", 1)[1])))
    async with connect(url, sock=sock) as stalled:
        stalled.transport.pause_reading()
        async with connect(url) as healthy, asyncio.timeout(30):
            while len(server.connections) > 1:
                await healthy.recv()
            before = json.loads(await healthy.recv())
            after = [json.loads(await healthy.recv()) for _ in range(20)]
    assert after[-1]["time"] > before["time"]


async def test_interval_zero_waits_for_a_stalled_client_instead_of_dropping_it(market) -> None:
    """At interval 0 the feed goes at the slowest reader's pace: it waits rather than drops."""
    url, server = await market(0, max_backlog_bytes=1024)
    fast, stalled = await connect(url), await connect(url)
    try:
        stalled.transport.pause_reading()
        received = 0
        # At full speed this loop would take 100,000 ticks a second; a feed that waits for
        # the stalled reader stops once that reader's buffers are full (a few thousand ticks).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while True:
                    await fast.recv()
                    received += 1
        assert received < 50_000
        stalled.transport.resume_reading()
        async with asyncio.timeout(10):
            for _ in range(received + 100):
                await stalled.recv()
            await fast.recv()
        assert len(server.connections) == 2
    finally:
        # Both stop reading now, which at interval 0 would hold the feed (and a polite
        # closing handshake) until the close timeout: leave abruptly instead.
        fast.transport.abort()
        stalled.transport.abort()


async def test_client_frames_are_ignored(market) -> None:
    """Whatever a client sends, including garbage, does not disturb its feed."""
    url, _ = await market(0.005)
    async with connect(url) as ws, asyncio.timeout(10):
        for junk in ("hello", "{not json", b"\x00\xff"):
            await ws.send(junk)
        ticks = [json.loads(await ws.recv()) for _ in range(10)]
    assert all(t["price"] > 0 for t in ticks)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_signal_closes_clients_and_exits_zero(run_script, sig: int) -> None:
    """Ctrl-C or SIGTERM gives clients a normal close, exit status 0 and no traceback."""
    port = free_port()
    server = run_script("fake_data.py", "--host", LOOPBACK, "--port", str(port), "--interval", "0.01")
    await asyncio.to_thread(server.wait_for_log, "serving ticks on")
    async with connect(f"ws://{LOOPBACK}:{port}") as ws, asyncio.timeout(15):
        await ws.recv()
        server.proc.send_signal(sig)
        await ws.wait_closed()
    assert ws.close_code == 1001  # going away
    assert await asyncio.to_thread(server.proc.wait, 15) == 0
    assert "Traceback" not in server.log
    assert "stopped" in server.log


def test_port_in_use_is_a_one_line_error(run_script) -> None:
    """A busy port gives one clear error line and exit status 1."""
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = run_script("fake_data.py", "--host", LOOPBACK, "--port", str(port))
        assert server.proc.wait(15) == 1
    assert "cannot serve on" in server.log
    assert "Traceback" not in server.log


def test_help_lists_the_flags(run_script) -> None:
    """--help documents every flag."""
    proc = run_script("fake_data.py", "--help")
    assert proc.proc.wait(15) == 0
    for flag in ("--host", "--port", "--interval", "--seed"):
        assert flag in proc.log
