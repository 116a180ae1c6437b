"""``coin_universe``: the day's top coins by 24h volume, mapped to Binance USD-M perpetuals."""

import datetime as dt

import dagster as dg
import pyarrow.parquet as pq

from quant_assets.defs.partitions import daily_partitions, symbol_partitions
from quant_assets.defs.resources import BinanceResource, CoinGeckoResource, CollectionConfig, LakeResource
from quant_assets.store.lake import Lake
from quant_assets.universe import universe_changes
from quant_assets.universe_snapshot import take_universe_snapshot


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"parquet", "duckdb"},
    group_name="market_data",
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=1),
    pool="binance",  # it calls Binance (exchangeInfo, the 24h fallback): one pool per venue, as ohlcv
)
def coin_universe(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    binance: BinanceResource,
    coingecko: CoinGeckoResource,
    collection: CollectionConfig,
) -> dg.MaterializeResult:
    """Top base, Layer-1 and Layer-2 coins by 24h volume (CoinGecko), as Binance USD-M perpetuals.

    Stablecoins, wrapped, bridged and liquid-staking tokens are excluded; coins map to contracts by
    CoinGecko id (1000-prefixed contracts and renamed tickers included) and every contract is checked
    against exchangeInfo. When CoinGecko cannot be reached, Binance's 24h quote-volume ranking is used
    (`source = 'binance_fallback'`). New symbols are registered as `symbol` partitions at once.
    """
    day = dt.date.fromisoformat(context.partition_key)
    snapshot = take_universe_snapshot(
        coingecko=coingecko.client(),
        binance=binance.client(),
        max_symbols=collection.max_symbols,
        snapshot_date=day,
    )
    result = snapshot.result
    for warning in snapshot.warnings:
        context.log.warning(warning)
    for raw in result.rejected_symbols:
        context.log.warning(f"skipped symbol {raw!r}: not a safe symbol name (A-Z, 0-9, 2-30 chars)")

    store = lake.lake()
    written = store.write("coin_universe", result.frame, date=day)
    previous_day, previous = previous_snapshot(store, day)
    added, removed = universe_changes(previous, result.symbols)
    new_partitions = [
        s for s in result.symbols if not context.instance.has_dynamic_partition(symbol_partitions.name, s)
    ]
    if new_partitions:
        context.instance.add_dynamic_partitions(symbol_partitions.name, new_partitions)
        context.log.info(f"registered {len(new_partitions)} new symbol partitions: {new_partitions}")
    lake.catalog().ensure_views()

    preview = result.frame.head(25)[["rank", "symbol", "coingecko_id", "categories", "volume_24h_usd"]]
    return dg.MaterializeResult(
        metadata={
            "source": result.source,
            "symbols": len(result.symbols),
            "added": dg.MetadataValue.json(added),
            "removed": dg.MetadataValue.json(removed),
            "previous_snapshot": str(previous_day) if previous_day else "none",
            "new_symbol_partitions": dg.MetadataValue.json(new_partitions),
            "rejected_symbols": dg.MetadataValue.json(list(result.rejected_symbols)),
            "excluded": len(result.excluded),
            "warnings": dg.MetadataValue.json(snapshot.warnings),
            "point_in_time": snapshot.point_in_time,
            "path": dg.MetadataValue.path(str(written.path)),
            "sha256": written.sha256,
            "preview": dg.MetadataValue.md(preview.to_markdown(index=False)),
        }
    )


def previous_snapshot(store: Lake, day: dt.date) -> tuple[dt.date | None, list[str]]:
    """The latest snapshot strictly before `day` and its symbols, or (None, [])."""
    earlier = [path for path in store.files("coin_universe") if path.stem.removeprefix("date=") < str(day)]
    if not earlier:
        return None, []
    latest = earlier[-1]
    symbols = pq.read_table(latest, columns=["symbol"]).column("symbol").to_pylist()
    return dt.date.fromisoformat(latest.stem.removeprefix("date=")), symbols
