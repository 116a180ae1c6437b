"""``predictions``: every registered model's forecast of each closed 5-minute candle of a day.

Day d is predicted by each model's latest version trained on data ending before d (a version never
predicts a day it saw), loaded against the current feature schema: a model fitted under another
schema is refused and the run fails with the message naming the missing and the extra features.
The features come from the feature library only: the stored ``feature_table`` rows of d, and of
d - 1 as context for the sequence models' input windows.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from quant_assets.defs.assets._model_asset import MODEL_ASSET_NAMES, fail_for_days
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.errors import QuantAssetsError
from quant_assets.models.serving import predict_day, write_predictions


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    kinds={"parquet", "duckdb"},
    group_name="models",
    deps=[
        dg.AssetDep(
            "feature_table",  # day d, and d - 1 as the sequence models' context
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-1, end_offset=0, allow_nonexistent_upstream_partitions=True
            ),
        ),
        dg.AssetDep("coin_universe"),  # the symbols predicted: the universe of the same day
        *MODEL_ASSET_NAMES,
    ],
)
def predictions(context: dg.AssetExecutionContext, lake: LakeResource) -> Iterator[dg.AssetMaterialization]:
    """Forecasts of fwd_ret_12 for every closed candle of the day, per model version, with `promoted`.

    One row per (model, version, symbol, open_time); each model predicts with its latest version
    trained before the day. A run over several days writes each day's file and records it; days
    without any model trained before them, or without stored features, fail the run by name
    after the others are stored.
    """
    store = lake.lake()
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    failed: dict[str, str] = {}
    for day in days:
        try:
            frame = predict_day(store, day)
        except QuantAssetsError as error:  # features not stored; every version refused
            failed[str(day)] = str(error)
            continue
        refused: dict[str, str] = dict(frame.attrs.get("refused", {}))
        if refused:  # the other models' rows are still written; the run fails naming the refusal
            failed[str(day)] = "; ".join(f"{model} refused: {why}" for model, why in sorted(refused.items()))
        if frame.empty:
            failed.setdefault(str(day), f"no model has a version trained on data ending before {day}")
            continue
        written = write_predictions(store, day, frame)
        versions = frame.drop_duplicates("model").set_index("model")
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=str(day),
            metadata={
                "rows": written.rows,
                "symbols": int(frame["symbol"].nunique()),
                "models": dg.MetadataValue.json(
                    {
                        model: {"version": str(row.version), "promoted": bool(row.promoted)}
                        for model, row in versions.iterrows()
                    }
                ),
                "promoted_models": int(versions["promoted"].sum()),
                "refused": dg.MetadataValue.json(refused),
                "without_version": dg.MetadataValue.json(list(frame.attrs.get("without_version", []))),
                "path": dg.MetadataValue.path(str(written.path)),
                "sha256": written.sha256,
            },
        )
        context.log.info(f"predictions {day}: {written.rows:,} rows of {len(versions)} models")
    lake.catalog().ensure_views()
    fail_for_days(failed, days=len(days), not_done="predicted")
