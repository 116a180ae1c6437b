"""Benchmark: the ``ohlcv`` backfill from the exchange simulator into the lake, and reads of it.

Cases (the issue's targets in brackets):

* **a** - 100 symbols x 90 days through the asset's own code (one ``dagster.materialize`` run on an
  ephemeral instance: fetch, writes, checks, compaction, views), limits off [<= 120 s];
* **b** - the same backfill as a user launches it: ``quant-assets backfill --days 90`` in a subprocess
  on a real SQLite instance (temporary ``DAGSTER_HOME``), after ``dagster asset materialize
  --select coin_universe`` registered the symbols; runs created are counted [<= 5 min];
* **c** - the daily refresh on that instance: yesterday's files deleted, then ``quant-assets backfill
  --days 1``, process start included [<= 20 s];
* **d** - the simulator's weight limit on (240 per 60 s window), 10 symbols x 90 days through the asset
  at a client budget of 240: wall / weight floor [<= 1.1, 0 bans], then ccxt's ``fetch_ohlcv`` loop
  on a fresh simulator with the same limit, for comparison: first at ccxt's defaults (what its users
  run: ``binanceusdm()``, no ``limit``), then tuned to the limit (``rateLimit`` = 60,000 / limit ms
  per weight unit, ``limit=1000``);
* **e** - reads from ``quant.duckdb`` over case a's 90 days: candles per symbol, and one day of every
  symbol; cold (first query on a fresh connection) and best of 5 after it [<= 100 ms each];
* **p** - case b on PostgreSQL instance storage: ``deploy/dagster.yaml`` (its storage, pools and
  loggers; without its queued run coordinator, so the CLI's run starts at once with no daemon) on a
  real PostgreSQL server (``pgserver``), with ``DAGSTER_EVENT_BATCH_SIZE=1000``; Dagster's share of
  the wall (the wall minus the asset's own data work, read from the run's event log: from its
  "collecting" line to its first materialization, i.e. fetch, checks, writes, compaction and views)
  [<= 10 %]; case b prints the same share on SQLite;
* **f** - two ``quant-assets backfill`` processes at once on one instance and data directory, for
  disjoint symbols (3 + 3 x 20 days), at a low weight limit (60 per minute) with a few injected 429s
  (``Retry-After`` 2 s; the simulator bans, 418, any request sent before it has passed): wall of
  both together / the weight floor of both together [<= 1.1, 0 bans].

The weight floor counts whole windows: a run that needs weight W at a limit L per window needs
``ceil(W / L)`` windows, so its last request cannot leave before the last of them opens. From a start
``s`` seconds into a window, the floor is ``(ceil(W / L) - 1) x window - s`` (W the weight the
simulator counted); a run paced exactly to its budget has a ratio of 1.0 or a little more, never
less. The budget used per window is the simulator's count of each wall-clock window (sampled every
20 ms, so a request in a window's last 20 ms may be missed) over the limit.

"Limits off" means the simulator has no weight limit and the client budget is 1,000,000 per minute
(what the simulator's ``exchangeInfo`` reports when unlimited). Both case d parts start at the start
of a wall-clock minute, so each begins with a fresh window on both sides (the budget and the
simulator's limiter are aligned to the wall clock); that can cost up to a minute of waiting each.

Symbols are the simulator's universe (``coin_universe`` with ``QT_MAX_SYMBOLS``), days the complete
UTC days ending yesterday. Seven simulator symbols are listed mid-history: their days before the
listing have no candles (the asset stores them empty, as served); they are listed as "partitions
without candles", and only candles written are counted.

Everything runs against the in-process simulator on 127.0.0.1 (it shares this process's two cores
and GIL in cases a and d), with data and ``DAGSTER_HOME`` in a temporary directory that is removed at
exit. Dagster's console log of the in-process runs goes to a file there (a few progress lines are
shown). Peak memory is the resident-set high-water mark (``VmHWM``) of this process, reset before
each case through ``/proc/self/clear_refs``; for b and c it is the CLI subprocess's own ``VmHWM``,
sampled every 50 ms (this process, which serves the simulator meanwhile, is printed beside it).

* **g** - case a through Binance's archive path (``QT_BINANCE_ARCHIVE_URL``): the same 100 x 90
  backfill in one in-process run, every day the simulator's archive holds (all but yesterday: it
  lags a day) from its verified daily zips, the rest from REST; the simulator in a child process
  (its zips are built and served off this process's GIL); days by path and the API weight spent,
  from the run's metadata [<= 60 s, weight only for the REST days].

Run: ``.venv/bin/python benchmarks/backfill.py [--only a,b,c,d,e,f] [--symbols 100] [--days 90]
[--quick]``; ``--quick`` shrinks d to 2 symbols x 10 days at 60 per minute, f to 2 + 2 symbols x 10
days at 30 per minute and, unless given, a/b/c/e to 10 symbols x 5 days.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.partitions import last_complete_day, symbol_partitions
from quant_assets.defs.ranges import ohlcv_range_tags
from quant_assets.defs.resources import build_resources
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import KLINES_PATH
from quant_assets.sources.budget import budget_dir_of, shared_budget
from quant_assets.store.lake import Lake

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UNLIMITED = 1_000_000  # client budget for "limits off": the simulator's own figure for no limit
FIVE_MINUTES_MS = 300_000
DAY_MS = 86_400_000
CASES = ("a", "b", "c", "d", "e", "f", "p", "g")
WINDOW_S = 60.0  # the simulator's and the client's weight window in cases d and f
OHLCV = dg.AssetKey("ohlcv")


# ---------------------------------------------------------------------------------------- measuring
def _rss_kib(field_name: str, pid: int | str = "self") -> int:
    """A ``Vm*`` figure of /proc/<pid>/status in KiB (0 once the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(rf"{field_name}:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float:
    """This process's resident-set high-water mark since the last reset, MiB."""
    kib = _rss_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send file descriptor 2 (Dagster's console log, warnings) to `path` inside the block."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as sink:
        os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@dataclass
class Child:
    """A finished subprocess: exit code, start (epoch s), wall seconds, peak RSS (MiB), output file."""

    returncode: int
    started_epoch: float
    wall_s: float
    peak_rss_mib: float
    output: Path


def run_child(argv: Sequence[str], *, env: dict[str, str], cwd: Path, output: Path) -> Child:
    """Run `argv` to completion with stdout+stderr to `output`, sampling its peak RSS.

    The peak is the child's own ``VmHWM``, read every 50 ms until it exits. Not ``ru_maxrss``: Linux
    records the spawning process's RSS in the child's maxrss at ``exec``, so a child of this large
    process would report at least this process's size.
    """
    peak_kib = 0
    with open(output, "wb") as sink:
        epoch, started = time.time(), time.perf_counter()
        proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            peak_kib = max(peak_kib, _rss_kib("VmHWM", proc.pid))
            time.sleep(0.05)
        wall = time.perf_counter() - started
    return Child(proc.returncode, epoch, wall, peak_kib / 1024, output)


def weight_floor_s(weight: int, limit: int, started_epoch: float, window_s: float = WINDOW_S) -> float:
    """Shortest wall time for `weight` at `limit` per wall-clock window, from `started_epoch`.

    The weight needs ``ceil(weight / limit)`` windows; the last request cannot leave before the last
    of them opens. 0 when it fits the window the run started in.
    """
    windows = -(-weight // limit)
    into_window = started_epoch - (started_epoch // window_s) * window_s
    return max(0.0, (windows - 1) * window_s - into_window)


class WindowMeter:
    """The weight a simulator counted in each wall-clock window while the block ran (sampled).

    A thread reads the simulator's count of the current window every `every_s` seconds and keeps
    the highest per window (the count only grows inside a window).
    """

    def __init__(self, sim: Simulator, *, window_s: float = WINDOW_S, every_s: float = 0.02) -> None:
        self.sim, self.window_s, self.every_s = sim, window_s, every_s
        self.used: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            index = int(time.time() // self.window_s)
            used = self.sim.rate_limiter.used()
            if int(time.time() // self.window_s) == index:  # not across a boundary
                self.used[index] = max(self.used.get(index, 0), used)
            self._stop.wait(self.every_s)

    def __enter__(self) -> WindowMeter:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def percent(self, limit: int) -> str:
        """'100% 100% 37%': each window's count over `limit`, first to last window with weight."""
        spent = [i for i, used in sorted(self.used.items()) if used]
        if not spent:
            return "(no weight counted)"
        return " ".join(f"{100 * self.used.get(i, 0) / limit:.0f}%" for i in range(spent[0], spent[-1] + 1))


def wait_for_window_start(window_s: float = WINDOW_S) -> float:
    """Sleep until just after the next wall-clock window boundary; returns the seconds slept."""
    now = time.time()
    pause = (int(now // window_s) + 1) * window_s - now + 0.05
    time.sleep(pause)
    return pause


def lake_candles(data_dir: Path) -> int:
    """Candles in the per-partition files (the truth), counted by DuckDB."""
    files = Lake(data_dir).files("ohlcv")
    if not files:
        return 0
    with duckdb.connect() as con:
        return int(
            con.execute("SELECT count(*) FROM read_parquet(?)", [[str(f) for f in files]]).fetchone()[0]
        )


def days_with_candles(data_dir: Path) -> Counter[str]:
    """How many day files with at least one candle each symbol has in the lake."""
    counts: Counter[str] = Counter()
    for path in Lake(data_dir).files("ohlcv"):
        if pq.read_metadata(path).num_rows:
            counts[path.parent.name.removeprefix("symbol=")] += 1
    return counts


def describe_missing(data_dir: Path, symbols: Sequence[str], days: int) -> str:
    """'N partitions without candles: SYMBOL (k d), ...': days absent or stored empty (before a listing)."""
    have = days_with_candles(data_dir)
    short = [(s, days - have.get(s, 0)) for s in symbols if have.get(s, 0) < days]
    if not short:
        return "every partition has candles"
    listing = ", ".join(f"{s} ({n} d)" for s, n in short)
    return f"{sum(n for _, n in short)} partitions without candles (absent or empty), {len(short)} symbols: {listing}"


def progress_lines(log: Path, *, head: int = 2, tail: int = 2) -> list[str]:
    """The first and last progress lines ('... symbol-days, ... candles ...') of a Dagster log."""
    lines = [
        line.strip()
        for line in log.read_text(errors="replace").splitlines()
        if "symbol-days" in line and "candles" in line
    ]
    if len(lines) <= head + tail + 1:
        return lines
    return [
        *lines[:head],
        f"... ({len(lines) - head - tail - 1} more) ...",
        lines[len(lines) // 2],
        *lines[-tail:],
    ]


_LOG_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) \+0000 - dagster - ")
_PHASES = (  # (label, text in Dagster's console log line, first or last occurrence)
    ("run started", "collecting ", False),
    ("candles collected", "symbol-days, ", True),
    ("materializations logged", "ASSET_MATERIALIZATION - ", True),  # echoed by ephemeral runs only
    ("checks logged", "ohlcv run done", True),
    ("run finished", " - RUN_", True),
)


def run_phases(log: Path, started_epoch: float) -> str:
    """When each phase of the last run in a Dagster console log ended, seconds after `started_epoch`.

    Dagster stamps its lines to the second, so each figure is good to about a second. The run's
    checks are logged just before its "run done" line.
    """
    stamped = []
    for line in log.read_text(errors="replace").splitlines():
        match = _LOG_TIME.match(line)
        if match:
            when = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            stamped.append((when.timestamp() - started_epoch, line))
    parts = []
    for label, text, last in _PHASES:
        hits = [t for t, line in stamped if text in line]
        if hits:
            parts.append(f"{label} +{max(0.0, hits[-1] if last else hits[0]):.0f} s")
    return ", ".join(parts) if parts else "(no Dagster log lines)"


def tree_mib(root: Path) -> float:
    """Bytes of every file under `root`, MiB."""
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def dagster_share(instance: dg.DagsterInstance, run_ids: Sequence[str], wall_s: float) -> tuple[float, float]:
    """(data work s, Dagster's share of `wall_s`) of the ``ohlcv`` runs `run_ids`.

    The asset's own data work runs from its "collecting" log line to its first materialization event
    (everything before it: fetch, per-partition checks, writes, compaction, views); what else the
    wall holds (process start, loading the code, creating the run, logging thousands of events,
    the checks' records) is Dagster's.
    """
    work = 0.0
    for run_id in run_ids:
        started = first_materialized = None
        for entry in instance.all_logs(run_id):
            if started is None and entry.user_message.startswith("collecting "):
                started = entry.timestamp
            event = entry.dagster_event
            if event is not None and event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                first_materialized = entry.timestamp
                break
        if started is not None and first_materialized is not None:
            work += first_materialized - started
    return work, (wall_s - work) / wall_s if wall_s > 0 else float("nan")


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """`values` in ``os.environ`` for the block (the instance's dagster.yaml reads them)."""
    previous = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ------------------------------------------------------------------------------------------ results
@dataclass
class Row:
    """One line of the final table."""

    case: str
    wall_s: float
    candles: int | None = None
    runs: int | None = None
    requests: int | None = None
    weight: int | None = None
    peak_rss_mib: float | None = None
    target: str = ""
    met: bool | None = None
    others_cpu_s: float | None = None  # CPU-seconds other processes used during the whole case

    @property
    def rate(self) -> str:
        if not self.candles or self.wall_s <= 0:
            return "-"
        return f"{self.candles / self.wall_s:,.0f}"


def _cell(value: object, fmt: str = "{:,}") -> str:
    return "-" if value is None else fmt.format(value)


def print_table(rows: Sequence[Row], rss_note: str) -> None:
    header = (
        "case",
        "wall",
        "candles",
        "candles/s",
        "runs",
        "requests",
        "weight",
        "peak RSS MiB",
        "target",
        "met?",
        "others' CPU s",
    )
    table = [header]
    for r in rows:
        wall = f"{r.wall_s * 1000:.1f} ms" if r.wall_s < 1 else f"{r.wall_s:,.1f} s"
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        table.append(
            (
                r.case,
                wall,
                _cell(r.candles),
                r.rate,
                _cell(r.runs),
                _cell(r.requests),
                _cell(r.weight),
                _cell(r.peak_rss_mib, "{:,.0f}"),
                r.target,
                met,
                _cell(r.others_cpu_s, "{:,.0f}"),
            )
        )
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    print()
    for i, line in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * width for width in widths))
    print(f"\npeak RSS: {rss_note}")
    print(
        "others' CPU s: CPU-seconds used by other processes on this shared machine during the case "
        "(for d: its three parts together)"
    )


# -------------------------------------------------------------------------------------------- cases
class Benchmark:
    """The five cases; each returns its table rows. Cases e and c reuse what a and b left."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.last = last_complete_day()
        self.first = self.last - dt.timedelta(days=args.days - 1)
        self._universe: list[str] | None = None
        self.a_data: Path | None = None
        self.b_home: Path | None = None
        self.b_data: Path | None = None
        self.b_universe: list[str] = []

    # -- helpers -----------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        print(text, flush=True)

    def universe(self) -> list[str]:
        """The simulator's universe of ``--symbols`` symbols for yesterday, in rank order (cached).

        Taken by materializing ``coin_universe`` in process against a throwaway simulator.
        """
        if self._universe is None:
            data = self.tmp / "universe"
            with Simulator() as sim, stderr_to(self.tmp / "universe.log"):
                resources = self.resources(sim, data, QT_MAX_SYMBOLS=str(self.args.symbols))
                result = dg.materialize(
                    [coin_universe],
                    instance=dg.DagsterInstance.ephemeral(),
                    resources=resources,
                    partition_key=self.last.isoformat(),
                )
            if not result.success:
                raise RuntimeError("coin_universe failed; see the log in the temporary directory")
            self._universe = Lake(data).read("coin_universe", date=self.last)["symbol"].tolist()
            shutil.rmtree(data)
        return self._universe

    def resources(self, sim: Simulator, data_dir: Path, **env: str) -> dict[str, Any]:
        values = {
            "QT_DATA_DIR": str(data_dir),
            "QT_BINANCE_FAPI_URL": sim.url,
            "QT_COINGECKO_API_URL": sim.coingecko_url,
            "QT_BINANCE_WEIGHT_PER_MINUTE": str(UNLIMITED),
        }
        values.update(env)
        return build_resources(values)

    def materialize_ohlcv(
        self,
        instance: dg.DagsterInstance,
        resources: dict[str, Any],
        symbols: Sequence[str],
        first: dt.date,
        last: dt.date,
    ) -> dg.ExecuteInProcessResult:
        """One run over days [first, last] x `symbols` (registered in this order first)."""
        new = [s for s in symbols if not instance.has_dynamic_partition(symbol_partitions.name, s)]
        if new:
            instance.add_dynamic_partitions(symbol_partitions.name, new)
        tags = ohlcv_range_tags(symbols, first, last)
        return dg.materialize(
            [ohlcv], instance=instance, resources=resources, tags=tags, raise_on_error=False
        )

    def cli_env(self, home: Path, data: Path, sim: Simulator, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_"))}
        env.update(
            {
                "DAGSTER_HOME": str(home),
                "QT_DATA_DIR": str(data),
                "QT_BINANCE_FAPI_URL": sim.url,
                "QT_COINGECKO_API_URL": sim.coingecko_url,
                "QT_BINANCE_WEIGHT_PER_MINUTE": str(UNLIMITED),
                "QT_MAX_SYMBOLS": str(self.args.symbols),
            }
        )
        env.update(extra)
        return env

    def new_home(self, name: str) -> Path:
        home = self.tmp / name
        home.mkdir()
        shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
        return home

    # -- a -----------------------------------------------------------------------------------------
    def case_a(self) -> list[Row]:
        symbols = self.universe()
        days = self.args.days
        self.say(
            f"\n[a] {len(symbols)} symbols x {days} days ({self.first} .. {self.last}), one run, limits off"
        )
        data = self.a_data = self.tmp / "a_data"
        log = self.tmp / "a.log"
        with Simulator() as sim:
            instance = dg.DagsterInstance.ephemeral()
            resources = self.resources(sim, data)
            reset_peak_rss()
            with stderr_to(log):
                epoch, started = time.time(), time.perf_counter()
                result = self.materialize_ohlcv(instance, resources, symbols, self.first, self.last)
                wall = time.perf_counter() - started
            peak = peak_rss_mib()
            requests, weight = sum(sim.stats.requests.values()), sim.stats.weight_used
            statuses = dict(sim.stats.statuses)
        materialized = len(instance.get_materialized_partitions(OHLCV))
        candles = lake_candles(data)
        for line in progress_lines(log):
            self.say(f"    {line}")
        self.say(f"    phases: {run_phases(log, epoch)}")
        self.say(
            f"    run success: {result.success}; partitions materialized {materialized:,} of {len(symbols) * days:,}"
        )
        self.say(f"    {describe_missing(data, symbols, days)}")
        self.say(f"    simulator: {requests:,} requests, statuses {statuses}, weight {weight:,}")
        self.say(
            f"    wall {wall:.1f} s, {candles:,} candles, {candles / wall:,.0f} candles/s, peak RSS {peak:,.0f} MiB"
        )
        return [
            Row("a  asset, in process", wall, candles, 1, requests, weight, peak, "<= 120 s", wall <= 120)
        ]

    # -- g -----------------------------------------------------------------------------------------
    def case_g(self) -> list[Row]:
        symbols = self.universe()
        days = self.args.days
        self.say(
            f"\n[g] {len(symbols)} symbols x {days} days ({self.first} .. {self.last}), one run, "
            "archive first (simulator in a child process)"
        )
        data = self.tmp / "g_data"
        log = self.tmp / "g.log"
        port = _free_port()
        code = f"from quant_assets.simulator.server import run_server; run_server(port={port})"
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        try:
            assert child.stdout is not None
            if "listening" not in child.stdout.readline():
                raise RuntimeError("the simulator child did not start")
            url = f"http://127.0.0.1:{port}"
            values = {
                "QT_DATA_DIR": str(data),
                "QT_BINANCE_FAPI_URL": url,
                "QT_COINGECKO_API_URL": url + "/api/v3",
                "QT_BINANCE_WEIGHT_PER_MINUTE": str(UNLIMITED),
                "QT_BINANCE_ARCHIVE_URL": url,
            }
            instance = dg.DagsterInstance.ephemeral()
            reset_peak_rss()
            with stderr_to(log):
                started = time.perf_counter()
                result = self.materialize_ohlcv(
                    instance, build_resources(values), symbols, self.first, self.last
                )
                wall = time.perf_counter() - started
            peak = peak_rss_mib()
        finally:
            child.terminate()
            child.wait(timeout=30)
        records = instance.fetch_materializations(OHLCV, limit=1).records
        meta = {k: v.value for k, v in records[0].asset_materialization.metadata.items()} if records else {}
        candles = lake_candles(data)
        archived, rest, weight = (
            meta.get("run_days_archive"),
            meta.get("run_days_rest"),
            meta.get("run_weight"),
        )
        self.say(f"    run success: {result.success}; days from the archive {archived}, from REST {rest}")
        self.say(f"    API weight {weight} (REST days only); {describe_missing(data, symbols, days)}")
        self.say(
            f"    wall {wall:.1f} s, {candles:,} candles, {candles / wall:,.0f} candles/s, peak RSS {peak:,.0f} MiB"
        )
        weight_int = int(weight) if isinstance(weight, int) else None
        return [
            Row(
                "g  asset, archive path",
                wall,
                candles,
                1,
                None,
                weight_int,
                peak,
                "<= 60 s",
                wall <= 60 and bool(result.success),
            )
        ]

    # -- e -----------------------------------------------------------------------------------------
    def case_e(self) -> list[Row]:
        if self.a_data is None:
            raise RuntimeError("case e reads what case a wrote: run it with a")
        catalog = self.a_data / "quant.duckdb"
        day = dt.datetime.combine(self.last, dt.time())
        self.say(f"\n[e] reads from {catalog.name} (read-only) over case a's {self.args.days} days")
        one_day = "SELECT * FROM ohlcv WHERE open_time >= ? AND open_time < ?"
        day_params = [day, day + dt.timedelta(days=1)]
        queries: list[tuple[str, Callable[[duckdb.DuckDBPyConnection], int]]] = [
            (
                "e1 candles per symbol",
                lambda con: len(con.execute("SELECT symbol, count(*) FROM ohlcv GROUP BY symbol").fetchall()),
            ),
            (
                "e2 one day, all symbols",
                lambda con: con.sql(one_day, params=day_params).to_arrow_table().num_rows,
            ),
            ("e2' same, .fetchall()", lambda con: len(con.execute(one_day, day_params).fetchall())),
        ]
        rows = []
        for name, fetch in queries:
            reset_peak_rss()
            started = time.perf_counter()
            con = duckdb.connect(str(catalog), read_only=True)
            connect_ms = (time.perf_counter() - started) * 1000
            try:
                started = time.perf_counter()
                n = fetch(con)
                cold_ms = (time.perf_counter() - started) * 1000
                best = float("inf")
                for _ in range(5):
                    started = time.perf_counter()
                    fetch(con)
                    best = min(best, time.perf_counter() - started)
            finally:
                con.close()
            peak = peak_rss_mib()
            self.say(
                f"    {name}: {n:,} rows; connect {connect_ms:.1f} ms, cold {cold_ms:.1f} ms, "
                f"best of 5 {best * 1000:.1f} ms"
            )
            rows.append(
                Row(
                    name,
                    best,
                    peak_rss_mib=peak,
                    target=f"<= 100 ms (best; cold {cold_ms:.0f} ms {'ok' if cold_ms <= 100 else 'over'})",
                    met=best <= 0.1,
                )
            )
        return rows

    # -- b -----------------------------------------------------------------------------------------
    def register_universe_cli(
        self, home: Path, data: Path, sim: Simulator, tag: str, *, env: dict[str, str] | None = None
    ) -> Child:
        """``dagster asset materialize --select coin_universe --partition <yesterday>`` on `home`."""
        child = run_child(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "quant_assets.definitions",
                "--select",
                "coin_universe",
                "--partition",
                self.last.isoformat(),
            ],
            env=env or self.cli_env(home, data, sim),
            cwd=self.tmp,
            output=self.tmp / f"{tag}_universe.log",
        )
        if child.returncode != 0:
            tail = "\n".join(child.output.read_text(errors="replace").splitlines()[-40:])
            raise RuntimeError(f"coin_universe materialization failed (exit {child.returncode}):\n{tail}")
        return child

    def instance_at(self, home: Path) -> dg.DagsterInstance:
        previous = os.environ.get("DAGSTER_HOME")
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            return dg.DagsterInstance.get()
        finally:
            if previous is None:
                os.environ.pop("DAGSTER_HOME", None)
            else:
                os.environ["DAGSTER_HOME"] = previous

    def case_b(self, sim: Simulator) -> list[Row]:
        days = self.args.days
        home, data = self.b_home, self.b_data = self.new_home("b_home"), self.tmp / "b_data"
        self.say(f"\n[b] quant-assets backfill --days {days} on a SQLite instance, limits off")
        setup = self.register_universe_cli(home, data, sim, "b")
        with self.instance_at(home) as instance:
            self.b_universe = list(instance.get_dynamic_partitions(symbol_partitions.name))
            runs_before = instance.get_runs_count()
        self.say(
            f"    setup: dagster asset materialize --select coin_universe: {setup.wall_s:.1f} s, "
            f"{len(self.b_universe)} symbol partitions registered"
        )
        sim.stats.reset()
        reset_peak_rss()
        child = run_child(
            [str(BIN / "quant-assets"), "backfill", "--days", str(days)],
            env=self.cli_env(home, data, sim),
            cwd=self.tmp,
            output=self.tmp / "b_backfill.log",
        )
        own_peak = peak_rss_mib()
        requests, weight = sum(sim.stats.requests.values()), sim.stats.weight_used
        with self.instance_at(home) as instance:
            runs = instance.get_runs_count() - runs_before
            statuses = Counter(r.status.value for r in instance.get_runs(limit=runs))
            materialized = len(instance.get_materialized_partitions(OHLCV))
        candles = lake_candles(data)
        output = child.output.read_text(errors="replace").splitlines()
        self.say("    CLI progress lines (Dagster's log of the run):")
        for line in progress_lines(child.output):
            self.say(f"      {line}")
        summary = [line for line in output if line.startswith("backfill:")]
        self.say(
            f"    CLI printed: {summary[-1] if summary else '(no summary line)'}; exit code {child.returncode}"
        )
        self.say(f"    phases (from the process start): {run_phases(child.output, child.started_epoch)}")
        self.say(f"    runs created: {runs} ({dict(statuses)}); partitions materialized {materialized:,}")
        with self.instance_at(home) as instance:
            run_ids = [r.run_id for r in instance.get_runs(limit=runs)]
            work, share = dagster_share(instance, run_ids, child.wall_s)
        self.say(
            f"    the asset's data work {work:.1f} s; Dagster's share of the wall {share:.1%} "
            f"({child.wall_s - work:.1f} s)"
        )
        self.say(f"    instance storage after the backfill: {tree_mib(home):,.0f} MiB in DAGSTER_HOME")
        self.say(f"    {describe_missing(data, self.b_universe, days)}")
        self.say(
            f"    wall {child.wall_s:.1f} s (process start included), {candles:,} candles; peak RSS: CLI "
            f"{child.peak_rss_mib:,.0f} MiB, this process (simulator) {own_peak:,.0f} MiB"
        )
        return [
            Row(
                "b  CLI backfill",
                child.wall_s,
                candles,
                runs,
                requests,
                weight,
                child.peak_rss_mib,
                "<= 300 s",
                child.wall_s <= 300,
            )
        ]

    # -- c -----------------------------------------------------------------------------------------
    def case_c(self, sim: Simulator) -> list[Row]:
        if self.b_home is None or self.b_data is None:
            home, data = self.new_home("c_home"), self.tmp / "c_data"
            setup = self.register_universe_cli(home, data, sim, "c")
            self.say(f"\n[c] fresh instance; coin_universe registered in {setup.wall_s:.1f} s")
        else:
            home, data = self.b_home, self.b_data
            self.say(f"\n[c] daily refresh on case b's instance ({self.args.days} days of history)")
        lake = Lake(data)
        removed = [p for p in lake.files("ohlcv") if p.name == f"date={self.last}.parquet"]
        for path in removed:
            path.unlink()
        lake.path("ohlcv_daily", exchange="binance", date=self.last).unlink(missing_ok=True)
        self.say(f"    deleted yesterday's {len(removed)} symbol files and its day file ({self.last})")
        with self.instance_at(home) as instance:
            symbols = list(instance.get_dynamic_partitions(symbol_partitions.name))
            runs_before = instance.get_runs_count()
        sim.stats.reset()
        reset_peak_rss()
        child = run_child(
            [str(BIN / "quant-assets"), "backfill", "--days", "1"],
            env=self.cli_env(home, data, sim),
            cwd=self.tmp,
            output=self.tmp / "c_backfill.log",
        )
        own_peak = peak_rss_mib()
        requests, weight = sum(sim.stats.requests.values()), sim.stats.weight_used
        with self.instance_at(home) as instance:
            runs = instance.get_runs_count() - runs_before
        restored = [p for p in lake.files("ohlcv") if p.name == f"date={self.last}.parquet"]
        with duckdb.connect() as con:
            candles = int(
                con.execute("SELECT count(*) FROM read_parquet(?)", [[str(p) for p in restored]]).fetchone()[
                    0
                ]
                if restored
                else 0
            )
        summary = [
            line
            for line in child.output.read_text(errors="replace").splitlines()
            if line.startswith("backfill:")
        ]
        self.say(
            f"    CLI printed: {summary[-1] if summary else '(no summary line)'}; exit code {child.returncode}"
        )
        self.say(f"    phases (from the process start): {run_phases(child.output, child.started_epoch)}")
        self.say(
            f"    {len(restored)} of {len(symbols)} symbol files of {self.last} written again, {candles:,} candles, "
            f"{runs} run(s); day file present: {lake.path('ohlcv_daily', exchange='binance', date=self.last).exists()}"
        )
        self.say(
            f"    wall {child.wall_s:.1f} s end to end; peak RSS: CLI {child.peak_rss_mib:,.0f} MiB, "
            f"this process {own_peak:,.0f} MiB"
        )
        return [
            Row(
                "c  CLI daily refresh",
                child.wall_s,
                candles,
                runs,
                requests,
                weight,
                child.peak_rss_mib,
                "<= 20 s",
                child.wall_s <= 20,
            )
        ]

    # -- p -----------------------------------------------------------------------------------------
    def case_p(self, sim: Simulator) -> list[Row]:
        import pgserver  # a dev dependency, needed only here
        import yaml

        days = self.args.days
        home, data = self.tmp / "p_home", self.tmp / "p_data"
        home.mkdir()
        config = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
        config.pop("run_coordinator")  # no daemon here: the CLI's run starts at once
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
        self.say(
            f"\n[p] quant-assets backfill --days {days} on PostgreSQL (deploy/dagster.yaml storage), "
            "DAGSTER_EVENT_BATCH_SIZE=1000, limits off"
        )
        server = pgserver.get_server(self.tmp / "p_pg", cleanup_mode="stop")
        try:
            pg_env = {
                "DAGSTER_PG_HOST": "",  # a unix socket: libpq's PGHOST names its directory
                "PGHOST": server.get_uri().split("host=")[-1].split("&")[0],
                "DAGSTER_PG_PORT": "5432",
                "DAGSTER_PG_USERNAME": "postgres",
                "DAGSTER_PG_PASSWORD": "",
                "DAGSTER_PG_DB": "postgres",
            }
            env = self.cli_env(home, data, sim, **pg_env, DAGSTER_EVENT_BATCH_SIZE="1000")
            with environ(pg_env):
                setup = self.register_universe_cli(home, data, sim, "p", env=env)
                with self.instance_at(home) as instance:
                    universe = list(instance.get_dynamic_partitions(symbol_partitions.name))
                    runs_before = instance.get_runs_count()
                self.say(
                    f"    setup: dagster asset materialize --select coin_universe: {setup.wall_s:.1f} s, "
                    f"{len(universe)} symbol partitions registered"
                )
                sim.stats.reset()
                child = run_child(
                    [str(BIN / "quant-assets"), "backfill", "--days", str(days)],
                    env=env,
                    cwd=self.tmp,
                    output=self.tmp / "p_backfill.log",
                )
                requests, weight = sum(sim.stats.requests.values()), sim.stats.weight_used
                with self.instance_at(home) as instance:
                    runs = instance.get_runs_count() - runs_before
                    created = instance.get_runs(limit=runs)
                    statuses = Counter(r.status.value for r in created)
                    materialized = len(instance.get_materialized_partitions(OHLCV))
                    work, share = dagster_share(instance, [r.run_id for r in created], child.wall_s)
        finally:
            server.cleanup()
        candles = lake_candles(data)
        self.say(f"    exit code {child.returncode}; phases: {run_phases(child.output, child.started_epoch)}")
        self.say(f"    runs created: {runs} ({dict(statuses)}); partitions materialized {materialized:,}")
        self.say(
            f"    wall {child.wall_s:.1f} s (process start included), {candles:,} candles; the asset's data "
            f"work {work:.1f} s; Dagster's share {share:.1%} ({child.wall_s - work:.1f} s); peak RSS CLI "
            f"{child.peak_rss_mib:,.0f} MiB"
        )
        return [
            Row(
                "p  CLI backfill, PostgreSQL",
                child.wall_s,
                candles,
                runs,
                requests,
                weight,
                child.peak_rss_mib,
                f"Dagster {share:.1%} <= 10 %",
                share <= 0.10 and child.returncode == 0,
            )
        ]

    # -- d -----------------------------------------------------------------------------------------
    def case_d(self) -> list[Row]:
        n_symbols, days, limit = self.args.d_symbols, self.args.d_days, self.args.d_limit
        symbols = self.universe()[:n_symbols]
        first = self.last - dt.timedelta(days=days - 1)
        self.say(
            f"\n[d] weight limit {limit} per 60 s: {len(symbols)} symbols x {days} days ({first} .. {self.last})"
        )
        ours = self._d_ours(symbols, first, limit)
        defaults = self._d_ccxt(symbols, first, limit, tuned=False)
        tuned = self._d_ccxt(symbols, first, limit, tuned=True)
        return [ours, defaults, tuned]

    def _d_ours(self, symbols: Sequence[str], first: dt.date, limit: int) -> Row:
        data, log = self.tmp / "d_data", self.tmp / "d.log"
        with Simulator(weight_limit=limit, window_seconds=WINDOW_S) as sim:
            instance = dg.DagsterInstance.ephemeral()
            resources = self.resources(sim, data, QT_BINANCE_WEIGHT_PER_MINUTE=str(limit))
            paused = wait_for_window_start()
            reset_peak_rss()
            with stderr_to(log), WindowMeter(sim) as meter:
                epoch, started = time.time(), time.perf_counter()
                result = self.materialize_ohlcv(instance, resources, symbols, first, self.last)
                wall = time.perf_counter() - started
            peak = peak_rss_mib()
            stats = sim.stats
            requests, weight = sum(stats.requests.values()), stats.weight_used
            limited, banned = stats.rate_limited, stats.banned_requests
            budget = shared_budget("binance", sim.url, limit=limit, state_dir=budget_dir_of(data)).stats
        candles = lake_candles(data)
        floor = weight_floor_s(weight, limit, epoch)
        ratio = wall / floor if floor else float("nan")
        self.say(
            f"    ours (asset, client budget {limit}/min), started {paused:.1f} s later at a minute boundary:"
        )
        self.say(
            f"      wall {wall:.1f} s = {wall / 60:.2f} min; weight {weight:,} in {requests:,} requests -> "
            f"{-(-weight // limit)} windows, floor {floor:.1f} s; ratio {ratio:.3f}"
        )
        self.say(f"      budget used per window: {meter.percent(limit)}")
        self.say(
            f"      429s {limited}, 418s (bans) {banned}; client waited {budget.waited_seconds:.1f} s in its "
            f"budget; {candles:,} candles; run success {result.success}"
        )
        self.say(f"      phases: {run_phases(log, epoch)}")
        return Row(
            "d  ours, limit on",
            wall,
            candles,
            1,
            requests,
            weight,
            peak,
            f"ratio {ratio:.3f} <= 1.1, bans {banned}",
            ratio <= 1.1 and banned == 0,
        )

    def _d_ccxt(self, symbols: Sequence[str], first: dt.date, limit: int, *, tuned: bool) -> Row:
        import ccxt  # a dev dependency, needed only here

        start_ms = (first - dt.date(1970, 1, 1)).days * DAY_MS
        end_ms = (self.last - dt.date(1970, 1, 1)).days * DAY_MS + DAY_MS
        errors: Counter[str] = Counter()
        slept = 0.0
        candles = 0
        # Defaults: what a ccxt user writes. Tuned: its pacing set to this limit, 1000 candles a call.
        config: dict[str, Any] = {"rateLimit": 60_000 / limit} if tuned else {}
        page: dict[str, Any] = {"limit": 1000} if tuned else {}
        with Simulator(weight_limit=limit, window_seconds=WINDOW_S) as sim:
            exchange = ccxt.binanceusdm(config)
            for name, url in list(exchange.urls["api"].items()):
                if name.startswith("fapi"):  # load_markets and fetch_ohlcv use fapiPublic only
                    exchange.urls["api"][name] = url.replace("https://fapi.binance.com", sim.url)
            paused = wait_for_window_start()
            reset_peak_rss()
            with WindowMeter(sim) as meter:
                epoch, started = time.time(), time.perf_counter()
                exchange.load_markets()
                for symbol in symbols:
                    unified = exchange.markets_by_id[symbol][0]["symbol"]
                    since, seen = start_ms, set()
                    while since < end_ms:
                        try:
                            rows = exchange.fetch_ohlcv(unified, "5m", since=since, **page)
                        except ccxt.DDoSProtection as exc:  # 429 RateLimitExceeded is a subclass; 418 is this
                            errors[type(exc).__name__] += 1
                            headers = exchange.last_response_headers or {}
                            pause = float(headers.get("Retry-After") or 60)
                            slept += pause
                            time.sleep(pause)  # as a user would: wait what the venue says, then retry
                            continue
                        except ccxt.NetworkError as exc:
                            errors[type(exc).__name__] += 1
                            slept += 1
                            time.sleep(1)
                            continue
                        if not rows:
                            break
                        seen.update(r[0] for r in rows if start_ms <= r[0] < end_ms)
                        since = rows[-1][0] + FIVE_MINUTES_MS
                    candles += len(seen)
                wall = time.perf_counter() - started
            peak = peak_rss_mib()
            stats = sim.stats
            requests, weight = sum(stats.requests.values()), stats.weight_used
            limited, banned = stats.rate_limited, stats.banned_requests
            sizes = Counter(q.get("limit", "(none)") for q in stats.klines_queries())
        floor = weight_floor_s(weight, limit, epoch)
        ratio = wall / floor if floor else float("nan")
        how = (
            f"rateLimit {60_000 / limit:.0f} ms per weight unit, fetch_ohlcv limit=1000"
            if tuned
            else f"defaults (rateLimit {exchange.rateLimit:.0f} ms per weight unit, fetch_ohlcv without limit)"
        )
        self.say(
            f"    ccxt {ccxt.__version__} binanceusdm, {how}, started {paused:.1f} s later at a minute boundary:"
        )
        self.say(
            f"      wall {wall:.1f} s = {wall / 60:.2f} min; weight {weight:,} in {requests:,} requests -> "
            f"{-(-weight // limit)} windows, floor {floor:.1f} s; ratio {ratio:.3f}"
            + (f"; kline page sizes sent {dict(sizes)}" if sizes else "")
        )
        self.say(f"      budget used per window: {meter.percent(limit)}")
        self.say(
            f"      429s {limited}, 418s (bans) {banned}; ccxt errors caught {dict(errors) or 0}, slept "
            f"{slept:.0f} s on them; {candles:,} candles"
        )
        return Row(
            f"d  ccxt {'tuned to the limit' if tuned else 'at its defaults'}",
            wall,
            candles,
            None,
            requests,
            weight,
            peak,
            f"ratio {ratio:.3f} (reference), 429s {limited}, bans {banned}",
            None,
        )

    # -- f -----------------------------------------------------------------------------------------
    def case_f(self) -> list[Row]:
        per, days, limit, faults = (
            self.args.f_symbols,
            self.args.f_days,
            self.args.f_limit,
            self.args.f_faults,
        )
        first = self.last - dt.timedelta(days=days - 1)
        home, data = self.new_home("f_home"), self.tmp / "f_data"
        self.say(
            f"\n[f] two `quant-assets backfill --days {days}` at once, {per} + {per} symbols, one instance "
            f"and data directory, weight limit {limit} per 60 s, {faults} injected 429s (Retry-After 2 s)"
        )
        with Simulator(weight_limit=limit, window_seconds=WINDOW_S) as sim:
            env = self.cli_env(
                home, data, sim, QT_MAX_SYMBOLS=str(2 * per), QT_BINANCE_WEIGHT_PER_MINUTE=str(limit)
            )
            setup = self.register_universe_cli(home, data, sim, "f", env=env)
            with self.instance_at(home) as instance:
                universe = list(instance.get_dynamic_partitions(symbol_partitions.name))[: 2 * per]
            groups = [universe[:per], universe[per:]]
            self.say(f"    setup: coin_universe registered in {setup.wall_s:.1f} s; groups {groups}")
            paused = wait_for_window_start()
            sim.stats.reset()
            stop = threading.Event()

            def arm_429s() -> None:
                # One injected 429 at a time, spread over the run, each after the last was served.
                for n in range(faults):
                    while sim.stats.requests[KLINES_PATH] < 4 + 8 * n or sim.stats.rate_limited < n:
                        if stop.wait(0.005):
                            return
                    sim.faults.fail_next(KLINES_PATH, 429, retry_after=2)

            armer = threading.Thread(target=arm_429s, daemon=True)
            with WindowMeter(sim) as meter:
                epoch, started = time.time(), time.perf_counter()
                armer.start()
                procs = []
                for i, group in enumerate(groups):
                    argv = [
                        str(BIN / "quant-assets"),
                        "backfill",
                        "--days",
                        str(days),
                        "--symbols",
                        ",".join(group),
                    ]
                    sink = open(self.tmp / f"f_backfill_{i}.log", "wb")  # noqa: SIM115 - closed below
                    procs.append(
                        (subprocess.Popen(argv, env=env, cwd=self.tmp, stdout=sink, stderr=sink), sink)
                    )
                walls = []
                for proc, sink in procs:
                    proc.wait()
                    sink.close()
                    walls.append(time.perf_counter() - started)
                wall = time.perf_counter() - started
                stop.set()
                armer.join()
            stats = sim.stats
            requests, weight = sum(stats.requests.values()), stats.weight_used
            limited, banned = stats.rate_limited, stats.banned_requests
        injected = min(faults, limited)
        candles = lake_candles(data)
        floor = weight_floor_s(weight, limit, epoch)
        ratio = wall / floor if floor else float("nan")
        codes = [proc.returncode for proc, _ in procs]
        self.say(f"    started {paused:.1f} s later at a minute boundary; exit codes {codes}")
        self.say(
            f"    wall {wall:.1f} s (each: {', '.join(f'{w:.1f} s' for w in walls)}, process starts included); "
            f"weight {weight:,} in {requests:,} requests -> {-(-weight // limit)} windows, floor {floor:.1f} s; "
            f"ratio {ratio:.3f}"
        )
        self.say(f"    budget used per window: {meter.percent(limit)}")
        self.say(
            f"    429s {limited} ({injected} injected, {limited - injected} from the limit), 418s (bans) {banned}; "
            f"{candles:,} candles ({first} .. {self.last})"
        )
        return [
            Row(
                "f  two CLI backfills at once",
                wall,
                candles,
                2,
                requests,
                weight,
                None,
                f"ratio {ratio:.3f} <= 1.1, 429s {limited} ({injected} injected), bans {banned}",
                ratio <= 1.1 and banned == 0 and codes == [0, 0],
            )
        ]


@dataclass(frozen=True)
class CpuSample:
    """Machine-wide busy CPU seconds (all cores, /proc/stat) and this process's own (+ children)."""

    busy_s: float
    own_s: float

    @classmethod
    def now(cls) -> CpuSample:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = ticks[3] + ticks[4]  # idle + iowait
        own = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            busy_s=(sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"),
            own_s=sum(u.ru_utime + u.ru_stime for u in own),
        )


def with_load(case: Callable[[], list[Row]]) -> list[Row]:
    """Run one case and note on its rows how much CPU other processes took meanwhile.

    The machine is shared with other work: "others" is the machine's busy CPU time during the case
    minus this process's and its finished children's, in CPU-seconds (2 cores give 2 per second).
    """
    load_before, before, started = os.getloadavg()[0], CpuSample.now(), time.perf_counter()
    rows = case()
    load_after, after, wall = os.getloadavg()[0], CpuSample.now(), time.perf_counter() - started
    own = after.own_s - before.own_s
    others = max(0.0, after.busy_s - before.busy_s - own)
    print(
        f"    CPU over {wall:.0f} s: this process and its children {own:.0f} s, other processes {others:.0f} s "
        f"({os.cpu_count()} cores); load average (1 min) {load_before:.1f} before, {load_after:.1f} after",
        flush=True,
    )
    for row in rows:
        row.others_cpu_s = others
    return rows


def _free_port() -> int:
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", default=",".join(CASES), help="cases to run, e.g. a,e (default: all)")
    parser.add_argument("--symbols", type=int, default=None, help="symbols for a/b/c/e (default 100)")
    parser.add_argument("--days", type=int, default=None, help="days for a/b/e (default 90)")
    parser.add_argument("--quick", action="store_true", help="small sizes for a quick check")
    parser.add_argument("--d-symbols", type=int, default=None, help="symbols for d (default 10)")
    parser.add_argument("--d-days", type=int, default=None, help="days for d (default 90)")
    parser.add_argument("--d-limit", type=int, default=None, help="weight per minute for d (default 240)")
    parser.add_argument("--f-symbols", type=int, default=None, help="symbols per process for f (default 3)")
    parser.add_argument("--f-days", type=int, default=None, help="days for f (default 20)")
    parser.add_argument("--f-limit", type=int, default=None, help="weight per minute for f (default 60)")
    parser.add_argument("--f-faults", type=int, default=3, help="429s injected in f (default 3)")
    args = parser.parse_args(argv)
    small = args.quick
    args.symbols = args.symbols or (10 if small else 100)
    args.days = args.days or (5 if small else 90)
    args.d_symbols = args.d_symbols or (2 if small else 10)
    args.d_days = args.d_days or (10 if small else 90)
    args.d_limit = args.d_limit or (60 if small else 240)
    args.f_symbols = args.f_symbols or (2 if small else 3)
    args.f_days = args.f_days or (10 if small else 20)
    args.f_limit = args.f_limit or (30 if small else 60)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(CASES)
    if unknown:
        parser.error(f"unknown cases {sorted(unknown)}; choose from {','.join(CASES)}")
    if "e" in args.only and "a" not in args.only:
        args.only.append("a")  # e reads what a wrote
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="quant_assets_bench_") as name:
        tmp = Path(name)
        # Nothing of Dagster's may land in the repo or the user's DAGSTER_HOME.
        os.environ["DAGSTER_HOME"] = str(tmp / "dagster_home")
        (tmp / "dagster_home").mkdir()
        shutil.copy(REPO / "deploy" / "dagster.local.yaml", tmp / "dagster_home" / "dagster.yaml")
        bench = Benchmark(args, tmp)
        print(
            f"quant_assets backfill benchmark: cases {','.join(c for c in CASES if c in args.only)}; "
            f"{args.symbols} symbols x {args.days} days for a/b/c/e, {args.d_symbols} x {args.d_days} "
            f"at {args.d_limit}/min for d; cores {os.cpu_count()}; days end {bench.last} (UTC)",
            flush=True,
        )
        started = time.perf_counter()
        symbols = bench.universe()
        print(
            f"universe: {len(symbols)} symbols ({time.perf_counter() - started:.1f} s): {' '.join(symbols[:12])} ..."
        )
        rows: dict[str, list[Row]] = {}
        if "a" in args.only:
            rows["a"] = with_load(bench.case_a)
        if "e" in args.only:
            rows["e"] = with_load(bench.case_e)
        if "b" in args.only or "c" in args.only or "p" in args.only:
            with Simulator() as sim:
                if "b" in args.only:
                    rows["b"] = with_load(lambda: bench.case_b(sim))
                if "c" in args.only:
                    rows["c"] = with_load(lambda: bench.case_c(sim))
                if "p" in args.only:
                    rows["p"] = with_load(lambda: bench.case_p(sim))
        if "g" in args.only:
            rows["g"] = with_load(bench.case_g)
        if "d" in args.only:
            rows["d"] = with_load(bench.case_d)
        if "f" in args.only:
            rows["f"] = with_load(bench.case_f)
        ordered = [row for case in CASES for row in rows.get(case, [])]
        print_table(
            ordered,
            "VmHWM of this process reset before each case (a, d, e: the simulator runs in it too); "
            "b, c: the CLI subprocess's own VmHWM (sampled every 50 ms)",
        )
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
        met = [row.met for row in ordered if row.met is not None]
        return 0 if all(met) else 1


if __name__ == "__main__":
    sys.exit(main())
