"""The sequence models' shared behaviour, for N-HiTS and PatchTST alike: fit, predict, save, load."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from quant_assets.models import MODELS
from quant_assets.models.base import TARGET, Panel, SchemaMismatch, TimeRange
from quant_assets.models.torch_training import TorchConfig, TorchForecastModel, torch_settings
from quant_assets_tests.models.sequence_panels import (
    BAR,
    FEATURES,
    START,
    lagged_panel,
    schema_of,
    split,
    with_frame,
)

SEQUENCE_MODELS = ("nhits", "patchtst")


def tiny(name: str, **changes: Any) -> TorchConfig:
    """The model's small() config; the time budget only bounds a failure on a busy machine."""
    config: TorchConfig = MODELS[name].config_type.small()
    return replace(config, time_budget_s=600.0, **changes)


def fitted(name: str, panel: Panel, *, seed: int = 0, **changes: Any) -> TorchForecastModel:
    train, valid, _ = split()
    model = MODELS[name](tiny(name, **changes), seed=seed)
    assert isinstance(model, TorchForecastModel)
    model.fit(panel, train, valid)
    return model


@pytest.fixture(scope="module")
def panel() -> Panel:
    return lagged_panel()


@pytest.fixture(scope="module", params=SEQUENCE_MODELS)
def model(request: pytest.FixtureRequest, panel: Panel) -> TorchForecastModel:
    return fitted(request.param, panel, max_steps=20, eval_every=10)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_refitting_on_the_same_data_predicts_within_1e_6(name: str, panel: Panel) -> None:
    _, _, test = split()
    first, second = (fitted(name, panel, seed=7, max_steps=30, eval_every=10) for _ in range(2))

    a, b = first.predict(panel, test), second.predict(panel, test)

    assert np.abs(a["prediction"].to_numpy() - b["prediction"].to_numpy()).max() <= 1e-6
    other_seed = fitted(name, panel, seed=8, max_steps=30, eval_every=10).predict(panel, test)
    assert np.abs(a["prediction"].to_numpy() - other_seed["prediction"].to_numpy()).max() > 1e-6


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_learns_a_planted_lag_pattern_better_than_predicting_zero(name: str) -> None:
    panel = lagged_panel(seed=1, bars=3000)
    train, valid, test = split(3000)
    model = MODELS[name](tiny(name, max_steps=300, eval_every=25))

    model.fit(panel, train, valid)

    predicted = model.predict(panel, test)["prediction"].to_numpy()
    realized = panel.rows(test)[TARGET].to_numpy()
    mse, mse_zero = np.mean((predicted - realized) ** 2), np.mean(realized**2)
    assert mse < 0.95 * mse_zero
    assert np.corrcoef(predicted, realized)[0, 1] > 0.25


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_noise_is_not_learned(name: str) -> None:
    panel = lagged_panel(seed=2, bars=3000, beta=0.0)
    train, valid, test = split(3000)
    model = MODELS[name](tiny(name, max_steps=100, eval_every=25))

    model.fit(panel, train, valid)

    predicted = model.predict(panel, test)["prediction"].to_numpy()
    realized = panel.rows(test)[TARGET].to_numpy()
    assert abs(np.corrcoef(predicted, realized)[0, 1]) < 0.15


def test_predictions_cover_every_row_of_the_range_in_panel_order(
    model: TorchForecastModel, panel: Panel
) -> None:
    _, _, test = split()

    predicted = model.predict(panel, test)

    expected = panel.rows(test)[["symbol", "open_time"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(predicted[["symbol", "open_time"]], expected)
    assert predicted["prediction"].dtype == np.float64
    assert np.isfinite(predicted["prediction"]).all()


def test_a_prediction_reads_no_later_row(model: TorchForecastModel, panel: Panel) -> None:
    _, _, test = split()
    cut = test.start + 60 * BAR
    before = model.predict(panel, TimeRange(test.start, cut))
    frame = panel.frame.copy()
    later = frame["open_time"] >= cut
    frame.loc[later, list(FEATURES)] = 50.0  # every feature of every later bar, and the labels
    frame.loc[later, TARGET] = 1.0

    after = model.predict(with_frame(panel, frame), TimeRange(test.start, cut))

    pd.testing.assert_frame_equal(after, before)
    assert not model.predict(with_frame(panel, frame), TimeRange(cut, cut + BAR)).equals(
        model.predict(panel, TimeRange(cut, cut + BAR))
    )


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_test_rows_never_reach_the_fit(name: str, panel: Panel) -> None:
    _, _, test = split()
    frame = panel.frame.copy()
    frame.loc[panel.mask(test), TARGET] = 0.5  # labels of the held-out rows changed

    a = fitted(name, panel, max_steps=20, eval_every=10).predict(panel, test)
    b = fitted(name, with_frame(panel, frame), max_steps=20, eval_every=10).predict(panel, test)

    pd.testing.assert_frame_equal(a, b)


def test_save_then_load_predicts_the_same_and_saving_again_writes_the_same_bytes(
    model: TorchForecastModel, panel: Panel, tmp_path: Path
) -> None:
    _, _, test = split()
    model.save(tmp_path / "a")

    loaded = type(model).load(tmp_path / "a")
    loaded.save(tmp_path / "b")

    pd.testing.assert_frame_equal(loaded.predict(panel, test), model.predict(panel, test))
    assert loaded.config == model.config
    assert (loaded.features, loaded.schema_hash) == (model.features, model.schema_hash)
    for name in ("model.json", "weights.pt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_panel_of_another_schema_is_refused_naming_the_features(
    model: TorchForecastModel, panel: Panel
) -> None:
    _, _, test = split()
    names = ("ret_1", "ret_12", "volz_48", "taker_buy_ratio", "noise_1")  # noise_0 -> noise_1
    frame = panel.frame.rename(columns={"noise_0": "noise_1"})
    other = Panel(frame, schema_of(names))

    with pytest.raises(SchemaMismatch) as refused:
        model.predict(other, test)

    message = str(refused.value)
    assert "missing from the panel: ['noise_0']" in message
    assert "extra in the panel: ['noise_1']" in message
    assert model.schema_hash in message


def test_a_model_that_was_never_fitted_refuses_to_predict(panel: Panel) -> None:
    _, _, test = split()
    for name in SEQUENCE_MODELS:
        with pytest.raises(RuntimeError, match="not fitted"):
            MODELS[name](tiny(name)).predict(panel, test)


def test_sequence_models_have_no_importances(model: TorchForecastModel) -> None:
    assert model.importances() is None


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_fit_refuses_a_range_without_labelled_rows(name: str, panel: Panel) -> None:
    train, _, _ = split()
    empty = TimeRange(START - 100 * BAR, START - 50 * BAR)

    with pytest.raises(ValueError, match="no labelled panel row in the valid range"):
        MODELS[name](tiny(name)).fit(panel, train, empty)


def test_fit_refuses_a_window_channel_the_schema_lacks(panel: Panel) -> None:
    names = ("ret_1", "ret_12", "volz_288", "taker_buy_ratio", "noise_0")
    other = Panel(panel.frame.rename(columns={"volz_48": "volz_288"}), schema_of(names))
    train, valid, _ = split()

    with pytest.raises(ValueError, match=r"lacks the window channels \['volz_48'\]"):
        MODELS["nhits"](tiny("nhits")).fit(other, train, valid)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"channels": ("volz_48", "ret_1")}, "must start with the forecast channel"),
        ({"channels": ("ret_1", "ret_1")}, "repeat"),
        ({"loss": "huber"}, "loss must be one of"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ],
)
def test_a_bad_config_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(MODELS["nhits"].config_type(), **changes)


def test_the_time_budget_stops_training(panel: Panel) -> None:
    train, valid, _ = split()
    model = MODELS["nhits"](
        replace(tiny("nhits"), max_steps=1_000_000, patience=1_000_000, time_budget_s=1.0)
    )

    figures = model.fit(panel, train, valid)

    assert figures["stopped_by_time_budget"] == 1.0
    assert 1 <= figures["best_step"] <= figures["steps"] < 1_000_000


def test_fit_restores_the_torch_settings_it_changes(panel: Panel) -> None:
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()

    fitted("nhits", panel, max_steps=5, eval_every=5, threads=threads + 1)

    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == deterministic


def test_torch_settings_are_in_force_inside() -> None:
    with torch_settings(seed=1, threads=1):
        assert torch.get_num_threads() == 1
        assert torch.are_deterministic_algorithms_enabled()
        first = torch.rand(3)
    with torch_settings(seed=1, threads=1):
        assert torch.equal(torch.rand(3), first)


@pytest.mark.parametrize(("operator", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_torch_threads_wait_passively_unless_the_operator_chose(operator: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if operator is not None:
        env["OMP_WAIT_POLICY"] = operator
    code = "import os, quant_assets.models.torch_training; print(os.environ['OMP_WAIT_POLICY'])"

    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

    assert out.stdout.strip() == expected
