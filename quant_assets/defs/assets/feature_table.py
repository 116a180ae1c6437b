"""``feature_table``: one day of features for the day's universe, from the one feature library."""

import datetime as dt

import dagster as dg

from quant_assets.defs.checks import emit_partition_checks
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.errors import StoreError
from quant_assets.feature_days import DayReader, build_feature_day, stale_feature_days, write_feature_day
from quant_assets.features import feature_schema
from quant_assets.quality import CheckOutcome

CHECK_NAMES = ("no_nan_after_warmup",)
STALE_CHECK = "stored_days_match_schema"


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    kinds={"parquet", "duckdb"},
    group_name="features",
    deps=[
        dg.AssetDep(
            "ohlcv",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
        ),
        dg.AssetDep("coin_universe"),  # the universe snapshot of the same day
        # market cap and volume known before d's first bar: the snapshot of d - 1 (mcap_rank, turnover)
        dg.AssetDep(
            "coin_market",
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=-1, allow_nonexistent_upstream_partitions=True
            ),
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_nan_after_warmup",
            asset="feature_table",
            description=(
                "no feature is NaN after its lookback unless its documented nan_when condition holds "
                "on the candles, and none is ever +/-inf"
            ),
        ),
        dg.AssetCheckSpec(
            STALE_CHECK,
            asset="feature_table",
            description=(
                "every stored features day was built under the registry's current schema hash; "
                "lists the days that were not (the feature sensor rebuilds them)"
            ),
        ),
    ],
)
def feature_table(context: dg.AssetExecutionContext, lake: LakeResource):  # noqa: ANN201 - a generator of check results
    """Every registered feature for the symbols of the day's `coin_universe` (plus BTCUSDT).

    Computed by `quant_assets.features.compute_features`, the same function training and live
    inference call. Each day reads its own fixed warm-up window from the lake, so a day's file is
    the same bytes whether it was built alone or in a backfill of many days (one run). Symbol-days
    that failed `candles_valid` are left out (the metadata says which and why). Every row carries
    the feature schema hash; the `features` view shows the current hash's days only.
    Labels are the `labels` asset.
    """
    store = lake.lake()
    registry_hash = feature_schema().hash
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    outcomes: dict[str, list[CheckOutcome]] = {}
    failed: dict[str, str] = {}
    reader = DayReader(store)  # each day file read once for the whole range
    for day in days:
        try:
            built = build_feature_day(store, day, reader=reader)
        except (StoreError, ValueError) as error:  # no universe snapshot; candles compute_features refuses
            failed[str(day)] = str(error)
            continue
        if built.features.empty:
            failed[str(day)] = f"no valid candles stored for {day}: materialize ohlcv for that day first"
            if built.left_out:
                failed[str(day)] += f" (left out as invalid: {built.left_out})"
            continue
        features, _ = write_feature_day(store, built)
        outcomes[str(day)] = built.checks
        if built.left_out:
            context.log.warning(f"feature_table {day}: left out invalid symbol-days {built.left_out}")
        if not built.universe.point_in_time:
            context.log.warning(
                f"feature_table {day}: no coin_universe snapshot on or before it; the universe of "
                f"{built.universe.snapshot_date} is used (not point in time)"
            )
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=str(day),
                metadata={
                    "rows": features.rows,
                    "symbols": built.symbols,
                    "features": len(feature_schema().names),
                    "feature_schema_hash": built.schema_hash,
                    "universe_snapshot": str(built.universe.snapshot_date),
                    "universe_point_in_time": built.universe.point_in_time,
                    "universe_symbols": len(built.universe.symbols),
                    "without_candles": dg.MetadataValue.json(built.without_candles),
                    "left_out_invalid": dg.MetadataValue.json(built.left_out),
                    "warmup_days_dropped_invalid": dg.MetadataValue.json(built.warmup_dropped),
                    "warmup_days_read": built.warmup_days,
                    "path": dg.MetadataValue.path(str(features.path)),
                    "sha256": features.sha256,
                },
            )
        )
        context.log.info(f"feature_table {day}: {features.rows:,} rows of {built.symbols} symbols")
    lake.catalog().ensure_views()
    yield from emit_partition_checks(context, context.asset_key, outcomes, CHECK_NAMES)
    yield stale_days_result(stale_feature_days(store, registry_hash), registry_hash)
    if failed:
        listing = "\n".join(f"  {day}: {message}" for day, message in failed.items())
        raise dg.Failure(
            description=f"{len(failed)} of {len(days)} days were not built; the others are stored:\n{listing}",
            metadata={"failed_days": dg.MetadataValue.json(failed)},
            allow_retries=False,
        )


def stale_days_result(stale: dict[dt.date, str | None], registry_hash: str) -> dg.AssetCheckResult:
    """The stored days whose schema hash is not the registry's: the check fails when any exists."""
    listed = {str(day): stored or "none recorded" for day, stored in sorted(stale.items())}
    return dg.AssetCheckResult(
        check_name=STALE_CHECK,
        passed=not stale,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "every stored day has the registry's schema hash"
            if not stale
            else f"{len(stale)} stored days were built under another schema; the feature sensor rebuilds them"
        ),
        metadata={
            "registry_hash": registry_hash,
            "stale_days": len(stale),
            "stale": dg.MetadataValue.json(dict(list(listed.items())[:200])),
        },
    )
