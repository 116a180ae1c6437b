"""What keeps the graph materialized without anyone clicking.

* ``daily_refresh`` (schedule, 00:10 UTC): snapshot yesterday's universe.
* ``ohlcv_sensor``: after each universe snapshot, requests every missing ``ohlcv`` partition of the
  lookback window as a few rectangles (symbols x days), each ONE run: a new symbol's 90-day history
  and the day's refresh of every symbol never cost a run per partition.
* ``feature_table_sensor``: once ``ohlcv`` has stopped landing for a day, (re)builds that day's
  features, and rebuilds every stored day built under another feature schema hash.
* ``labels_sensor``: when ``ohlcv`` d lands, (re)builds labels d - 1 (its future arrived) and d.

All four start RUNNING (``default_status``); the daemon (``dagster dev`` runs one) evaluates them.
"""

import datetime as dt
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from quant_assets import settings
from quant_assets.defs.checks import FRESH_CHECK, freshness
from quant_assets.defs.partitions import (
    last_complete_day,
    split_ohlcv_key,
    symbol_partitions,
)
from quant_assets.defs.ranges import RANGE_END, RANGE_START, day_range_tags, lookback_window, ohlcv_range_tags
from quant_assets.defs.resources import CollectionConfig, LakeResource
from quant_assets.errors import StoreError
from quant_assets.feature_days import stale_feature_days, stored_feature_hashes, warmup_days
from quant_assets.features import feature_schema
from quant_assets.models.base import MODEL_NAMES
from quant_assets.models.registry import ModelVersion, latest_before
from quant_assets.models.registry import versions as registry_versions
from quant_assets.ohlcv_collect import consecutive_runs
from quant_assets.store.lake import Lake

REASON_TAG = "quant_assets/reason"  # why a run was requested, shown with the run in the UI

# The day's snapshot and its coins' market data (coin_market d feeds feature_table d + 1), one run.
coin_universe_job = dg.define_asset_job("coin_universe_job", selection=["coin_universe", "coin_market"])
ohlcv_job = dg.define_asset_job("ohlcv_job", selection="ohlcv")
feature_table_job = dg.define_asset_job("feature_table_job", selection="feature_table")
labels_job = dg.define_asset_job("labels_job", selection="labels")


@dg.schedule(
    job=coin_universe_job,
    cron_schedule="10 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def daily_refresh(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """Snapshot the universe of the day that just ended; the sensors take it from there."""
    day = last_complete_day(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"coin_universe-{day}", partition_key=day.isoformat())


def ohlcv_rectangles(
    missing: Iterable[tuple[str, dt.date]], symbol_order: Sequence[str]
) -> list[tuple[dt.date, dt.date, list[str]]]:
    """Cover the missing (symbol, day) pairs with few (first day, last day, symbols) rectangles.

    Symbols sharing the same span of missing days form one rectangle, split where they are not
    adjacent in `symbol_order` (a run's symbol range is contiguous in the dynamic partition order).
    A rectangle may re-fetch a day that already exists inside its span: that is idempotent and far
    cheaper than one more run.
    """
    days_by_symbol: dict[str, list[dt.date]] = defaultdict(list)
    for symbol, day in missing:
        days_by_symbol[symbol].append(day)
    by_span: dict[tuple[dt.date, dt.date], set[str]] = defaultdict(set)
    for symbol, days in days_by_symbol.items():
        by_span[(min(days), max(days))].add(symbol)
    position = {symbol: i for i, symbol in enumerate(symbol_order)}
    rectangles = []
    for (first, last), symbols in sorted(by_span.items()):
        ordered = sorted((s for s in symbols if s in position), key=position.__getitem__)
        block: list[str] = []
        for symbol in ordered:
            if block and position[symbol] != position[block[-1]] + 1:
                rectangles.append((first, last, block))
                block = []
            block.append(symbol)
        if block:
            rectangles.append((first, last, block))
    return rectangles


def range_run_request(
    first: dt.date, last: dt.date, symbols: Sequence[str], *, reason: str, attempt: str = ""
) -> dg.RunRequest:
    """One run of ``ohlcv`` over days [first, last] x the contiguous symbol block `symbols`.

    `attempt` goes into the run key, so the same rectangle asked for again later (after a failed
    run, by a new snapshot) is launched again rather than deduplicated away.
    """
    tags = ohlcv_range_tags(symbols, first, last)
    return dg.RunRequest(
        run_key=f"ohlcv-{tags[RANGE_START]}-{tags[RANGE_END]}-{attempt}",
        job_name=ohlcv_job.name,
        tags={**tags, REASON_TAG: reason},
    )


@dg.sensor(
    job=ohlcv_job,
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def ohlcv_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource, collection: CollectionConfig
) -> dg.SensorResult | dg.SkipReason:
    """After a universe snapshot: request the lookback window's missing candles of its symbols."""
    cursor = int(context.cursor or 0)
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("coin_universe"), after_storage_id=cursor),
        limit=100,
        ascending=True,
    ).records
    if not records:
        return dg.SkipReason("no new coin_universe snapshot")
    newest = max(records, key=lambda r: r.partition_key or "")
    snapshot_day = dt.date.fromisoformat(newest.partition_key or "")
    store = lake.lake()
    try:
        universe = store.read("coin_universe", date=snapshot_day)["symbol"].tolist()
    except StoreError as error:  # e.g. the daemon and the run see different QT_DATA_DIRs
        return dg.SkipReason(f"coin_universe {snapshot_day} is recorded but not readable here: {error}")
    days = lookback_window(collection.lookback_days, end=min(snapshot_day, last_complete_day()))
    have = {split_ohlcv_key(k) for k in context.instance.get_materialized_partitions(dg.AssetKey("ohlcv"))}
    missing = [(s, d) for s in universe for d in days if (s, d) not in have]
    order = context.instance.get_dynamic_partitions(symbol_partitions.name)
    requests = [
        range_run_request(a, b, symbols, reason=f"universe {snapshot_day}", attempt=str(newest.storage_id))
        for a, b, symbols in ohlcv_rectangles(missing, order)
    ]
    context.log.info(f"{len(missing)} missing symbol-days -> {len(requests)} runs")
    return dg.SensorResult(run_requests=requests, cursor=str(max(r.storage_id for r in records)))


IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]


def ohlcv_runs_in_flight(instance: dg.DagsterInstance) -> int:
    """Runs not finished yet that write ``ohlcv``, however they were launched.

    Sensor runs are ``ohlcv_job``; the CLI, ``materialize()`` and the UI launch implicit asset jobs,
    so those are recognised by their partition tags: only ``ohlcv`` has ``date|symbol`` keys.
    """
    runs = instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT), limit=1_000)
    return sum(
        1
        for run in runs
        if run.job_name == ohlcv_job.name
        or any("|" in run.tags.get(tag, "") for tag in (RANGE_START, "dagster/partition"))
    )


def day_range_requests(days: Iterable[dt.date], *, key: str, reason: str) -> list[dg.RunRequest]:
    """One run per range of consecutive `days` (range tags), run keys made unique by `key`."""
    return [
        dg.RunRequest(
            run_key=f"{key}-{first}-{last}",
            tags={**day_range_tags(first, last), REASON_TAG: reason},
        )
        for first, last in consecutive_runs(set(days))
    ]


def _new_ohlcv_days(context: dg.SensorEvaluationContext, after: int) -> tuple[set[dt.date], int]:
    """Days of the ``ohlcv`` partitions materialized after storage id `after`, and the newest id."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ohlcv"), after_storage_id=after),
        limit=10_000,  # the most Dagster returns at once; the cursor takes the rest next tick
        ascending=True,
    ).records
    if not records:
        return set(), after
    return {split_ohlcv_key(r.partition_key or "")[1] for r in records}, max(r.storage_id for r in records)


@dg.sensor(
    job=feature_table_job,
    minimum_interval_seconds=settings.sensor_interval(120),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def feature_table_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.SensorResult | dg.SkipReason:
    """Rebuild the days whose candles or universe snapshot changed, and the stored days of another
    schema hash.

    A new ``coin_universe`` snapshot rebuilds its day only when that day has features already (a
    day without them is built when its candles land). Waits while any ``ohlcv`` run is in flight. One run per range of consecutive days: a 90-day
    backfill of candles, or a feature parameter change over 90 stored days, costs one run. A stale
    day is asked for under a run key holding the registry hash, so it is launched once per hash.
    """
    busy = ohlcv_runs_in_flight(context.instance)
    if busy:
        return dg.SkipReason(f"{busy} ohlcv runs in flight; waiting for the candles to settle")
    cursor_in = json.loads(context.cursor or "{}")
    changed, newest = _new_ohlcv_days(context, int(cursor_in.get("after", 0)))
    snapshots = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("coin_universe"), after_storage_id=int(cursor_in.get("universe_after", 0))
        ),
        limit=1_000,
        ascending=True,
    ).records
    universe_newest = max((r.storage_id for r in snapshots), default=int(cursor_in.get("universe_after", 0)))
    # A day's candles are also the warm-up of the features of the days after it: rebuild those, up
    # to the warm-up's reach and no later than the last day that has features already.
    built = [
        dt.date.fromisoformat(k)
        for k in context.instance.get_materialized_partitions(dg.AssetKey("feature_table"))
    ]
    last_built = max(built, default=dt.date.min)
    reach = warmup_days()
    days = changed | {
        d + dt.timedelta(days=k)
        for d in changed
        for k in range(1, reach + 1)
        if d + dt.timedelta(days=k) <= last_built
    }
    days |= {dt.date.fromisoformat(r.partition_key) for r in snapshots if r.partition_key} & set(built)
    registry_hash = feature_schema().hash
    try:
        stale = set(stale_feature_days(lake.lake(), registry_hash))
    except OSError as error:  # e.g. a file being replaced under us: the next tick sees it
        context.log.warning(f"could not read the stored features' hashes: {error}")
        stale = set()
    cursor = json.dumps({"after": newest, "universe_after": universe_newest})
    if not days and not stale:
        return dg.SkipReason(
            "no new candles or universe of a built day, and no stored day of another schema hash"
        )
    requests = day_range_requests(
        days - stale, key=f"feature_table-{newest}-{universe_newest}", reason="new candles or universe"
    )
    requests += day_range_requests(
        stale, key=f"feature_table-schema-{registry_hash[:16]}", reason="stored under another schema hash"
    )
    context.log.info(
        f"{len(days - stale)} days with new candles or universe, {len(stale)} stale days -> {len(requests)} runs"
    )
    return dg.SensorResult(run_requests=requests, cursor=cursor)


# ------------------------------------------------------------------------------ models in the chain
MODEL_ASSETS: tuple[str, ...] = tuple(f"{name}_model" for name in MODEL_NAMES)
RETRAIN_TAG_PREFIX = "quant_assets/retrain_"  # + model name: the trigger a run retrains it for
ROLLING_IC_DAYS = 7
# Fewer stored days than this never start a training by themselves: too few to split into train,
# validation and test with embargoes (a 3-day demo or test deployment stays without models).
MIN_TRAIN_WINDOW_DAYS = 7
FEATURES_GRACE_S = 1800.0  # how long the labels run waits for the day's features before going alone

# The model step of the daily chain, in ONE run: labels d - 1 and d (d - 1's future just arrived),
# the models that are due (trained through d - 1, whose labels are now complete), then predictions
# of d - 1 and d; asset_selection picks the part a request needs.
daily_models_job = dg.define_asset_job(
    "daily_models_job",
    selection=["labels", *MODEL_ASSETS, "predictions", "model_evaluation"],
    description="The daily chain's model step: labels, the models due for retraining, predictions, evaluation.",
)


@dataclass(frozen=True)
class RetrainTrigger:
    """Why `model` is due for retraining; `key` names the trigger so it is acted on once."""

    model: str
    key: str
    reason: str


def trained_through(version: ModelVersion) -> dt.date:
    """The last day whose rows a version was fitted or judged on (its train_end is exclusive)."""
    return (version.train_end - dt.timedelta(microseconds=1)).date()


def retrain_triggers(
    versions: Sequence[ModelVersion],
    feature_hashes: Mapping[dt.date, str | None],
    current_hash: str,
    evaluation: pd.DataFrame,
    *,
    every_days: int,
    window_days: int,
) -> list[RetrainTrigger]:
    """Which models are due for retraining, and why; pure, so the sensors and tests share it.

    * no version yet, once the `window_days` feature days up to the last one are stored under the
      current schema hash (the first training of a fresh deployment);
    * the latest version was trained under another feature schema hash (same window condition);
    * `every_days` or more current-hash feature days newer than the latest version's training;
    * its promoted version's mean IC over its last ``ROLLING_IC_DAYS`` evaluated days is below
      the mean IC of both baselines on the same rows (`evaluation`: ``model_evaluation`` rows).
    """
    current_days = sorted(d for d, h in feature_hashes.items() if h == current_hash)
    if not current_days:
        return []
    last = current_days[-1]
    stored = set(current_days)
    window_ready = all(last - dt.timedelta(days=i) in stored for i in range(window_days))
    triggers: list[RetrainTrigger] = []
    for model in MODEL_NAMES:
        mine = sorted((v for v in versions if v.model == model), key=lambda v: v.trained_at)
        if not mine:
            if window_ready:
                triggers.append(
                    RetrainTrigger(
                        model,
                        f"initial:{last}",
                        f"no {model} model yet; the {window_days} feature days up to {last} are stored",
                    )
                )
            continue
        latest = mine[-1]
        if latest.feature_schema_hash != current_hash:
            if window_ready:
                triggers.append(
                    RetrainTrigger(
                        model,
                        f"schema:{current_hash[:16]}:{last}",
                        f"feature schema changed: {model} {latest.version} was trained under "
                        f"{latest.feature_schema_hash[:12]}, the registry's hash is {current_hash[:12]}",
                    )
                )
            continue
        newer = [d for d in current_days if d > trained_through(latest)]
        if len(newer) >= every_days:
            triggers.append(
                RetrainTrigger(
                    model,
                    f"days:{latest.version}:{last}",
                    f"{len(newer)} new feature_table days since {model} {latest.version} was trained "
                    f"through {trained_through(latest)} (QT_RETRAIN_EVERY_DAYS={every_days})",
                )
            )
            continue
        promoted = [v for v in mine if v.promoted]
        if promoted and not evaluation.empty:
            version = promoted[-1].version
            rows = evaluation[(evaluation["model"] == model) & (evaluation["version"] == version)]
            rows = rows.sort_values("day").tail(ROLLING_IC_DAYS)
            if len(rows) == ROLLING_IC_DAYS:
                ic = float(rows["ic"].mean())
                zero = float(rows["baseline_zero_ic"].fillna(0.0).mean())  # a constant forecast ranks nothing
                last_ret = float(rows["baseline_last_ic"].fillna(0.0).mean())
                if ic < zero and ic < last_ret:
                    triggers.append(
                        RetrainTrigger(
                            model,
                            f"ic:{version}:{rows['day'].max()}",
                            f"promoted {model} {version}: mean IC {ic:.4f} over its last {ROLLING_IC_DAYS} "
                            f"evaluated days is below both baselines (zero {zero:.4f}, last 12-bar "
                            f"return {last_ret:.4f})",
                        )
                    )
    return triggers


def recent_evaluation(store: Lake, days: int = 31) -> pd.DataFrame:
    """The ``model_evaluation`` rows of the last `days` stored days (empty when none are)."""
    paths = store.files("model_evaluation")[-days:]
    frames = [pq.read_table(path).to_pandas() for path in paths]
    frames = [
        f.assign(day=f["day"] if "day" in f else p.stem.removeprefix("date="))
        for f, p in zip(frames, paths, strict=True)
    ]
    return (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["model", "version", "day", "ic"])
    )


def due_triggers(
    context: dg.SensorEvaluationContext, store: Lake, already: Iterable[str] = ()
) -> list[RetrainTrigger]:
    """The retrain triggers of the current state that no run was requested for yet.

    A trigger counts as requested when a run carries it (tag ``quant_assets/retrain_<model>``),
    whichever sensor or person launched it, or when it is in `already` (a sensor's cursor).
    """
    every_days = int(settings.check("QT_RETRAIN_EVERY_DAYS", os.environ.get("QT_RETRAIN_EVERY_DAYS")))  # type: ignore[call-overload]
    window = max(
        MIN_TRAIN_WINDOW_DAYS,
        min(
            int(settings.check("QT_MODEL_TRAIN_DAYS", os.environ.get("QT_MODEL_TRAIN_DAYS"))),  # type: ignore[call-overload]
            int(settings.check("QT_DATA_LOOKBACK_DAYS", os.environ.get("QT_DATA_LOOKBACK_DAYS"))),  # type: ignore[call-overload]
        ),
    )
    triggers = retrain_triggers(
        registry_versions(store),
        stored_feature_hashes(store),
        feature_schema().hash,
        recent_evaluation(store),
        every_days=every_days,
        window_days=window,
    )
    seen = set(already)
    due = []
    for trigger in triggers:
        if f"{trigger.model}:{trigger.key}" in seen:
            continue
        tagged = context.instance.get_runs(
            dg.RunsFilter(tags={f"{RETRAIN_TAG_PREFIX}{trigger.model}": trigger.key}), limit=1
        )
        if not tagged:
            due.append(trigger)
    return due


def retrain_tags(triggers: Sequence[RetrainTrigger]) -> dict[str, str]:
    """The tags of a run retraining for `triggers`: the reason (readable) and one per model."""
    return {
        REASON_TAG: "; ".join(t.reason for t in triggers)[:4000],
        **{f"{RETRAIN_TAG_PREFIX}{t.model}": t.key for t in triggers},
    }


def training_config(models: Iterable[str], end_day: dt.date | None) -> dict[str, object]:
    """Run config of the model assets: trained through `end_day` (None: the last features day)."""
    config = {"end_day": end_day.isoformat()} if end_day else {}
    return {"ops": {f"{model}_model": {"config": dict(config)} for model in models}}


def runs_in_flight(instance: dg.DagsterInstance, assets: Iterable[str]) -> list[str]:
    """Ids of the unfinished runs that write any of `assets`, whatever launched them."""
    keys = {dg.AssetKey(name) for name in assets}
    jobs = {name: job for job, names in JOB_ASSETS.items() for name in names}
    wanted_jobs = {jobs[name] for name in assets if name in jobs}
    return [
        run.run_id
        for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT), limit=1_000)
        if (run.asset_selection and run.asset_selection & keys)
        or (not run.asset_selection and run.job_name in wanted_jobs)
    ]


JOB_ASSETS: dict[str, tuple[str, ...]] = {
    "coin_universe_job": ("coin_universe",),
    "ohlcv_job": ("ohlcv",),
    "feature_table_job": ("feature_table",),
    "labels_job": ("labels",),
    "retrain_job": MODEL_ASSETS,
    "daily_models_job": ("labels", *MODEL_ASSETS, "predictions", "model_evaluation"),
}
UPSTREAM_OF_MODELS = ("ohlcv", "feature_table", "labels", *MODEL_ASSETS, "predictions")


@dg.sensor(
    jobs=[labels_job, daily_models_job],
    minimum_interval_seconds=settings.sensor_interval(120),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def labels_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """When ``ohlcv`` d lands, rebuild labels d - 1 (its forward horizons reach into d) and d.

    Waits while any ``ohlcv`` run is in flight; one run per range of consecutive days. In the daily
    chain (the newest day's candles, once models exist) the same run is the chain's model step:
    labels d - 1 and d, the models due for retraining (trained through d - 1, whose labels this
    run completes; reasons as for ``retrain_sensor``), then the predictions of d - 1 and d.
    """
    busy = ohlcv_runs_in_flight(context.instance)
    if busy:
        return dg.SkipReason(f"{busy} ohlcv runs in flight; waiting for the candles to settle")
    after = int(json.loads(context.cursor or "{}").get("after", 0))
    changed, newest = _new_ohlcv_days(context, after)
    if not changed:
        return dg.SkipReason("no new ohlcv partitions")
    # The day before gets its future only when it has labels already (else it has no candles, or
    # its own candles are in `changed` and it is built anyway).
    labelled = set(context.instance.get_materialized_partitions(dg.AssetKey("labels")))
    days = changed | {c - dt.timedelta(days=1) for c in changed if str(c - dt.timedelta(days=1)) in labelled}
    step = model_step(context, days)
    if isinstance(step, dg.SkipReason):
        return step
    requests = day_range_requests(days, key=f"labels-{newest}", reason="new candles")
    if step is not None:
        (request,) = requests
        assets, run_config, tags = step
        request = request.with_replaced_attrs(
            job_name=daily_models_job.name,
            asset_selection=[dg.AssetKey(a) for a in ["labels", *assets]],
            run_config=run_config,
            tags={**request.tags, **tags},
        )
        requests = [request]
    else:
        requests = [r.with_replaced_attrs(job_name=labels_job.name) for r in requests]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"after": newest}))


def _sensor_lake(context: dg.SensorEvaluationContext) -> Lake:
    """The lake of the sensor's ``lake`` resource, else of ``QT_DATA_DIR`` (tests without resources)."""
    try:
        return context.resources.lake.lake()
    except Exception:  # no such resource on this context
        return Lake(settings.Settings.from_env().data_dir)


def model_step(
    context: dg.SensorEvaluationContext, days: set[dt.date]
) -> tuple[list[str], dict[str, object], dict[str, str]] | dg.SkipReason | None:
    """The model step the daily labels run also carries, or None (labels only), or a reason to wait.

    Only for the daily case (the newest day's candles: one or two consecutive days) and once a
    model version trained before the range's first day is registered, so every day of the range
    has a version to predict it. Predictions need that day's features: wait while they are built.
    """
    first, last = min(days), max(days)
    if (last - first).days > 1:
        return None
    if not any(context.instance.get_latest_materialization_event(dg.AssetKey(a)) for a in MODEL_ASSETS):
        return None  # no model was ever trained here (the registry is read only when one was)
    store = _sensor_lake(context)
    if not any(latest_before(store, model, first) for model in MODEL_NAMES):
        return None
    if runs_in_flight(context.instance, ["feature_table"]):
        return dg.SkipReason("features are being built; the labels run also predicts, so it waits for them")
    built = set(context.instance.get_materialized_partitions(dg.AssetKey("feature_table")))
    if str(last) not in built:
        # feature_table_sensor builds them after the same candles: wait, within a bound, so the
        # day's predictions ride in this run rather than cost one more.
        candles = context.instance.get_latest_materialization_event(dg.AssetKey("ohlcv"))
        if candles is not None and time.time() - candles.timestamp < FEATURES_GRACE_S:
            return dg.SkipReason(f"waiting for the features of {last}: this run predicts from them")
        return None
    if str(first) not in built:
        return None  # no features to predict the day before from: labels alone
    due = due_triggers(context, store)
    models = [t.model for t in due]
    assets = [*(f"{m}_model" for m in models), "predictions"]
    tags = retrain_tags(due) if due else {}
    return assets, training_config(models, last - dt.timedelta(days=1)) if models else {}, tags


@dg.sensor(
    job=daily_models_job,
    minimum_interval_seconds=settings.sensor_interval(120),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def retrain_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.SensorResult | dg.SkipReason:
    """Retrain the models that are due (:func:`retrain_triggers`), the reason a tag on the run.

    The daily chain's ``labels_sensor`` run carries a retraining that falls due with the day's
    candles, so this sensor acts on what happens outside it: a fresh deployment's first features,
    a feature schema change, the QT_RETRAIN_EVERY_DAYS count reached by a backfill of features, a
    promoted model's IC falling below both baselines. When the newest features day has no
    predictions yet, the same run trains through the day before and predicts it (a fresh
    deployment's first chain ends with predictions). Waits while anything upstream of the models
    is in flight; each trigger is acted on once (cursor, and the trigger's tag on the run).
    """
    busy = runs_in_flight(context.instance, UPSTREAM_OF_MODELS)
    if busy:
        return dg.SkipReason(f"{len(busy)} runs upstream of the models in flight; waiting for them")
    cursor = json.loads(context.cursor or "{}")
    requested: list[str] = list(cursor.get("requested", []))
    store = lake.lake()
    due = due_triggers(context, store, requested)
    if not due:
        return dg.SkipReason("no model is due for retraining")
    current = feature_schema().hash
    days = sorted(d for d, h in stored_feature_hashes(store).items() if h == current)
    predicted = set(context.instance.get_materialized_partitions(dg.AssetKey("predictions")))
    models = [t.model for t in due]
    assets = [f"{m}_model" for m in models]
    newest = days[-1]
    if str(newest) not in predicted and newest - dt.timedelta(days=1) in set(days):
        request = dg.RunRequest(
            run_key=None,
            asset_selection=[dg.AssetKey(a) for a in [*assets, "predictions"]],
            partition_key=str(newest),
            run_config=training_config(models, newest - dt.timedelta(days=1)),
            tags=retrain_tags(due),
        )
    else:
        request = dg.RunRequest(
            run_key=None,
            job_name=daily_models_job.name,
            asset_selection=[dg.AssetKey(a) for a in assets],
            tags=retrain_tags(due),
        )
    requested = [*requested, *(f"{t.model}:{t.key}" for t in due)][-200:]
    context.log.info(f"retraining {models}: {request.tags[REASON_TAG]}")
    return dg.SensorResult(run_requests=[request], cursor=json.dumps({"requested": requested}))


EVALUATED_DAYS_BACK = 7  # the days model_evaluation_sensor looks back over for work


def labels_complete(store: Lake, day: dt.date) -> bool:
    """Whether the stored labels of `day` know ``fwd_ret_12`` of its last hour (they read d + 1)."""
    try:
        frame = store.read("labels", date=day)
    except StoreError:
        return False
    last_hour = pd.Timestamp(dt.datetime.combine(day + dt.timedelta(days=1), dt.time())) - pd.Timedelta(
        hours=1
    )
    return bool(frame.loc[frame["open_time"] >= last_hour, "fwd_ret_12"].notna().any())


def _latest_storage_id(instance: dg.DagsterInstance, asset: str, day: dt.date) -> int | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(day)]),
        limit=1,
        ascending=False,
    ).records
    return records[0].storage_id if records else None


@dg.sensor(
    job=daily_models_job,
    minimum_interval_seconds=settings.sensor_interval(120),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def model_evaluation_sensor(
    context: dg.SensorEvaluationContext, lake: LakeResource
) -> dg.SensorResult | dg.SkipReason:
    """Score the days whose labels now know their last hour: ``model_evaluation`` d once ``labels``
    d was rebuilt with d + 1's candles, in one run per range of days (the chain's last run: d - 1).

    Also predicts a recent features day that has none yet while a model trained before it exists
    (the chain predicts in the labels run; this catches a day that run could not carry). Waits while
    anything upstream is in flight; a day is scored again only when its predictions or labels are
    newer than its evaluation.
    """
    busy = runs_in_flight(context.instance, UPSTREAM_OF_MODELS)
    if busy:
        return dg.SkipReason(f"{len(busy)} runs upstream of the evaluation in flight; waiting for them")
    store = lake.lake()
    predicted = {
        dt.date.fromisoformat(k)
        for k in context.instance.get_materialized_partitions(dg.AssetKey("predictions"))
    }
    built = {
        dt.date.fromisoformat(k)
        for k in context.instance.get_materialized_partitions(dg.AssetKey("feature_table"))
    }
    newest = max(built | predicted, default=None)
    if newest is None:
        return dg.SkipReason("no features or predictions yet")
    recent = [newest - dt.timedelta(days=i) for i in range(EVALUATED_DAYS_BACK)]
    to_score: list[dt.date] = []
    newest_input: dict[dt.date, int] = {}
    for day in recent:
        if day not in predicted or not labels_complete(store, day):
            continue
        scored = _latest_storage_id(context.instance, "model_evaluation", day)
        inputs = [i for a in ("predictions", "labels") if (i := _latest_storage_id(context.instance, a, day))]
        if scored is None or any(i > scored for i in inputs):
            to_score.append(day)
            newest_input[day] = max(inputs, default=0)
    # Only a day whose labels run came after its features and still did not predict it: before
    # that, the chain's own labels run will carry the day's predictions (no extra run).
    to_predict = [
        day
        for day in recent[:2]
        if day in built
        and day not in predicted
        and (_latest_storage_id(context.instance, "labels", day) or 0)
        > (_latest_storage_id(context.instance, "feature_table", day) or 0)
        and any(latest_before(store, m, day) for m in MODEL_NAMES)
    ]
    requests = [
        r.with_replaced_attrs(
            job_name=daily_models_job.name, asset_selection=[dg.AssetKey("model_evaluation")]
        )
        for r in day_range_requests(to_score, key="model_evaluation", reason="labels complete: score the day")
    ]
    requests += [
        r.with_replaced_attrs(job_name=daily_models_job.name, asset_selection=[dg.AssetKey("predictions")])
        for r in day_range_requests(
            to_predict, key="predictions", reason="a features day without predictions"
        )
    ]
    if not requests:
        return dg.SkipReason("nothing to score or predict")
    # Run keys name the inputs' newest storage ids, so new labels or predictions score a day again.
    stamp = max(newest_input.values(), default=0)
    requests = [r.with_replaced_attrs(run_key=f"{r.run_key}-{stamp}") for r in requests]
    context.log.info(f"scoring {to_score}, predicting {to_predict}")
    return dg.SensorResult(run_requests=requests)


# ------------------------------------------------------------------------------------- freshness
# The assets whose freshness checks (defs/checks.py) freshness_sensor evaluates.
FRESHNESS_ASSETS: tuple[str, ...] = ("ohlcv", "feature_table", "predictions")
FRESHNESS_KEYS = [dg.AssetCheckKey(dg.AssetKey(asset), FRESH_CHECK) for asset in FRESHNESS_ASSETS]
freshness_checks_job = dg.define_asset_job(
    "freshness_checks_job",
    selection=dg.AssetSelection.checks(*FRESHNESS_KEYS),
    description="Evaluate the freshness checks: is each asset's newest partition the expected day?",
)
_FINISHED = (AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED)


@dg.sensor(
    job=freshness_checks_job,
    minimum_interval_seconds=settings.sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def freshness_sensor(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
    """Evaluate a freshness check when its outcome would change: a deadline passed without the
    expected partition (fails), or a late partition landed (passes again), or it never ran.

    A healthy day costs no run: the outcome stays "passed" from one day to the next.
    """
    recorded = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(FRESHNESS_KEYS)
    changed: list[dg.AssetCheckKey] = []
    states: list[str] = []
    for key in FRESHNESS_KEYS:
        found = freshness(context.instance, key.asset_key.path[-1])
        record = recorded.get(key)
        if record is not None and record.status not in _FINISHED:
            continue  # being evaluated now
        if record is None or (record.status == AssetCheckExecutionRecordStatus.SUCCEEDED) != found.passed:
            changed.append(key)
            states.append(f"{key.asset_key.path[-1]}:{found.expected}:{'ok' if found.passed else 'stale'}")
    if not changed:
        return dg.SkipReason("every freshness check's recorded outcome still holds")
    return dg.RunRequest(
        run_key=f"freshness-{'-'.join(states)}",
        asset_check_keys=changed,
        tags={REASON_TAG: f"freshness changed: {', '.join(states)}"},
    )
