"""Take one universe snapshot: fetch what the rules need, apply them, fall back when CoinGecko is down.

The rules themselves live in :mod:`quant_assets.universe` and see only parsed payloads; this module
does the fetching and decides between CoinGecko and the Binance fallback.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from quant_assets.errors import SourceError
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.coingecko import CoinGeckoClient
from quant_assets.sources.payloads import MarketCoin
from quant_assets.universe import (
    BASE_COIN_IDS,
    EXCLUDED_CATEGORIES,
    LAYER_CATEGORIES,
    UniverseResult,
    select_fallback_universe,
    select_universe,
)

log = logging.getLogger(__name__)

# How deep to read each category's volume ranking: enough that exclusions and coins without a
# Binance perpetual still leave `max_symbols` candidates.
_CATEGORY_DEPTH_FACTOR = 3
_MIN_CATEGORY_DEPTH = 250


@dataclass(frozen=True)
class UniverseSnapshot:
    """A universe snapshot with the story of how it was made."""

    result: UniverseResult
    point_in_time: bool = True  # False: an older day built from today's market data
    warnings: list[str] = field(default_factory=list)
    coingecko_error: str | None = None


def take_universe_snapshot(
    *,
    coingecko: CoinGeckoClient,
    binance: BinanceFuturesClient,
    max_symbols: int,
    snapshot_date: dt.date,
    now: dt.datetime | None = None,
) -> UniverseSnapshot:
    """The universe for `snapshot_date` from today's market data.

    CoinGecko first; when it cannot be reached after its retries, Binance's own 24h quote-volume
    ranking (``source = 'binance_fallback'``). Raises :class:`SourceError` only when Binance itself
    cannot be reached: without exchangeInfo no contract can be validated.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    fetched_at = now.replace(tzinfo=None)
    warnings: list[str] = []
    point_in_time = snapshot_date >= now.date() - dt.timedelta(days=1)
    if not point_in_time:
        warnings.append(
            f"snapshot for {snapshot_date} built from market data fetched at {now:%Y-%m-%d %H:%M} UTC: "
            "CoinGecko's markets endpoint has no history, so this universe is not point-in-time"
        )
    exchange_info = binance.exchange_info()
    depth = max(_MIN_CATEGORY_DEPTH, _CATEGORY_DEPTH_FACTOR * max_symbols)
    try:
        overall = coingecko.top_by_volume(category=None, limit=_MIN_CATEGORY_DEPTH)
        base_coins = [coin for coin in overall if coin.id in BASE_COIN_IDS]
        category_coins = {
            category: coingecko.top_by_volume(category=category, limit=depth) for category in LAYER_CATEGORIES
        }
    except SourceError as error:
        message = f"CoinGecko unreachable ({error}); universe taken from Binance's 24h quote-volume ranking"
        log.warning(message)
        warnings.append(message)
        result = select_fallback_universe(
            tickers=binance.ticker_24hr(),
            exchange_info=exchange_info,
            max_symbols=max_symbols,
            snapshot_date=snapshot_date,
            fetched_at=fetched_at,
        )
        return UniverseSnapshot(
            result=result, point_in_time=point_in_time, warnings=warnings, coingecko_error=str(error)
        )
    excluded_ids: dict[str, set[str]] = {}
    for category in EXCLUDED_CATEGORIES:
        try:
            coins: list[MarketCoin] = coingecko.top_by_volume(category=category, limit=_MIN_CATEGORY_DEPTH)
        except SourceError as error:
            warnings.append(f"exclusion category {category!r} unavailable ({error}); maintained list used")
            continue
        excluded_ids[category] = {coin.id for coin in coins}
    result = select_universe(
        base_coins=base_coins,
        category_coins=category_coins,
        excluded_ids=excluded_ids or None,
        exchange_info=exchange_info,
        max_symbols=max_symbols,
        snapshot_date=snapshot_date,
        fetched_at=fetched_at,
    )
    return UniverseSnapshot(result=result, point_in_time=point_in_time, warnings=warnings)
