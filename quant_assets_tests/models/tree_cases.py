"""Behaviour every tree model must show, checked by test_xgboost_model and test_lightgbm_model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from quant_assets.models.base import TARGET, ForecastModel, Panel, SchemaMismatch, TimeRange
from quant_assets.models.evaluation import ic_by_timestamp, split_by_time
from quant_assets_tests.models.panels import START, synthetic_panel

DAYS = 6
SPLIT = split_by_time(TimeRange(START, START + timedelta(days=DAYS)))


def small(cls: type[ForecastModel]) -> ForecastModel:
    return cls(cls.config_type.small(), seed=0)


def artifact_bytes(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def fit_and_save(cls: type[ForecastModel], panel: Panel, directory: Path) -> ForecastModel:
    model = small(cls)
    model.fit(panel, SPLIT.train, SPLIT.valid)
    model.save(directory)
    return model


def retrain_gives_the_same_bytes(cls: type[ForecastModel], tmp_path: Path) -> None:
    panel = synthetic_panel(signal=1.0, days=DAYS)
    first = fit_and_save(cls, panel, tmp_path / "first")
    second = fit_and_save(cls, panel, tmp_path / "second")

    assert artifact_bytes(tmp_path / "first") == artifact_bytes(tmp_path / "second")
    a, b = first.predict(panel, SPLIT.test), second.predict(panel, SPLIT.test)
    assert np.array_equal(a["prediction"].to_numpy(), b["prediction"].to_numpy())


def load_predicts_like_the_fitted_model(cls: type[ForecastModel], tmp_path: Path) -> None:
    panel = synthetic_panel(signal=1.0, days=DAYS)
    fitted = fit_and_save(cls, panel, tmp_path)

    loaded = cls.load(tmp_path)

    assert loaded.features == fitted.features
    assert loaded.schema_hash == panel.schema.hash
    assert loaded.config == fitted.config
    expected = fitted.predict(panel, SPLIT.test)
    got = loaded.predict(panel, SPLIT.test)
    assert got[["symbol", "open_time"]].equals(expected[["symbol", "open_time"]])
    assert np.array_equal(got["prediction"].to_numpy(), expected["prediction"].to_numpy())
    assert len(got) == int(panel.mask(SPLIT.test).sum())


def early_stopping_reads_validation_only(cls: type[ForecastModel], tmp_path: Path) -> None:
    panel = synthetic_panel(signal=1.0, days=DAYS)
    fit_and_save(cls, panel, tmp_path / "base")
    rng = np.random.default_rng(1)

    def with_noise_labels(part: TimeRange) -> Panel:
        frame = panel.frame.copy()
        rows = part.mask(frame["open_time"])
        frame.loc[rows, TARGET] = rng.standard_normal(int(rows.sum())) * frame[TARGET].std()
        return Panel(frame, panel.schema)

    fit_and_save(cls, with_noise_labels(SPLIT.test), tmp_path / "test_changed")
    fit_and_save(cls, with_noise_labels(SPLIT.valid), tmp_path / "valid_changed")

    assert artifact_bytes(tmp_path / "test_changed") == artifact_bytes(tmp_path / "base")
    assert artifact_bytes(tmp_path / "valid_changed") != artifact_bytes(tmp_path / "base")


def finds_a_planted_signal(cls: type[ForecastModel]) -> None:
    panel = synthetic_panel(signal=1.0, days=DAYS)
    model = small(cls)
    model.fit(panel, SPLIT.train, SPLIT.valid)

    predicted = model.predict(panel, SPLIT.test)
    realized = panel.rows(SPLIT.test)[TARGET].to_numpy()
    ic = ic_by_timestamp(predicted["open_time"].to_numpy(), predicted["prediction"].to_numpy(), realized)
    importances = model.importances()

    assert ic.mean() > 0.1
    assert importances is not None
    assert max(importances, key=importances.__getitem__) == "x_signal"
    assert set(importances) == set(panel.features)


def refuses_a_panel_of_other_features(cls: type[ForecastModel]) -> None:
    trained_on = synthetic_panel(signal=1.0, days=DAYS, noise_features=3)
    served = synthetic_panel(signal=1.0, days=DAYS, noise_features=2, extra=("taker_buy_ratio",))
    model = small(cls)
    model.fit(trained_on, SPLIT.train, SPLIT.valid)

    with pytest.raises(SchemaMismatch) as refused:
        model.predict(served, SPLIT.test)

    message = str(refused.value)
    assert "missing from the panel: ['noise_2']" in message
    assert "extra in the panel: ['taker_buy_ratio']" in message
    assert trained_on.schema.hash in message
    assert served.schema.hash in message
