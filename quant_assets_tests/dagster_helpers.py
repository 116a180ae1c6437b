"""Helpers for tests that materialize assets on a temporary instance against the simulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb

from quant_assets.defs.ranges import ohlcv_range_tags
from quant_assets.defs.resources import build_resources
from quant_assets.simulator import Simulator


def resources_for(sim: Simulator, data_dir: Path, **env: str) -> dict[str, Any]:
    values = {
        "QT_DATA_DIR": str(data_dir),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "QT_MAX_SYMBOLS": "10",
    }
    values.update(env)
    return build_resources(values)


def materialize_range(
    asset: dg.AssetsDefinition,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    symbols: list[str],
    first: dt.date,
    last: dt.date,
) -> dg.ExecuteInProcessResult:
    """One run of `asset` (ohlcv) over days [first, last] x the symbol range symbols[0]..symbols[-1]."""
    missing = [s for s in symbols if not instance.has_dynamic_partition("symbol", s)]
    if missing:
        instance.add_dynamic_partitions("symbol", missing)
    tags = ohlcv_range_tags(symbols, first, last)
    return dg.materialize([asset], instance=instance, resources=resources, tags=tags, raise_on_error=False)


def query(data_dir: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data_dir / "quant.duckdb"), read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def check_evaluations(instance: dg.DagsterInstance, asset: str, check: str) -> dict[str | None, Any]:
    """{partition: latest evaluation record} of one check."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey(asset), check), limit=10_000
    )
    latest: dict[str | None, Any] = {}
    for record in sorted(records, key=lambda r: r.id):
        latest[record.partition] = record
    return latest
