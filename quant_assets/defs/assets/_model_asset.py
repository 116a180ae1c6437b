"""What the four model assets share: their config, their body, the metadata a desk reads, the job.

Each ``<model>_model`` asset is unpartitioned and versioned: every materialization trains a new
version on the stored features of the last ``days`` days (default ``QT_MODEL_TRAIN_DAYS``) that
carry the registry's current schema hash, through :func:`quant_assets.models.training.train`, which
splits by time with an embargo, scores the test part against both naive baselines, decides the
promotion and writes the artifact and its ``model_registry`` row. The materialization carries:

* ``metrics``: the model against the zero-return and last-12-bar-return baselines (markdown table),
  and the same numbers as plain floats, which the UI plots across versions;
* ``promoted`` and ``verdict``: the promotion and the condition that failed, with its numbers;
* ``importances``: the top 20 features by gain (tree models only);
* ``deciles``: realized forward return by predicted decile on the test rows, a PNG in markdown
  (Dagster's markdown renders ``data:image/png;base64`` images since dagster#13443).
"""

import base64
import datetime as dt
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from quant_assets.defs.resources import LakeResource
from quant_assets.errors import QuantAssetsError
from quant_assets.feature_days import stored_feature_hashes
from quant_assets.features import feature_schema
from quant_assets.models import MODELS
from quant_assets.models.base import MODEL_NAMES, TARGET
from quant_assets.models.registry import ModelVersion, versions
from quant_assets.models.training import TrainResult, train
from quant_assets.settings import Settings, default_model_profile, model_profile
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake

MODEL_ASSET_NAMES: tuple[str, ...] = tuple(f"{name}_model" for name in MODEL_NAMES)
TOP_IMPORTANCES = 20
DECILES = 10

retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=list(MODEL_ASSET_NAMES),
    description="Train a new version of each of the four models on the stored features and labels.",
)


class ModelTrainingConfig(dg.Config):
    """How a model asset trains (the Launchpad shows these fields)."""

    days: int | None = Field(
        default=None,
        ge=3,
        description="days of features to train on, split by time; default: QT_MODEL_TRAIN_DAYS (60)",
    )
    profile: str | None = Field(
        default=None,
        description="full: the benchmarked configuration; small: the tiny one of tests and the demo; "
        "default: QT_MODEL_PROFILE (full)",
    )
    end_day: str | None = Field(
        default=None,
        description="last day (YYYY-MM-DD, UTC) of the window; default: the last stored features day",
    )


def last_feature_day(lake: Lake) -> dt.date:
    """The last day whose stored features carry the registry's current schema hash.

    Raises:
        QuantAssetsError: no such day is stored (materialize ``feature_table`` first).
    """
    current = feature_schema().hash
    days = [day for day, stored in stored_feature_hashes(lake).items() if stored == current]
    if not days:
        raise QuantAssetsError(
            f"no features of the current schema hash {current} are stored: materialize feature_table first"
        )
    return max(days)


def train_model(model: str, config: ModelTrainingConfig, lake: Lake) -> TrainResult:
    """Train one new version of `model` as `config` says; the plain call behind every model asset."""
    days = config.days if config.days is not None else Settings.from_env().model_train_days
    end_day = dt.date.fromisoformat(config.end_day) if config.end_day else last_feature_day(lake)
    profile = model_profile("profile", config.profile) if config.profile else default_model_profile()
    model_config = MODELS[model].config_type.small() if profile == "small" else None
    return train(lake, model, end_day=end_day, days=days, config=model_config)


def build_model_asset(model: str, *, kinds: set[str]) -> dg.AssetsDefinition:
    """The unpartitioned ``<model>_model`` asset; each materialization is a new registry version."""
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}: expected one of {', '.join(MODEL_NAMES)}")

    @dg.asset(
        name=f"{model}_model",
        group_name="models",
        kinds=kinds,
        deps=["feature_table", "labels"],  # what it reads: stored features joined to fwd_ret_12
        description=(
            f"A new version of the {model} model predicting {TARGET}, trained on the last `days` days "
            "of stored features (current schema hash, each day's universe) split by time with an "
            "embargo; promoted only when its test IC beats both naive baselines past the block "
            "bootstrap's 95 % bound and its RMSE is no worse than the zero-return baseline's."
        ),
    )
    def _model_asset(
        context: dg.AssetExecutionContext, config: ModelTrainingConfig, lake: LakeResource
    ) -> dg.MaterializeResult:
        try:
            result = train_model(model, config, lake.lake())
        except (QuantAssetsError, ValueError) as error:  # no data, bad window: say what, keep the rest
            raise dg.Failure(description=f"{model}: {error}", allow_retries=False) from error
        lake.catalog().ensure_views()
        version = result.version
        verdict = "promoted" if result.promoted else "not promoted"
        context.log.info(f"{model} {version.version}: {verdict}; {result.reason}")
        return dg.MaterializeResult(metadata=model_metadata(result))

    return _model_asset


def fail_for_days(failed: dict[str, str], *, days: int, not_done: str) -> None:
    """Fail the run of a partitioned model asset (``predictions``, ``model_evaluation``) over `days`
    days when some were not written, naming each day of `failed` (day -> why) and saying that the
    other days are stored; `not_done` says what the failed days were not (``"predicted"`` ...).

    Raises:
        dagster.Failure: `failed` names a day (without retries: the same inputs fail again).
    """
    if failed:
        listing = "\n".join(f"  {day}: {message}" for day, message in failed.items())
        raise dg.Failure(
            description=f"{len(failed)} of {days} days were not {not_done}; the others are stored:\n{listing}",
            metadata={"failed_days": dg.MetadataValue.json(failed)},
            allow_retries=False,
        )


# ------------------------------------------------------------------------------------- metadata
_METRIC_ROWS = (
    ("ic", "IC (Spearman per timestamp, mean)"),
    ("rmse", "RMSE"),
    ("mae", "MAE"),
    ("directional_accuracy", "directional accuracy"),
)
_BASELINES = (("baseline_zero", "zero return"), ("baseline_last", "last 12-bar return"))


def model_metadata(result: TrainResult) -> dict[str, Any]:
    """The metadata of one model materialization (see the module docstring)."""
    version, metrics = result.version, result.metrics
    metadata: dict[str, Any] = {
        "version": version.version,
        "promoted": dg.MetadataValue.bool(bool(result.promoted)),
        "verdict": ("promoted: " if result.promoted else "not promoted: ") + result.reason,
        "metrics": dg.MetadataValue.md(metrics_markdown(metrics)),
        "train_start": str(version.train_start),
        "train_end": str(version.train_end),
        "feature_schema_hash": version.feature_schema_hash,
        "features": len(version.features),
        "artifact_path": dg.MetadataValue.path(str(version.artifact_path)),
    }
    for key, value in flat_metrics(metrics).items():
        metadata[key] = dg.MetadataValue.float(value)
    for key, value in sorted(result.fit.items()):  # best_iteration or epochs, seconds ...
        if np.isfinite(_number(value)):
            metadata[f"fit/{key}"] = dg.MetadataValue.float(_number(value))
    metadata["data"] = result.data
    if result.importances:
        metadata["importances"] = dg.MetadataValue.md(importances_markdown(result.importances))
    deciles = decile_returns(result.test_predictions)
    if not deciles.empty:
        metadata["deciles"] = dg.MetadataValue.md(decile_markdown(deciles, title=version.version))
    return metadata


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """``ic``, ``rmse`` ... of the model, ``baseline_zero/ic`` ..., and the bootstrap bounds, as floats."""
    flat = {key: _number(metrics.get(key)) for key, _ in _METRIC_ROWS}
    for baseline, _ in _BASELINES:
        values = metrics.get(baseline) or {}
        flat.update({f"{baseline}/{key}": _number(values.get(key)) for key, _ in _METRIC_ROWS})
    for key, value in (metrics.get("bootstrap") or {}).items():
        if key.startswith("ic_diff_lower"):
            flat[f"bootstrap/{key}"] = _number(value)
    return {key: value for key, value in flat.items() if np.isfinite(value)}


def _cell(value: object) -> str:
    number = _number(value)
    return f"{number:.5f}" if np.isfinite(number) else "-"


def metrics_markdown(metrics: Mapping[str, Any]) -> str:
    """The test metrics of the model next to both baselines, and the bootstrap bounds, as markdown."""
    header = "| test metric | model | " + " | ".join(label for _, label in _BASELINES) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(_BASELINES)]
    for key, label in _METRIC_ROWS:
        cells = [_cell(metrics.get(key))]
        cells += [_cell((metrics.get(baseline) or {}).get(key)) for baseline, _ in _BASELINES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    bootstrap = metrics.get("bootstrap") or {}
    if bootstrap:
        lines.append("")
        lines.append(
            "One-sided 95 % lower bound of the IC difference (model minus baseline), moving-block "
            f"bootstrap over time ({bootstrap.get('resamples', '?')} resamples, blocks of "
            f"{bootstrap.get('block_bars', '?')} bars): zero return {_cell(bootstrap.get('ic_diff_lower_zero'))}, "
            f"last 12-bar return {_cell(bootstrap.get('ic_diff_lower_last'))}."
        )
    return "\n".join(lines)


def importances_markdown(importances: Mapping[str, float], top: int = TOP_IMPORTANCES) -> str:
    """The `top` features by importance (gain), with their share of the total, as markdown."""
    total = sum(max(v, 0.0) for v in importances.values()) or 1.0
    ranked = sorted(importances.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    lines = ["| rank | feature | gain | share |", "|---:|---|---:|---:|"]
    lines += [
        f"| {i} | `{name}` | {gain:.4g} | {gain / total:.1%} |" for i, (name, gain) in enumerate(ranked, 1)
    ]
    return "\n".join(lines)


def decile_returns(predictions: pd.DataFrame | None, *, target: str = TARGET) -> pd.DataFrame:
    """Mean realized `target` of the test rows by decile of their prediction (1 = lowest).

    Columns: decile, rows, mean_prediction, mean_realized. Rows without a realized value are left
    out; ties in the prediction are broken by row order, so deciles hold equal counts. Empty when
    fewer than 10 rows are known.
    """
    columns = ["decile", "rows", "mean_prediction", "mean_realized"]
    if predictions is None or predictions.empty or target not in predictions:
        return pd.DataFrame(columns=columns)
    known = predictions.loc[predictions[target].notna() & predictions["prediction"].notna()]
    if len(known) < DECILES:
        return pd.DataFrame(columns=columns)
    ranks = known["prediction"].rank(method="first")
    decile = pd.qcut(ranks, DECILES, labels=list(range(1, DECILES + 1))).astype(int)
    grouped = known.assign(decile=decile).groupby("decile", sort=True)
    table = pd.DataFrame(
        {
            "rows": grouped.size(),
            "mean_prediction": grouped["prediction"].mean(),
            "mean_realized": grouped[target].mean(),
        }
    ).reset_index()
    return table[columns]


def decile_png(deciles: pd.DataFrame, *, title: str) -> bytes:
    """A small bar chart of realized return (basis points) by predicted decile, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a run worker has none
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.0, 3.0), dpi=80)
    axes = figure.subplots()
    realized_bp = deciles["mean_realized"].to_numpy(dtype=float) * 1e4
    colors = ["#c0392b" if v < 0 else "#27ae60" for v in realized_bp]
    axes.bar(deciles["decile"].astype(int), realized_bp, color=colors)
    axes.axhline(0.0, color="black", linewidth=0.6)
    axes.set_xticks(range(1, DECILES + 1))
    axes.set_xlabel("predicted decile (1 = lowest prediction)")
    axes.set_ylabel(f"mean realized {TARGET} (bp)")
    axes.set_title(f"test rows by predicted decile: {title}", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    # No timestamps in the file, so the same deciles give the same bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def decile_markdown(deciles: pd.DataFrame, *, title: str) -> str:
    """The decile plot as an inline PNG, followed by its numbers as a table."""
    encoded = base64.b64encode(decile_png(deciles, title=title)).decode("ascii")
    lines = [
        f"![realized {TARGET} by predicted decile](data:image/png;base64,{encoded})",
        "",
        "| decile | rows | mean prediction | mean realized |",
        "|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {int(r.decile)} | {int(r.rows)} | {r.mean_prediction:.6f} | {r.mean_realized:.6f} |"
        for r in deciles.itertuples()
    ]
    return "\n".join(lines)


def model_run_config(
    models: Sequence[str], *, days: int | None, profile: str, end_day: dt.date | None = None
) -> dict[str, Any]:
    """Run config training `models` (names from MODEL_NAMES) with the same settings each."""
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise QuantAssetsError(f"unknown models {unknown}: expected some of {', '.join(MODEL_NAMES)}")
    config: dict[str, Any] = {"profile": profile}
    if days is not None:
        config["days"] = days
    if end_day is not None:
        config["end_day"] = end_day.isoformat()
    return {"ops": {f"{model}_model": {"config": dict(config)} for model in models}}


# ---------------------------------------------------------------------------- runs from the CLI
@dataclass
class ModelRunOutcome:
    """What one training run did: the version each model got, and why the others failed."""

    run_id: str
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return not self.failures


def materialize_models(
    models: Sequence[str],
    *,
    days: int | None,
    profile: str,
    end_day: dt.date | None = None,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any] | None = None,
) -> ModelRunOutcome:
    """Train `models` in ONE run on `instance` (each its own step), as ``retrain_job`` would.

    `resources` default to :func:`~quant_assets.defs.resources.build_resources` (the QT_* variables).
    The registry is read back for the versions the run wrote.
    """
    from quant_assets.definitions import defs
    from quant_assets.defs.resources import build_resources

    run_config = model_run_config(models, days=days, profile=profile, end_day=end_day)
    lake = _lake_of(resources)
    resources = dict(resources) if resources is not None else build_resources()
    result = dg.materialize(
        [defs.get_assets_def(f"{model}_model") for model in models],
        instance=instance,
        resources=resources,
        run_config=run_config,
        tags={"quant_assets/reason": "cli-train"},
        raise_on_error=False,
    )
    outcome = ModelRunOutcome(run_id=result.run_id)
    written = {
        event.asset_key.path[-1].removesuffix("_model"): str(event.materialization.metadata["version"].value)
        for event in result.get_asset_materialization_events()
        if event.asset_key is not None
    }
    for model in models:
        if model in written:
            outcome.versions[model] = next(v for v in versions(lake, model) if v.version == written[model])
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            data = event.step_failure_data
            message = data.user_failure_data.description if data.user_failure_data else data.error.message
            outcome.failures[str(event.step_key).removesuffix("_model")] = str(message)
    return outcome


def _lake_of(resources: Mapping[str, Any] | None) -> Lake:
    """The lake of `resources`, or of the QT_* variables (their resources hold unresolved EnvVars)."""
    data_dir = resources["lake"].data_dir if resources is not None else None
    if data_dir is None or isinstance(data_dir, dg.EnvVar):
        return Lake(Settings.from_env().data_dir)
    return Lake(data_dir)


def train_report(outcome: ModelRunOutcome) -> str:
    """Each trained model's test metrics next to both baselines, and its verdict; then the failures."""
    lines = [f"training run {outcome.run_id}"]
    for model, version in outcome.versions.items():
        metrics = version.metrics
        verdict = "PROMOTED" if version.promoted else "not promoted"
        lines.append("")
        lines.append(f"{model}  {version.version}  {verdict}")
        lines.append(f"  {'test metric':<22}{'model':>10}{'zero':>10}{'last 12':>10}")
        for key, label in _METRIC_ROWS:
            cells = [metrics.get(key), *((metrics.get(b) or {}).get(key) for b, _ in _BASELINES)]
            lines.append(f"  {label.split(' (')[0]:<22}" + "".join(f"{_cell(c):>10}" for c in cells))
        lines.append(f"  verdict: {version.reason}")
    for model, message in outcome.failures.items():
        lines.append("")
        lines.append(f"{model}  FAILED: {message}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- the demo
DEMO_SCORED_DAYS = 3  # the demo predicts the last 3 days of its window and trains on the days before
DEMO_MIN_DAYS = DEMO_SCORED_DAYS + 7  # a week at least to split into train, validation and test


def demo_models(
    first: dt.date,
    last: dt.date,
    *,
    instance: dg.DagsterInstance,
    resources: Mapping[str, Any] | None = None,
    models: Sequence[str] = MODEL_NAMES,
) -> str:
    """The demo's end: train `models` (small configs) on `first` .. `last` - 3 days, then
    materialize ``predictions`` for the 3 days after and ``model_evaluation`` for those whose labels
    are known (all but `last`, whose last hour needs today's candles). Returns what to print.

    Raises:
        QuantAssetsError: the window is shorter than :data:`DEMO_MIN_DAYS`, or a run failed.
    """
    from quant_assets.definitions import defs
    from quant_assets.defs.ranges import day_range_tags
    from quant_assets.defs.resources import build_resources

    if (last - first).days + 1 < DEMO_MIN_DAYS:
        raise QuantAssetsError(f"the models need at least {DEMO_MIN_DAYS} days of features")
    lake = _lake_of(resources)
    resources = dict(resources) if resources is not None else build_resources()
    train_end = last - dt.timedelta(days=DEMO_SCORED_DAYS)
    outcome = materialize_models(
        models,
        days=(train_end - first).days + 1,
        profile="small",
        end_day=train_end,
        instance=instance,
        resources=resources,
    )
    if not outcome.success:
        raise QuantAssetsError(train_report(outcome))
    scored = {
        "predictions": (train_end + dt.timedelta(days=1), last),
        "model_evaluation": (train_end + dt.timedelta(days=1), last - dt.timedelta(days=1)),
    }
    for name, (start, end) in scored.items():
        result = dg.materialize(
            [defs.get_assets_def(name)],
            instance=instance,
            resources=resources,
            tags=day_range_tags(start, end),
            raise_on_error=False,
        )
        if not result.success:
            raise QuantAssetsError(f"{name} {start}..{end} failed (run {result.run_id})")
    Catalog(lake).ensure_views()
    with Catalog(lake).connect() as con:
        scores = con.execute(
            "SELECT model, day, promoted, rows, round(ic, 4) AS ic, round(baseline_last_ic, 4) AS ic_last, "
            "round(directional_accuracy, 4) AS dir_acc, round(rmse, 6) AS rmse, "
            "round(baseline_zero_rmse, 6) AS rmse_zero FROM model_evaluation ORDER BY model, day"
        ).df()
    return "\n".join(
        [
            train_report(outcome),
            "",
            f"model_evaluation of the days after training ({scored['model_evaluation'][0]} .. "
            f"{scored['model_evaluation'][1]}):",
            scores.to_string(index=False),
        ]
    )
