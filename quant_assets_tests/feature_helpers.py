"""Helpers for the feature and label tests: a universe snapshot as the lake stores it, and readings."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from quant_assets.store.lake import Lake


def write_universe(data_dir: Path, day: dt.date, symbols: list[str]) -> None:
    """Store a ``coin_universe`` snapshot of `day` holding `symbols` in rank order (real Parquet).

    Tests choose the universe this way so it can differ, on purpose, from the symbols with candles.
    """
    n = len(symbols)
    frame = pd.DataFrame(
        {
            "snapshot_date": [day] * n,
            "rank": list(range(1, n + 1)),
            "symbol": symbols,
            "base_asset": [s.removesuffix("USDT") for s in symbols],
            "coingecko_id": [s.removesuffix("USDT").lower() for s in symbols],
            "categories": ["layer-1"] * n,
            "volume_24h_usd": [1e9 / (i + 1) for i in range(n)],
            "market_cap_usd": [1e10 / (i + 1) for i in range(n)],
            "source": ["coingecko"] * n,
            "fetched_at": [dt.datetime.combine(day, dt.time(0, 10))] * n,
        }
    )
    Lake(data_dir).write("coin_universe", frame, date=day)


def latest_metadata(instance: dg.DagsterInstance, asset: str, day: dt.date) -> dict[str, Any]:
    """The metadata values of the latest materialization of `asset` for the partition `day`."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(day)]), limit=1
    ).records
    assert records, f"{asset} {day} was never materialized"
    metadata = records[0].asset_materialization.metadata
    return {key: value.value for key, value in metadata.items()}


def materializations(instance: dg.DagsterInstance, asset: str, day: dt.date) -> int:
    """How many materializations of `asset` for the partition `day` the instance recorded."""
    return len(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[str(day)]), limit=1_000
        ).records
    )
