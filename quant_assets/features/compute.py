"""``compute_features``: candles of any number of symbols in, one row of every feature per candle out.

How it runs: the frame is split into symbols (each symbol's bars in open_time order, whatever the
input order); worker threads take one symbol at a time, check its candles and compute every
per-symbol feature on its contiguous arrays (NumPy and TA-Lib release the GIL, and one symbol's
arrays stay in cache), while the calling thread lays out the cross-section; then the workers
compute the cross-sectional features, one feature each. Results are written straight into one
feature-major float64 block that becomes the output frame without another copy.

Why threads and not processes: the output (1.7 GB for 100 symbols x 90 days) would have to live
in shared memory, whose 4 kB pages cost this VM ~0.9 s to fault in, against ~0.08 s for the
private huge pages NumPy gets. What limits two threads (1.4x on 2 cores, measured): the GIL
changing hands at each NumPy call (~1,500 per symbol), and the two cores sharing memory bandwidth.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from quant_assets.features.candles import (
    FIVE_MINUTES_MS,
    REFERENCE_SYMBOL,
    Candles,
    CrossSection,
    Reference,
    epoch_ms,
)
from quant_assets.features.registry import FEATURES, Feature

PRICE_COLUMNS = ("open", "high", "low", "close")
AMOUNT_COLUMNS = ("volume", "quote_volume", "trades", "taker_buy_volume", "taker_buy_quote_volume")
REQUIRED_COLUMNS = ("symbol", "open_time", *PRICE_COLUMNS, *AMOUNT_COLUMNS)
# Optional inputs: the coin's CoinGecko market data known at the bar (feature_days joins coin_market
# of the day before); absent, the market features are NaN.
MARKET_COLUMNS = ("market_cap_usd", "market_volume_usd")
_MAX_WORKERS = 4  # a few symbols at a time; more threads than cores only contend for the GIL
# glibc mallopt parameters (malloc.h) and the values set by _keep_freed_memory.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 * 2**20, 256 * 2**20
_MIN_ROWS_FOR_THREADS = 50_000  # below this, starting threads costs more than it saves
T = TypeVar("T")


@dataclass(frozen=True)
class _Panel:
    """The input split into symbols; arrays are in (symbol, open_time) order.

    Symbols, times and duplicates are checked when it is built; prices and amounts are checked per
    symbol by :meth:`valid` (in the worker threads), and :func:`_check_columns` names the bad row.
    """

    symbols: list[str]
    starts: np.ndarray  # int64, first sorted row of each symbol, plus n at the end
    order: np.ndarray | None  # sorted row -> input row; None when the input is already sorted
    open_time_ms: np.ndarray  # int64, input order
    symbol_code: np.ndarray  # int64 index into `symbols`, input order
    sorted_columns: dict[str, np.ndarray]  # float64, sorted order (open_time_ms as int64)

    @property
    def n_rows(self) -> int:
        return int(self.open_time_ms.shape[0])

    def rows(self, k: int) -> slice | np.ndarray:
        """Input rows of symbol `k`, oldest first."""
        a, b = int(self.starts[k]), int(self.starts[k + 1])
        return slice(a, b) if self.order is None else self.order[a:b]

    def candles(self, k: int, reference: Reference | None) -> Candles:
        a, b = int(self.starts[k]), int(self.starts[k + 1])
        cols = {name: values[a:b] for name, values in self.sorted_columns.items()}
        return Candles(symbol=self.symbols[k], reference=reference, **cols)

    def valid(self, c: Candles) -> bool:
        """Whether one symbol's prices are finite and > 0 and its amounts finite and >= 0.

        One min and one max per column, on arrays already in cache: NaN propagates into both, so
        a column passes only if every value is finite and in range.
        """
        for name in (*PRICE_COLUMNS, *AMOUNT_COLUMNS):
            values = getattr(c, name)
            if values.shape[0] == 0:
                continue
            low, high = values.min(), values.max()
            if not ((low > 0 if name in PRICE_COLUMNS else low >= 0) and high < np.inf):
                return False
        return True


def _check_columns(frame: pd.DataFrame) -> None:
    """Raise for the first bad value, column by column in ``ohlcv`` order, naming its row.

    Raises:
        ValueError: a price is not finite and > 0, or an amount is not finite and >= 0.
    """
    for name in (*PRICE_COLUMNS, *AMOUNT_COLUMNS):
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise ValueError(f"{name} is not finite ({values[bad]}) at row {frame.index[bad]!r}")
        if name in PRICE_COLUMNS and not (values > 0).all():
            bad = int(np.flatnonzero(values <= 0)[0])
            raise ValueError(f"{name} must be > 0, got {values[bad]} at row {frame.index[bad]!r}")
        if name in AMOUNT_COLUMNS and (values < 0).any():
            bad = int(np.flatnonzero(values < 0)[0])
            raise ValueError(f"{name} must be >= 0, got {values[bad]} at row {frame.index[bad]!r}")


def _factorize(symbol: pd.Series) -> tuple[np.ndarray, list[str]]:
    """``pd.factorize(symbol, sort=False)``: int64 codes in order of first appearance (-1 where
    missing) and the distinct symbols.

    A column of Arrow strings grouped by symbol (what the store and ``pd.concat`` of per-symbol
    frames give) is factorized from its runs: run-end encoding compares neighbours, which costs a
    third of hashing 2.5 M strings.
    """
    n = len(symbol)
    if n and isinstance(symbol.dtype, pd.StringDtype) and symbol.dtype.storage == "pyarrow":
        runs = pc.run_end_encode(pa.chunked_array(symbol.array.__arrow_array__())).chunks
        if sum(len(run.values) for run in runs) * 16 <= n:
            lengths = np.concatenate([np.diff(run.run_ends.to_numpy(), prepend=0) for run in runs])
            run_codes, uniques = pd.factorize(
                pd.Series(pa.chunked_array([run.values for run in runs]).to_pandas()), sort=False
            )
            if lengths.sum() == n:
                return np.repeat(run_codes.astype(np.int64), lengths), [str(s) for s in uniques]
    codes, uniques = pd.factorize(symbol, sort=False)
    return codes.astype(np.int64, copy=False), [str(s) for s in uniques]


def _panel(frame: pd.DataFrame) -> _Panel:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"candles lack the ohlcv columns {missing}")
    # Codes in order of first appearance: a frame grouped by symbol (as the store returns it) is then
    # already in (symbol, open_time) order and is used without a copy.
    symbol_code, symbols = _factorize(frame["symbol"])
    if (symbol_code < 0).any():
        raise ValueError("symbol has missing values")
    times = epoch_ms(frame["open_time"])
    n = times.shape[0]
    step_code, step_time = np.diff(symbol_code), np.diff(times)
    already_sorted = bool(((step_code == 0) & (step_time > 0) | (step_code > 0)).all())
    order = None
    if already_sorted:
        # Times rise strictly within each symbol: no duplicates, and symbols change where codes do.
        changes = step_code
    else:
        first = int(times.min())
        key = symbol_code * (int(times.max()) - first + 1) + (times - first)  # unique unless duplicated
        order = np.argsort(key)
        sorted_codes, sorted_times = symbol_code[order], times[order]
        changes = np.diff(sorted_codes)
        same = (changes == 0) & (np.diff(sorted_times) == 0)
        if same.any():
            row = int(order[np.flatnonzero(same)[0] + 1])
            raise ValueError(
                f"duplicate candle: {frame['symbol'].iloc[row]} at {frame['open_time'].iloc[row]} appears twice"
            )
    starts = np.concatenate([[0], np.flatnonzero(changes) + 1, [n]]).astype(np.int64)
    columns: dict[str, np.ndarray] = {"open_time_ms": times if order is None else times[order]}
    for name in (*PRICE_COLUMNS, *AMOUNT_COLUMNS, *MARKET_COLUMNS):
        if name not in frame.columns:
            continue  # a market column: optional
        values = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        columns[name] = values if order is None else values[order]
    return _Panel(
        symbols=symbols,
        starts=starts,
        order=order,
        open_time_ms=times,
        symbol_code=symbol_code,
        sorted_columns=columns,
    )


def _time_codes(times: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes of open times: direct 5-minute slots when the span allows, else sorted distinct values."""
    if times.shape[0] == 0:
        return np.zeros(0, dtype=np.int64), 0
    first, last = int(times.min()), int(times.max())
    slots = (last - first) // FIVE_MINUTES_MS + 1
    if slots <= 4 * times.shape[0] + 1024:
        offsets = times - first
        codes = offsets // FIVE_MINUTES_MS
        if np.array_equal(codes * FIVE_MINUTES_MS, offsets):  # all on the grid (int64 `%` is slow)
            return codes, int(slots)
    distinct, codes = np.unique(times, return_inverse=True)
    return codes.astype(np.int64), int(distinct.shape[0])


def _rectangular(panel: _Panel) -> bool:
    """Whether the input rows are grouped by symbol, in time order, every symbol at the same times."""
    n_symbols = len(panel.symbols)
    if panel.order is not None or panel.n_rows % n_symbols:
        return False
    n_times = panel.n_rows // n_symbols
    if not np.array_equal(panel.starts, np.arange(n_symbols + 1) * n_times):
        return False
    times = panel.open_time_ms.reshape(n_symbols, n_times)
    return bool((times == times[0]).all())


def _output(frame: pd.DataFrame, panel: _Panel, block: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    features = pd.DataFrame(block.T, index=frame.index, columns=list(names), copy=False)
    open_time = pd.Series(panel.open_time_ms.view("datetime64[ms]"), index=frame.index, copy=False)
    features.insert(0, "open_time", open_time)
    features.insert(0, "symbol", frame["symbol"].astype("str"))
    return features


@functools.cache
def _keep_freed_memory() -> None:
    """Let glibc reuse freed NumPy temporaries instead of handing them back to the kernel.

    A computation allocates and frees tens of thousands of 0.2-20 MB arrays. By default glibc maps
    each block above 128 kB afresh and unmaps it on free (or trims the heap), so every temporary
    page-faults again: measured here, a 288-bar window sum over 25,920 bars took 500-650 us
    instead of 45 us. Raising the mmap and trim thresholds keeps up to 256 MB of freed memory per
    arena for reuse. Process-wide, once; a no-op where libc has no ``mallopt`` (macOS, musl).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)


class _Pool:
    """Calls run on `threads` worker threads, or at once in the calling thread when `threads` is 1."""

    def __init__(self, threads: int) -> None:
        self._executor = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="features") if threads > 1 else None
        )

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def start(self, work: Callable[[T], None], items: Iterable[T]) -> list[Future[None]]:
        """Queue ``work(item)`` for every item, in order (inline: run them now)."""
        if self._executor is None:
            for item in items:
                work(item)
            return []
        return [self._executor.submit(work, item) for item in items]

    @staticmethod
    def wait(futures: Sequence[Future[None]]) -> None:
        """Wait for every call; re-raise the first failure (in queue order)."""
        for future in futures:
            future.result()


def _workers(workers: int | None) -> int:
    if workers is None:
        return max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return workers


def compute_features(candles: pd.DataFrame, *, workers: int | None = None) -> pd.DataFrame:
    """Every feature for every candle, with no look-ahead: row t uses candles at or before t only.

    Args:
        candles: the ``ohlcv`` view's columns (``symbol, open_time, open, high, low, close, volume,
            quote_volume, trades, taker_buy_volume, taker_buy_quote_volume``; others are ignored) for
            one or many symbols, rows in any order. ``open_time`` naive UTC or tz-aware. A symbol's
            bars are its candles in time order; gaps are not filled.
        workers: threads that compute symbols side by side, then the cross-sectional features
            (NumPy and TA-Lib release the GIL); default ``os.cpu_count()``, at most 4; 1 computes
            everything in the calling thread. The result is the same to the bit for any number:
            every value is computed by one thread from the same inputs, and threads write disjoint
            cells. Inputs under 50,000 rows always use the calling thread.

    Returns:
        One row per input row, with the input's index in the input's order: ``symbol``,
        ``open_time`` (``datetime64[ms]``, naive UTC), then one float64 column per feature of
        :data:`~quant_assets.features.registry.FEATURES`, in registry order. NaN where
        a feature is undefined (fewer bars than its lookback, no BTCUSDT in the input...).

    Raises:
        KeyError: a required column is missing.
        ValueError: a price is not finite and positive, an amount is negative or not finite, a
            symbol or open_time is missing, a (symbol, open_time) appears twice, or `workers` < 1.
        TypeError: ``open_time`` is not a datetime column.
    """
    threads = _workers(workers)
    _keep_freed_memory()
    features = FEATURES
    panel = _panel(candles)
    block = np.empty((len(features), panel.n_rows))
    if panel.n_rows == 0:
        return _output(candles, panel, block, [f.name for f in features])
    own = [(i, f) for i, f in enumerate(features) if f.scope == "symbol"]
    across = [(i, f) for i, f in enumerate(features) if f.scope == "cross_section"]

    reference = None
    if REFERENCE_SYMBOL in panel.symbols:
        ref = panel.candles(panel.symbols.index(REFERENCE_SYMBOL), None)
        if panel.valid(ref):  # else BTCUSDT's own check below fails the call
            reference = Reference(ref.open_time_ms, ref.close)
    invalid: list[int] = []  # symbols with a bad price or amount (list.append is atomic)

    def compute_symbol(k: int) -> None:
        c = panel.candles(k, reference)
        if not panel.valid(c):
            invalid.append(k)
            return
        rows = panel.rows(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, f in own:
                block[i, rows] = f.compute(c)

    def compute_across(item: tuple[int, Feature]) -> None:
        i, f = item
        with np.errstate(divide="ignore", invalid="ignore"):
            block[i] = f.compute(xs)

    with _Pool(threads if panel.n_rows >= _MIN_ROWS_FOR_THREADS else 1) as pool:
        symbols_done = pool.start(compute_symbol, range(len(panel.symbols)))
        if across:
            # The calling thread lays out the grid while the workers compute symbols.
            n_symbols = len(panel.symbols)
            if _rectangular(panel):
                cell, n_times = None, panel.n_rows // n_symbols
            else:
                time_code, n_times = _time_codes(panel.open_time_ms)
                cell = time_code * n_symbols + panel.symbol_code
            xs = CrossSection(
                cell=cell,
                n_times=n_times,
                n_symbols=n_symbols,
                quote_volume=candles["quote_volume"].to_numpy(dtype=np.float64, na_value=np.nan),
                features={f.name: block[i] for i, f in own},
                market_cap_usd=candles["market_cap_usd"].to_numpy(dtype=np.float64, na_value=np.nan)
                if "market_cap_usd" in candles.columns
                else None,
            )
        pool.wait(symbols_done)
        if invalid:
            _check_columns(candles)
            raise ValueError(f"candles of {[panel.symbols[k] for k in invalid]} hold a bad price or amount")
        pool.wait(pool.start(compute_across, across))
    return _output(candles, panel, block, [f.name for f in features])
