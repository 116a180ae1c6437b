"""How per-partition check results reach Dagster from a run of many partitions.

One run materializes many partitions (a single-run backfill), but ``AssetCheckResult`` has no
partition (Dagster 1.13.27), so each partition's outcome is an ``AssetCheckEvaluation`` logged with
its partition. The design, and what was measured on the 2-core machine (SQLite instance):

* every partition is checked, and its outcome is recorded in its own materialization's metadata;
* a partition whose check did not pass gets an evaluation naming it;
* a partition that passes gets one only when its latest recorded evaluation failed (it was mended),
  found with ONE query per check and run (:func:`latest_failing_partitions`: 0.38-0.6 s for the
  9,000 keys of case (b), measured with load average 8-10 on 2 cores). So each partition's latest
  evaluation is its true state, and a clean run writes no evaluation at all. Case (b) on
  2026-11-29 with HEAD 5d8df3f, machine nearly idle (others 6 CPU-s): 229.7 s, within the 5
  minutes (own CPU 219 s, lookup 0.15 s); under load (others 804-1,382 CPU-s) 524-792 s. The
  2026-11-27 figure was 121.2 s, but the code of 2026-11-27 measures the same as today's on this
  machine now (30 symbols x 90 days: 75.9 s before, 74.7 s after): the machine is slower, not the
  run (kline parsing 1.9 ms a page against 2.1-2.8 ms before; no extra events on a clean run);
* each check yields one result per run: passed when every partition passed, with the failing
  partitions listed. A gap is a fact of the market, so ``complete_day`` warns, never fails a run.

What the 1.13.27 UI reads (dagster-graphql ``AssetCheck``): ``partitionStatuses`` (the per-partition
grid) exists only for check specs with a ``partitions_def``; for these unpartitioned specs the badge
is ``executionForLatestMaterialization``, the check's newest record of any partition, and the
check's history (``assetCheckExecutions``, filterable by partition) lists each partition's
evaluations. Mended partitions are logged before failing ones so the newest record is a failure
whenever the run found one.

Rejected, measured: evaluating every partition costs two events per partition (18,000 for case (b));
an evaluation event took 69-76 ms here under load (8 ms idle per the earlier measurement), so 2.5
to 20 more minutes on a run that must stay within 5. Check specs with a ``partitions_def`` (preview)
cost the same events plus a planned row per partition, and a range run cannot satisfy them: the step
still has to yield one ``AssetCheckResult`` per spec, which has no partition, or it fails with
``DagsterStepOutputNotFoundError`` (earlier: 287 s and 7.8 GB for 9,000 partitions). With
``DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=1`` the planned rows come in one insert, but the
evaluations remain. ``DAGSTER_EVENT_BATCH_SIZE`` batches only the events of one output and gains
nothing on SQLite (21.6 vs 21.8 ms per logged event, DAGSTER_NOTES); the few evaluations here are
not worth it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from quant_assets.quality import CheckOutcome

SEVERITY = {"ERROR": dg.AssetCheckSeverity.ERROR, "WARN": dg.AssetCheckSeverity.WARN}


def combine(name: str, outcomes: Sequence[CheckOutcome], severity: str) -> CheckOutcome:
    """Fold several rule outcomes into one check: passed when all passed, each rule in the metadata."""
    failed = [o.name for o in outcomes if not o.passed]
    metadata: dict[str, object] = {"failed_rules": failed}
    for outcome in outcomes:
        metadata[outcome.name] = {"passed": outcome.passed, **outcome.metadata}
    description = "; ".join(f"{o.name}: {o.description}" for o in outcomes)
    return CheckOutcome(name, not failed, severity, description, metadata)


def latest_failing_partitions(
    instance: dg.DagsterInstance,
    asset_key: dg.AssetKey,
    check_names: Sequence[str],
    partitions: Sequence[str],
) -> dict[str, set[str]]:
    """Per check, which of `partitions` have a failed evaluation as their latest one (one query a check)."""
    keys = [dg.AssetCheckKey(asset_key, name) for name in check_names]
    failing: dict[str, set[str]] = {name: set() for name in check_names}
    if not partitions:
        return failing
    infos = instance.event_log_storage.get_asset_check_partition_info(keys, partition_keys=list(partitions))
    for info in infos:
        if info.partition_key is not None and info.latest_execution_status.value == "FAILED":
            failing[info.check_key.name].add(info.partition_key)
    return failing


def emit_partition_checks(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    outcomes_by_partition: Mapping[str, Sequence[CheckOutcome]],
    check_names: Sequence[str],
) -> Iterator[dg.AssetCheckResult]:
    """Log an evaluation per failing partition and per mended one, then one summary result per check.

    A partition that passes gets an evaluation only when its latest recorded one failed, so its
    latest evaluation is always its true state at the cost of one query per check and run.
    """
    failing: dict[str, list[str]] = {name: [] for name in check_names}
    mended: dict[str, int] = dict.fromkeys(check_names, 0)
    severity: dict[str, str] = {name: "WARN" for name in check_names}
    started = time.monotonic()
    failed_before = latest_failing_partitions(
        context.instance, asset_key, check_names, list(outcomes_by_partition)
    )
    context.log.info(
        f"latest check outcomes of {len(outcomes_by_partition):,} partitions read in "
        f"{time.monotonic() - started:.2f} s: "
        + ", ".join(f"{name} failing {len(failed_before[name])}" for name in check_names)
    )
    evaluations: list[tuple[bool, dg.AssetCheckEvaluation]] = []
    for partition, outcomes in outcomes_by_partition.items():
        for outcome in outcomes:
            severity[outcome.name] = outcome.severity
            if outcome.passed:
                if partition not in failed_before[outcome.name]:
                    continue
                mended[outcome.name] += 1
            else:
                failing[outcome.name].append(partition)
            evaluation = dg.AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=outcome.name,
                passed=outcome.passed,
                partition=partition,
                severity=SEVERITY[outcome.severity],
                description=f"{partition}: {outcome.description}",
                metadata=outcome.metadata,
            )
            evaluations.append((outcome.passed, evaluation))
    # Mended partitions first: the UI's badge of an unpartitioned check shows the check's newest
    # record, which must be a failure whenever this run found one.
    for _, evaluation in sorted(evaluations, key=lambda item: not item[0]):
        context.log_event(evaluation)
    for name in check_names:
        yield dg.AssetCheckResult(
            check_name=name,
            passed=bool(outcomes_by_partition) and not failing[name],  # nothing checked is no pass
            severity=SEVERITY[severity[name]],
            description=(
                f"{len(outcomes_by_partition) - len(failing[name])} of {len(outcomes_by_partition)} "
                "partitions of this run passed"
            ),
            metadata={
                "partitions_checked": len(outcomes_by_partition),
                "partitions_failing": len(failing[name]),
                "partitions_mended": mended[name],
                "failing": dg.MetadataValue.json(failing[name][:200]),
            },
        )


# ------------------------------------------------------------------------------------- freshness
# How long after midnight UTC each asset's partition of the day that just ended must have landed:
# the daily chain starts at 00:10 (daily_refresh); candles take seconds to minutes, features and
# predictions follow through the sensors. Past its deadline a day missing is a stale asset.
FRESHNESS_DEADLINES: dict[str, dt.timedelta] = {
    "ohlcv": dt.timedelta(hours=2),
    "feature_table": dt.timedelta(hours=3),
    "predictions": dt.timedelta(hours=4),
}
FRESH_CHECK = "fresh"


@dataclass(frozen=True)
class Freshness:
    """What a freshness check finds at `now`: the newest partition day against the expected one."""

    asset: str
    latest: dt.date | None
    expected: dt.date
    now: dt.datetime

    @property
    def passed(self) -> bool:
        return self.latest is not None and self.latest >= self.expected

    @property
    def description(self) -> str:
        deadline = FRESHNESS_DEADLINES[self.asset]
        if self.latest is None:
            return f"{self.asset} has no materialized partition; {self.expected} was due by {deadline} past its end"
        if self.passed:
            return f"latest partition {self.latest}; {self.expected} was due"
        late = (self.expected - self.latest).days
        return (
            f"latest partition {self.latest} is {late} day(s) older than expected: {self.expected} was due "
            f"{deadline} after the day ended (UTC); check the daily chain's runs and sensors"
        )


def expected_latest_day(asset: str, now: dt.datetime) -> dt.date:
    """The newest day whose partition of `asset` must exist at `now` (UTC).

    Yesterday once today's deadline has passed, else the day before yesterday.
    """
    now = now.astimezone(dt.UTC)
    midnight = dt.datetime.combine(now.date(), dt.time(), tzinfo=dt.UTC)
    back = 1 if now - midnight >= FRESHNESS_DEADLINES[asset] else 2
    return now.date() - dt.timedelta(days=back)


def latest_partition_day(instance: dg.DagsterInstance, asset: str) -> dt.date | None:
    """The newest day among `asset`'s materialized partitions (``date|symbol`` keys read by date)."""
    keys = instance.get_materialized_partitions(dg.AssetKey(asset))
    return max((dt.date.fromisoformat(str(k).split("|", 1)[0]) for k in keys), default=None)


def freshness(instance: dg.DagsterInstance, asset: str, now: dt.datetime | None = None) -> Freshness:
    """The freshness of `asset` on `instance` at `now` (default: the wall clock)."""
    now = now or dt.datetime.now(dt.UTC)
    return Freshness(asset, latest_partition_day(instance, asset), expected_latest_day(asset, now), now)


def _freshness_check(asset: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=FRESH_CHECK,
        description=(
            f"the newest partition of {asset} is the day that just ended once "
            f"{FRESHNESS_DEADLINES[asset]} have passed after midnight UTC (else the day before); "
            "evaluated by freshness_sensor whenever its outcome changes"
        ),
    )
    def _check(context) -> dg.AssetCheckResult:  # noqa: ANN001 - Dagster refuses a hint made text by __future__
        found = freshness(context.instance, asset)
        return dg.AssetCheckResult(
            passed=found.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=found.description,
            metadata={
                "latest_partition": str(found.latest) if found.latest else "none",
                "expected_partition": str(found.expected),
                "days_behind": (found.expected - found.latest).days if found.latest else -1,
                "evaluated_at": found.now.isoformat(timespec="seconds"),
            },
        )

    return _check


ohlcv_fresh = _freshness_check("ohlcv")
feature_table_fresh = _freshness_check("feature_table")
predictions_fresh = _freshness_check("predictions")
FRESHNESS_CHECKS = {
    "ohlcv": ohlcv_fresh,
    "feature_table": feature_table_fresh,
    "predictions": predictions_fresh,
}
