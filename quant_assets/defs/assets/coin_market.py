"""``coin_market``: CoinGecko market cap, 24h volume and circulating supply of the day's universe."""

import datetime as dt

import dagster as dg

from quant_assets.coin_market import fetch_coin_market
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import CoinGeckoResource, LakeResource
from quant_assets.errors import StoreError


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"parquet", "duckdb"},
    group_name="market_data",
    deps=[dg.AssetDep("coin_universe")],  # the universe snapshot of the same day
)
def coin_market(
    context: dg.AssetExecutionContext, lake: LakeResource, coingecko: CoinGeckoResource
) -> dg.MaterializeResult:
    """Market cap, 24h total volume and circulating supply of every coin of the day's `coin_universe`.

    CoinGecko `coins/markets` by id, through the universe's client and rate budget. A coin CoinGecko
    does not return keeps its row with NULLs (metadata `missing`). CoinGecko has no history of this
    endpoint: a day older than yesterday is filled from the fetch's data (`point_in_time` false).
    `feature_table` of day d reads the coin_market of d - 1 (its values are as of the end of d - 1,
    known before d's first bar): market-cap rank within the universe and turnover.
    """
    day = dt.date.fromisoformat(context.partition_key)
    store = lake.lake()
    try:
        universe = store.read("coin_universe", date=day)
    except StoreError as error:
        raise dg.Failure(
            description=f"coin_market {day}: no coin_universe snapshot of that day; materialize it first ({error})",
            allow_retries=False,
        ) from error
    market = fetch_coin_market(coingecko.client(), universe, day=day)
    if not market.point_in_time:
        context.log.warning(
            f"coin_market {day}: CoinGecko's markets endpoint has no history; filled from today's data"
        )
    if market.missing:
        context.log.warning(f"coin_market {day}: no CoinGecko market data for {', '.join(market.missing)}")
    written = store.write("coin_market", market.frame, date=day)
    lake.catalog().ensure_views()
    return dg.MaterializeResult(
        metadata={
            "coins": len(market.frame),
            "missing": dg.MetadataValue.json(market.missing),
            "requests": market.requests,
            "point_in_time": market.point_in_time,
            "path": dg.MetadataValue.path(str(written.path)),
            "sha256": written.sha256,
        }
    )
