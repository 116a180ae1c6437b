"""Realized volatility: how much the price moves per bar, from closes and from high-low ranges."""

from __future__ import annotations

import math

import numpy as np

from quant_assets.features.candles import Candles
from quant_assets.features.windows import divide, window_mean

_PARKINSON = 1.0 / (4.0 * math.log(2.0))  # E[ln(H/L)^2] = 4 ln2 sigma^2 for a Brownian bar


def realized_vol(c: Candles, *, window: int) -> np.ndarray:
    """Root mean square of the last `window` 1-bar log returns (per 5-min bar, unitless)."""
    return c.memo(("realized_vol", window), lambda: np.sqrt(window_mean(c.ret_1 * c.ret_1, window)))


def parkinson_vol(c: Candles, *, window: int) -> np.ndarray:
    """Parkinson's range estimator ``sqrt(mean(ln(high/low)^2) / (4 ln 2))`` over `window` bars."""
    log_range = np.log(c.high / c.low)
    return np.sqrt(window_mean(log_range * log_range, window) * _PARKINSON)


def vol_ratio(c: Candles, *, short: int, long: int) -> np.ndarray:
    """``realized_vol(short) / realized_vol(long)``: > 1 when the recent bars move more than usual."""
    return divide(realized_vol(c, window=short), realized_vol(c, window=long))
