"""Asset-check specs, and how per-partition results reach Dagster from a run of many partitions.

One run materializes many partitions (a single-run backfill), but ``AssetCheckResult`` has no
partition. So a run of several partitions logs one ``AssetCheckEvaluation`` per partition and
check, then yields one summary result per check (what the step's check outputs require); a run of
one partition yields the results directly.

Each event costs about 8 ms in the SQLite event log here, so ``ohlcv`` carries two checks per
partition, not one per rule: ``candles_valid`` (ERROR: unique open_time, 5-minute grid, OHLC
consistency, volumes >= 0, inside the day; each rule's outcome in its metadata) and
``complete_day`` (WARN: row count against 288 and the missing minutes). A gap is a fact of the
market, so it warns and never fails the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

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


def emit_partition_checks(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    outcomes_by_partition: Mapping[str, Sequence[CheckOutcome]],
    check_names: Sequence[str],
) -> Iterator[dg.AssetCheckResult]:
    """Record every partition's outcomes and yield what the step must yield (see module docstring)."""
    if len(context.partition_keys) == 1 and len(outcomes_by_partition) == 1:
        (outcomes,) = outcomes_by_partition.values()
        for outcome in outcomes:
            yield dg.AssetCheckResult(
                check_name=outcome.name,
                passed=outcome.passed,
                severity=SEVERITY[outcome.severity],
                description=outcome.description,
                metadata=outcome.metadata,
            )
        return
    failing: dict[str, list[str]] = {name: [] for name in check_names}
    severity: dict[str, str] = {name: "WARN" for name in check_names}
    for partition, outcomes in outcomes_by_partition.items():
        for outcome in outcomes:
            severity[outcome.name] = outcome.severity
            if not outcome.passed:
                failing[outcome.name].append(partition)
            context.log_event(
                dg.AssetCheckEvaluation(
                    asset_key=asset_key,
                    check_name=outcome.name,
                    passed=outcome.passed,
                    partition=partition,
                    severity=SEVERITY[outcome.severity],
                    description=outcome.description,
                    metadata=outcome.metadata,
                )
            )
    for name in check_names:
        yield dg.AssetCheckResult(
            check_name=name,
            passed=not failing[name],
            severity=SEVERITY[severity[name]],
            description=f"summary of {len(outcomes_by_partition)} partitions of this run",
            metadata={
                "partitions_checked": len(outcomes_by_partition),
                "partitions_failing": len(failing[name]),
                "first_failing": dg.MetadataValue.json(failing[name][:50]),
            },
        )
