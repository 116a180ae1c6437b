"""What every feature reads: one symbol's bars as arrays, BTCUSDT as reference, and the cross-section.

A *bar* is one available 5-minute candle of one symbol. Bars are the symbol's candles in open_time
order; a gap in the data is not filled, so "12 bars ago" is the 12th earlier candle that exists
(the ``bars_since_prev`` feature makes gaps visible). Times are epoch milliseconds, UTC.

Prices are used as they come (no rescaling): TA-Lib results here are bit-identical to TA-Lib's on
the raw candles, and every feature divides prices by a price, so the result is scale-free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.features.windows import lag

FIVE_MINUTES_MS = 300_000
DAY_MS = 86_400_000
REFERENCE_SYMBOL = "BTCUSDT"  # the market factor of beta, correlation and relative-return features


def epoch_ms(column: pd.Series) -> np.ndarray:
    """Datetimes (naive UTC or tz-aware, any unit) as int64 epoch milliseconds, UTC.

    Raises:
        TypeError: `column` does not hold datetimes.
        ValueError: a value is missing.
    """
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    if not pd.api.types.is_datetime64_dtype(column.dtype):
        raise TypeError(f"open_time must hold datetimes (naive UTC or tz-aware), got {column.dtype}")
    values = column.to_numpy(dtype="datetime64[ms]")
    if np.isnat(values).any():
        raise ValueError("open_time has missing values")
    return values.view(np.int64)


def five_minute_return(open_time_ms: np.ndarray, log_close: np.ndarray) -> np.ndarray:
    """``ln(close_t / close_(t - 5 min))`` per bar; NaN where the previous candle is not 5 min before."""
    out = np.full(log_close.shape[0], np.nan)
    follows = np.diff(open_time_ms) == FIVE_MINUTES_MS
    out[1:][follows] = (log_close[1:] - log_close[:-1])[follows]
    return out


class TimeIndex:
    """Values of one symbol's bars, looked up by open time (NaN where the symbol has no candle).

    Bars on the 5-minute grid (the normal case) go into a dense array of slots, so a lookup is
    index arithmetic; otherwise a binary search is used.
    """

    def __init__(self, open_time_ms: np.ndarray, values: np.ndarray) -> None:
        self._times = open_time_ms
        self._values = values
        self._first = int(open_time_ms[0]) if open_time_ms.shape[0] else 0
        offsets = open_time_ms - self._first
        n_slots = int(offsets[-1]) // FIVE_MINUTES_MS + 1 if open_time_ms.shape[0] else 0
        self._dense: np.ndarray | None = None
        if n_slots <= 4 * open_time_ms.shape[0] + 10_000:
            slots = offsets // FIVE_MINUTES_MS
            # `slots * 5 min == offsets` says every bar is on the grid; NumPy's int64 `%` is slow.
            if np.array_equal(slots * FIVE_MINUTES_MS, offsets):
                self._dense = np.full(n_slots, np.nan)
                self._dense[slots] = values

    def run(self, start_ms: int, count: int) -> np.ndarray:
        """Values at ``start_ms + i * 5 min`` for ``i < count`` (a slice of the dense array when possible)."""
        offset = start_ms - self._first
        if self._dense is None or offset % FIVE_MINUTES_MS:
            return self.at(start_ms + np.arange(count, dtype=np.int64) * FIVE_MINUTES_MS)
        first = offset // FIVE_MINUTES_MS
        out = np.full(count, np.nan)
        lo, hi = max(first, 0), min(first + count, self._dense.shape[0])
        if lo < hi:
            out[lo - first : hi - first] = self._dense[lo:hi]
        return out

    def at(self, open_time_ms: np.ndarray) -> np.ndarray:
        """The value of the bar opening at each of `open_time_ms`; NaN where there is none."""
        if self._times.shape[0] == 0:
            return np.full(open_time_ms.shape[0], np.nan)
        if self._dense is not None:
            offsets = open_time_ms - self._first
            slots = offsets // FIVE_MINUTES_MS
            found = (slots >= 0) & (slots < self._dense.shape[0]) & (slots * FIVE_MINUTES_MS == offsets)
            return np.where(found, self._dense[np.where(found, slots, 0)], np.nan)
        position = np.minimum(np.searchsorted(self._times, open_time_ms), self._times.shape[0] - 1)
        return np.where(self._times[position] == open_time_ms, self._values[position], np.nan)


class Reference:
    """The reference symbol's (BTCUSDT's) bars, looked up by open time. Read-only once built."""

    def __init__(self, open_time_ms: np.ndarray, close: np.ndarray) -> None:
        self.open_time_ms = open_time_ms
        log_close = np.log(close)
        self._log_close = TimeIndex(open_time_ms, log_close)
        self._five_minute_return = TimeIndex(open_time_ms, five_minute_return(open_time_ms, log_close))

    def log_close_at(self, open_time_ms: np.ndarray, *, gapless: bool = False) -> np.ndarray:
        """ln(close) of the reference's candle at each open time; NaN where it has none.

        `gapless` says the open times are consecutive 5-minute slots (a faster lookup).
        """
        if gapless and open_time_ms.shape[0]:
            return self._log_close.run(int(open_time_ms[0]), open_time_ms.shape[0])
        return self._log_close.at(open_time_ms)

    def five_minute_return_at(self, open_time_ms: np.ndarray, *, gapless: bool = False) -> np.ndarray:
        """The reference's :func:`five_minute_return` of the candle at each open time; NaN if none."""
        if gapless and open_time_ms.shape[0]:
            return self._five_minute_return.run(int(open_time_ms[0]), open_time_ms.shape[0])
        return self._five_minute_return.at(open_time_ms)


@dataclass(frozen=True, eq=False)
class Candles:
    """One symbol's bars, oldest first, as contiguous float64 arrays (``trades`` converted too).

    Attributes:
        symbol: e.g. ``ETHUSDT``.
        open_time_ms: int64 epoch ms, UTC, strictly increasing.
        open, high, low, close: prices in quote currency.
        volume, taker_buy_volume: base-asset quantities; quote_volume, taker_buy_quote_volume: quote.
        trades: trade count per bar.
        reference: BTCUSDT's bars when they are part of the input, else ``None``.
        market_cap_usd, market_volume_usd: the coin's CoinGecko market cap and 24h volume (USD)
            known at the bar (``coin_market`` of the day before), when the input carries them.
    """

    symbol: str
    open_time_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray
    trades: np.ndarray
    taker_buy_volume: np.ndarray
    taker_buy_quote_volume: np.ndarray
    reference: Reference | None
    market_cap_usd: np.ndarray | None = None
    market_volume_usd: np.ndarray | None = None
    _memo: dict[Any, Any] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return int(self.close.shape[0])

    @cached_property
    def log_close(self) -> np.ndarray:
        return np.log(self.close)

    @cached_property
    def gapless(self) -> bool:
        """Whether the bars are consecutive 5-minute slots (no candle missing between first and last)."""
        n = len(self)
        return n == 0 or int(self.open_time_ms[-1] - self.open_time_ms[0]) == (n - 1) * FIVE_MINUTES_MS

    @cached_property
    def ret_1(self) -> np.ndarray:
        """1-bar log return ``ln(close_t / close_{t-1})``; NaN at the first bar."""
        return self.log_close - lag(self.log_close, 1)

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, computed once per `key` for these bars (multi-output TA-Lib calls, shared stats)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def log_close_at(self, open_time_ms: np.ndarray) -> np.ndarray:
        """ln(close) of this symbol's candle at each open time; NaN where it has none."""
        index = self.memo("log_close_index", lambda: TimeIndex(self.open_time_ms, self.log_close))
        return index.at(open_time_ms)

    def time_return(self, slots: int) -> np.ndarray:
        """``ln(close_t / close at open_time - slots * 5 min)``; NaN where that candle is missing.

        Unlike a return over bars, it always spans the same wall time, so it can be paired with
        another symbol's return at the same open time.
        """
        if self.gapless:
            return self.log_close - lag(self.log_close, slots)
        return self.log_close - self.log_close_at(self.open_time_ms - slots * FIVE_MINUTES_MS)

    def five_minute_return(self) -> np.ndarray:
        """This symbol's :func:`five_minute_return` (its 1-bar return where no candle is missing)."""
        if self.gapless:
            return self.ret_1
        return self.memo("five_minute_return", lambda: five_minute_return(self.open_time_ms, self.log_close))

    def reference_five_minute_return(self) -> np.ndarray:
        """BTCUSDT's :func:`five_minute_return` at these bars' open times; all NaN without BTCUSDT."""
        if self.reference is None:
            return np.full(len(self), np.nan)
        return self.reference.five_minute_return_at(self.open_time_ms, gapless=self.gapless)

    def reference_time_return(self, slots: int) -> np.ndarray:
        """BTCUSDT's :meth:`time_return` at these bars' open times; all NaN without BTCUSDT."""
        if self.reference is None:
            return np.full(len(self), np.nan)
        ref, gapless = self.reference, self.gapless
        now = self.memo("reference_log_close", lambda: ref.log_close_at(self.open_time_ms, gapless=gapless))
        return now - ref.log_close_at(self.open_time_ms - slots * FIVE_MINUTES_MS, gapless=gapless)


@dataclass(frozen=True, eq=False)
class CrossSection:
    """Every row of one computation, in the caller's row order, for features computed across symbols.

    A *grid* lays one value per row out as (open time, symbol): row = the open time's index (its
    5-minute slot since the first, or its rank among the distinct open times), column = the
    symbol's index among the distinct symbols (in order of first appearance: nothing computed
    across a grid row depends on the column order, nor on rows where no symbol has a candle); NaN
    where a symbol has no candle at that time.

    Attributes:
        cell: per row, its flat index in a grid (``time index * n_symbols + symbol index``); None
            when the rows are *rectangular*: grouped by symbol in order of first appearance, each
            symbol's rows in time order, every symbol with a candle at each of the same open times.
            The grid is then the transpose of the rows, and no index is needed.
        n_times: number of grid rows (open times).
        n_symbols: number of distinct symbols.
        quote_volume: per row, the candle's quote volume.
        features: per-symbol features already computed, by name, per row.
        market_cap_usd: per row, the coin's market cap known at the bar (``None``: not in the input).
    """

    cell: np.ndarray | None
    n_times: int
    n_symbols: int
    quote_volume: np.ndarray
    features: Mapping[str, np.ndarray]
    market_cap_usd: np.ndarray | None = None

    def grid(self, values: np.ndarray) -> np.ndarray:
        """`values` (one per row) laid out as (open time, symbol), NaN where no row."""
        if self.cell is None:
            return np.ascontiguousarray(values.reshape(self.n_symbols, self.n_times).T)
        out = np.full(self.n_times * self.n_symbols, np.nan)
        out[self.cell] = values
        return out.reshape(self.n_times, self.n_symbols)

    def per_row(self, grid: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`grid`: one value per row."""
        if self.cell is None:
            return np.ascontiguousarray(grid.T).reshape(-1)
        return grid.reshape(-1)[self.cell]

    def per_row_of_time(self, values: np.ndarray) -> np.ndarray:
        """One value per grid row (open time) as one value per row: each row gets its time's."""
        if self.cell is None:
            return np.tile(values, self.n_symbols)
        return values[self.cell // self.n_symbols]
