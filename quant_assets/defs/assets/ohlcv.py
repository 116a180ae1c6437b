"""``ohlcv``: closed 5-minute candles from Binance USD-M, one Parquet file per symbol and UTC day."""

import dagster as dg

from quant_assets.defs.checks import combine, emit_partition_checks
from quant_assets.defs.partitions import ohlcv_partitions, split_ohlcv_key
from quant_assets.defs.resources import BinanceResource, LakeResource
from quant_assets.errors import InvalidSymbolError
from quant_assets.ohlcv_collect import SymbolDay, collect_ohlcv
from quant_assets.progress import throttled
from quant_assets.quality import CheckOutcome, check_ohlcv_partition
from quant_assets.store.lake import WriteResult

EXCHANGE = "binance"
CHECK_NAMES = ("candles_valid", "complete_day")
_VALIDITY_RULES = (
    "unique_open_time",
    "five_minute_grid",
    "ohlc_consistent",
    "volumes_non_negative",
    "inside_day",
)


@dg.asset(
    partitions_def=ohlcv_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    pool="binance",
    kinds={"parquet", "duckdb"},
    group_name="market_data",
    deps=[dg.AssetDep("coin_universe", partition_mapping=dg.AllPartitionMapping())],
    check_specs=[
        dg.AssetCheckSpec(
            "candles_valid",
            asset="ohlcv",
            description="every partition: unique open_time, exact 5-minute grid, low <= open/close <= high, "
            "volumes >= 0, every candle inside the partition's UTC day",
        ),
        dg.AssetCheckSpec(
            "complete_day",
            asset="ohlcv",
            description="every partition: 288 candles; a gap is reported with its missing minutes (warning), never filled",
        ),
    ],
)
def ohlcv(context: dg.AssetExecutionContext, lake: LakeResource, binance: BinanceResource):  # noqa: ANN201 - a generator of check results
    """Closed 5-minute candles of one symbol and UTC day from Binance USD-M `/fapi/v1/klines`.

    A run may cover thousands of partitions: consecutive days of a symbol are fetched together
    (limit 499, the cheapest weight per candle) inside the shared weight budget. Candles are stored
    as served: the still-open candle never, a gap stays a gap (the `complete_day` check warns).
    One failed symbol-day keeps every other written partition and fails the run naming it.
    """
    store = lake.lake()
    wanted: list[SymbolDay] = []
    invalid: list[str] = []
    for key in context.partition_keys:
        try:
            symbol, day = split_ohlcv_key(key)
        except InvalidSymbolError:
            invalid.append(key)
            continue
        wanted.append(SymbolDay(symbol, day))

    written: dict[SymbolDay, tuple[WriteResult, list[CheckOutcome]]] = {}

    def write(partition: SymbolDay, candles: object) -> None:
        result = store.write("ohlcv", candles, exchange=EXCHANGE, symbol=partition.symbol, date=partition.day)
        written[partition] = (result, check_ohlcv_partition(candles, partition.day))

    context.log.info(f"collecting {len(wanted):,} symbol-days from {binance.base_url}")
    outcome = collect_ohlcv(
        binance.client(),
        wanted,
        write,
        on_progress=throttled(lambda line: context.log.info(f"ohlcv: {line}")),
    )
    store.compact_ohlcv({partition.day for partition in written}, exchange=EXCHANGE)
    lake.catalog().ensure_views()

    run_summary = {
        "run_partitions": len(context.partition_keys),
        "run_candles": sum(outcome.written.values()),
        "run_requests": outcome.requests,
        "run_weight": outcome.weight,
    }
    checks_by_partition: dict[str, list[CheckOutcome]] = {}
    for partition, (result, outcomes) in sorted(written.items()):
        key = f"{partition.day.isoformat()}|{partition.symbol}"
        by_rule = {o.name: o for o in outcomes}
        checks_by_partition[key] = [
            combine("candles_valid", [by_rule[r] for r in _VALIDITY_RULES], "ERROR"),
            by_rule["complete_day"],
        ]
        gaps = by_rule["complete_day"].metadata
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=key,
                metadata={
                    "candles": result.rows,
                    "candles_valid": checks_by_partition[key][0].passed,
                    "missing_candles": gaps["missing_candles"],
                    "gaps": dg.MetadataValue.json(gaps["gaps"]),
                    "path": dg.MetadataValue.path(str(result.path)),
                    "sha256": result.sha256,
                    **run_summary,
                },
            )
        )
    yield from emit_partition_checks(context, context.asset_key, checks_by_partition, CHECK_NAMES)

    failed = {f"{p.day.isoformat()}|{p.symbol}": message for p, message in sorted(outcome.failed.items())}
    failed.update({key: "invalid symbol in partition key" for key in invalid})
    context.log.info(f"ohlcv run done: {len(written):,} partitions written, {len(failed):,} failed")
    if failed:
        listing = "\n".join(f"  {key}: {message}" for key, message in list(failed.items())[:50])
        raise dg.Failure(
            description=(
                f"{len(failed)} of {len(context.partition_keys)} symbol-days failed; the other "
                f"{len(written)} are stored. Re-run just these:\n{listing}"
            ),
            metadata={"failed_partitions": dg.MetadataValue.json(failed), **run_summary},
            allow_retries=False,
        )
