"""Features measured across symbols: ranks at each open time, and co-movement with BTCUSDT.

Ranks and cross-sectional means at open time t use the symbols that have a candle at t in the input
(a symbol whose value is NaN there is left out). Beta, correlation and relative return pair this
symbol's returns with BTCUSDT's over the same wall-clock minutes, so their windows are five-minute
slots, not bars; they are NaN when BTCUSDT is not part of the input, so callers that want them
include it (``latest_features`` always reads it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from quant_assets.features import kernels
from quant_assets.features.candles import FIVE_MINUTES_MS, Candles, CrossSection

_CHUNK_ROWS = 1024  # open times ranked at once: keeps every temporary in cache, off the page-fault path


def _sorted(grid: np.ndarray, *, with_order: bool) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Each row sorted (absent values last), the flat indices into `grid` in that order if asked, and
    the count of present values.

    NaN (absent) becomes +inf before sorting: NumPy's vectorised sort gives up on NaN and runs
    seven times slower. Values are finite, so the first `count` sorted entries are the present ones.
    """
    present = ~np.isnan(grid)
    count = np.add.reduce(present.view(np.uint8), axis=1, dtype=np.int64)
    work = np.where(present, grid, np.inf)
    if with_order:
        # Flat indices instead of take_/put_along_axis, which build an index grid per call.
        flat = np.argsort(work, axis=1)
        flat += (np.arange(grid.shape[0]) * grid.shape[1])[:, None]
        return flat, work.reshape(-1)[flat], count
    return None, np.sort(work, axis=1), count


def _pct_rank_rows(grid: np.ndarray, out: np.ndarray) -> None:
    """Percentile rank within each row of `grid`, 0..1, into `out` (ties share their mean rank; 0.5
    for a lone value; NaN where absent)."""
    flat, values, count = _sorted(grid, with_order=True)
    n_cols = grid.shape[1]
    columns = np.arange(n_cols, dtype=np.float64)
    scale = np.where(count > 1, count - 1, np.nan)[:, None]
    # A sorted entry's rank is its position, or where equal values are adjacent the mean of their
    # positions: only the rows with ties among their present values pay for that.
    sorted_flat = values.reshape(-1)
    pair = np.flatnonzero(sorted_flat[1:] == sorted_flat[:-1]) + 1  # flat index of the second
    row, column = np.divmod(pair, n_cols)
    tied = np.unique(row[(column > 0) & (column < count[row])])
    pct = columns / scale
    pct[count == 1, 0] = 0.5
    pct[columns >= count[:, None]] = np.nan  # absent symbols, sorted last, get no rank
    if tied.size:
        sub = values[tied]
        starts = np.ones(sub.shape, dtype=bool)
        starts[:, 1:] = sub[:, 1:] != sub[:, :-1]
        ends = np.ones(sub.shape, dtype=bool)
        ends[:, :-1] = starts[:, 1:]
        first = np.maximum.accumulate(np.where(starts, columns, 0), axis=1)
        last = np.minimum.accumulate(np.where(ends, columns, n_cols)[:, ::-1], axis=1)[:, ::-1]
        position = (first + last) / 2.0
        tied_pct = position / scale[tied]
        tied_pct[position >= count[tied, None]] = np.nan
        pct[tied] = tied_pct
    out.reshape(-1)[flat] = pct


def _row_means(grid: np.ndarray, out: np.ndarray) -> None:
    """Mean of each row's present values into `out`, summed in sorted order (NaN for an empty row).

    Sorting first makes the sum independent of which other (absent) symbols the grid has columns
    for, so adding a symbol to the input never changes another time's mean by a bit.
    """
    _, values, count = _sorted(grid, with_order=False)
    values[np.arange(grid.shape[1]) >= count[:, None]] = 0.0
    total = values.sum(axis=1)
    out[:] = np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _by_chunks(
    grid: np.ndarray, per_chunk: Callable[[np.ndarray, np.ndarray], None], *, rows_only: bool
) -> np.ndarray:
    """``per_chunk(rows, out)`` over blocks of `grid`'s rows; `out` is the block's slice of the result
    (one value per row if `rows_only`, else one per cell)."""
    out = np.empty(grid.shape[:1] if rows_only else grid.shape)
    for a in range(0, grid.shape[0], _CHUNK_ROWS):
        per_chunk(grid[a : a + _CHUNK_ROWS], out[a : a + _CHUNK_ROWS])
    return out


def rank(xs: CrossSection, *, feature: str) -> np.ndarray:
    """Percentile rank of the per-symbol feature `feature` among the symbols at the same open time."""
    return xs.per_row(_by_chunks(xs.grid(xs.features[feature]), _pct_rank_rows, rows_only=False))


def rank_quote_volume(xs: CrossSection) -> np.ndarray:
    """Percentile rank of the bar's quote volume (USDT traded) among the symbols at that open time."""
    return xs.per_row(_by_chunks(xs.grid(xs.quote_volume), _pct_rank_rows, rows_only=False))


def demeaned(xs: CrossSection, *, feature: str) -> np.ndarray:
    """`feature` minus its mean over the symbols at the same open time."""
    values = xs.features[feature]
    means = _by_chunks(xs.grid(values), _row_means, rows_only=True)
    return values - xs.per_row_of_time(means)


def _reference_stats(c: Candles, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Covariance, this symbol's variance and BTCUSDT's over the last `window` five-minute slots,
    at each bar; NaN when fewer than half the slots have pairs, and a variance NaN where that series
    did not move (:func:`kernels.paired_moments`).

    Pairs are this symbol's and BTCUSDT's log returns over the same five minutes (both candles must
    exist). The window is wall time, not bars, so it needs only candles of the last ``window + 1``
    slots of both symbols, which any trailing ``window + 1`` bars of each contain, gaps or not.
    """

    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = c.five_minute_return()
        y = c.reference_five_minute_return()
        both = ~(np.isnan(x) | np.isnan(y))
        if c.gapless:
            count, px, py = both.astype(np.float64), np.where(both, x, 0.0), np.where(both, y, 0.0)
            cov, var_x, var_y = kernels.paired_moments(count, px, py, window)
            return cov, var_x, var_y
        # Lay the pairs on the 5-minute grid (zero where a pair is missing) and sum over slots.
        slot = (c.open_time_ms - c.open_time_ms[0]) // FIVE_MINUTES_MS
        pairs = np.zeros((3, int(slot[-1]) + 1))
        pairs[0, slot[both]] = 1.0
        pairs[1, slot[both]] = x[both]
        pairs[2, slot[both]] = y[both]
        stats = kernels.paired_moments(pairs[0], pairs[1], pairs[2], window)[:, slot]
        return stats[0], stats[1], stats[2]

    return c.memo(("reference_stats", window), make)


def beta_to_reference(c: Candles, *, window: int) -> np.ndarray:
    """OLS beta of 5-min log returns on BTCUSDT's over the last `window` five-minute slots."""
    cov, _, var_y = _reference_stats(c, window)
    return cov / var_y


def corr_to_reference(c: Candles, *, window: int) -> np.ndarray:
    """Correlation of 5-min log returns with BTCUSDT's over the last `window` five-minute slots."""
    cov, var_x, var_y = _reference_stats(c, window)
    return cov / np.sqrt(var_x * var_y)


def return_vs_reference(c: Candles, *, slots: int) -> np.ndarray:
    """Log return over the last `slots` five-minute slots minus BTCUSDT's over the same time."""
    return c.time_return(slots) - c.reference_time_return(slots)
