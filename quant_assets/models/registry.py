"""The model registry: one ``model_registry`` row per trained version, its artifact beside the lake.

Layout under ``$QT_DATA_DIR``::

    lake/model_registry/<model>/<version>.parquet   # the row (the catalog's model_registry view)
    models/<model>/<version>/                        # the artifact: model.json + the model's files

A version is named after its model and the UTC moment of its training to the microsecond
(``xgboost-20261129T171530.123456Z``), so each training gets its own, sorted like time. A row is
written once, after its artifact is in place; nothing ever rewrites it. :func:`load_model` refuses
(:class:`~quant_assets.models.base.SchemaMismatch`) a version fitted under another feature schema
than the one it is to be fed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from quant_assets.errors import StoreError
from quant_assets.features.schema import FeatureSchema, feature_schema
from quant_assets.models.base import MODEL_NAMES, ForecastModel, check_schema
from quant_assets.store.lake import Lake, WriteResult

ARTIFACTS_DIR = "models"  # under the data directory, beside the lake


@dataclass(frozen=True)
class ModelVersion:
    """One trained version: what it was trained on, how it scored, where it is, whether promoted."""

    model: str
    version: str
    trained_at: datetime  # naive UTC, microseconds
    train_start: datetime  # first open time of the window (train part start), naive UTC
    train_end: datetime  # rows used have open time < train_end; their labels end 12 bars later
    feature_schema_hash: str
    features: tuple[str, ...]
    metrics: dict[str, Any]  # rmse, mae, directional_accuracy, ic, baseline_zero, baseline_last, bootstrap
    artifact_path: Path
    promoted: bool
    reason: str = ""  # the promotion verdict's conditions with their numbers

    def row(self) -> dict[str, Any]:
        """The ``model_registry`` row (metrics as JSON text, NaN as null)."""
        return {
            "model": self.model,
            "version": self.version,
            "trained_at": self.trained_at,
            "train_start": self.train_start,
            "train_end": self.train_end,
            "feature_schema_hash": self.feature_schema_hash,
            "features": list(self.features),
            "metrics": json.dumps(_json_safe(self.metrics), sort_keys=True),
            "artifact_path": str(self.artifact_path),
            "promoted": self.promoted,
            "reason": self.reason,
        }


def _json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None (JSON has no NaN) and numpy scalars as Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def version_name(model: str, trained_at: datetime) -> str:
    """``<model>-YYYYmmddTHHMMSS.ffffffZ`` of a naive-UTC or aware `trained_at`."""
    return f"{model}-{_naive_utc(trained_at):%Y%m%dT%H%M%S.%fZ}"


def artifact_dir(lake: Lake, model: str, version: str) -> Path:
    """Where the artifact of `version` lives: ``<data_dir>/models/<model>/<version>``."""
    lake.path("model_registry", model=model, version=version)  # validates both names
    return lake.data_dir / ARTIFACTS_DIR / model / version


def save_artifact(lake: Lake, fitted: ForecastModel, version: str) -> Path:
    """Save `fitted` as `version`'s artifact: into a temporary directory, then renamed into place.

    Raises:
        StoreError: the version already has an artifact (versions are never overwritten).
    """
    target = artifact_dir(lake, fitted.name, version)
    if target.exists():
        raise StoreError(f"model artifact {target} already exists; a version is written once")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fitted.save(tmp)
        os.rename(tmp, target)  # atomic; fails if another process took the name meanwhile
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def write_version(lake: Lake, version: ModelVersion) -> WriteResult:
    """Write `version`'s registry row (after its artifact). Raises StoreError if it exists already."""
    if version.model not in MODEL_NAMES:
        raise StoreError(f"unknown model {version.model!r}; known: {list(MODEL_NAMES)}")
    path = lake.path("model_registry", model=version.model, version=version.version)
    if path.exists():
        raise StoreError(f"registry row {path.name} already exists; a version is written once")
    return lake.write(
        "model_registry", pd.DataFrame([version.row()]), model=version.model, version=version.version
    )


def _from_row(row: dict[str, Any]) -> ModelVersion:
    return ModelVersion(
        model=str(row["model"]),
        version=str(row["version"]),
        trained_at=_naive_utc(pd.Timestamp(row["trained_at"]).to_pydatetime()),
        train_start=_naive_utc(pd.Timestamp(row["train_start"]).to_pydatetime()),
        train_end=_naive_utc(pd.Timestamp(row["train_end"]).to_pydatetime()),
        feature_schema_hash=str(row["feature_schema_hash"]),
        features=tuple(row["features"] or ()),
        metrics=json.loads(row["metrics"]) if row["metrics"] else {},
        artifact_path=Path(str(row["artifact_path"])),
        promoted=bool(row["promoted"]),
        reason=str(row.get("reason") or ""),
    )


def versions(lake: Lake, model: str | None = None) -> list[ModelVersion]:
    """Every registered version (of `model`, or of all models), sorted by model then trained_at."""
    if model is not None and model not in MODEL_NAMES:
        raise StoreError(f"unknown model {model!r}; known: {list(MODEL_NAMES)}")
    found: list[ModelVersion] = []
    for path in lake.files("model_registry"):
        if model is not None and path.parent.name != model:
            continue
        found.extend(_from_row(row) for row in pq.read_table(path).to_pylist())
    return sorted(found, key=lambda v: (MODEL_NAMES.index(v.model), v.trained_at, v.version))


def latest_before(lake: Lake, model: str, day: date) -> ModelVersion | None:
    """The latest trained version of `model` whose data ends before `day` starts (train_end < day 00:00).

    None when no such version is registered. This is the version that may predict `day`: nothing it
    was fitted or judged on lies in `day` or later.
    """
    start = datetime.combine(day, time())
    eligible = [v for v in versions(lake, model) if v.train_end < start]
    return eligible[-1] if eligible else None


def load_model(lake: Lake, version: ModelVersion, schema: FeatureSchema | None = None) -> ForecastModel:
    """The fitted model of `version`, refused unless it was fitted on `schema` (default: current).

    The artifact is read from ``artifact_path``, or from ``<data_dir>/models/<model>/<version>`` when
    the data directory has moved since.

    Raises:
        SchemaMismatch: the version's features or schema hash differ from `schema`'s; the message
            names the missing and extra features and both hashes.
        FileNotFoundError: the artifact is gone.
    """
    from quant_assets.models import MODELS

    schema = schema or feature_schema()
    check_schema(version.features, version.feature_schema_hash, schema)
    directory = version.artifact_path
    if not directory.is_dir():
        directory = artifact_dir(lake, version.model, version.version)
    if not directory.is_dir():
        raise FileNotFoundError(f"the artifact of {version.version} is missing ({version.artifact_path})")
    model = MODELS[version.model].load(directory)
    check_schema(model.features, model.schema_hash, schema)
    return model


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
