"""``labels``: forward log returns of each day's candles, an asset of its own (never a model input).

Lineage: day d's labels read the candles of d and of d + 1 (the 48-bar horizon crosses midnight).
The graph shows the edge from ``ohlcv`` with the day's mapping; Dagster 1.13 has no mapping from
the ``date x symbol`` partitions to a daily asset with an offset (``TimeWindowPartitionMapping`` is
refused there and custom mappings are unsupported, dagster#16023), so the d + 1 dependence is kept
by ``labels_sensor``: when ``ohlcv`` d lands it requests labels d - 1 and d, and each rewrite is a
materialization that says how many next-day candles it read.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.feature_days import DayReader, build_label_day, write_label_day


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
)
def labels(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[dg.AssetMaterialization]:
    """Forward log returns (1, 12, 48 bars) of every symbol with valid candles that day.

    NULL where the future is not stored yet: the day is rebuilt when the next day's candles land.
    Symbol-days that failed `candles_valid` are left out (the metadata says which and why); an
    invalid next day leaves the labels that need it NULL.
    """
    store = lake.lake()
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    empty: list[str] = []
    reader = DayReader(store)  # each day file read once for the whole range
    for day in days:
        built = build_label_day(store, day, reader=reader)
        if built.labels.empty:
            empty.append(str(day))
            continue
        written = write_label_day(store, built)
        # One event per day, with that day's own metadata (a returned result would give every
        # partition of the run the same metadata, plus an output Dagster records for each).
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=str(day),
            metadata={
                "rows": written.rows,
                "symbols": int(built.labels["symbol"].nunique()),
                "next_day_candles": built.next_day_candles,
                "future_known": built.next_day_candles > 0,
                "known_fwd_48": int(built.labels["fwd_ret_48"].notna().sum()),
                "left_out_invalid": dg.MetadataValue.json(built.left_out),
                "next_day_left_out_invalid": dg.MetadataValue.json(built.next_day_left_out),
                "path": dg.MetadataValue.path(str(written.path)),
                "sha256": written.sha256,
            },
        )
    lake.catalog().ensure_views()
    if empty:
        raise dg.Failure(
            description=(
                f"{len(empty)} of {len(days)} days have no valid candles stored (materialize ohlcv "
                f"first); the others are stored: {empty}"
            ),
            metadata={"failed_days": dg.MetadataValue.json(empty)},
            allow_retries=False,
        )
