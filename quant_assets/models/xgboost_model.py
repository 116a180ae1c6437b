"""XGBoost regressor of ``fwd_ret_12`` (histogram trees), deterministic and early-stopped on validation.

Named ``xgboost_model`` so that it does not shadow the ``xgboost`` library. The same panel, ranges,
config and seed give the same booster bytes and the same predictions: the thread count is fixed
(``n_jobs``), row and column sampling draw from ``seed``, and the saved booster holds exactly the
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

import numpy as np
import xgboost as xgb

from quant_assets.models.trees import TreeModel

BOOSTER_FILE = "booster.ubj"


@dataclass(frozen=True)
class Config:
    """Hyper-parameters; the defaults are the full (benchmark) configuration."""

    num_boost_round: int = 300
    learning_rate: float = 0.05
    max_depth: int = 6
    min_child_weight: float = 200.0  # rows per leaf at least (squared error: hessian 1 per row)
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    reg_lambda: float = 1.0
    max_bin: int = 256
    early_stopping_rounds: int = 30
    n_jobs: int = 2  # fixed: the thread count is part of what makes a fit reproducible

    @classmethod
    def small(cls) -> Self:
        """A configuration that fits a few thousand rows in about a second (tests, demo)."""
        return cls(
            num_boost_round=60,
            learning_rate=0.1,
            max_depth=3,
            min_child_weight=20.0,
            max_bin=64,
            early_stopping_rounds=10,
            n_jobs=1,  # small data: a second thread only contends on a shared machine
        )


class XGBoostModel(TreeModel[xgb.Booster]):
    """Gradient-boosted trees (``tree_method="hist"``) on the feature columns of a panel."""

    name = "xgboost"
    config_type = Config
    booster_file = BOOSTER_FILE  # UBJSON booster
    unfitted_iteration = -1  # best_iteration is the index of the last tree kept

    def __init__(self, config: Config | None = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.config: Config

    def _params(self) -> dict[str, object]:
        c = self.config
        return {
            "objective": "reg:squarederror",
            "tree_method": "hist",
            "eta": c.learning_rate,
            "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight,
            "subsample": c.subsample,
            "colsample_bytree": c.colsample_bytree,
            "lambda": c.reg_lambda,
            "max_bin": c.max_bin,
            "nthread": c.n_jobs,
            "seed": self.seed,
            "eval_metric": "rmse",
            "verbosity": 0,
        }

    def _train(
        self, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, float]:
        names = list(self.features)
        dtrain = xgb.QuantileDMatrix(
            x_train,
            label=y_train,
            feature_names=names,
            max_bin=self.config.max_bin,
            nthread=self.config.n_jobs,
        )
        dvalid = xgb.QuantileDMatrix(
            x_valid,
            label=y_valid,
            feature_names=names,
            ref=dtrain,
            max_bin=self.config.max_bin,
            nthread=self.config.n_jobs,
        )
        booster = xgb.train(
            self._params(),
            dtrain,
            num_boost_round=self.config.num_boost_round,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=self.config.early_stopping_rounds,
            verbose_eval=False,
        )
        self.best_iteration = int(booster.best_iteration)
        # Keep exactly the trees up to the best validation round: what is saved is what predicts.
        self.booster = booster[: self.best_iteration + 1]
        return {
            "best_iteration": float(self.best_iteration + 1),  # trees kept (LightGBM's convention)
            "rounds": float(booster.num_boosted_rounds()),
        }

    def _predict(self, booster: xgb.Booster, x: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(x).astype(np.float64)

    def _booster_bytes(self, booster: xgb.Booster) -> bytes:
        return bytes(booster.save_raw(raw_format="ubj"))

    def _read_booster(self, path: Path) -> xgb.Booster:
        booster = xgb.Booster()
        booster.load_model(bytearray(path.read_bytes()))
        booster.set_param({"nthread": self.config.n_jobs})
        return booster

    def _gains(self, booster: xgb.Booster) -> dict[str, float]:
        gain = booster.get_score(importance_type="total_gain")
        return {name: float(gain.get(name, 0.0)) for name in self.features}
