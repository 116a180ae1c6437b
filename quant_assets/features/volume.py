"""Activity: volume, quote volume and trade count relative to the symbol's own recent history.

Raw volumes are not comparable across coins (units, price levels), so each is a z-score of
``log(1 + x)`` over the symbol's own window, or a ratio of two of its own sums.
"""

from __future__ import annotations

import numpy as np

from quant_assets.features.candles import Candles
from quant_assets.features.windows import divide, window_sum, zscore


def log_volume(c: Candles) -> np.ndarray:
    """``log(1 + volume)``, shared by the volume features."""
    return c.memo("log_volume", lambda: np.log1p(c.volume))


def volume_z(c: Candles, *, window: int) -> np.ndarray:
    """z-score of ``log(1 + volume)`` over the last `window` bars, current bar included."""
    return zscore(log_volume(c), window)


def quote_volume_z(c: Candles, *, window: int) -> np.ndarray:
    """z-score of ``log(1 + quote_volume)`` over the last `window` bars."""
    return zscore(np.log1p(c.quote_volume), window)


def trades_z(c: Candles, *, window: int) -> np.ndarray:
    """z-score of ``log(1 + trades)`` over the last `window` bars."""
    return zscore(np.log1p(c.trades), window)


def volume_ratio(c: Candles, *, short: int, long: int) -> np.ndarray:
    """Mean volume of the last `short` bars over that of the last `long` bars; NaN if none traded."""
    return divide(window_sum(c.volume, short) * (long / short), window_sum(c.volume, long))


def taker_buy_ratio(c: Candles) -> np.ndarray:
    """Taker-buy share of the bar's volume, 0..1 (0.5: balanced); NaN when nothing traded."""
    return divide(c.taker_buy_volume, c.volume)


def taker_buy_ratio_sum(c: Candles, *, window: int) -> np.ndarray:
    """Taker-buy share of the last `window` bars' volume, 0..1; NaN when nothing traded."""
    return divide(window_sum(c.taker_buy_volume, window), window_sum(c.volume, window))
