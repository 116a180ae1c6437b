"""Features from CoinGecko market data (``coin_market``): market-cap rank within the universe, turnover.

The values are the coin's market cap and 24h volume as of the end of the day before the bar
(``feature_table`` of day d joins ``coin_market`` of d - 1), so no bar sees data from its own day.
Without market data in the input (a column absent, or NULL for the coin) both are NaN.
"""

from __future__ import annotations

import numpy as np

from quant_assets.features.candles import Candles, CrossSection
from quant_assets.features.cross_section import _by_chunks, _pct_rank_rows


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, values, np.nan)


def turnover(c: Candles) -> np.ndarray:
    """24h volume / market cap (USD over USD, per day): how much of the coin's value traded."""
    if c.market_cap_usd is None or c.market_volume_usd is None:
        return np.full(len(c), np.nan)
    return _positive(c.market_volume_usd) / _positive(c.market_cap_usd)


def market_cap_rank(xs: CrossSection) -> np.ndarray:
    """Percentile rank of the coin's market cap among the symbols at the same open time; 0..1."""
    if xs.market_cap_usd is None:
        return np.full(xs.quote_volume.shape[0], np.nan)
    return xs.per_row(_by_chunks(xs.grid(_positive(xs.market_cap_usd)), _pct_rank_rows, rows_only=False))
