"""The registry: rows round-trip through the lake and the catalog view, latest_before, schema refusal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from quant_assets.errors import StoreError
from quant_assets.features import feature_schema
from quant_assets.models.base import SchemaMismatch, TimeRange
from quant_assets.models.evaluation import split_by_time
from quant_assets.models.registry import (
    ModelVersion,
    artifact_dir,
    latest_before,
    load_model,
    save_artifact,
    version_name,
    versions,
    write_version,
)
from quant_assets.models.xgboost_model import Config, XGBoostModel
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets_tests.models.panels import START, synthetic_panel


def _version(lake: Lake, model: str, trained_at: dt.datetime, train_end: dt.datetime, **kw) -> ModelVersion:
    name = version_name(model, trained_at)
    return ModelVersion(
        model=model,
        version=name,
        trained_at=trained_at,
        train_start=dt.datetime(2026, 3, 1),
        train_end=train_end,
        feature_schema_hash=feature_schema().hash,
        features=tuple(feature_schema().names),
        metrics=kw.pop("metrics", {"ic": 0.05, "bootstrap": {"resamples": 1000}}),
        artifact_path=artifact_dir(lake, model, name),
        promoted=kw.pop("promoted", False),
        reason=kw.pop("reason", "rmse 1 vs baseline_zero 0.9 (worse)"),
    )


def test_a_version_round_trips_through_the_lake_and_the_catalog_view(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    written = _version(
        lake,
        "lightgbm",
        dt.datetime(2026, 3, 11, 9, 30, 0, 123456),
        dt.datetime(2026, 3, 10, 23, 0),
        metrics={"ic": 0.05, "rmse": float("nan"), "bootstrap": {"ic_diff_lower_zero": 0.01}},
        promoted=True,
    )

    write_version(lake, written)
    (read,) = versions(lake)

    assert written.version == "lightgbm-20260311T093000.123456Z"
    assert read == ModelVersion(**{**written.__dict__, "metrics": {**written.metrics, "rmse": None}})
    with Catalog(lake).connect() as con:
        row = con.execute(
            "SELECT model, version, promoted, train_end, len(features), "
            "json_extract(metrics, '$.bootstrap.ic_diff_lower_zero')::DOUBLE, reason FROM model_registry"
        ).fetchone()
    assert row == (
        "lightgbm",
        written.version,
        True,
        dt.datetime(2026, 3, 10, 23, 0),
        len(feature_schema().names),
        0.01,
        written.reason,
    )


def test_a_version_is_written_once(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    version = _version(lake, "xgboost", dt.datetime(2026, 3, 11), dt.datetime(2026, 3, 10, 23))
    write_version(lake, version)
    with pytest.raises(StoreError, match="already exists"):
        write_version(lake, version)
    with pytest.raises(StoreError, match="version key"):
        write_version(lake, ModelVersion(**{**version.__dict__, "version": "../../etc"}))


def test_latest_before_takes_the_newest_version_whose_data_ends_before_the_day(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    old = _version(lake, "xgboost", dt.datetime(2026, 3, 5, 1), dt.datetime(2026, 3, 4, 23))
    newer = _version(lake, "xgboost", dt.datetime(2026, 3, 6, 1), dt.datetime(2026, 3, 5, 23))
    retrained_late = _version(lake, "xgboost", dt.datetime(2026, 3, 9, 1), dt.datetime(2026, 3, 8, 23))
    other_model = _version(lake, "lightgbm", dt.datetime(2026, 3, 7, 1), dt.datetime(2026, 3, 6, 23))
    for version in (retrained_late, old, other_model, newer):
        write_version(lake, version)

    assert latest_before(lake, "xgboost", dt.date(2026, 3, 4)) is None
    assert latest_before(lake, "xgboost", dt.date(2026, 3, 5)) == old
    assert latest_before(lake, "xgboost", dt.date(2026, 3, 6)) == newer
    assert latest_before(lake, "xgboost", dt.date(2026, 3, 8)) == newer  # 2026-03-08 23:00 is in the 8th
    assert latest_before(lake, "xgboost", dt.date(2026, 3, 9)) == retrained_late
    assert [v.version for v in versions(lake, "xgboost")] == [
        old.version,
        newer.version,
        retrained_late.version,
    ]
    assert [v.model for v in versions(lake)] == ["xgboost", "xgboost", "xgboost", "lightgbm"]


def test_loading_a_version_fitted_on_other_features_is_refused_naming_them(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    panel = synthetic_panel(days=4, signal=1.0)  # features ret_12, x_signal, noise_0..2
    split = split_by_time(TimeRange(START, START + dt.timedelta(days=4)))
    fitted = XGBoostModel(Config.small())
    fitted.fit(panel, split.train, split.valid)
    trained_at = dt.datetime(2026, 3, 5, 1)
    name = version_name("xgboost", trained_at)
    version = ModelVersion(
        model="xgboost",
        version=name,
        trained_at=trained_at,
        train_start=split.train.start,
        train_end=split.test.end,
        feature_schema_hash=fitted.schema_hash,
        features=fitted.features,
        metrics={},
        artifact_path=save_artifact(lake, fitted, name),
        promoted=False,
    )
    write_version(lake, version)
    (registered,) = versions(lake)

    with pytest.raises(SchemaMismatch) as refused:
        load_model(lake, registered)  # against the feature library's current schema

    message = str(refused.value)
    assert "missing from the panel: ['x_signal', 'noise_0', 'noise_1', 'noise_2']" in message
    assert "'rsi_14'" in message  # an extra feature of the library, named
    assert fitted.schema_hash in message
    assert feature_schema().hash in message
    loaded = load_model(lake, registered, schema=panel.schema)
    assert loaded.predict(panel, split.test).equals(fitted.predict(panel, split.test))


def test_an_artifact_is_never_overwritten(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    panel = synthetic_panel(days=4, signal=1.0)
    split = split_by_time(TimeRange(START, START + dt.timedelta(days=4)))
    fitted = XGBoostModel(Config.small())
    fitted.fit(panel, split.train, split.valid)
    name = version_name("xgboost", dt.datetime(2026, 3, 5, 1))
    path = save_artifact(lake, fitted, name)
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    with pytest.raises(StoreError, match="already exists"):
        save_artifact(lake, fitted, name)

    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert json.loads((path / "model.json").read_text())["feature_schema_hash"] == panel.schema.hash
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary left
