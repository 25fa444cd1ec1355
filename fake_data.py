"""Simulated market: a WebSocket server that streams a stock price.

The price follows Geometric Brownian Motion. Every connected client receives the
same ticks, one JSON text frame each:

    {"time": 1764780000.05, "price": 145.21, "symbol": "SIM"}

Run it first, in its own terminal:

    python fake_data.py                 # ws://localhost:8766
    python fake_data.py --help          # flags that override the constants below

Ctrl-C or SIGTERM stops it: clients get a normal close and it exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypedDict

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve

logger = logging.getLogger(__name__)

# --- Configuration: edit these, or override them with the flags in --help ---
HOST = "localhost"  # interface to listen on; "0.0.0.0" exposes the feed to the network
PORT = 8766  # TCP port; 0 picks a free one
SYMBOL = "SIM"  # symbol name sent with every tick
S0 = 145.0  # starting price, currency units
MU = 0.05  # annual drift of the price process, 1/year
SIGMA = 0.1  # annual volatility of the price process, 1/sqrt(year)
DT_YEARS = 1 / 365  # model time that one tick advances, years (one day)
TICK_INTERVAL_S = 0.050  # wall-clock seconds between ticks; 0 = as fast as clients read
SEED = None  # random seed (int) for a repeatable price path; None = random
MAX_INCOMING_BYTES = 1024  # largest frame a client may send, bytes; clients need not send
MAX_BACKLOG_BYTES = 256 * 1024  # unsent bytes a client may fall behind by before it is dropped
CLIENT_SNDBUF_BYTES = 64 * 1024  # kernel send buffer per client, bytes; a stalled client shows sooner
CATCH_UP_LIMIT_S = 1.0  # if the clock jumps further behind than this, seconds, restart the schedule

DRAW_BLOCK = 1024  # random draws per numpy call: one call per 1024 ticks instead of one per tick
FLAT_OUT_YIELD_S = 0.001  # at interval 0, seconds between yields to the event loop
FLAT_OUT_BACKLOG_BYTES = 64 * 1024  # at interval 0, unsent bytes per client that make the feed wait
FLAT_OUT_WAIT_S = 0.0005  # at interval 0, seconds to wait for slow readers before checking again


class Tick(TypedDict):
    """One tick on the wire: epoch seconds, price rounded to cents, symbol."""

    time: float
    price: float
    symbol: str


def gbm_prices(
    s0: float, mu: float, sigma: float, dt_years: float, rng: np.random.Generator
) -> Iterator[float]:
    """Yield an endless Geometric Brownian Motion path starting at ``s0``.

    Each step multiplies the price by exp((mu - sigma**2 / 2) * dt + sigma * sqrt(dt) * Z),
    the exact solution of dS = mu S dt + sigma S dW, so log returns are normal with
    mean (mu - sigma**2 / 2) * dt and standard deviation sigma * sqrt(dt).
    """
    drift = (mu - sigma**2 / 2) * dt_years
    vol = sigma * math.sqrt(dt_years)
    price = s0
    yield price
    while True:
        # Draw in blocks: one numpy call per DRAW_BLOCK ticks instead of one per tick.
        steps = np.exp(drift + vol * rng.standard_normal(DRAW_BLOCK))
        for step in steps.tolist():
            price *= step
            yield price


def make_tick(now_s: float, price: float, symbol: str) -> Tick:
    """Build the wire form of one tick; the price is rounded to cents for display only."""
    return {"time": now_s, "price": round(price, 2), "symbol": symbol}


def encode_tick(tick: Tick) -> str:
    """Serialize a tick to one compact JSON text frame."""
    return json.dumps(tick, separators=(",", ":"))


def drop_slow_clients(connections: Iterable[ServerConnection], max_backlog_bytes: int) -> None:
    """Disconnect every client whose unsent data exceeds ``max_backlog_bytes``.

    ``broadcast`` never waits for a client, so a client that stops reading would
    otherwise grow the server's memory without bound.
    """
    for connection in list(connections):
        backlog = connection.transport.get_write_buffer_size()
        if backlog > max_backlog_bytes:
            logger.warning("dropping slow client %s: %d bytes unsent", connection.remote_address, backlog)
            connection.transport.abort()


async def produce(
    server: Server,
    prices: Iterator[float],
    *,
    interval_s: float,
    symbol: str,
    max_backlog_bytes: int,
    catch_up_limit_s: float = CATCH_UP_LIMIT_S,
) -> None:
    """Send one tick to every connected client each ``interval_s`` seconds, forever.

    Ticks are scheduled against the loop's monotonic clock (tick n is due at
    start + n * interval), so the rate does not drift when sending takes time.
    With ``interval_s == 0`` ticks go out as fast as the slowest client reads them.
    """

    def next_message() -> str:
        return encode_tick(make_tick(time.time(), next(prices), symbol))

    if interval_s == 0:
        await produce_flat_out(server, next_message)
        return
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while True:
        broadcast(server.connections, next_message())
        drop_slow_clients(server.connections, max_backlog_bytes)
        sent += 1
        delay = start + sent * interval_s - loop.time()
        if delay < -catch_up_limit_s:
            logger.warning("ticks ran %.1f s late (was the machine suspended?); resuming", -delay)
            start, sent, delay = loop.time(), 0, 0.0
        # Always yield, even when late, so pings and new connections are served.
        await asyncio.sleep(max(delay, 0.0))


async def produce_flat_out(server: Server, next_message: Callable[[], str]) -> None:
    """Send ticks as fast as the slowest client reads them (``--interval 0``, for benchmarks).

    Instead of dropping clients that fall behind, wait for them: the feed's pace is
    the slowest reader's. Yielding to the loop once a millisecond, rather than after
    every tick, keeps pings and new connections served at a fraction of the cost.
    """
    loop = asyncio.get_running_loop()
    next_yield = loop.time() + FLAT_OUT_YIELD_S
    while True:
        broadcast(server.connections, next_message())
        while any(c.transport.get_write_buffer_size() > FLAT_OUT_BACKLOG_BYTES for c in server.connections):
            await asyncio.sleep(FLAT_OUT_WAIT_S)
        if loop.time() >= next_yield:
            await asyncio.sleep(0)
            next_yield = loop.time() + FLAT_OUT_YIELD_S


async def handle_client(websocket: ServerConnection) -> None:
    """Keep a client subscribed until it leaves; whatever it sends is ignored."""
    logger.info("client connected: %s", websocket.remote_address)
    # Loopback send buffers grow to megabytes, which would hide a stalled client from
    # drop_slow_clients for an hour; a modest one bounds its memory and the delay.
    sock = websocket.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLIENT_SNDBUF_BYTES)
    try:
        async for _ in websocket:
            logger.debug("ignored a frame from %s", websocket.remote_address)
    except Exception as exc:  # noqa: BLE001 - one client's failure must not reach the others
        logger.debug("client %s failed: %s", websocket.remote_address, exc)
    finally:
        logger.info("client disconnected: %s (code %s)", websocket.remote_address, websocket.close_code)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Read the command line; every flag defaults to the constant of the same name."""
    parser = argparse.ArgumentParser(description="Stream a simulated stock price over WebSocket.")
    parser.add_argument("--host", default=HOST, help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=PORT, help="TCP port (default: %(default)s)")
    parser.add_argument(
        "--interval",
        type=non_negative_float,
        default=TICK_INTERVAL_S,
        help="seconds between ticks; 0 = as fast as clients read (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=SEED, help="random seed (default: random)")
    parser.add_argument("--symbol", default=SYMBOL, help="symbol name (default: %(default)s)")
    parser.add_argument("--s0", type=positive_float, default=S0, help="start price (default: %(default)s)")
    parser.add_argument("--mu", type=float, default=MU, help="annual drift (default: %(default)s)")
    parser.add_argument(
        "--sigma", type=non_negative_float, default=SIGMA, help="annual volatility (default: %(default)s)"
    )
    parser.add_argument(
        "--dt", type=positive_float, default=DT_YEARS, help="model years per tick (default: 1/365)"
    )
    return parser.parse_args(argv)


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than zero."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number, zero or more."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, got {text!r}")
    return value


async def run_server(
    host: str,
    port: int,
    prices: Iterator[float],
    *,
    interval_s: float,
    symbol: str,
    max_backlog_bytes: int = MAX_BACKLOG_BYTES,
) -> None:
    """Serve ticks on ``host:port`` until SIGINT or SIGTERM closes the server."""
    async with serve(
        handle_client,
        host,
        port,
        compression=None,  # ticks are ~60 bytes: deflate costs CPU and saves nothing
        max_size=MAX_INCOMING_BYTES,
    ) as server:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.close)
        for sock in server.sockets:
            bound_host, bound_port = sock.getsockname()[:2]
            logger.info("serving ticks on ws://%s:%s every %g s", bound_host, bound_port, interval_s)
        producer = asyncio.create_task(
            produce(
                server,
                prices,
                interval_s=interval_s,
                symbol=symbol,
                max_backlog_bytes=max_backlog_bytes,
            )
        )
        try:
            await server.serve_forever()  # returns once a signal handler closes the server
        finally:
            producer.cancel()


async def main(argv: list[str] | None = None) -> int:
    """Serve ticks until Ctrl-C or SIGTERM; return the exit status."""
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s %(message)s", level=logging.INFO)
    prices = gbm_prices(args.s0, args.mu, args.sigma, args.dt, np.random.default_rng(args.seed))
    try:
        await run_server(args.host, args.port, prices, interval_s=args.interval, symbol=args.symbol)
    except OSError as exc:
        logger.error("cannot serve on %s:%s: %s", args.host, args.port, exc.strerror or exc)
        return 1
    logger.info("stopped")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(asyncio.run(main()))
    except KeyboardInterrupt:  # a second Ctrl-C after shutdown had begun: still no traceback
        raise SystemExit(130) from None
