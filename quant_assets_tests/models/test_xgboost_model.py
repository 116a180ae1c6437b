"""The xgboost model: deterministic retraining, save/load, early stopping on validation only, schema refusal."""

from __future__ import annotations

from pathlib import Path

from quant_assets.models.xgboost_model import XGBoostModel
from quant_assets_tests.models import tree_cases


def test_retraining_on_the_same_data_gives_the_same_bytes_and_predictions(tmp_path: Path) -> None:
    tree_cases.retrain_gives_the_same_bytes(XGBoostModel, tmp_path)


def test_a_loaded_model_predicts_exactly_like_the_fitted_one(tmp_path: Path) -> None:
    tree_cases.load_predicts_like_the_fitted_model(XGBoostModel, tmp_path)


def test_early_stopping_reads_the_validation_labels_and_never_the_test_labels(tmp_path: Path) -> None:
    tree_cases.early_stopping_reads_validation_only(XGBoostModel, tmp_path)


def test_it_finds_a_planted_signal() -> None:
    tree_cases.finds_a_planted_signal(XGBoostModel)


def test_serving_another_feature_set_is_refused_naming_missing_and_extra_features() -> None:
    tree_cases.refuses_a_panel_of_other_features(XGBoostModel)
