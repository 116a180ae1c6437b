"""The shared interface: panels refuse a wrong layout, check_schema names the difference, MODELS."""

from __future__ import annotations

import pytest

from quant_assets.errors import SchemaMismatchError
from quant_assets.models import MODELS
from quant_assets.models.base import MODEL_NAMES, ForecastModel, Panel, SchemaMismatch, check_schema
from quant_assets_tests.models.panels import synthetic_panel, synthetic_schema


def test_check_schema_names_missing_extra_features_and_both_hashes() -> None:
    current = synthetic_schema(("ret_12", "rsi_14", "natr_14"))
    fitted_hash = "0" * 64

    with pytest.raises(SchemaMismatch) as refused:
        check_schema(("ret_12", "vol_z_22", "rsi_14"), fitted_hash, current)

    message = str(refused.value)
    assert "missing from the panel: ['vol_z_22']" in message
    assert "extra in the panel: ['natr_14']" in message
    assert fitted_hash in message
    assert current.hash in message
    assert isinstance(refused.value, SchemaMismatchError)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    ("features", "schema_hash", "says"),
    [
        (("rsi_14", "ret_12"), None, "the same features in another order"),
        (("ret_12", "rsi_14"), "1" * 64, "same names, but their definitions changed"),
    ],
)
def test_check_schema_refuses_reordered_features_and_a_changed_hash(
    features: tuple[str, ...], schema_hash: str | None, says: str
) -> None:
    current = synthetic_schema(("ret_12", "rsi_14"))
    with pytest.raises(SchemaMismatch, match=says):
        check_schema(features, schema_hash or current.hash, current)


def test_check_schema_accepts_the_schema_the_model_was_fitted_on() -> None:
    current = synthetic_schema(("ret_12", "rsi_14"))
    check_schema(("ret_12", "rsi_14"), current.hash, current)


def test_a_panel_refuses_columns_out_of_schema_order_and_unsorted_rows() -> None:
    panel = synthetic_panel(symbols=2, days=1)
    frame = panel.frame

    with pytest.raises(ValueError, match=r"missing \[\], extra \['stray'\]"):
        Panel(frame.assign(stray=1.0), panel.schema)
    swapped = frame[["symbol", "open_time", "x_signal", "ret_12", *frame.columns[4:]]]
    with pytest.raises(ValueError, match="another order"):
        Panel(swapped, panel.schema)
    with pytest.raises(ValueError, match="sorted by"):
        Panel(frame.iloc[::-1].reset_index(drop=True), panel.schema)


def test_models_maps_every_name_to_its_class() -> None:
    assert list(MODELS) == list(MODEL_NAMES)
    for name in ("xgboost", "lightgbm"):
        cls = MODELS[name]
        assert issubclass(cls, ForecastModel)
        assert cls.name == name
        assert cls.config_type.small() != cls.config_type()
    with pytest.raises(KeyError, match="unknown model 'arima'"):
        MODELS["arima"]


def test_a_model_takes_only_its_own_config() -> None:
    xgb, lgb = MODELS["xgboost"], MODELS["lightgbm"]
    with pytest.raises(TypeError, match="takes a Config"):
        xgb(lgb.config_type.small())
