"""The one interface every forecaster implements: fit on a time range, predict, save, load.

Every model predicts :data:`TARGET`, the 12-bar (one hour) forward log return of a symbol, from the
feature library's columns. A model remembers the features it was fitted on and their schema hash,
saves them with itself, and refuses (:class:`SchemaMismatch`) a panel built under another schema.

Imports no Dagster and no model library: the model modules (``xgboost_model``, ``lightgbm_model``,
``nhits``, ``patchtst``) subclass :class:`ForecastModel`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from quant_assets.errors import SchemaMismatchError
from quant_assets.features.schema import FeatureSchema

MODEL_NAMES: tuple[str, ...] = ("xgboost", "lightgbm", "nhits", "patchtst")
TARGET = "fwd_ret_12"  # label column: ln(close 12 bars later / close), from the `labels` table
HORIZON_BARS = 12  # bars of 5 minutes the target looks ahead
META_FILE = "model.json"  # written by ForecastModel.save_meta in every artifact directory


@dataclass(frozen=True)
class TimeRange:
    """Half-open ``[start, end)`` of open times, naive UTC like the lake's ``open_time``.

    Raises:
        ValueError: `start` is not before `end`, or a bound carries a time zone.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"TimeRange bounds must be naive UTC, got {self.start!r} and {self.end!r}")
        if not self.start < self.end:
            raise ValueError(f"TimeRange start {self.start} must be before its end {self.end}")

    def mask(self, open_time: pd.Series | pd.DatetimeIndex | np.ndarray) -> np.ndarray:
        """Boolean array: which of `open_time` (naive UTC) fall in ``[start, end)``."""
        times = np.asarray(open_time, dtype="datetime64[ns]")
        return (times >= np.datetime64(self.start, "ns")) & (times < np.datetime64(self.end, "ns"))


@dataclass(frozen=True)
class Panel:
    """Feature rows joined to their label, the input of every model.

    ``frame`` is sorted by (symbol, open_time) and has the columns ``symbol``, ``open_time`` (naive
    UTC), the features of ``schema`` in schema order (float64, NaN allowed), then :data:`TARGET`
    (NaN where the future is not known). Rows before a :class:`TimeRange`'s start are context (the
    input windows of sequence models), never fitted or predicted.

    Raises:
        ValueError: a column is missing or out of order, or the rows are not sorted.
    """

    frame: pd.DataFrame
    schema: FeatureSchema

    def __post_init__(self) -> None:
        expected = ["symbol", "open_time", *self.schema.names, TARGET]
        if list(self.frame.columns) != expected:
            missing = [c for c in expected if c not in self.frame.columns]
            extra = [c for c in self.frame.columns if c not in expected]
            raise ValueError(
                "a Panel's columns must be symbol, open_time, the schema's features in order, "
                f"{TARGET}; missing {missing}, extra {extra}"
                + ("" if missing or extra else " (same columns, another order)")
            )
        keys = pd.MultiIndex.from_frame(self.frame[["symbol", "open_time"]])
        if not keys.is_monotonic_increasing:
            raise ValueError("a Panel's rows must be sorted by (symbol, open_time)")

    @property
    def features(self) -> tuple[str, ...]:
        """The feature columns, in schema order."""
        return tuple(self.schema.names)

    def mask(self, rows: TimeRange) -> np.ndarray:
        """Boolean array over ``frame``: the rows whose open_time falls in `rows`."""
        return rows.mask(self.frame["open_time"].to_numpy())

    def rows(self, rows: TimeRange) -> pd.DataFrame:
        """The rows of ``frame`` with open_time in `rows` (a copy; the original index is kept)."""
        return self.frame.loc[self.mask(rows)]


class SchemaMismatch(SchemaMismatchError, ValueError):
    """A model was offered features built under another schema than the one it was fitted on."""


def check_schema(features: Sequence[str], schema_hash: str, current: FeatureSchema) -> None:
    """Refuse `current` unless it is the schema a model was fitted on (`features`, `schema_hash`).

    Raises:
        SchemaMismatch: the hashes or the names differ; the message gives both hashes and names the
            features missing from `current`, the extra ones, and a change of order.
    """
    wanted, have = list(features), current.names
    if wanted == have and schema_hash == current.hash:
        return
    missing = [n for n in wanted if n not in have]
    extra = [n for n in have if n not in wanted]
    parts = [
        f"feature schema mismatch: the model was fitted on {len(wanted)} features (schema hash "
        f"{schema_hash}), the panel has {len(have)} (schema hash {current.hash})",
        f"missing from the panel: {missing}",
        f"extra in the panel: {extra}",
    ]
    if not missing and not extra and wanted != have:
        parts.append("the same features in another order")
    elif wanted == have:
        parts.append("same names, but their definitions changed since the model was fitted")
    raise SchemaMismatch("; ".join(parts) + "; retrain the model on the current feature table")


class ForecastModel(ABC):
    """A regressor of :data:`TARGET` with a fixed seed and its own frozen ``Config`` dataclass.

    Subclasses set ``name`` (one of :data:`MODEL_NAMES`) and ``config_type`` and implement the
    abstract methods. After :meth:`fit`, ``features`` and ``schema_hash`` describe the panel it was
    fitted on; :meth:`save` keeps them (in ``model.json``, via :meth:`save_meta`) and :meth:`predict`
    refuses another schema (:meth:`check_panel`).
    """

    name: ClassVar[str]
    config_type: ClassVar[type[Any]]

    def __init__(self, config: Any | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else self.config_type()
        if not isinstance(self.config, self.config_type):
            raise TypeError(f"{self.name} takes a {self.config_type.__qualname__}, got {type(config)!r}")
        self.seed = seed
        self.features: tuple[str, ...] = ()
        self.schema_hash: str = ""

    @abstractmethod
    def fit(self, panel: Panel, train: TimeRange, valid: TimeRange) -> dict[str, float]:
        """Fit on the labelled rows of `train`; stop early on `valid` only.

        Returns figures of the fit, e.g. ``best_iteration``, ``epochs``, ``seconds``.
        """

    @abstractmethod
    def predict(self, panel: Panel, rows: TimeRange) -> pd.DataFrame:
        """``symbol, open_time, prediction`` for every panel row in `rows`, in panel order.

        Raises:
            SchemaMismatch: `panel` was built under another schema than the model's.
        """

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted model into `directory` (created if needed); same model, same bytes."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Self:
        """The model :meth:`save` wrote into `directory`."""

    @abstractmethod
    def importances(self) -> dict[str, float] | None:
        """Total gain per feature (tree models); ``None`` for models without one."""

    # -- helpers for subclasses ---------------------------------------------------------------------

    def remember_schema(self, panel: Panel) -> None:
        """Record the panel's features and schema hash as the model's (call at the start of fit)."""
        self.features = panel.features
        self.schema_hash = panel.schema.hash

    def check_panel(self, panel: Panel) -> None:
        """Raise :class:`SchemaMismatch` unless `panel` has the model's schema; RuntimeError if unfitted."""
        if not self.schema_hash:
            raise RuntimeError(f"{self.name} model is not fitted")
        check_schema(self.features, self.schema_hash, panel.schema)

    def save_meta(self, directory: Path, **extra: Any) -> None:
        """Write ``model.json`` (name, seed, config, features, schema hash, `extra`) into `directory`."""
        from quant_assets.store.lake import write_bytes_atomic

        meta = {
            "model": self.name,
            "seed": self.seed,
            "config": asdict(self.config) if is_dataclass(self.config) else {},
            "features": list(self.features),
            "feature_schema_hash": self.schema_hash,
            **extra,
        }
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        write_bytes_atomic(Path(directory) / META_FILE, text.encode())

    @classmethod
    def from_meta(cls, directory: Path) -> tuple[Self, dict[str, Any]]:
        """A model of this class configured from ``model.json`` in `directory`, and the whole JSON.

        Raises:
            FileNotFoundError: `directory` holds no ``model.json``.
            ValueError: it belongs to another model.
        """
        meta = json.loads((Path(directory) / META_FILE).read_text())
        if meta.get("model") != cls.name:
            raise ValueError(f"{directory} holds a {meta.get('model')!r} model, not {cls.name!r}")
        names = {f.name for f in fields(cls.config_type)}
        config = cls.config_type(**{k: _tuples(v) for k, v in meta["config"].items() if k in names})
        model = cls(config, seed=int(meta["seed"]))
        model.features = tuple(meta["features"])
        model.schema_hash = str(meta["feature_schema_hash"])
        return model, meta


def _tuples(value: Any) -> Any:
    """JSON gives lists where a frozen config held tuples."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
