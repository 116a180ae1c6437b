"""``feature_table``: one day of features for every symbol, from the one feature library."""

import datetime as dt

import dagster as dg

from quant_assets.defs.checks import emit_partition_checks
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.feature_store import (
    SCHEMA_HASH_KEY,
    build_feature_day,
    build_labels,
    write_feature_day,
)
from quant_assets.features import feature_schema
from quant_assets.quality import CheckOutcome

CHECK_NAMES = ("no_nan_after_warmup", "no_infinities", "schema_hash_matches")


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
        )
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "no_nan_after_warmup",
            asset="feature_table",
            description="every feature is a number once its lookback is covered (documented cases apart)",
        ),
        dg.AssetCheckSpec("no_infinities", asset="feature_table", description="no value is +/-inf"),
        dg.AssetCheckSpec(
            "schema_hash_matches",
            asset="feature_table",
            description="the hash stored in each file equals the feature registry's",
        ),
    ],
)
def feature_table(context: dg.AssetExecutionContext, lake: LakeResource):  # noqa: ANN201 - a generator of check results
    """Every registered feature for each symbol's candles of the day, plus forward-return labels.

    Computed by `quant_assets.features.compute_features`, the same function training and live
    inference call. Each day reads its own fixed warm-up window from the lake, so a day's file is
    the same bytes whether it was built alone or in a backfill of many days (one run). The file
    carries the feature schema hash, and a check proves it equals the registry's. Labels (forward
    log returns at 1, 12 and 48 bars) go to their own table and are never inputs.
    """
    store = lake.lake()
    registry_hash = feature_schema().hash
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    outcomes: dict[str, list[CheckOutcome]] = {}
    failed: dict[str, str] = {}
    for day in days:
        built = build_feature_day(store, day)
        if built.features.empty:
            failed[str(day)] = f"no candles stored for {day}: materialize ohlcv for that day first"
            continue
        features, labels, _ = write_feature_day(store, built)
        # The day before had no future for its last 48 bars when it was built alone; now it has
        # one. Inside this run it was just built with this day's candles already stored.
        previous = day - dt.timedelta(days=1)
        if previous not in days and store.path("labels", date=previous).exists():
            store.write("labels", build_labels(store, previous), date=previous)
        stored_hash = store.file_metadata("features", date=day).get(SCHEMA_HASH_KEY)
        outcomes[str(day)] = [
            *built.checks,
            CheckOutcome(
                "schema_hash_matches",
                stored_hash == registry_hash,
                "ERROR",
                "the hash stored in the file equals the feature registry's",
                {"stored": str(stored_hash), "registry": registry_hash},
            ),
        ]
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=str(day),
                metadata={
                    "rows": features.rows,
                    "symbols": built.symbols,
                    "features": len(feature_schema().names),
                    "feature_schema_hash": registry_hash,
                    "warmup_days_read": built.warmup_days,
                    "label_rows": labels.rows,
                    "labels_known_fwd_48": int(built.labels["fwd_ret_48"].notna().sum()),
                    "path": dg.MetadataValue.path(str(features.path)),
                    "sha256": features.sha256,
                },
            )
        )
        context.log.info(f"feature_table {day}: {features.rows:,} rows of {built.symbols} symbols")
    lake.catalog().ensure_views()
    yield from emit_partition_checks(context, context.asset_key, outcomes, CHECK_NAMES)
    if failed:
        listing = "\n".join(f"  {day}: {message}" for day, message in failed.items())
        raise dg.Failure(
            description=f"{len(failed)} of {len(days)} days have no candles; the others are stored:\n{listing}",
            metadata={"failed_days": dg.MetadataValue.json(failed)},
            allow_retries=False,
        )
