"""When a feature may be NaN after its lookback, stated once as text and once as a test on the candles.

A feature documented as "NaN when X" declares ``nan_when=NanWhen("X", holds)``: `holds` reads one
symbol's :class:`~quant_assets.features.candles.Candles` (with BTCUSDT as reference) and says, bar by
bar, whether X is true. The tests here are written from the text, on the raw candles, and share no
code with the features they excuse: a NaN the text does not explain stays unexplained, whatever the
feature's code does (:func:`quant_assets.features.nan_check.unexplained_nans`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from quant_assets.features.candles import FIVE_MINUTES_MS, Candles


@dataclass(frozen=True)
class NanWhen:
    """A documented reason for NaN: its wording, and a per-bar test of it.

    Attributes:
        text: the condition as the feature's documentation states it ("the bar has no volume").
        holds: ``Candles -> bool array``, one entry per bar: True where the condition holds.
    """

    text: str
    holds: Callable[[Candles], np.ndarray]

    def __str__(self) -> str:
        return self.text


def _trailing_count(flags: np.ndarray, window: int) -> np.ndarray:
    """How many of the last `window` entries (current one included) are True, as int64."""
    total = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
    n = flags.shape[0]
    start = np.maximum(np.arange(n) + 1 - window, 0)
    return total[1:] - total[start]


def _present(times: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per entry of `wanted`: whether `times` (sorted, int64 ms) holds that exact open time."""
    if times.shape[0] == 0:
        return np.zeros(wanted.shape[0], dtype=bool)
    at = np.minimum(np.searchsorted(times, wanted), times.shape[0] - 1)
    return times[at] == wanted


def no_volume(c: Candles) -> np.ndarray:
    """The bar's volume is 0."""
    return c.volume == 0


def nothing_traded(window: int) -> Callable[[Candles], np.ndarray]:
    """Every one of the last `window` bars has volume 0."""

    def holds(c: Candles) -> np.ndarray:
        return _trailing_count(c.volume != 0, window) == 0

    return holds


def close_unchanged(bars: int) -> Callable[[Candles], np.ndarray]:
    """The close equals the previous bar's close at each of the last `bars` bars."""

    def holds(c: Candles) -> np.ndarray:
        moved = np.ones(len(c), dtype=bool)
        moved[1:] = c.close[1:] != c.close[:-1]
        return _trailing_count(moved, bars) == 0

    return holds


def _constant(values: np.ndarray, window: int) -> np.ndarray:
    """Whether the last `window` values are all equal (False where one is NaN or too few exist)."""
    out = np.zeros(values.shape[0], dtype=bool)
    if values.shape[0] >= window:
        view = np.lib.stride_tricks.sliding_window_view(values, window)
        out[window - 1 :] = view.max(axis=1) == view.min(axis=1)
    return out


def returns_or_volumes_constant(window: int) -> Callable[[Candles], np.ndarray]:
    """Over the last `window` bars, the 1-bar log returns are all equal, or the changes of
    ``log(1 + volume)`` are."""

    def holds(c: Candles) -> np.ndarray:
        log_close, log_volume = np.log(c.close), np.log1p(c.volume)
        returns, changes = np.full(len(c), np.nan), np.full(len(c), np.nan)
        returns[1:] = log_close[1:] - log_close[:-1]
        changes[1:] = log_volume[1:] - log_volume[:-1]
        return _constant(returns, window) | _constant(changes, window)

    return holds


def no_reference(c: Candles) -> np.ndarray:
    """BTCUSDT is not part of the input."""
    return np.full(len(c), c.reference is None)


def _slots_before(c: Candles, slots: int) -> np.ndarray:
    return c.open_time_ms - slots * FIVE_MINUTES_MS


def few_shared_slots(window: int, minimum: int) -> Callable[[Candles], np.ndarray]:
    """No BTCUSDT, or fewer than `minimum` of the last `window` five-minute slots (the bar's
    included) hold a candle of both the symbol and BTCUSDT."""

    def holds(c: Candles) -> np.ndarray:
        if c.reference is None or len(c) == 0:
            return np.ones(len(c), dtype=bool)
        first = int(c.open_time_ms[0]) - window * FIVE_MINUTES_MS
        slot = (c.open_time_ms - first) // FIVE_MINUTES_MS
        shared = np.zeros(int(slot[-1]) + 1, dtype=bool)
        shared[slot] = _present(c.reference.open_time_ms, c.open_time_ms)
        return _trailing_count(shared, window)[slot] < minimum

    return holds


def _five_minute_moves(times: np.ndarray, log_close: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per open time in `at`: 1 where the series has a candle there and one 5 minutes before with a
    nonzero log return between them, 0 where that return is zero, -1 where a candle is missing."""
    now, before = np.searchsorted(times, at), np.searchsorted(times, at - FIVE_MINUTES_MS)
    last = times.shape[0] - 1
    now_c, before_c = np.minimum(now, last), np.minimum(before, last)
    both = (times[now_c] == at) & (times[before_c] == at - FIVE_MINUTES_MS)
    return np.where(both, (log_close[now_c] != log_close[before_c]).astype(np.int64), -1)


def no_paired_move(window: int, *, own: bool) -> Callable[[Candles], np.ndarray]:
    """In the last `window` five-minute slots where both the symbol and BTCUSDT have a 5-minute
    return (a candle and the one 5 minutes before), BTCUSDT's log return was always zero (with `own`:
    or the symbol's was)."""

    def holds(c: Candles) -> np.ndarray:
        if c.reference is None or len(c) == 0:
            return np.ones(len(c), dtype=bool)
        first = int(c.open_time_ms[0]) - window * FIVE_MINUTES_MS
        slot = (c.open_time_ms - first) // FIVE_MINUTES_MS
        grid_times = first + np.arange(int(slot[-1]) + 1, dtype=np.int64) * FIVE_MINUTES_MS
        mine = _five_minute_moves(c.open_time_ms, c.log_close, grid_times)
        ref = c.reference
        btc = _five_minute_moves(ref.open_time_ms, ref.log_close_at(ref.open_time_ms), grid_times)
        paired = (mine >= 0) & (btc >= 0)
        still = _trailing_count(paired & (btc == 1), window)[slot] == 0
        if own:
            still |= _trailing_count(paired & (mine == 1), window)[slot] == 0
        return still

    return holds


def missing_an_hour_apart(slots: int) -> Callable[[Candles], np.ndarray]:
    """No BTCUSDT, or the symbol has no candle `slots` five-minute slots before the bar, or BTCUSDT
    has none at the bar's open time or `slots` slots before it."""

    def holds(c: Candles) -> np.ndarray:
        if c.reference is None:
            return np.ones(len(c), dtype=bool)
        earlier = _slots_before(c, slots)
        ref_times = c.reference.open_time_ms
        return ~(
            _present(c.open_time_ms, earlier)
            & _present(ref_times, c.open_time_ms)
            & _present(ref_times, earlier)
        )

    return holds


def no_market_data(c: Candles) -> np.ndarray:
    """The input carries no CoinGecko market cap and 24h volume (both > 0) of the coin at the bar."""
    if c.market_cap_usd is None or c.market_volume_usd is None:
        return np.ones(len(c), dtype=bool)
    cap, volume = np.nan_to_num(c.market_cap_usd, nan=0.0), np.nan_to_num(c.market_volume_usd, nan=0.0)
    return (cap <= 0) | (volume <= 0)


def no_market_cap(c: Candles) -> np.ndarray:
    """The input carries no CoinGecko market cap (> 0) of the coin at the bar."""
    if c.market_cap_usd is None:
        return np.ones(len(c), dtype=bool)
    return ~(np.nan_to_num(c.market_cap_usd, nan=0.0) > 0)
