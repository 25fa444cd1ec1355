"""Benchmarks: every figure is a ratio against a baseline measured side by side in this run.

    python bench/run.py --quick --json out.json   # about 1.5 minutes
    python bench/run.py                           # more repetitions and longer windows

Run it from the repo root after the README's install command. It prints a table of
medians over the repetitions, with their min-max, the target and whether it is met;
absolute times and rates are printed for information only (the machine is noisy).
Every process talks over 127.0.0.1, and every run is bounded in time. Exit status 1
means a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from bokeh.document import Document  # noqa: E402
from bokeh.protocol import Protocol  # noqa: E402
from pipeline import LOOPBACK, Process, newest_rowid, start_market, stopped_counts  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

import bokeh_plot  # noqa: E402
import fake_data  # noqa: E402
import matplotlib_plot  # noqa: E402
import save2sql  # noqa: E402

PYTHON = sys.executable
CLIENTS = str(REPO / "bench" / "clients.py")
PACING_S = 30.0  # the pacing window is part of the definition of the figure
TICKS_PER_POLL = {"matplotlib": 2, "bokeh": 10}  # new rows per poll at 20 ticks/s (100 ms, 500 ms)


@dataclass
class Settings:
    """How much of everything one run does."""

    reps: int
    seconds: float
    mpl_frames: int
    naive_frames: int


QUICK = Settings(reps=3, seconds=2.0, mpl_frames=150, naive_frames=20)
FULL = Settings(reps=5, seconds=5.0, mpl_frames=400, naive_frames=60)


@dataclass
class Figure:
    """One row of the table: a ratio's median and range over the repetitions, and its target."""

    key: str
    what: str
    ratios: list[float]
    target: str  # ">= 0.8" or "<= 2.0"
    info: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def value(self) -> float:
        return statistics.median(self.ratios)

    @property
    def met(self) -> bool:
        op, bound = self.target.split()
        return self.value >= float(bound) if op == ">=" else self.value <= float(bound)


def median_time(func: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- Ingest: save2sql.py against a receive-only client and a naive writer ---------------


def recorder_command(kind: str, url: str, db: Path) -> list[str]:
    """The command line of one of the three recorders."""
    if kind == "save2sql":
        return [PYTHON, "save2sql.py", "--url", url, "--db", str(db), "--status-interval", "3600"]
    if kind == "naive":
        return [PYTHON, CLIENTS, "naive", url, str(db)]
    return [PYTHON, CLIENTS, "receive", url]


def ingest_rate(kind: str, workdir: Path, seconds: float, rep: int) -> tuple[float, int, int]:
    """Ticks/s that ``kind`` stores (or receives) from fake_data.py at interval 0."""
    market, url = start_market(workdir, f"market-{kind}-{rep}", "--interval", "0")
    try:
        db = workdir / f"{kind}-{rep}.db"
        client = Process(f"{kind}-{rep}", recorder_command(kind, url, db), workdir)
        client.wait_for_log("connected to")
        start = time.perf_counter()
        time.sleep(seconds)  # the measurement window
        client.proc.send_signal(signal.SIGTERM)
        elapsed = time.perf_counter() - start
        client.proc.wait(60)
        received, written, _ = stopped_counts(client.log)
    finally:
        market.stop(signal.SIGTERM)
    return written / elapsed, received, written


def bench_ingest(settings: Settings, workdir: Path) -> list[Figure]:
    """ingest_vs_receive_only and ingest_vs_naive, the three recorders interleaved."""
    rates: dict[str, list[float]] = {"save2sql": [], "receive": [], "naive": []}
    lossless = True
    for rep in range(settings.reps):
        for kind, kind_rates in rates.items():
            rate, received, written = ingest_rate(kind, workdir, settings.seconds, rep)
            kind_rates.append(rate)
            lossless &= kind != "save2sql" or received == written
    ours = rates["save2sql"]
    medians = {kind: f"{statistics.median(values):,.0f}/s" for kind, values in rates.items()}
    info = (
        f"save2sql {medians['save2sql']}, receive-only {medians['receive']}, naive {medians['naive']}; "
        f"stored == received: {lossless}"
    )
    return [
        Figure(
            "ingest_vs_receive_only",
            "ticks/s stored by save2sql vs a client that only receives",
            [a / b for a, b in zip(ours, rates["receive"], strict=True)] if lossless else [0.0],
            ">= 0.8",
            info,
        ),
        Figure(
            "ingest_vs_naive",
            "ticks/s stored by save2sql vs a new connection per 2 rows",
            [a / b for a, b in zip(ours, rates["naive"], strict=True)],
            ">= 25",
        ),
    ]


# --- The producer, and fan-out -------------------------------------------------------


async def serve_for(producer, clients: int, seconds: float, workdir: Path, name: str) -> tuple[float, float]:
    """Serve with ``producer`` running; a receive-only process with ``clients`` connections counts."""
    heartbeat_late: list[float] = []

    async def heartbeat() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.01
            await asyncio.sleep(0.01)
            heartbeat_late.append(loop.time() - due)

    async with serve(idle_handler, LOOPBACK, 0, compression=None) as server:
        url = f"ws://{LOOPBACK}:{server.sockets[0].getsockname()[1]}"
        receiver = Process(
            f"{producer.__name__}-{clients}-{name}",
            [PYTHON, CLIENTS, "receive", url, "--clients", str(clients)],
            workdir,
        )
        while "connected to" not in receiver.log or len(server.connections) < clients:
            await asyncio.sleep(0.02)
        tasks = [asyncio.create_task(producer(server)), asyncio.create_task(heartbeat())]
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        receiver.proc.send_signal(signal.SIGTERM)
        elapsed = time.perf_counter() - start
        for task in tasks:
            task.cancel()
        await asyncio.to_thread(receiver.proc.wait, 30)
    received, _, _ = stopped_counts(receiver.log)
    return received / elapsed, max(heartbeat_late, default=0.0)


async def idle_handler(websocket: ServerConnection) -> None:
    """Hold a connection open; the producer does the sending."""
    await websocket.wait_closed()


def fake_data_producer(server) -> asyncio.Future:
    """fake_data.py's own producer at interval 0."""
    prices = fake_data.gbm_prices(145, 0.05, 0.1, 1 / 365, np.random.default_rng(0))
    return fake_data.produce(server, prices, interval_s=0, symbol="SIM", max_backlog_bytes=2**30)


RAW_FRAME = fake_data.encode_tick(fake_data.make_tick(1_764_780_000.05, 145.21, "SIM"))


async def raw_send_producer(server) -> None:
    """The baseline: send a fixed string to every client in a loop that yields after each send."""
    while True:
        for connection in list(server.connections):
            await connection.send(RAW_FRAME)
        await asyncio.sleep(0)


def bench_producer(settings: Settings, workdir: Path) -> list[Figure]:
    """producer_vs_raw_send and fanout_100."""
    ours, raw, one, hundred, late = [], [], [], [], []
    for rep in range(settings.reps):
        for producer, clients, rates in (
            (fake_data_producer, 1, ours),
            (raw_send_producer, 1, raw),
            (fake_data_producer, 100, hundred),
        ):
            rate, lateness = asyncio.run(serve_for(producer, clients, settings.seconds, workdir, f"{rep}"))
            rates.append(rate)
            late.append(lateness)
        one.append(ours[-1])
    return [
        Figure(
            "producer_vs_raw_send",
            "ticks/s fake_data.py makes and sends at interval 0 vs sending a fixed string",
            [a / b for a, b in zip(ours, raw, strict=True)],
            ">= 0.5",
            f"fake_data {statistics.median(ours):,.0f}/s, raw {statistics.median(raw):,.0f}/s; "
            f"10 ms heartbeat at most {max(late) * 1000:.1f} ms late",
        ),
        Figure(
            "fanout_100",
            "total ticks/s delivered to 100 clients vs to one",
            [a / b for a, b in zip(hundred, one, strict=True)],
            ">= 1.0",
            f"100 clients {statistics.median(hundred):,.0f}/s in all, one {statistics.median(one):,.0f}/s",
        ),
    ]


# --- Pacing and commit latency: the default 50 ms feed for 30 s ------------------------


class PacedRun:
    """fake_data.py at its default 50 ms, save2sql.py, a counting client and a commit probe."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.db = workdir / "paced.db"
        self.market, self.url = start_market(workdir, "paced-market")
        self.recorder = Process("paced-recorder", recorder_command("save2sql", self.url, self.db), workdir)
        self.recorder.wait_for_log("connected to")
        while not newest_rowid(self.db):
            time.sleep(0.05)  # until the first row is on disk
        self.counter = Process("paced-counter", [PYTHON, CLIENTS, "receive", self.url], workdir)
        self.probe = Process("paced-probe", [PYTHON, CLIENTS, "probe", str(self.db), str(PACING_S)], workdir)
        self.counter.wait_for_log("connected to")
        self.started = time.monotonic()

    def finish(self) -> list[Figure]:
        """Wait out the 30 s window, stop everything and compute both figures."""
        time.sleep(max(0.0, PACING_S - (time.monotonic() - self.started)))  # the window itself
        self.counter.proc.send_signal(signal.SIGTERM)
        self.counter.proc.wait(30)
        self.probe.proc.wait(30)
        self.recorder.stop(signal.SIGTERM)
        self.market.stop(signal.SIGTERM)
        found = re.search(r"received (\d+) frames, .* span ([\d.]+) s", self.counter.log)
        assert found, self.counter.log
        frames, span = int(found.group(1)), float(found.group(2))
        rate = (frames - 1) / span
        latencies_ms = [float(v) * 1000 for v in self.probe.log.split()]
        p95 = float(np.percentile(latencies_ms, 95))
        flush_ms = save2sql.FLUSH_INTERVAL_S * 1000
        return [
            Figure(
                "pacing",
                f"ticks/s delivered at 50 ms over {PACING_S:.0f} s vs 20/s",
                [rate / 20.0],
                ">= 0.995",
                f"{frames} ticks in {span:.2f} s",
            ),
            Figure(
                "commit_p95_ms_over_flush",
                "p95 ms from tick creation to committed row, less the flush interval",
                [p95 - flush_ms],
                "<= 20",
                f"{len(latencies_ms)} rows: p50 {np.percentile(latencies_ms, 50):.1f} ms, p95 {p95:.1f} ms, "
                f"flush interval {flush_ms:.0f} ms",
            ),
        ]


# --- Polling cost at 1e3 and 1e7 rows ---------------------------------------------------


def make_db(path: Path, rows: int) -> None:
    """A recorder database with ``rows`` ticks, generated inside SQLite for speed."""
    with sqlite3.connect(path) as conn:
        conn.execute(save2sql.SCHEMA)
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO trades (time, price, symbol) "
            "SELECT 1.7e9 + i * 0.05, 100 + (i % 997) / 100.0, 'SIM' FROM n",
            (rows,),
        )
    conn.close()


def poll_costs(path: Path, repeat: int) -> dict[str, float]:
    """Median seconds of each chart's per-poll queries against ``path``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    last = conn.execute("SELECT max(rowid) FROM trades").fetchone()[0]
    mpl_keep = matplotlib_plot.WINDOW + matplotlib_plot.MA_PERIOD - 1
    bokeh_keep = bokeh_plot.WINDOW + bokeh_plot.MA_PERIOD - 1
    costs = {
        "matplotlib poll": median_time(
            lambda: matplotlib_plot.fetch_recent(conn, last - TICKS_PER_POLL["matplotlib"], mpl_keep), repeat
        ),
        "matplotlib first load": median_time(lambda: matplotlib_plot.fetch_recent(conn, 0, mpl_keep), repeat),
        "bokeh poll": median_time(
            lambda: bokeh_plot.fetch_recent(conn, last - TICKS_PER_POLL["bokeh"], bokeh_keep), repeat
        ),
        "bokeh first load": median_time(
            lambda: bokeh_plot.fetch_recent(conn, 0, bokeh_keep), max(repeat // 10, 5)
        ),
    }
    conn.close()
    return costs


NAIVE_LATEST = "SELECT time, price FROM trades_unindexed ORDER BY time DESC LIMIT 20"


def naive_poll_cost(path: Path) -> float:
    """Seconds of the naive 'latest 20 by time' query on a table without a key or index."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS trades_unindexed AS SELECT time, price, symbol FROM trades")
        return median_time(lambda: conn.execute(NAIVE_LATEST).fetchall(), 3)


def bench_polling(settings: Settings, workdir: Path) -> Figure:
    """poll_1e7_vs_1e3: the worst ratio over both charts' queries."""
    small, large = workdir / "rows-1e3.db", workdir / "rows-1e7.db"
    make_db(small, 1_000)
    make_db(large, 10_000_000)
    ratios, worst = [], ""
    for _ in range(settings.reps):
        costs_small, costs_large = poll_costs(small, 300), poll_costs(large, 300)
        by_query = {name: costs_large[name] / costs_small[name] for name in costs_small}
        worst = max(by_query, key=by_query.get)
        ratios.append(by_query[worst])
    naive_small, naive_large = naive_poll_cost(small), naive_poll_cost(large)
    info = (
        f"worst query: {worst}; mpl poll {costs_large['matplotlib poll'] * 1e6:.0f} us at 1e7; "
        f"naive ORDER BY time: {naive_large / naive_small:,.0f}x slower at 1e7 ({naive_large * 1000:.0f} ms)"
    )
    return Figure(
        "poll_1e7_vs_1e3", "per-poll query cost at 10,000,000 rows vs 1,000", ratios, "<= 2.0", info
    )


# --- The matplotlib frame -------------------------------------------------------------


def growing_db(path: Path, rows: int) -> Callable[[], None]:
    """A database with ``rows`` ticks, and a function that appends one poll's worth."""
    make_db(path, rows)
    conn = sqlite3.connect(path)
    state = {"next": rows + 1}

    def append() -> None:
        n = state["next"]
        conn.executemany(
            "INSERT INTO trades (time, price, symbol) VALUES (?, ?, 'SIM')",
            [(1.7e9 + i * 0.05, 100 + np.sin(i / 30)) for i in range(n, n + TICKS_PER_POLL["matplotlib"])],
        )
        conn.commit()
        state["next"] = n + TICKS_PER_POLL["matplotlib"]

    return append


def our_frames(path: Path, frames: int) -> tuple[float, bool]:
    """Median seconds of matplotlib_plot.py's animation frame, and whether its labels read right."""
    append = growing_db(path, 500)
    fig, chart = matplotlib_plot.build_chart(
        window=matplotlib_plot.WINDOW,
        ma_period=matplotlib_plot.MA_PERIOD,
        title="bench",
        figsize=matplotlib_plot.FIGSIZE_IN,
    )
    feed = matplotlib_plot.DatabaseFeed(str(path), keep=chart.keep)
    anim = matplotlib_plot.animate(fig, chart, feed, matplotlib_plot.POLL_INTERVAL_MS)
    fig.canvas.draw()  # the first draw starts the animation and caches the background
    times = []
    for _ in range(frames):
        append()
        start = time.perf_counter()
        anim._step()  # one timer tick: poll, update the lines, blit (what the GUI loop does)
        times.append(time.perf_counter() - start)
    fig.canvas.draw()
    labels = [t.get_text() for t in chart.ax.get_xticklabels() if t.get_text()]
    lo, hi = chart.ax.get_xlim()
    newest = chart.price_line.get_xdata()[-1]
    labels_ok = (
        bool(labels) and all(re.fullmatch(r"\d\d:\d\d:\d\d", t) for t in labels) and lo <= newest <= hi
    )
    anim.pause()
    plt.close(fig)
    feed.close()
    return statistics.median(times), labels_ok


def naive_frames(path: Path, frames: int) -> float:
    """Median seconds of the obvious frame: clear the axes, re-plot everything, tight_layout."""
    append = growing_db(path, 500)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    fig, ax = plt.subplots(figsize=matplotlib_plot.FIGSIZE_IN)
    keep = matplotlib_plot.WINDOW + matplotlib_plot.MA_PERIOD - 1
    times = []
    for _ in range(frames):
        append()
        start = time.perf_counter()
        rows = conn.execute("SELECT time, price FROM trades ORDER BY rowid DESC LIMIT ?", (keep,)).fetchall()[
            ::-1
        ]
        when = np.array([r[0] for r in rows]) / 86400.0
        price = np.array([r[1] for r in rows])
        ma = np.convolve(price, np.ones(15) / 15, mode="valid")
        ax.clear()
        ax.plot(when[-50:], price[-50:], label="Price")
        ax.plot(when[-len(ma) :][-50:], ma[-50:], label="MA(15)")
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
        ax.set_xlabel("Time")
        ax.set_ylabel("Price")
        ax.grid(True)
        ax.legend()
        fig.tight_layout()
        fig.canvas.draw()
        times.append(time.perf_counter() - start)
    plt.close(fig)
    conn.close()
    return statistics.median(times)


def bench_matplotlib(settings: Settings, workdir: Path) -> Figure:
    """mpl_frame_vs_naive."""
    ratios, ours, naive, labels_ok = [], [], [], True
    for rep in range(settings.reps):
        frame, ok = our_frames(workdir / f"mpl-ours-{rep}.db", settings.mpl_frames)
        labels_ok &= ok
        ours.append(frame)
        naive.append(naive_frames(workdir / f"mpl-naive-{rep}.db", settings.naive_frames))
        ratios.append(ours[-1] / naive[-1])
    info = (
        f"ours {statistics.median(ours) * 1000:.2f} ms, naive {statistics.median(naive) * 1000:.1f} ms "
        f"per frame; time-of-day labels correct: {labels_ok}"
    )
    return Figure(
        "mpl_frame_vs_naive",
        "median frame cost vs clear + re-plot + tight_layout",
        ratios if labels_ok else [float("inf")],
        "<= 0.1",
        info,
    )


# --- Bokeh bytes per update -----------------------------------------------------------


def message_bytes(events: list) -> int:
    """Bytes a browser receives for one PATCH-DOC with ``events``: JSON parts and binary buffers."""
    if not events:
        return 0
    message = Protocol().create("PATCH-DOC", events)
    size = len(message.header_json) + len(message.metadata_json) + len(message.content_json)
    for buffer in message.buffers:
        size += len(json.dumps({"id": buffer.id})) + memoryview(buffer.data).nbytes
    return size


def bytes_per_update(path: Path, history: int, resend: bool) -> float:
    """Mean bytes per 500 ms update once the page holds ``history`` points."""
    append = growing_db(path, history)
    doc = Document()
    source, poll = bokeh_plot.build_document(doc, db=str(path), window=max(history, 1) * 2)
    events: list = []
    doc.on_change(events.append)
    sizes = []
    reader = sqlite3.connect(path)
    for _ in range(20):
        for _ in range(TICKS_PER_POLL["bokeh"] // TICKS_PER_POLL["matplotlib"]):
            append()
        if resend:
            # The naive update: read the whole window again and replace all of the data.
            frame = bokeh_plot.fetch_recent(reader, 0, history)
            source.data = {name: frame[name].to_numpy() for name in ("id", "time", "price")} | {
                "ma": frame["price"].rolling(15).mean().to_numpy()
            }
        else:
            poll()
        sizes.append(message_bytes(events))
        events.clear()
    reader.close()
    for callback in doc.session_destroyed_callbacks:
        callback(None)
    return statistics.mean(sizes)


def bench_bokeh(workdir: Path) -> list[Figure]:
    """bokeh_bytes_10000_vs_50 and bokeh_bytes_vs_resend."""
    at_50 = bytes_per_update(workdir / "bokeh-50.db", 50, resend=False)
    at_10000 = bytes_per_update(workdir / "bokeh-10000.db", 10_000, resend=False)
    at_1000 = bytes_per_update(workdir / "bokeh-1000.db", 1_000, resend=False)
    resend_1000 = bytes_per_update(workdir / "bokeh-resend.db", 1_000, resend=True)
    return [
        Figure(
            "bokeh_bytes_10000_vs_50",
            "bytes per update after 10,000 points of history vs after 50",
            [at_10000 / at_50],
            "<= 1.5",
            f"{at_10000:,.0f} B vs {at_50:,.0f} B per update (10 new ticks)",
        ),
        Figure(
            "bokeh_bytes_vs_resend",
            "bytes per update vs re-sending all the data, at 1,000 points",
            [at_1000 / resend_1000],
            "<= 0.05",
            f"{at_1000:,.0f} B vs {resend_1000:,.0f} B per update",
        ),
    ]


# --- The report -----------------------------------------------------------------------


def machine() -> str:
    """A one-line description of where this ran."""
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()}"


def report(figures: list[Figure]) -> str:
    """The results as a Markdown table."""
    lines = ["| key | what | median | min–max | target | met |", "|---|---|---|---|---|---|"]
    for f in figures:
        lines.append(
            f"| `{f.key}` | {f.what} | {f.value:.3g} | {min(f.ratios):.3g}–{max(f.ratios):.3g} | "
            f"{f.target.replace('>=', '≥').replace('<=', '≤')} | {'yes' if f.met else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Run every benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter windows (~1.5 min)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streaming-plot-bench-") as tmp:
        workdir = Path(tmp)
        figures = bench_ingest(settings, workdir)
        figures += bench_producer(settings, workdir)
        # The 30 s paced run needs little CPU: the in-process benchmarks run meanwhile.
        paced = PacedRun(workdir)
        figures.append(bench_polling(settings, workdir))
        figures.append(bench_matplotlib(settings, workdir))
        figures += bench_bokeh(workdir)
        figures += paced.finish()
    order = [
        "ingest_vs_receive_only",
        "ingest_vs_naive",
        "producer_vs_raw_send",
        "pacing",
        "fanout_100",
        "poll_1e7_vs_1e3",
        "mpl_frame_vs_naive",
        "bokeh_bytes_10000_vs_50",
        "bokeh_bytes_vs_resend",
        "commit_p95_ms_over_flush",
    ]
    figures.sort(key=lambda f: order.index(f.key))
    print(f"\nstreaming-plot benchmarks ({'quick' if args.quick else 'full'}), {machine()}\n")
    print(report(figures))
    print()
    for f in figures:
        if f.info:
            print(f"- {f.key}: {f.info}")
    print(f"\n{time.monotonic() - started:.0f} s in all")
    if args.json:
        details = {
            f.key: {
                "min": min(f.ratios),
                "max": max(f.ratios),
                "target": f.target,
                "met": f.met,
                "info": f.info,
            }
            for f in figures
        }
        payload = {f.key: f.value for f in figures} | {"details": details, "machine": machine()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if all(f.met for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
