"""The shape of one candle, as qlib's Alpha158 K-bar features, and its prices relative to the close.

Alpha158 divides by the open (``KMID = (close - open) / open`` ...) or by the bar's range; where
Alpha158 adds 1e-12 to a zero range (a scale-dependent constant), these features are 0 instead.
"""

from __future__ import annotations

import numpy as np

from quant_assets.features.candles import Candles
from quant_assets.features.windows import divide


def _range(c: Candles) -> np.ndarray:
    return c.memo("range", lambda: c.high - c.low)


def _body_top(c: Candles) -> np.ndarray:
    return c.memo("body_top", lambda: np.maximum(c.open, c.close))


def _body_bottom(c: Candles) -> np.ndarray:
    return c.memo("body_bottom", lambda: np.minimum(c.open, c.close))


def kmid(c: Candles) -> np.ndarray:
    """Body ``(close - open) / open``."""
    return (c.close - c.open) / c.open


def klen(c: Candles) -> np.ndarray:
    """Range ``(high - low) / open``."""
    return _range(c) / c.open


def kmid2(c: Candles) -> np.ndarray:
    """Body as a fraction of the range, -1..1."""
    return divide(c.close - c.open, _range(c), where_zero=0.0)


def kup(c: Candles) -> np.ndarray:
    """Upper shadow ``(high - max(open, close)) / open``."""
    return (c.high - _body_top(c)) / c.open


def kup2(c: Candles) -> np.ndarray:
    """Upper shadow as a fraction of the range, 0..1."""
    return divide(c.high - _body_top(c), _range(c), where_zero=0.0)


def klow(c: Candles) -> np.ndarray:
    """Lower shadow ``(min(open, close) - low) / open``."""
    return (_body_bottom(c) - c.low) / c.open


def klow2(c: Candles) -> np.ndarray:
    """Lower shadow as a fraction of the range, 0..1."""
    return divide(_body_bottom(c) - c.low, _range(c), where_zero=0.0)


def ksft(c: Candles) -> np.ndarray:
    """Close's shift inside the range ``(2 close - high - low) / open``."""
    return (2.0 * c.close - c.high - c.low) / c.open


def ksft2(c: Candles) -> np.ndarray:
    """Close's shift as a fraction of the range, -1..1."""
    return divide(2.0 * c.close - c.high - c.low, _range(c), where_zero=0.0)


def open_to_close(c: Candles) -> np.ndarray:
    """``open / close`` (Alpha158 OPEN0)."""
    return c.open / c.close


def high_to_close(c: Candles) -> np.ndarray:
    """``high / close`` (Alpha158 HIGH0)."""
    return c.high / c.close


def low_to_close(c: Candles) -> np.ndarray:
    """``low / close`` (Alpha158 LOW0)."""
    return c.low / c.close


def vwap_to_close(c: Candles) -> np.ndarray:
    """``(quote_volume / volume) / close`` (Alpha158 VWAP0); NaN for a bar without volume."""
    return divide(divide(c.quote_volume, c.volume), c.close)
