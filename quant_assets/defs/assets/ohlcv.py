"""``ohlcv``: closed 5-minute candles from Binance USD-M, one Parquet file per symbol and UTC day."""

import datetime as dt

import dagster as dg
import pandas as pd

from quant_assets.defs.checks import combine, emit_partition_checks
from quant_assets.defs.partitions import ohlcv_partitions, split_ohlcv_key
from quant_assets.defs.resources import BinanceResource, LakeResource
from quant_assets.errors import InvalidSymbolError
from quant_assets.ohlcv_collect import LEFT_OUT_REASONS, SymbolDay, collect_ohlcv, consecutive_runs
from quant_assets.progress import throttled
from quant_assets.quality import CheckOutcome, check_ohlcv_partition, failure_summary
from quant_assets.store.lake import OHLCV_INVALID_KEY, WriteResult

EXCHANGE = "binance"
CHECK_NAMES = ("candles_valid", "complete_day")
_VALIDITY_RULES = (
    "unique_open_time",
    "five_minute_grid",
    "ohlc_consistent",
    "volumes_non_negative",
)


def rerun_commands(failed: list[SymbolDay]) -> list[str]:
    """One ``quant-assets backfill`` command per symbol and run of consecutive failed days."""
    by_symbol: dict[str, list[dt.date]] = {}
    for partition in failed:
        by_symbol.setdefault(partition.symbol, []).append(partition.day)
    return [
        f"  quant-assets backfill --symbols {symbol} --end {last} --days {(last - first).days + 1}"
        for symbol, days in sorted(by_symbol.items())
        for first, last in consecutive_runs(days)
    ][:20]


@dg.asset(
    partitions_def=ohlcv_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    pool="binance",
    kinds={"parquet", "duckdb"},
    group_name="market_data",
    # (day, symbol) depends on that day's universe only: a new snapshot makes its own day stale.
    deps=[
        dg.AssetDep(
            "coin_universe",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "candles_valid",
            asset="ohlcv",
            description="every partition, candles as served: no open_time served twice with differing "
            "values, exact 5-minute grid, low <= open/close <= high, volumes >= 0. A failing "
            "symbol-day stays stored and is left out of feature_table",
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
    as served: the still-open candle never, a gap stays a gap (the `complete_day` check warns),
    one open time served with differing values is kept twice (`candles_valid` fails). What the
    client left out (exact repeats, the still-open candle, rows outside the days) is counted in each
    partition's metadata. One failed symbol-day keeps every other written partition (also the days
    of its symbol fetched before a refused request) and fails the run naming it.
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

    def write(partition: SymbolDay, candles: pd.DataFrame) -> None:
        outcomes = check_ohlcv_partition(candles, partition.day)
        # Written with the data, in the same atomic file: feature_table reads it (Lake.invalid_ohlcv).
        reason = failure_summary(outcomes)
        result = store.write(
            "ohlcv",
            candles,
            metadata={OHLCV_INVALID_KEY: reason} if reason else None,
            exchange=EXCHANGE,
            symbol=partition.symbol,
            date=partition.day,
        )
        written[partition] = (result, outcomes)

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
                    **{
                        f"left_out_{reason}": count
                        for reason, count in outcome.left_out.get(
                            partition, dict.fromkeys(LEFT_OUT_REASONS, 0)
                        ).items()
                    },
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
        more = (
            f"\n  ... and {len(failed) - 50} more (metadata: failed_partitions)" if len(failed) > 50 else ""
        )
        raise dg.Failure(
            description=(
                f"{len(failed)} of {len(context.partition_keys)} symbol-days failed; the other "
                f"{len(written)} are stored. Re-run just these:\n{listing}{more}\n"
                + "\n".join(rerun_commands(sorted(outcome.failed)))
            ),
            metadata={"failed_partitions": dg.MetadataValue.json(failed), **run_summary},
            allow_retries=False,
        )
