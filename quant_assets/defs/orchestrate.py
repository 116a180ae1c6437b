"""Materialize the graph from Python: what ``quant-assets demo`` and ``quant-assets backfill`` run.

Each ``ohlcv`` rectangle (days x contiguous symbols) is ONE run carrying Dagster's partition-range
tags: the same runs the sensors request and the CLI's ``--partition-range`` launches. Runs go to the
instance of ``$DAGSTER_HOME`` when it is set (so the web UI shows them), else to an ephemeral one.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from quant_assets.defs.automation import ohlcv_rectangles
from quant_assets.defs.partitions import (
    START_DATE,
    last_complete_day,
    split_ohlcv_key,
    symbol_partitions,
)
from quant_assets.defs.ranges import day_range_tags, lookback_window, ohlcv_range_tags
from quant_assets.defs.resources import build_resources
from quant_assets.errors import QuantAssetsError
from quant_assets.settings import Settings
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets.symbols import checked_symbol


@dataclass
class BackfillResult:
    """What a backfill did: runs launched, their ids and outcome."""

    runs: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    partitions: int = 0
    failures: list[str] = field(default_factory=list)  # each failed run's own account

    @property
    def success(self) -> bool:
        return not self.failed_runs

    def __str__(self) -> str:
        state = "ok" if self.success else f"{len(self.failed_runs)} runs failed: {self.failed_runs}"
        lines = [f"backfill: {self.partitions} symbol-days in {len(self.runs)} runs, {state}", *self.failures]
        return "\n".join(lines)


# Runs started from a terminal log at INFO: progress lines and warnings, not every engine event.
TERMINAL_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def default_instance() -> dg.DagsterInstance:
    """The ``$DAGSTER_HOME`` instance if configured, else an ephemeral one (nothing persists)."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _assets() -> list[dg.AssetsDefinition]:
    from quant_assets.definitions import defs

    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]


def _asset(name: str) -> dg.AssetsDefinition:
    return next(a for a in _assets() if a.key == dg.AssetKey(name))


def backfill_ohlcv(
    *,
    days: int,
    end: dt.date | None = None,
    symbols: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    only_missing: bool = False,
) -> BackfillResult:
    """Collect ``ohlcv`` for `days` days up to `end` (default: yesterday) for `symbols`.

    `symbols` None means every registered ``symbol`` partition; unknown ones are registered first.
    `only_missing` skips symbol-days already materialized. Raises :class:`QuantAssetsError` when
    there is nothing to collect.
    """
    instance = instance or default_instance()
    end = end or last_complete_day()
    if symbols is not None:
        wanted = [checked_symbol(s) for s in symbols]
        new = [s for s in wanted if not instance.has_dynamic_partition(symbol_partitions.name, s)]
        if new:
            instance.add_dynamic_partitions(symbol_partitions.name, new)
    else:
        wanted = list(instance.get_dynamic_partitions(symbol_partitions.name))
    if not wanted:
        raise QuantAssetsError("no symbols to backfill: materialize coin_universe first, or pass --symbols")
    window = lookback_window(days, end=end)
    if not window:
        raise QuantAssetsError(f"nothing to collect: {days} days up to {end} all fall before {START_DATE}")
    have = (
        {split_ohlcv_key(k) for k in instance.get_materialized_partitions(dg.AssetKey("ohlcv"))}
        if only_missing
        else set()
    )
    missing = [(s, d) for s in wanted for d in window if (s, d) not in have]
    order = instance.get_dynamic_partitions(symbol_partitions.name)
    result = BackfillResult(partitions=len(missing))
    asset = _asset("ohlcv")
    for first, last, block in ohlcv_rectangles(missing, order):
        outcome = dg.materialize(
            [asset],
            instance=instance,
            resources=build_resources(),
            tags=ohlcv_range_tags(block, first, last),
            run_config=TERMINAL_RUN_CONFIG,
            raise_on_error=False,
        )
        result.runs.append(outcome.run_id)
        if not outcome.success:
            result.failed_runs.append(outcome.run_id)
            result.failures += [
                event.step_failure_data.user_failure_data.description
                if event.step_failure_data.user_failure_data
                else event.step_failure_data.error.message
                for event in outcome.all_events
                if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data
            ]
    return result


def materialize_window(
    *, days: int, instance: dg.DagsterInstance | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Universe of yesterday, its candles for `days` days, their features and labels.

    Returns (rows per symbol, rows per catalog view).
    """
    instance = instance or default_instance()
    resources = build_resources()
    day = last_complete_day()
    dg.materialize(
        [_asset("coin_universe")],
        instance=instance,
        resources=resources,
        partition_key=str(day),
        run_config=TERMINAL_RUN_CONFIG,
    )
    lake = Lake(Settings.from_env().data_dir)
    universe = lake.read("coin_universe", date=day)["symbol"].tolist()
    backfill = backfill_ohlcv(days=days, end=day, symbols=universe, instance=instance, only_missing=True)
    if not backfill.success:
        raise QuantAssetsError(f"ohlcv collection failed: {backfill}")
    dg.materialize(
        [_asset("feature_table"), _asset("labels")],
        instance=instance,
        resources=resources,
        tags=day_range_tags(lookback_window(days, end=day)[0], day),
        run_config=TERMINAL_RUN_CONFIG,
    )
    with Catalog(lake).connect() as con:
        per_symbol = con.execute(
            "SELECT u.rank, o.symbol, count(*) AS candles, min(o.open_time) AS first_candle, "
            "max(o.open_time) AS last_candle, round(last(o.close ORDER BY o.open_time), 6) AS last_close, "
            "(SELECT count(*) FROM features f WHERE f.symbol = o.symbol) AS feature_rows "
            "FROM ohlcv o LEFT JOIN coin_universe u ON u.symbol = o.symbol AND u.snapshot_date = ? "
            "WHERE o.exchange = 'binance' "  # the reference venue; the demo prints rows per venue apart
            "GROUP BY u.rank, o.symbol ORDER BY u.rank NULLS LAST, o.symbol",
            [day],
        ).df()
        tables = con.execute(
            "SELECT 'coin_universe' AS view, count(*) AS rows FROM coin_universe "
            "UNION ALL SELECT 'ohlcv', count(*) FROM ohlcv "
            "UNION ALL SELECT 'features', count(*) FROM features "
            "UNION ALL SELECT 'feature_catalog', count(*) FROM feature_catalog "
            "UNION ALL SELECT 'labels', count(*) FROM labels"
        ).df()
    return per_symbol, tables
