"""Train one model version: stored panel -> time split with embargoes -> fit -> test vs baselines ->
promotion -> artifact and registry row.

:func:`train` is what the model assets and ``quant-assets train`` call. It reads the panel through
:func:`~quant_assets.models.data.load_panel` (features of the current schema hash, each day's
universe, joined to ``fwd_ret_12``), fits on the train part with early stopping on the validation
part only, scores the test part against both naive baselines
(:mod:`~quant_assets.models.evaluation`), and registers the version whatever the verdict: an
unpromoted version is kept, and its registry row says which condition failed.
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pandas as pd

from quant_assets.models import MODELS
from quant_assets.models.base import TARGET, TimeRange
from quant_assets.models.data import LoadedPanel, load_panel
from quant_assets.models.evaluation import (
    Split,
    baseline_predictions,
    decide_promotion,
    split_by_time,
)
from quant_assets.models.registry import (
    ModelVersion,
    save_artifact,
    version_name,
    write_version,
)
from quant_assets.store.lake import Lake

CONTEXT_DAYS = 1  # days read before the window: input windows of sequence models (never fitted)
SEED = 0


@dataclass(frozen=True)
class TrainResult:
    """One training: the registered version and what a desk reads about it."""

    version: ModelVersion
    metrics: dict[str, Any]  # as in the registry row
    promoted: bool
    reason: str  # the promotion conditions with their numbers (the failed ones when not promoted)
    importances: dict[str, float] | None  # gain per feature, largest first (tree models)
    test_predictions: pd.DataFrame  # symbol, open_time, prediction, fwd_ret_12, baseline_last
    split: Split
    fit: dict[str, float]  # best_iteration / epochs, seconds ...
    data: str  # what the panel held (LoadedPanel.describe)


def train(
    lake: Lake,
    model: str,
    *,
    end_day: date,
    days: int = 60,
    config: Any | None = None,
    now: datetime | None = None,
) -> TrainResult:
    """Train, judge and register a new version of `model` on the `days` days ending with `end_day`.

    The window is the feature days ``end_day - days + 1 .. end_day`` (UTC) that carry the current
    schema hash, trimmed to the first and last such day stored; it is split 70/15/15 by time with a
    12-bar embargo before each boundary and at its end (:func:`split_by_time`).

    Args:
        lake: the store; the artifact goes to ``<data_dir>/models/<model>/<version>``.
        model: one of :data:`~quant_assets.models.base.MODEL_NAMES`.
        end_day: last day of the window, inclusive.
        days: window length in days (>= 1).
        config: the model's ``Config``; default its full configuration.
        now: the training's moment (names the version); default the wall clock.

    Raises:
        KeyError: unknown model.
        ValueError: no labelled rows of the current schema in the window, or too few for a split.
    """
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    cls = MODELS[model]
    first_day = end_day - timedelta(days=days - 1)
    loaded = load_panel(lake, first_day - timedelta(days=CONTEXT_DAYS), end_day + timedelta(days=1))
    window = _window(loaded, first_day, end_day)
    split = split_by_time(window)
    panel = loaded.panel

    fitted = cls(config, seed=SEED)
    started = clock.perf_counter()
    fit = fitted.fit(panel, split.train, split.valid)
    fit["seconds"] = clock.perf_counter() - started

    test_rows = panel.rows(split.test)
    predicted = fitted.predict(panel, split.test)
    if (
        not predicted[["symbol", "open_time"]]
        .reset_index(drop=True)
        .equals(test_rows[["symbol", "open_time"]].reset_index(drop=True))
    ):
        raise RuntimeError(f"{model}.predict did not return the test rows in panel order")
    baselines = baseline_predictions(test_rows)
    realized = test_rows[TARGET].to_numpy(dtype=float)
    verdict = decide_promotion(
        test_rows["open_time"].to_numpy(), predicted["prediction"].to_numpy(), realized, baselines
    )
    metrics = {**verdict.metrics, "fit": fit, "days": len([d for d in loaded.days if d >= first_day])}

    trained_at = _naive_utc(now) if now is not None else datetime.now(UTC).replace(tzinfo=None)
    name = version_name(model, trained_at)
    artifact = save_artifact(lake, fitted, name)
    version = ModelVersion(
        model=model,
        version=name,
        trained_at=trained_at,
        train_start=split.train.start,
        train_end=split.test.end,
        feature_schema_hash=fitted.schema_hash,
        features=fitted.features,
        metrics=metrics,
        artifact_path=artifact,
        promoted=verdict.promoted,
        reason=verdict.reason,
    )
    write_version(lake, version)

    test_predictions = predicted.assign(**{TARGET: realized, "baseline_last": baselines["baseline_last"]})
    importances = fitted.importances()
    if importances is not None:
        importances = dict(sorted(importances.items(), key=lambda kv: (-kv[1], kv[0])))
    return TrainResult(
        version=version,
        metrics=metrics,
        promoted=verdict.promoted,
        reason=verdict.reason,
        importances=importances,
        test_predictions=test_predictions,
        split=split,
        fit=fit,
        data=loaded.describe(),
    )


def _window(loaded: LoadedPanel, first_day: date, end_day: date) -> TimeRange:
    """The whole days from the first to the last stored feature day in ``first_day .. end_day``.

    Raises:
        ValueError: none of them holds a labelled row of the current schema.
    """
    frame = loaded.panel.frame
    start, end = datetime.combine(first_day, time()), datetime.combine(end_day + timedelta(days=1), time())
    labelled = frame.loc[TimeRange(start, end).mask(frame["open_time"]) & frame[TARGET].notna()]
    if labelled.empty:
        raise ValueError(
            f"no labelled rows of the current feature schema between {first_day} and {end_day}: "
            f"{loaded.describe()}; materialize feature_table and labels for these days"
        )
    first = labelled["open_time"].min().date()
    last = labelled["open_time"].max().date()
    return TimeRange(datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time()))


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment
