"""train(): stored panel -> split -> fit -> judged against the baselines -> artifact and registry row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from quant_assets.features import feature_schema
from quant_assets.models.base import HORIZON_BARS, TARGET
from quant_assets.models.evaluation import BAR
from quant_assets.models.lightgbm_model import Config as LightGBMConfig
from quant_assets.models.registry import latest_before, load_model, versions
from quant_assets.models.training import train
from quant_assets.models.xgboost_model import Config as XGBoostConfig
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets_tests.models.panels import write_synthetic_lake

FIRST = dt.date(2026, 3, 1)
DAYS = 10
LAST = FIRST + dt.timedelta(days=DAYS - 1)
NOW = dt.datetime(2026, 3, 11, 8, 0, tzinfo=dt.UTC)


def _lake(tmp_path: Path, signal: float) -> Lake:
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=DAYS, symbols=8, signal=signal, seed=4)
    return lake


def test_a_planted_signal_is_promoted_registered_and_served_by_the_version(tmp_path: Path) -> None:
    lake = _lake(tmp_path, signal=1.0)

    result = train(lake, "xgboost", end_day=LAST, days=60, config=XGBoostConfig.small(), now=NOW)

    assert result.promoted, result.reason
    assert result.version.version == "xgboost-20260311T080000.000000Z"
    assert result.version.train_start == dt.datetime(2026, 3, 1)
    assert result.version.train_end == dt.datetime(2026, 3, 11) - HORIZON_BARS * BAR
    assert result.version.feature_schema_hash == feature_schema().hash
    assert result.metrics["ic"] > result.metrics["baseline_last"]["ic"]
    assert next(iter(result.importances)) == "rsi_14"  # the feature carrying the planted signal
    test = result.test_predictions
    assert list(test.columns) == ["symbol", "open_time", "prediction", TARGET, "baseline_last"]
    assert test["open_time"].min() >= np.datetime64(result.split.test.start)
    assert test["open_time"].max() < np.datetime64(result.version.train_end)
    assert test[TARGET].notna().all()
    assert versions(lake) == [result.version]
    assert latest_before(lake, "xgboost", dt.date(2026, 3, 11)) == result.version
    assert latest_before(lake, "xgboost", LAST) is None  # its test rows lie in LAST
    assert load_model(lake, result.version).features == tuple(feature_schema().names)
    with Catalog(lake).connect() as con:
        assert con.execute("SELECT version, promoted FROM model_registry").fetchall() == [
            (result.version.version, True)
        ]


def test_noise_is_registered_unpromoted_with_the_failed_conditions(tmp_path: Path) -> None:
    lake = _lake(tmp_path, signal=0.0)

    result = train(lake, "lightgbm", end_day=LAST, days=DAYS, config=LightGBMConfig.small(), now=NOW)

    assert not result.promoted
    assert "is not > 0" in result.reason or "(worse)" in result.reason
    (registered,) = versions(lake, "lightgbm")
    assert registered.promoted is False
    assert registered.reason == result.reason
    assert registered.metrics["bootstrap"]["resamples"] == 1000


def test_each_training_is_a_new_version(tmp_path: Path) -> None:
    lake = _lake(tmp_path, signal=1.0)
    config = XGBoostConfig.small()

    first = train(lake, "xgboost", end_day=LAST - dt.timedelta(days=1), days=DAYS, config=config, now=NOW)
    second = train(lake, "xgboost", end_day=LAST, days=DAYS, config=config, now=NOW + dt.timedelta(hours=1))

    assert [v.version for v in versions(lake, "xgboost")] == [first.version.version, second.version.version]
    assert latest_before(lake, "xgboost", LAST) == first.version
    assert latest_before(lake, "xgboost", LAST + dt.timedelta(days=1)) == second.version


def test_a_window_without_features_of_the_current_schema_is_a_clear_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=3, symbols=4, schema_hash="ab" * 32)

    with pytest.raises(ValueError, match="no labelled rows of the current feature schema") as refused:
        train(lake, "xgboost", end_day=FIRST + dt.timedelta(days=2), days=3, config=XGBoostConfig.small())

    assert "skipped 3 days of another schema hash" in str(refused.value)
    assert versions(lake) == []
    assert not (tmp_path / "models").exists()
