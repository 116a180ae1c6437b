"""Serving: each model's version in force predicts a day, the day is scored, and the live path.

* :func:`predict_day` (the ``predictions`` table, one file per day): for every model, the latest
  registered version whose data ends before day d (:func:`~quant_assets.models.registry.latest_before`)
  predicts ``fwd_ret_12`` for every stored feature row of d, i.e. every closed 5-minute candle of the
  symbols of ``coin_universe`` (d). The rows come from the feature library through
  :func:`~quant_assets.models.data.load_panel`: the stored feature day d of the current schema hash,
  plus day d - 1 as context for the sequence models' input windows. A version fitted under another
  feature schema is refused (:class:`~quant_assets.models.base.SchemaMismatch`, naming the missing
  and extra features and both hashes): it predicts nothing, the other models still do, and the
  refusal is reported in ``attrs["refused"]``.
* :func:`evaluate_day` (the ``model_evaluation`` table, one file per day): day d's predictions
  against the realized labels of d (rows whose ``fwd_ret_12`` is known), per model and version:
  rows, IC (Spearman across the symbols of each open time, averaged), directional accuracy, RMSE and
  MAE, and the same for the two naive baselines on the same rows (zero, and the last 12-bar return,
  the stored ``ret_12`` feature), as training scores them (:mod:`quant_assets.models.evaluation`).
* :func:`latest_predictions`: the live path. Each model's latest version whose every training label
  was realized by ``as_of`` predicts each symbol's last closed candle from
  :func:`~quant_assets.features.inference.latest_features` (with the last ``input_size`` rows for
  the sequence models' windows), never from stored features.

Every write is atomic and the same inputs give the same bytes (:meth:`Lake.write`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from quant_assets.errors import StoreError
from quant_assets.features.inference import latest_features
from quant_assets.features.schema import FeatureSchema, feature_schema
from quant_assets.models.base import (
    HORIZON_BARS,
    MODEL_NAMES,
    TARGET,
    ForecastModel,
    Panel,
    SchemaMismatch,
    TimeRange,
)
from quant_assets.models.data import load_panel
from quant_assets.models.evaluation import LAST_RETURN_FEATURE, baseline_predictions, score
from quant_assets.models.registry import ModelVersion, latest_before, load_model, versions
from quant_assets.store.lake import Lake, WriteResult

logger = logging.getLogger(__name__)

BAR = timedelta(minutes=5)
PREDICTION_COLUMNS = ["model", "version", "symbol", "open_time", "horizon", "prediction", "promoted"]
METRICS = ("ic", "directional_accuracy", "rmse", "mae")
BASELINES = ("baseline_zero", "baseline_last")
EVALUATION_COLUMNS = [
    "model",
    "version",
    "day",
    "promoted",
    "rows",
    *METRICS,
    *(f"{b}_{m}" for b in BASELINES for m in METRICS),
]


@dataclass(frozen=True)
class ServedModel:
    """A registered version and its fitted model, loaded against the current feature schema."""

    version: ModelVersion
    model: ForecastModel

    @property
    def context_bars(self) -> int:
        """Feature rows a prediction reads per symbol: the input window of a sequence model, else 1."""
        return int(getattr(self.model.config, "input_size", 1))


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time())


def _empty_predictions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": pd.Series(dtype=str),
            "version": pd.Series(dtype=str),
            "symbol": pd.Series(dtype=str),
            "open_time": pd.Series(dtype="datetime64[ms]"),
            "horizon": pd.Series(dtype=np.int32),
            "prediction": pd.Series(dtype=np.float64),
            "promoted": pd.Series(dtype=bool),
        }
    )


def _load_all(
    lake: Lake, chosen: dict[str, ModelVersion], schema: FeatureSchema
) -> tuple[list[ServedModel], dict[str, str]]:
    """Load each chosen version against `schema`; a refused one is left out with its message."""
    served: list[ServedModel] = []
    refused: dict[str, str] = {}
    for name, version in chosen.items():
        try:
            served.append(ServedModel(version, load_model(lake, version, schema)))
        except SchemaMismatch as error:
            refused[name] = f"{version.version}: {error}"
            logger.warning("%s refused: %s", version.version, error)
    if refused and not served:
        raise SchemaMismatch("; ".join(refused.values()))
    return served, refused


def predict_day(lake: Lake, day: date) -> pd.DataFrame:
    """Predictions of every model's version in force on `day` for every closed candle of `day`.

    Args:
        lake: the store (features, labels, coin_universe, model_registry and artifacts).
        day: the UTC day to predict.

    Returns:
        Columns ``model, version, symbol, open_time, horizon, prediction, promoted``, sorted by
        (model, version, symbol, open_time); ``horizon`` is 12 (bars of ``fwd_ret_12``). Empty
        when no model has a version trained on data ending before `day`. ``attrs`` holds
        ``versions`` (model -> the version that predicted), ``refused`` (model -> the schema
        mismatch message), ``without_version`` (models with no version before `day`) and
        ``context_days`` (the days before `day` read as context).

    Raises:
        StoreError: the feature day `day` is not stored under the current schema hash (the message
            says which), or no ``coin_universe`` snapshot is stored.
        SchemaMismatch: every version in force was fitted under another feature schema (nothing
            could predict); the message names each one's missing and extra features.
    """
    schema = feature_schema()
    chosen: dict[str, ModelVersion] = {}
    without: list[str] = []
    for name in MODEL_NAMES:
        found = latest_before(lake, name, day)
        if found is None:
            without.append(name)
        else:
            chosen[name] = found
    served, refused = _load_all(lake, chosen, schema)
    result = _empty_predictions()
    context_days: list[date] = []
    if served:
        loaded = load_panel(lake, day - timedelta(days=1), day + timedelta(days=1), schema=schema)
        if day not in loaded.days:
            why = (
                f"built under schema hash {loaded.stale_days[day]}, not the current {schema.hash}"
                if day in loaded.stale_days
                else "not stored"
            )
            raise StoreError(
                f"cannot predict {day}: its feature day is {why}; materialize feature_table for {day}"
            )
        context_days = [d for d in loaded.days if d < day]
        rows = TimeRange(_day_start(day), _day_start(day + timedelta(days=1)))
        frames = [_predict(one, loaded.panel, rows) for one in served]
        result = pd.concat([result, *frames], ignore_index=True)[PREDICTION_COLUMNS]
        result = result.sort_values(["model", "version", "symbol", "open_time"], kind="stable")
        result = result.reset_index(drop=True)
    result.attrs["versions"] = {one.version.model: one.version.version for one in served}
    result.attrs["refused"] = refused
    result.attrs["without_version"] = without
    result.attrs["context_days"] = context_days
    return result


def _predict(one: ServedModel, panel: Panel, rows: TimeRange) -> pd.DataFrame:
    predicted = one.model.predict(panel, rows)
    return pd.DataFrame(
        {
            "model": one.version.model,
            "version": one.version.version,
            "symbol": predicted["symbol"].astype(str).to_numpy(),
            "open_time": predicted["open_time"].to_numpy(dtype="datetime64[ms]"),
            "horizon": np.int32(HORIZON_BARS),
            "prediction": predicted["prediction"].to_numpy(dtype=np.float64),
            "promoted": bool(one.version.promoted),
        }
    )


def write_predictions(lake: Lake, day: date, predictions: pd.DataFrame) -> WriteResult:
    """Write `predictions` (of :func:`predict_day`) as the ``predictions`` partition of `day`, atomically.

    Raises:
        StoreError: a row's open time is not in `day` (nothing is written).
    """
    _check_in_day(predictions["open_time"], day, "predictions")
    return lake.write("predictions", _plain(predictions[PREDICTION_COLUMNS]), date=day)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` without ``attrs``: pyarrow would store them in the file, so they would change its bytes."""
    plain = frame.copy()
    plain.attrs = {}
    return plain


def _check_in_day(open_time: pd.Series, day: date, what: str) -> None:
    times = pd.to_datetime(open_time)
    outside = times[(times < _day_start(day)) | (times >= _day_start(day + timedelta(days=1)))]
    if len(outside):
        raise StoreError(f"{what} of {day} hold {len(outside)} rows of other days, e.g. {outside.iloc[0]}")


def evaluate_day(lake: Lake, day: date) -> pd.DataFrame:
    """Score the stored predictions of `day` against its realized ``fwd_ret_12`` labels.

    Only rows whose label is known (finite) count; each (model, version) of the day's predictions
    gets one row, with ``rows`` = 0 and NaN metrics while none of its labels is known yet. The
    baselines are scored on the same rows: zero, and the stored ``ret_12`` feature of the row (0
    where it is unknown), as in training.

    Returns:
        The ``model_evaluation`` columns (model, version, day, promoted, rows, ic,
        directional_accuracy, rmse, mae, then ``baseline_zero_*`` and ``baseline_last_*`` of the same
        four), sorted by (model, version).

    Raises:
        StoreError: the predictions, labels or feature day of `day` are not stored.
    """
    predictions = lake.read("predictions", date=day)
    labels_path = lake.path("labels", date=day)
    features_path = lake.path("features", date=day)
    for path, what in ((labels_path, "labels"), (features_path, "feature_table")):
        if not path.exists():
            raise StoreError(f"cannot evaluate {day}: {what} of {day} is not stored; materialize it first")
    keys = ["symbol", "open_time"]
    labels = pq.read_table(labels_path, columns=[*keys, TARGET]).to_pandas()
    last = pq.read_table(features_path, columns=[*keys, LAST_RETURN_FEATURE]).to_pandas()
    for frame in (predictions, labels, last):
        frame["open_time"] = frame["open_time"].astype("datetime64[ms]")
        frame["symbol"] = frame["symbol"].astype(str)
    joined = predictions.merge(labels, on=keys, how="left").merge(last, on=keys, how="left")
    joined = joined[np.isfinite(joined[TARGET].to_numpy(dtype=np.float64))]
    out: list[dict[str, object]] = []
    for (model, version), group in predictions.groupby(["model", "version"], sort=True):
        known = joined[(joined["model"] == model) & (joined["version"] == version)]
        known = known.sort_values(keys, kind="stable")
        row: dict[str, object] = {
            "model": model,
            "version": version,
            "day": day,
            "promoted": bool(group["promoted"].iloc[0]),
            "rows": len(known),
        }
        times = known["open_time"].to_numpy()
        realized = known[TARGET].to_numpy(dtype=np.float64)
        scored = {"": score(times, known["prediction"].to_numpy(dtype=np.float64), realized)}
        for name, predicted in baseline_predictions(known).items():
            scored[name + "_"] = score(times, predicted, realized)
        for prefix, figures in scored.items():
            row.update({prefix + m: figures[m] for m in METRICS})
        out.append(row)
    result = pd.DataFrame(out, columns=EVALUATION_COLUMNS)
    result["rows"] = result["rows"].astype(np.int64)
    return result


def write_evaluation(lake: Lake, day: date, evaluation: pd.DataFrame) -> WriteResult:
    """Write `evaluation` (of :func:`evaluate_day`) as the ``model_evaluation`` partition of `day`.

    Raises:
        StoreError: a row belongs to another day (nothing is written).
    """
    other = evaluation[pd.to_datetime(evaluation["day"]).dt.date != day]
    if len(other):
        raise StoreError(f"model_evaluation of {day} holds rows of {sorted(set(other['day']))}")
    return lake.write("model_evaluation", _plain(evaluation[EVALUATION_COLUMNS]), date=day)


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


def live_versions(lake: Lake, as_of: datetime) -> dict[str, ModelVersion]:
    """Per model, the latest version whose every training label was realized by `as_of`.

    A version's rows have open time < ``train_end`` and labels reaching 12 bars further, so it is
    eligible when ``train_end + 12 bars <= as_of`` (naive UTC or aware).
    """
    now = _utc_naive(as_of)
    chosen: dict[str, ModelVersion] = {}
    for name in MODEL_NAMES:
        eligible = [v for v in versions(lake, name) if v.train_end + HORIZON_BARS * BAR <= now]
        if eligible:
            chosen[name] = eligible[-1]
    return chosen


def latest_predictions(
    lake: Lake, symbol: str | Sequence[str], as_of: datetime | None = None
) -> pd.DataFrame:
    """Each model's latest version predicts each symbol's last candle closed by `as_of`: the live path.

    Features come from :func:`~quant_assets.features.inference.latest_features` (computed from the
    candles, with the cross-section ``feature_table`` uses), the last ``input_size`` rows of each
    symbol for the sequence models' windows.

    Args:
        lake: the store.
        symbol: one symbol (``"BTCUSDT"``) or several.
        as_of: the moment of inference (naive UTC or aware); default now.

    Returns:
        One row per (model, symbol) in :data:`MODEL_NAMES` order and the symbols' order:
        ``model, version, symbol, open_time`` (the candle predicted from), ``horizon``,
        ``prediction``, ``promoted``. ``attrs`` holds ``refused`` (model -> schema mismatch message),
        ``without_version``, ``missing_symbols`` (no closed candle in the warm-up window) and
        ``as_of``.

    Raises:
        InvalidSymbolError: a symbol is not valid.
        StoreError: no ``coin_universe`` snapshot is stored.
        SchemaMismatch: every eligible version was fitted under another feature schema.
    """
    asked = [symbol] if isinstance(symbol, str) else list(symbol)
    moment = datetime.now(UTC) if as_of is None else as_of
    schema = feature_schema()
    chosen = live_versions(lake, moment)
    served, refused = _load_all(lake, chosen, schema)
    result = _empty_predictions()
    missing: list[str] = []
    if served:
        bars = max(one.context_bars for one in served)
        rows = latest_features(asked, moment, lake=lake, bars=bars)
        missing = list(rows.attrs.get("missing_symbols", []))
        frame = rows[["symbol", "open_time", *schema.names]].copy()
        frame["open_time"] = frame["open_time"].astype("datetime64[ms]")
        frame[TARGET] = np.nan
        frame = frame.sort_values(["symbol", "open_time"], kind="stable", ignore_index=True)
        last = frame.groupby("symbol", sort=False)["open_time"].transform("max") == frame["open_time"]
        if last.any():
            panel = Panel(frame, schema)
            times = frame.loc[last, "open_time"]
            window = TimeRange(times.min().to_pydatetime(), times.max().to_pydatetime() + BAR)
            keys = frame.loc[last, ["symbol", "open_time"]]
            found = [_predict(one, panel, window).merge(keys, on=["symbol", "open_time"]) for one in served]
            result = pd.concat([result, *found], ignore_index=True)[PREDICTION_COLUMNS]
            order = {s: i for i, s in enumerate(asked)}
            result = result.assign(
                _m=result["model"].map(MODEL_NAMES.index), _s=result["symbol"].map(order)
            ).sort_values(["_m", "_s"], kind="stable")
            result = result.drop(columns=["_m", "_s"]).reset_index(drop=True)
    result.attrs["refused"] = refused
    result.attrs["without_version"] = [m for m in MODEL_NAMES if m not in chosen]
    result.attrs["missing_symbols"] = missing
    result.attrs["as_of"] = moment
    return result
