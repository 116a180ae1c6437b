"""CoinGecko market data of the day's universe: market cap, 24h volume and circulating supply.

One ``coin_market`` row per coin of the ``coin_universe`` snapshot of a day, from ``coins/markets``
asked by CoinGecko id (up to 250 ids a request), through the same client and rate budget as the
universe. A universe coin CoinGecko does not return (or a fallback universe without CoinGecko ids)
keeps its row with NULL values and is named in ``missing``. CoinGecko's markets endpoint has no
history: a day older than yesterday is filled from the data of the fetch and marked
``point_in_time = False``, as the universe is.

Timing (used by the features): the values are CoinGecko's as of the fetch, at the end of the day
(or later); ``feature_table`` of day d reads ``coin_market`` of d - 1, known before d's first bar.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from quant_assets.errors import StoreError
from quant_assets.sources.coingecko import MAX_PER_PAGE, CoinGeckoClient
from quant_assets.store.lake import Lake
from quant_assets.store.schemas import COIN_MARKET


@dataclass(frozen=True)
class CoinMarketDay:
    """One day's market data.

    Attributes:
        frame: the ``coin_market`` rows (:data:`~quant_assets.store.schemas.COIN_MARKET` columns),
            in the universe's order.
        missing: universe symbols CoinGecko gave no market data for (their values NULL).
        requests: ``coins/markets`` requests sent.
        point_in_time: whether the data was fetched on the day or the next.
    """

    frame: pd.DataFrame
    missing: list[str] = field(default_factory=list)
    requests: int = 0
    point_in_time: bool = True


def fetch_coin_market(
    coingecko: CoinGeckoClient, universe: pd.DataFrame, *, day: dt.date, now: dt.datetime | None = None
) -> CoinMarketDay:
    """Market cap, 24h volume and circulating supply of every coin of `universe` (a ``coin_universe`` day).

    Args:
        coingecko: the universe's CoinGecko client (its budget paces these requests too).
        universe: at least ``symbol`` and ``coingecko_id`` (NULL for a coin without one).
        day: the snapshot day.
        now: the fetch time (default: the wall clock), UTC.

    Raises:
        KeyError: `universe` lacks ``symbol`` or ``coingecko_id``.
        SourceError: a CoinGecko request failed for good.
    """
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    symbols = [str(s) for s in universe["symbol"]]
    ids = [None if pd.isna(i) or not str(i) else str(i) for i in universe["coingecko_id"]]
    wanted = sorted({i for i in ids if i is not None})
    coins = {}
    requests = 0
    for start in range(0, len(wanted), MAX_PER_PAGE):
        chunk = wanted[start : start + MAX_PER_PAGE]
        requests += 1
        for coin in coingecko.coins_markets(ids=chunk, order="id_asc", per_page=MAX_PER_PAGE):
            coins[coin.id] = coin
    point_in_time = day >= now.date() - dt.timedelta(days=1)
    rows = []
    missing = []
    for symbol, coin_id in zip(symbols, ids, strict=True):
        coin = coins.get(coin_id) if coin_id is not None else None
        if coin is None:
            missing.append(symbol)
        rows.append(
            {
                "snapshot_date": day,
                "symbol": symbol,
                "coingecko_id": coin_id,
                "market_cap_usd": coin.market_cap if coin else None,
                "total_volume_usd": coin.total_volume if coin else None,
                "circulating_supply": coin.circulating_supply if coin else None,
                "point_in_time": point_in_time,
                "fetched_at": now.replace(tzinfo=None),
            }
        )
    frame = pd.DataFrame(rows, columns=COIN_MARKET.names)
    for column in ("market_cap_usd", "total_volume_usd", "circulating_supply"):
        frame[column] = frame[column].astype("float64")
    frame["fetched_at"] = frame["fetched_at"].astype("datetime64[ms]")
    return CoinMarketDay(frame, missing, requests, point_in_time)


def with_market(lake: Lake, candles: pd.DataFrame) -> pd.DataFrame:
    """`candles` (rows and order kept) plus ``market_cap_usd`` and ``market_volume_usd``.

    A candle of day d gets its coin's values of ``coin_market`` of d - 1: CoinGecko's figures at
    the end of the day before, known before d's first bar (the snapshot of d itself is taken at
    the end of d or later, so it would leak d's own volume into d's bars). NaN where that day or the
    coin's row is missing; the market features are then NaN, as their rule says.
    """
    out = candles.copy()
    days = pd.to_datetime(out["open_time"]).dt.date
    cap = np.full(len(out), np.nan)
    volume = np.full(len(out), np.nan)
    for day in sorted(set(days)):
        try:
            market = lake.read("coin_market", date=day - dt.timedelta(days=1))
        except StoreError:
            continue
        by_symbol = market.drop_duplicates("symbol").set_index("symbol")
        rows = (days == day).to_numpy()
        symbols = out.loc[rows, "symbol"]
        cap[rows] = symbols.map(by_symbol["market_cap_usd"]).to_numpy(dtype=np.float64, na_value=np.nan)
        volume[rows] = symbols.map(by_symbol["total_volume_usd"]).to_numpy(dtype=np.float64, na_value=np.nan)
    out["market_cap_usd"] = cap
    out["market_volume_usd"] = volume
    return out
