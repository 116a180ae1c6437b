"""``model_evaluation``: each model version's predictions of a day scored against what happened.

Dependency: day d is scored against the ``labels`` of d, whose last hour of ``fwd_ret_12`` needs
the first hour of d + 1's candles; ``labels`` d is rebuilt (a new materialization) when ``ohlcv``
d + 1 lands. So ``model_evaluation`` d depends on ``predictions`` d and ``labels`` d, and refuses to
run, saying so, while ``labels`` d still lacks its last hour's forward returns: an evaluation is
written once, over the whole day, never over a part of it that would later change. In the daily
chain, day d is evaluated in the run of day d + 1.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from quant_assets.defs.assets._model_asset import fail_for_days
from quant_assets.defs.partitions import daily_partitions
from quant_assets.defs.resources import LakeResource
from quant_assets.errors import QuantAssetsError
from quant_assets.models.base import HORIZON_BARS, TARGET
from quant_assets.models.serving import evaluate_day, write_evaluation
from quant_assets.store.lake import Lake

_BAR = dt.timedelta(minutes=5)
_SCORES = ("ic", "directional_accuracy", "rmse")


def labels_known(store: Lake, day: dt.date) -> str | None:
    """None when the labels of `day` know the forward returns of its last hour; else why not."""
    try:
        labels = store.read("labels", date=day)
    except QuantAssetsError:
        return f"labels {day} are not stored: materialize labels for {day}"
    last_hour = pd.Timestamp(dt.datetime.combine(day + dt.timedelta(days=1), dt.time())) - HORIZON_BARS * _BAR
    tail = labels.loc[labels["open_time"] >= last_hour, TARGET]
    if tail.notna().any():
        return None
    return (
        f"labels {day} do not know {TARGET} of its last hour yet: it needs the first hour of "
        f"{day + dt.timedelta(days=1)}'s candles (materialize ohlcv for that day; labels {day} is "
        "rebuilt then)"
    )


def evaluation_markdown(frame: pd.DataFrame) -> str:
    """One line per model version: rows and the scores of the model and of both baselines."""
    header = "| model | version | rows | IC | dir. acc. | RMSE | IC zero | IC last | RMSE zero | RMSE last |"
    lines = [header, "|---|---|---:|" + "---:|" * 7]
    for row in frame.itertuples(index=False):
        values = row._asdict()

        def cell(key: str, values: dict = values) -> str:
            value = values.get(key)
            return "-" if value is None or pd.isna(value) else f"{float(value):.5f}"

        cells = [
            cell(k)
            for k in (
                "ic",
                "directional_accuracy",
                "rmse",
                "baseline_zero_ic",
                "baseline_last_ic",
                "baseline_zero_rmse",
                "baseline_last_rmse",
            )
        ]
        lines.append(
            f"| {values['model']} | {values['version']} | {values['rows']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    output_required=False,
    kinds={"parquet", "duckdb"},
    group_name="models",
    deps=["predictions", "labels"],  # both of day d; labels d complete only once ohlcv d + 1 landed
)
def model_evaluation(
    context: dg.AssetExecutionContext, lake: LakeResource
) -> Iterator[dg.AssetMaterialization]:
    """Day d's predictions of every model version against the realized fwd_ret_12, next to both
    naive baselines (zero return, last 12-bar return) on the same rows: rows, IC (Spearman across
    symbols per timestamp, averaged), directional accuracy, RMSE. One row per (model, version, day),
    so decay shows over the days. Waits for the labels of d to know their last hour (needs d + 1).
    """
    store = lake.lake()
    days = sorted(dt.date.fromisoformat(key) for key in context.partition_keys)
    failed: dict[str, str] = {}
    for day in days:
        waiting = labels_known(store, day)
        if waiting:
            failed[str(day)] = waiting
            continue
        try:
            frame = evaluate_day(store, day)
        except QuantAssetsError as error:  # no predictions stored for the day
            failed[str(day)] = str(error)
            continue
        if frame.empty:
            failed[str(day)] = f"no predictions of {day} with known labels: materialize predictions first"
            continue
        written = write_evaluation(store, day, frame)
        metadata: dict[str, object] = {
            "rows": written.rows,
            "scores": dg.MetadataValue.md(evaluation_markdown(frame)),
            "path": dg.MetadataValue.path(str(written.path)),
            "sha256": written.sha256,
        }
        for row in frame.itertuples(index=False):  # plain floats: the UI plots them across days
            for score in _SCORES:
                value = getattr(row, score, None)
                if value is not None and not pd.isna(value):
                    metadata[f"{row.model}/{score}"] = dg.MetadataValue.float(float(value))
        yield dg.AssetMaterialization(asset_key=context.asset_key, partition=str(day), metadata=metadata)
        context.log.info(f"model_evaluation {day}: {len(frame)} model versions scored")
    lake.catalog().ensure_views()
    fail_for_days(failed, days=len(days), not_done="evaluated")
