"""``compute_features``: candles of any number of symbols in, one row of every feature per candle out.

How it runs: the frame is split into symbols (each symbol's bars in open_time order, whatever the
input order), every per-symbol feature is computed on each symbol's contiguous arrays in a small
thread pool (NumPy and TA-Lib release the GIL, and one symbol's arrays stay in cache), then the
cross-sectional features run once over all rows. Results are written straight into one
feature-major float64 block that becomes the output frame without another copy.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

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
_MAX_THREADS = 4
# glibc mallopt parameters (malloc.h) and the values set by _keep_freed_memory.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_BYTES, _TRIM_THRESHOLD_BYTES = 32 * 2**20, 256 * 2**20
_MIN_ROWS_FOR_THREADS = 50_000  # below this, starting threads costs more than it saves
T = TypeVar("T")


@dataclass(frozen=True)
class _Panel:
    """The input, validated and split into symbols; arrays are in (symbol, open_time) order."""

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


def _float_column(frame: pd.DataFrame, name: str) -> np.ndarray:
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
    return values


def _panel(frame: pd.DataFrame) -> _Panel:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise KeyError(f"candles lack the ohlcv columns {missing}")
    # Codes in order of first appearance: a frame grouped by symbol (as the store returns it) is then
    # already in (symbol, open_time) order and is used without a copy.
    codes, uniques = pd.factorize(frame["symbol"], sort=False)
    if (codes < 0).any():
        raise ValueError("symbol has missing values")
    symbol_code = codes.astype(np.int64, copy=False)
    times = epoch_ms(frame["open_time"])
    n = times.shape[0]
    step_code, step_time = np.diff(symbol_code), np.diff(times)
    already_sorted = bool(((step_code == 0) & (step_time > 0) | (step_code > 0)).all())
    order = None
    if not already_sorted:
        first = int(times.min())
        key = symbol_code * (int(times.max()) - first + 1) + (times - first)  # unique unless duplicated
        order = np.argsort(key)
    sorted_codes = symbol_code if order is None else symbol_code[order]
    sorted_times = times if order is None else times[order]
    same = (np.diff(sorted_codes) == 0) & (np.diff(sorted_times) == 0)
    if same.any():
        row = int(np.flatnonzero(same)[0] + 1)
        row = row if order is None else int(order[row])
        raise ValueError(
            f"duplicate candle: {frame['symbol'].iloc[row]} at {frame['open_time'].iloc[row]} appears twice"
        )
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_codes)) + 1, [n]]).astype(np.int64)
    columns: dict[str, np.ndarray] = {"open_time_ms": sorted_times}
    for name in (*PRICE_COLUMNS, *AMOUNT_COLUMNS):
        values = _float_column(frame, name)
        columns[name] = values if order is None else values[order]
    return _Panel(
        symbols=[str(s) for s in uniques],
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
    if slots <= 4 * times.shape[0] + 1024 and not ((times - first) % FIVE_MINUTES_MS).any():
        return (times - first) // FIVE_MINUTES_MS, int(slots)
    distinct, codes = np.unique(times, return_inverse=True)
    return codes.astype(np.int64), int(distinct.shape[0])


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


def _run(work: Callable[[T], None], items: Iterable[T], threads: int) -> None:
    """``work(item)`` for every item, on up to `threads` threads; re-raises the first failure."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(items)), thread_name_prefix="features") as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()


def compute_features(candles: pd.DataFrame) -> pd.DataFrame:
    """Every feature for every candle, with no look-ahead: row t uses candles at or before t only.

    Args:
        candles: the ``ohlcv`` view's columns (``symbol, open_time, open, high, low, close, volume,
            quote_volume, trades, taker_buy_volume, taker_buy_quote_volume``; others are ignored) for
            one or many symbols, rows in any order. ``open_time`` naive UTC or tz-aware. A symbol's
            bars are its candles in time order; gaps are not filled.

    Returns:
        One row per input row, with the input's index in the input's order: ``symbol``,
        ``open_time`` (``datetime64[ms]``, naive UTC), then one float64 column per feature of
        :data:`~quant_assets.features.registry.FEATURES`, in registry order. NaN where
        a feature is undefined (fewer bars than its lookback, no BTCUSDT in the input...).

    Raises:
        KeyError: a required column is missing.
        ValueError: a price is not finite and positive, an amount is negative or not finite, a
            symbol or open_time is missing, or a (symbol, open_time) appears twice.
        TypeError: ``open_time`` is not a datetime column.
    """
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
        reference = Reference(ref.open_time_ms, ref.close)

    def compute_symbol(k: int) -> None:
        c = panel.candles(k, reference)
        rows = panel.rows(k)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i, f in own:
                block[i, rows] = f.compute(c)

    threads = min(_MAX_THREADS, os.cpu_count() or 1)
    _run(compute_symbol, range(len(panel.symbols)), threads if panel.n_rows >= _MIN_ROWS_FOR_THREADS else 1)

    if across:
        time_code, n_times = _time_codes(panel.open_time_ms)
        xs = CrossSection(
            cell=time_code * len(panel.symbols) + panel.symbol_code,
            n_times=n_times,
            n_symbols=len(panel.symbols),
            quote_volume=candles["quote_volume"].to_numpy(dtype=np.float64),
            features={f.name: block[i] for i, f in own},
        )

        def compute_across(item: tuple[int, Feature]) -> None:
            i, f = item
            with np.errstate(divide="ignore", invalid="ignore"):
                block[i] = f.compute(xs)

        _run(compute_across, across, threads if panel.n_rows >= _MIN_ROWS_FOR_THREADS else 1)
    return _output(candles, panel, block, [f.name for f in features])
