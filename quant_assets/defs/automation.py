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
from collections import defaultdict
from collections.abc import Iterable, Sequence

import dagster as dg

from quant_assets.defs.partitions import (
    last_complete_day,
    split_ohlcv_key,
    symbol_partitions,
)
from quant_assets.defs.ranges import RANGE_END, RANGE_START, day_range_tags, lookback_window, ohlcv_range_tags
from quant_assets.defs.resources import CollectionConfig, LakeResource
from quant_assets.errors import StoreError
from quant_assets.feature_days import stale_feature_days, warmup_days
from quant_assets.features import feature_schema
from quant_assets.ohlcv_collect import consecutive_runs

REASON_TAG = "quant_assets/reason"  # why a run was requested, shown with the run in the UI

coin_universe_job = dg.define_asset_job("coin_universe_job", selection="coin_universe")
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
    minimum_interval_seconds=60,
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
    minimum_interval_seconds=120,
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


@dg.sensor(
    job=labels_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def labels_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    """When ``ohlcv`` d lands, rebuild labels d - 1 (its forward horizons reach into d) and d.

    Waits while any ``ohlcv`` run is in flight; one run per range of consecutive days.
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
    requests = day_range_requests(days, key=f"labels-{newest}", reason="new candles")
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"after": newest}))
