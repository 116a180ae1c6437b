"""Log returns over horizons in bars (qlib's ROC family, in logs so horizons add up)."""

from __future__ import annotations

import numpy as np

from quant_assets.features.candles import Candles
from quant_assets.features.windows import lag


def log_return(c: Candles, *, bars: int) -> np.ndarray:
    """``ln(close_t / close_{t-bars})``, unitless; NaN for the first `bars` bars."""
    return c.log_close - lag(c.log_close, bars)
