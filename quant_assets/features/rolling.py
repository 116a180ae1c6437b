"""qlib Alpha158's rolling operators over the last `window` bars, divided by the close to be scale-free."""

from __future__ import annotations

import numpy as np
import talib

from quant_assets.features.candles import Candles
from quant_assets.features.volume import log_volume
from quant_assets.features.windows import (
    correlation,
    divide,
    lag,
    window_mean,
    window_sum,
    window_sum_and_ramp,
)


def _highest(c: Candles, window: int) -> np.ndarray:
    # TA-Lib MAX/MIN return the window's exact extreme, whatever history came before.
    return c.memo(("MAX", window), lambda: talib.MAX(c.high, window))


def _lowest(c: Candles, window: int) -> np.ndarray:
    return c.memo(("MIN", window), lambda: talib.MIN(c.low, window))


def _up_flags(c: Candles) -> np.ndarray:
    def make() -> np.ndarray:
        flags = (c.ret_1 > 0).astype(np.float64)
        flags[np.isnan(c.ret_1)] = np.nan
        return flags

    return c.memo("up_flags", make)


def mean_to_close(c: Candles, *, window: int) -> np.ndarray:
    """Mean close of the window divided by the close (Alpha158 MA)."""
    return window_mean(c.close, window) / c.close


def max_to_close(c: Candles, *, window: int) -> np.ndarray:
    """Highest high of the window divided by the close (Alpha158 MAX), >= 1."""
    return _highest(c, window) / c.close


def min_to_close(c: Candles, *, window: int) -> np.ndarray:
    """Lowest low of the window divided by the close (Alpha158 MIN), <= 1."""
    return _lowest(c, window) / c.close


def range_position(c: Candles, *, window: int) -> np.ndarray:
    """Where the close sits in the window's low-high range, 0..1; 0.5 when the range is empty (RSV)."""
    low = _lowest(c, window)
    return divide(c.close - low, _highest(c, window) - low, where_zero=0.5)


def up_fraction(c: Candles, *, window: int) -> np.ndarray:
    """Fraction of the window's bars that closed above the previous close, 0..1 (Alpha158 CNTP)."""
    return window_mean(_up_flags(c), window)


def up_move_share(c: Candles, *, window: int) -> np.ndarray:
    """Sum of up log returns over sum of absolute log returns, 0..1; 0.5 if flat (Alpha158 SUMP)."""
    gains = window_sum(np.maximum(c.ret_1, 0.0), window)
    return divide(gains, window_sum(np.abs(c.ret_1), window), where_zero=0.5)


def slope_to_close(c: Candles, *, window: int) -> np.ndarray:
    """Least-squares slope of the close over the window, per bar, divided by the close (Alpha158 BETA)."""
    # slope = sum((x - mean x) * close) / sum((x - mean x)^2) with x the bar's position in the
    # window; in bars-ago k = window-1-x that is ((window-1)/2 * S0 - sum(k * close)) / Sxx.
    s0, ramp = window_sum_and_ramp(c.close, window)
    sxx = window * (window * window - 1) / 12.0
    return ((window - 1) / 2.0 * s0 - ramp) / sxx / c.close


def return_volume_corr(c: Candles, *, window: int) -> np.ndarray:
    """Correlation of 1-bar log returns with log volume changes over the window (Alpha158 CORD).

    NaN when either series is constant over the window.
    """
    volume = log_volume(c)
    return correlation(c.ret_1, volume - lag(volume, 1), window)
