"""What the tree models (XGBoost, LightGBM) share: fit, predict, save and load around a booster.

A tree model reads the feature columns of a panel as one design matrix
(:func:`~quant_assets.models.data.design_matrix`), fits on the labelled rows of the train range and
stops early on the labelled rows of the validation range, keeping exactly the trees up to the best
validation round. :class:`TreeModel` does the part that does not depend on the library (the design
matrices, the label checks, the schema, ``model.json``, the artifact file, the output frame);
each subclass supplies the library's own: its training call, its prediction, its booster bytes and
its gain per feature.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import pandas as pd

from quant_assets.models.base import ForecastModel, Panel, TimeRange
from quant_assets.models.data import design_matrix
from quant_assets.store.lake import write_bytes_atomic

BoosterT = TypeVar("BoosterT")


class TreeModel(ForecastModel, Generic[BoosterT]):
    """Gradient-boosted trees on the feature columns of a panel, early-stopped on validation.

    Subclasses set ``name``, ``config_type`` (a config with ``n_jobs``), ``booster_file`` (the
    artifact's file name) and ``unfitted_iteration`` (``best_iteration`` before a fit, and when
    ``model.json`` has none), and implement the ``_train`` ... ``_gains`` methods.
    """

    booster_file: ClassVar[str]
    unfitted_iteration: ClassVar[int]

    def __init__(self, config: Any | None = None, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        self.booster: BoosterT | None = None
        self.best_iteration: int = self.unfitted_iteration

    # -- the library's part --------------------------------------------------------------------------

    @abstractmethod
    def _train(
        self, x_train: np.ndarray, y_train: np.ndarray, x_valid: np.ndarray, y_valid: np.ndarray
    ) -> dict[str, float]:
        """Fit, early-stopped on the validation rows; set ``booster`` (exactly the trees up to the best
        validation round) and ``best_iteration``; return ``best_iteration`` (trees kept) and ``rounds``."""

    @abstractmethod
    def _predict(self, booster: BoosterT, x: np.ndarray) -> np.ndarray:
        """The float64 predictions of `booster` for the rows of `x` (at least one row)."""

    @abstractmethod
    def _booster_bytes(self, booster: BoosterT) -> bytes:
        """The bytes of the artifact ``booster_file``; the same booster gives the same bytes."""

    @abstractmethod
    def _read_booster(self, path: Path) -> BoosterT:
        """The booster :meth:`_booster_bytes` wrote into `path`."""

    @abstractmethod
    def _gains(self, booster: BoosterT) -> dict[str, float]:
        """Total gain per feature (0 for a feature no split uses), in schema order."""

    # -- the shared part -----------------------------------------------------------------------------

    def fit(self, panel: Panel, train: TimeRange, valid: TimeRange) -> dict[str, float]:
        """Fit on the labelled rows of `train`, stopping when `valid`'s rmse stops improving.

        Raises:
            ValueError: `train` or `valid` holds no labelled row.
        """
        started = time.perf_counter()
        self.remember_schema(panel)
        x_train, y_train, _ = design_matrix(panel, train, labelled_only=True)
        x_valid, y_valid, _ = design_matrix(panel, valid, labelled_only=True)
        if not len(y_train) or not len(y_valid):
            raise ValueError(f"{self.name}: {len(y_train)} labelled train rows, {len(y_valid)} valid rows")
        figures = self._train(x_train, y_train, x_valid, y_valid)
        return {
            **figures,
            "train_rows": float(len(y_train)),
            "valid_rows": float(len(y_valid)),
            "seconds": time.perf_counter() - started,
        }

    def predict(self, panel: Panel, rows: TimeRange) -> pd.DataFrame:
        """``symbol, open_time, prediction`` of every panel row in `rows` (see ForecastModel)."""
        self.check_panel(panel)
        booster = self._fitted()
        x, _, positions = design_matrix(panel, rows, labelled_only=False)
        prediction = self._predict(booster, x) if len(x) else np.zeros(0, dtype=np.float64)
        out = panel.frame[["symbol", "open_time"]].take(positions).reset_index(drop=True)
        out["prediction"] = prediction
        return out

    def _fitted(self) -> BoosterT:
        if self.booster is None:
            raise RuntimeError(f"{self.name} model is not fitted")
        return self.booster

    def save(self, directory: Path) -> None:
        """The booster (``booster_file``) and ``model.json``; same model, same bytes."""
        booster = self._fitted()
        directory = Path(directory)
        write_bytes_atomic(directory / self.booster_file, self._booster_bytes(booster))
        self.save_meta(directory, best_iteration=self.best_iteration)

    @classmethod
    def load(cls, directory: Path) -> Self:
        """The model :meth:`save` wrote into `directory`."""
        model, meta = cls.from_meta(directory)
        model.booster = model._read_booster(Path(directory) / cls.booster_file)
        model.best_iteration = int(meta.get("best_iteration", cls.unfitted_iteration))
        return model

    def importances(self) -> dict[str, float] | None:
        """Total gain per feature (0 for a feature no split uses), in schema order."""
        if self.booster is None:
            return None
        return self._gains(self.booster)
