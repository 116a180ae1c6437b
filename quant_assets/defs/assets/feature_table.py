"""``feature_table``: one day of features for every symbol, from the one feature library."""

import datetime as dt

import dagster as dg

from quant_assets.defs.checks import SEVERITY
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.feature_store import SCHEMA_HASH_KEY, build_feature_day, build_labels, write_feature_day
from quant_assets.features import feature_schema


@dg.asset(
    partitions_def=daily_partitions,
    kinds={"parquet", "duckdb"},
    group_name="features",
    deps=[
        dg.AssetDep(
            "ohlcv",
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="date"),
        )
    ],
    check_specs=[
        dg.AssetCheckSpec("no_nan_after_warmup", asset="feature_table"),
        dg.AssetCheckSpec("no_infinities", asset="feature_table"),
        dg.AssetCheckSpec("schema_hash_matches", asset="feature_table"),
    ],
)
def feature_table(context: dg.AssetExecutionContext, lake: LakeResource) -> dg.MaterializeResult:
    """Every registered feature for each symbol's candles of the day, plus forward-return labels.

    Computed by `quant_assets.features.compute_features`, the same function training and live
    inference call; earlier days are read from the lake as warm-up. The file carries the feature
    schema hash, and the checks prove it equals the registry's. Labels (forward log returns at 1, 12
    and 48 bars) go to their own table and are never inputs.
    """
    day = dt.date.fromisoformat(context.partition_key)
    store = lake.lake()
    built = build_feature_day(store, day)
    if built.features.empty:
        raise dg.Failure(f"no candles stored for {day}: materialize ohlcv for that day first")
    features, labels, _ = write_feature_day(store, built)
    # Yesterday's last 48 bars had no future when they were built; now they have one.
    previous = day - dt.timedelta(days=1)
    if store.path("labels", date=previous).exists():
        store.write("labels", build_labels(store, previous), date=previous)
    lake.catalog().ensure_views()

    registry_hash = feature_schema().hash
    stored_hash = store.file_metadata("features", date=day).get(SCHEMA_HASH_KEY)
    checks = [
        dg.AssetCheckResult(
            check_name=outcome.name,
            passed=outcome.passed,
            severity=SEVERITY[outcome.severity],
            description=outcome.description,
            metadata=outcome.metadata,
        )
        for outcome in built.checks
    ]
    checks.append(
        dg.AssetCheckResult(
            check_name="schema_hash_matches",
            passed=stored_hash == registry_hash,
            metadata={"stored": str(stored_hash), "registry": registry_hash},
        )
    )
    return dg.MaterializeResult(
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
        check_results=checks,
    )
