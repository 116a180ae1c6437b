"""LightGBM regressor of ``fwd_ret_12``, deterministic and early-stopped on validation.

Named ``lightgbm_model`` so that it does not shadow the ``lightgbm`` library. The same panel, ranges,
config and seed give the same model text and the same predictions: ``deterministic`` and
``force_row_wise`` are on, the thread count is fixed (``n_jobs``), every random draw (bagging,
feature fraction, binning sample) is seeded from ``seed``, and the saved model holds exactly the
trees up to the best validation iteration.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Self

# The library's OpenMP threads spin while they wait for each other (libgomp's default). On a machine
# with more runnable threads than cores, a spinning thread holds the core the thread it waits for
# needs: 40 rounds on 115 k rows x 42 features took 132 s (XGBoost; LightGBM over 300 s) instead of
# 13 s (9 s) at load 20 on 2 cores. The runtime reads this once, when it loads, so it is set before
# the library is imported; a value the operator set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb
import numpy as np

from quant_assets.models.trees import TreeModel

BOOSTER_FILE = "booster.txt"


@dataclass(frozen=True)
class Config:
    """Hyper-parameters; the defaults are the full (benchmark) configuration."""

    num_boost_round: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 63
    min_data_in_leaf: int = 200
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 255
    early_stopping_rounds: int = 30
    n_jobs: int = 2  # fixed: the thread count is part of what makes a fit reproducible

    @classmethod
    def small(cls) -> Self:
        """A configuration that fits a few thousand rows in about a second (tests, demo)."""
        return cls(
            num_boost_round=60,
            learning_rate=0.1,
            num_leaves=7,
            min_data_in_leaf=20,
            max_bin=63,
            early_stopping_rounds=10,
            n_jobs=1,  # small data: a second thread only contends on a shared machine
        )


class LightGBMModel(TreeModel[lgb.Booster]):
    """Gradient-boosted trees (leaf-wise, histogram) on the feature columns of a panel."""

    name = "lightgbm"
    config_type = Config
    booster_file = BOOSTER_FILE  # LightGBM's model text
    unfitted_iteration = 0

    def __init__(self, config: Config | None = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.config: Config

    def _params(self) -> dict[str, object]:
        c = self.config
        return {
            "objective": "regression",
            "metric": "rmse",
            "learning_rate": c.learning_rate,
            "num_leaves": c.num_leaves,
            "min_data_in_leaf": c.min_data_in_leaf,
            "feature_fraction": c.feature_fraction,
            "bagging_fraction": c.bagging_fraction,
            "bagging_freq": c.bagging_freq,
            "lambda_l2": c.lambda_l2,
            "max_bin": c.max_bin,
            "num_threads": c.n_jobs,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    def _train(
        self, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, float]:
        params = self._params()
        names = list(self.features)
        dtrain = lgb.Dataset(x_train, label=y_train, feature_name=names, params=params, free_raw_data=True)
        dvalid = lgb.Dataset(x_valid, label=y_valid, feature_name=names, reference=dtrain, params=params)
        history: dict[str, dict[str, list[float]]] = {}
        booster = lgb.train(
            params,
            dtrain,
            num_boost_round=self.config.num_boost_round,
            valid_sets=[dvalid],
            valid_names=["valid"],
            callbacks=[
                lgb.early_stopping(self.config.early_stopping_rounds, verbose=False),
                lgb.record_evaluation(history),
            ],
        )
        rounds = len(history["valid"]["rmse"])
        self.best_iteration = int(booster.best_iteration) or rounds
        # Keep exactly the trees up to the best validation round: what is saved is what predicts.
        self.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=self.best_iteration))
        return {"best_iteration": float(self.best_iteration), "rounds": float(rounds)}

    def _predict(self, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
        return np.asarray(booster.predict(x, num_threads=self.config.n_jobs), dtype=np.float64)

    def _booster_bytes(self, booster: lgb.Booster) -> bytes:
        return booster.model_to_string().encode()

    def _read_booster(self, path: Path) -> lgb.Booster:
        return lgb.Booster(model_str=path.read_text())

    def _gains(self, booster: lgb.Booster) -> dict[str, float]:
        gain = booster.feature_importance(importance_type="gain")
        return {name: float(g) for name, g in zip(self.features, gain, strict=True)}
