"""The model assets, ``predictions`` and ``model_evaluation``, through real runs on a simulator lake.

The planted signal proves the chain both ways: with the simulator's order-flow signal on, the tree
models find it, are promoted, and score a positive IC on the days after training; with it off, no
model is promoted and no day's IC is far from zero (a model that "wins" on noise is leakage).
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.definitions import defs
from quant_assets.defs.assets._model_asset import MODEL_ASSET_NAMES, decile_returns
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.model_evaluation import model_evaluation
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.assets.predictions import predictions
from quant_assets.features import feature_schema
from quant_assets.features.schema import FeatureSchema
from quant_assets.models import MODELS
from quant_assets.models.base import TARGET, Panel, TimeRange
from quant_assets.models.data import load_panel
from quant_assets.models.registry import ModelVersion, save_artifact, version_name, write_version
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for
from quant_assets_tests.model_helpers import (
    FIRST,
    LAST,
    SCORED_DAYS,
    SYMBOLS,
    TRAIN_DAYS,
    TRAIN_END,
    TREES,
    ModelLake,
    model_lake,
)

MODEL_ASSETS = [dg.AssetKey(name) for name in MODEL_ASSET_NAMES]


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> ModelLake:
    return model_lake(tmp_path_factory.getbasetemp(), signal=True)


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> ModelLake:
    return model_lake(tmp_path_factory.getbasetemp(), signal=False)


def latest_model_metadata(instance: dg.DagsterInstance, model: str) -> dict[str, object]:
    records = instance.fetch_materializations(dg.AssetKey(f"{model}_model"), limit=1).records
    assert records, f"{model}_model was never materialized"
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


# ------------------------------------------------------------------------------- planted signal
def test_with_the_planted_signal_the_tree_models_are_promoted(signal: ModelLake) -> None:
    rows = query(
        signal.data_dir,
        "SELECT model, promoted, feature_schema_hash, reason FROM model_registry ORDER BY model",
    )
    assert [(m, p, h) for m, p, h, _ in rows] == [
        ("lightgbm", True, feature_schema().hash),
        ("xgboost", True, feature_schema().hash),
    ], rows
    for model in TREES:
        metadata = latest_model_metadata(signal.instance, model)
        assert metadata["promoted"] is True
        assert str(metadata["verdict"]).startswith("promoted: ")
        assert float(metadata["bootstrap/ic_diff_lower_zero"]) > 0  # type: ignore[arg-type]
        assert float(metadata["bootstrap/ic_diff_lower_last"]) > 0  # type: ignore[arg-type]


def test_with_the_planted_signal_model_evaluation_shows_a_positive_ic_on_every_later_day(
    signal: ModelLake,
) -> None:
    rows = query(
        signal.data_dir,
        "SELECT model, day, rows, ic, baseline_last_ic FROM model_evaluation ORDER BY model, day",
    )
    assert [(m, d) for m, d, *_ in rows] == [(m, d) for m in sorted(TREES) for d in SCORED_DAYS]
    for model, day, scored, ic, last_ic in rows:
        assert scored == 288 * len(SYMBOLS), (model, day, scored)  # every candle's label is known
        assert ic > 0, (model, day, ic)
        assert ic > last_ic, (model, day, ic, last_ic)
    for model in TREES:
        days = [ic for m, _, _, ic, _ in rows if m == model]
        assert sum(days) / len(days) > 0.05, (model, days)


def test_without_the_signal_no_model_is_promoted_and_no_ic_is_far_from_zero(noise: ModelLake) -> None:
    rows = query(noise.data_dir, "SELECT model, promoted, reason FROM model_registry ORDER BY model")
    assert [(m, p) for m, p, _ in rows] == [("lightgbm", False), ("xgboost", False)], rows
    for model in TREES:
        verdict = str(latest_model_metadata(noise.instance, model)["verdict"])
        assert verdict.startswith("not promoted: "), verdict
    ics = query(noise.data_dir, "SELECT model, day, ic FROM model_evaluation ORDER BY model, day")
    assert len(ics) == len(TREES) * len(SCORED_DAYS)
    assert all(abs(ic) < 0.1 for _, _, ic in ics), ics


# ------------------------------------------------------------------------ what the UI shows
def test_model_metadata_reads_back_through_the_instance(signal: ModelLake) -> None:
    metadata = latest_model_metadata(signal.instance, "xgboost")
    version = signal.trained.versions["xgboost"]
    assert metadata["version"] == version.version
    assert metadata["feature_schema_hash"] == feature_schema().hash
    assert metadata["train_end"] == str(version.train_end)
    table = str(metadata["metrics"]).splitlines()
    assert table[0] == "| test metric | model | zero return | last 12-bar return |"
    assert [line.split(" | ")[0] for line in table[2:6]] == [
        "| IC (Spearman per timestamp, mean)",
        "| RMSE",
        "| MAE",
        "| directional accuracy",
    ]
    assert float(metadata["ic"]) == pytest.approx(version.metrics["ic"])  # type: ignore[arg-type]
    assert float(metadata["baseline_zero/rmse"]) == pytest.approx(  # type: ignore[arg-type]
        version.metrics["baseline_zero"]["rmse"]
    )
    importances = str(metadata["importances"]).splitlines()
    assert len(importances) == 2 + 20  # header, rule, the top 20
    assert "taker_buy" in importances[2]  # the planted signal lives in the taker-buy share
    deciles = str(metadata["deciles"])
    image = deciles.split("data:image/png;base64,", 1)[1].split(")", 1)[0]
    assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")
    assert deciles.count("\n| ") == 1 + 10  # header + ten deciles


def test_realized_returns_rise_with_the_predicted_decile_when_the_signal_is_on(signal: ModelLake) -> None:
    deciles = str(latest_model_metadata(signal.instance, "lightgbm")["deciles"]).splitlines()
    rows = [line.strip("|").split("|") for line in deciles if line.startswith("| ") and "decile" not in line]
    realized = [float(cells[3]) for cells in rows]
    assert len(realized) == 10
    assert realized[-1] > 0 > realized[0]


def test_decile_returns_split_rows_evenly_and_leave_unknown_labels_out() -> None:
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"prediction": np.arange(25.0), "fwd_ret_12": [*np.arange(20.0), *[np.nan] * 5]})
    table = decile_returns(frame)
    assert table["rows"].tolist() == [2] * 10
    assert table["mean_realized"].tolist() == [0.5 + 2 * i for i in range(10)]
    assert decile_returns(frame.head(9)).empty


# ------------------------------------------------------------------------------ predictions
def test_predictions_cover_every_candle_of_the_day_with_versions_trained_before_it(signal: ModelLake) -> None:
    rows = query(
        signal.data_dir,
        "SELECT p.model, CAST(p.open_time AS DATE) AS day, count(*), count(DISTINCT p.symbol), "
        "bool_and(p.promoted), max(r.train_end) FROM predictions p "
        "JOIN model_registry r USING (model, version) GROUP BY ALL ORDER BY 1, 2",
    )
    assert [(m, d, n, s, p) for m, d, n, s, p, _ in rows] == [
        (m, d, 288 * len(SYMBOLS), len(SYMBOLS), True) for m in sorted(TREES) for d in SCORED_DAYS
    ]
    assert all(train_end <= dt.datetime.combine(day, dt.time()) for _, day, *_, train_end in rows)


def test_each_materialization_of_a_model_asset_is_a_new_version(signal: ModelLake, tmp_path: Path) -> None:
    data_dir = signal.copy(tmp_path / "data")
    instance = dg.DagsterInstance.ephemeral()
    resources = {**signal.resources, "lake": type(signal.resources["lake"])(data_dir=str(data_dir))}
    config = {
        "ops": {
            "xgboost_model": {"config": {"profile": "small", "days": TRAIN_DAYS, "end_day": str(TRAIN_END)}}
        }
    }
    xgboost = defs.get_assets_def("xgboost_model")
    assert dg.materialize([xgboost], instance=instance, resources=resources, run_config=config).success
    versions = query(data_dir, "SELECT version FROM model_registry WHERE model = 'xgboost' ORDER BY 1")
    first = signal.trained.versions["xgboost"].version
    assert versions == [(first,), (latest_model_metadata(instance, "xgboost")["version"],)]
    assert first < versions[1][0]  # named by its training time: the newer sorts last


# ------------------------------------------------------------------------- model_evaluation
def test_model_evaluation_waits_for_the_next_day_then_scores_the_whole_day(
    signal: ModelLake, tmp_path: Path
) -> None:
    data_dir = signal.copy(tmp_path / "data")
    day, next_day = LAST + dt.timedelta(days=1), LAST + dt.timedelta(days=2)
    instance = dg.DagsterInstance.ephemeral()
    with Simulator(signal=True) as sim:
        resources = resources_for(sim, data_dir)
        for asset in (feature_table, labels, predictions):
            assert dg.materialize(
                [asset], instance=instance, resources=resources, partition_key=str(day)
            ).success
        waiting = dg.materialize(
            [model_evaluation],
            instance=instance,
            resources=resources,
            partition_key=str(day),
            raise_on_error=False,
        )
        assert not waiting.success
        failure = next(e for e in waiting.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        message = failure.step_failure_data.user_failure_data.description  # type: ignore[union-attr]
        assert f"needs the first hour of {next_day}'s candles" in message
        assert query(data_dir, "SELECT count(*) FROM model_evaluation WHERE day = ?", [day]) == [(0,)]

        assert materialize_range(ohlcv, instance, resources, SYMBOLS, next_day, next_day).success
        assert dg.materialize(
            [labels], instance=instance, resources=resources, partition_key=str(day)
        ).success
        assert dg.materialize(
            [model_evaluation], instance=instance, resources=resources, partition_key=str(day)
        ).success
    scored = query(data_dir, "SELECT model, rows FROM model_evaluation WHERE day = ? ORDER BY 1", [day])
    assert scored == [(m, 288 * len(SYMBOLS)) for m in sorted(TREES)]


# ------------------------------------------------------------------------------- definitions
def test_retrain_job_materializes_the_four_model_assets() -> None:
    job = defs.get_job_def("retrain_job")
    assert set(job.asset_layer.executable_asset_keys) == set(MODEL_ASSETS)


def test_model_assets_have_the_lineage_they_really_have() -> None:
    graph = defs.resolve_asset_graph()
    for key in MODEL_ASSETS:
        assert graph.get(key).parent_keys == {dg.AssetKey("feature_table"), dg.AssetKey("labels")}
        assert not graph.get(key).is_partitioned
    assert graph.get(dg.AssetKey("predictions")).parent_keys == {
        dg.AssetKey("feature_table"),
        dg.AssetKey("coin_universe"),
        *MODEL_ASSETS,
    }
    assert graph.get(dg.AssetKey("model_evaluation")).parent_keys == {
        dg.AssetKey("predictions"),
        dg.AssetKey("labels"),
    }


# -------------------------------------------------------------------------- schema mismatch
def test_a_model_fitted_on_another_feature_set_fails_the_predictions_run_naming_the_features(
    signal: ModelLake, tmp_path: Path
) -> None:
    """The old system's failure, reproduced: trained on one feature set, served another."""
    data_dir = signal.copy(tmp_path / "data")
    store = Lake(data_dir)
    current = feature_schema()
    dropped = ["rsi_14", "volz_288"]  # the older library lacked these ...
    assert set(dropped) <= set(current.names)
    names = [n for n in current.names if n not in dropped] + ["ret_7"]  # ... and had this one
    older = FeatureSchema(tuple(names), "0123456789abcdef" * 4, current.warmup_bars)
    frame = load_panel(store, FIRST, TRAIN_END + dt.timedelta(days=1)).panel.frame
    frame = frame.assign(ret_7=frame["ret_12"] * 7 / 12)[["symbol", "open_time", *names, TARGET]]
    panel = Panel(frame, older)
    start = dt.datetime.combine(FIRST, dt.time())
    train, valid = (
        TimeRange(start, start + dt.timedelta(days=12)),
        TimeRange(start + dt.timedelta(days=13), start + dt.timedelta(days=16)),
    )
    model = MODELS["xgboost"](MODELS["xgboost"].config_type.small())
    model.fit(panel, train, valid)
    trained_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    name = version_name("xgboost", trained_at)
    write_version(
        store,
        ModelVersion(
            model="xgboost",
            version=name,
            trained_at=trained_at,
            train_start=train.start,
            train_end=valid.end,
            feature_schema_hash=older.hash,
            features=tuple(names),
            metrics={},
            artifact_path=save_artifact(store, model, name),
            promoted=True,
            reason="fitted on the older feature set",
        ),
    )
    day = SCORED_DAYS[0]
    resources = {**signal.resources, "lake": type(signal.resources["lake"])(data_dir=str(data_dir))}
    result = dg.materialize(
        [predictions],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources,
        partition_key=str(day),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    data = failure.step_failure_data
    assert data is not None
    message = data.user_failure_data.description if data.user_failure_data else data.error.message  # type: ignore[union-attr]
    assert "missing from the panel: ['ret_7']" in message
    assert f"extra in the panel: {[n for n in current.names if n in dropped]}" in message
    assert older.hash in message
    assert current.hash in message
    # Nothing of the day was written by the refused run.
    assert not (data_dir / "lake" / "predictions" / f"date={day}.parquet").exists() or query(
        data_dir, "SELECT count(*) FROM predictions WHERE version = ?", [name]
    ) == [(0,)]
