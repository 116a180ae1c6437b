"""The cross-venue check: each venue's close against the median of the venues' closes, per candle.

One coin's candles from several venues (Binance, Bybit, OKX) should agree: perpetuals of one coin
are arbitraged to within a few basis points. A venue whose close is more than ``max_bp`` basis
points from the median of every venue's close at that open time is listed with the minute
(``HH:MM`` UTC). It catches a wrong instrument match, a contract size not converted, a venue
serving stale or broken prices, and a real dislocation worth knowing about. It reports, never repairs.

Prices are compared per coin: Bybit and OKX rows are stored per coin, Binance rows as Binance quotes
them (``1000PEPEUSDT`` per 1,000 PEPE), so Binance closes are divided by the symbol's unit here.
A candle only one venue served has nothing to be compared with and passes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from quant_assets.quality import CheckOutcome
from quant_assets.sources.venues import universe_coin

CHECK_NAME = "cross_venue_close"
DESCRIPTION = "each venue's close within the limit of the median of the venues' closes, per candle"


def per_coin_closes(candles_by_venue: Mapping[str, pd.DataFrame], symbol: str) -> pd.DataFrame:
    """One column per venue, one row per open time: the close in USDT per ONE coin.

    Rows of one open time served twice on a venue are averaged (``candles_valid`` reports them).
    """
    _, binance_unit = universe_coin(symbol)
    columns = {}
    for venue, frame in candles_by_venue.items():
        if frame.empty:
            continue
        closes = frame.groupby("open_time")["close"].mean()
        columns[venue] = closes / binance_unit if venue == "binance" else closes
    return pd.DataFrame(columns).sort_index()


def divergent_minutes(closes: pd.DataFrame, *, max_bp: float) -> tuple[dict[str, list[str]], float]:
    """Per venue, the open times (``HH:MM``) whose close is beyond `max_bp` from the median; the worst bp.

    Only open times at least two venues served count.
    """
    compared = closes[closes.notna().sum(axis=1) >= 2]
    if compared.empty:
        return {}, 0.0
    median = compared.median(axis=1, skipna=True)
    deviation_bp = (compared.div(median, axis=0) - 1.0).abs() * 10_000.0
    found: dict[str, list[str]] = {}
    for venue in deviation_bp.columns:
        beyond = deviation_bp.index[(deviation_bp[venue] > max_bp).to_numpy()]
        if len(beyond):
            found[venue] = [f"{pd.Timestamp(t):%H:%M}" for t in beyond]
    worst = float(np.nanmax(deviation_bp.to_numpy())) if deviation_bp.size else 0.0
    return found, worst


def check_cross_venue(
    candles_by_venue: Mapping[str, pd.DataFrame], *, symbol: str, max_bp: float
) -> CheckOutcome:
    """The ``cross_venue_close`` outcome of one (symbol, day) partition's candles of every venue.

    Metadata: ``max_bp``, the venues compared, the candles compared, the worst deviation in bp and
    ``divergent`` = {venue: {symbol: ["HH:MM", ...]}} (at most 288 minutes a venue).
    """
    closes = per_coin_closes(candles_by_venue, symbol)
    found, worst = divergent_minutes(closes, max_bp=max_bp)
    compared = int((closes.notna().sum(axis=1) >= 2).sum()) if not closes.empty else 0
    metadata = {
        "max_bp": max_bp,
        "venues": sorted(closes.columns.tolist()),
        "candles_compared": compared,
        "worst_bp": round(worst, 2),
        "divergent": {venue: {symbol: minutes} for venue, minutes in sorted(found.items())},
    }
    if found:
        listing = "; ".join(
            f"{venue} {symbol} at {', '.join(minutes[:12])}{' ...' if len(minutes) > 12 else ''}"
            for venue, minutes in sorted(found.items())
        )
        description = f"closes beyond {max_bp:g} bp of the venues' median (UTC): {listing}"
    else:
        description = (
            f"{compared} candles compared across {len(closes.columns)} venue(s), all within {max_bp:g} bp"
        )
    return CheckOutcome(CHECK_NAME, not found, "ERROR", description, metadata)
