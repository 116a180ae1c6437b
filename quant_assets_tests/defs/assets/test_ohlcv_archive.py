"""``ohlcv`` through Binance's archive (``QT_BINANCE_ARCHIVE_URL``): real runs against the simulator.

A range backfill takes every day the archive holds from it (zero API weight for those days) and the
rest from REST; archived candles are byte-identical to the REST-stored ones; which path each day
took is in the run's metadata; a file replaced upstream is picked up by the next run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.simulator import Simulator
from quant_assets.sources.binance_archive import archive_path
from quant_assets_tests.dagster_helpers import materialize_range, resources_for

OHLCV = dg.AssetKey("ohlcv")
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


@pytest.fixture
def archive_sim(sim: Simulator) -> Iterator[Simulator]:
    sim.archive.reset()
    yield sim
    sim.archive.reset()


def latest_metadata(instance: dg.DagsterInstance) -> dict[str, dict[str, Any]]:
    """{partition: metadata values} of the newest materialization of each ohlcv partition."""
    records = instance.fetch_materializations(OHLCV, limit=1000).records
    latest: dict[str, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r.storage_id):
        event = record.asset_materialization
        assert event is not None
        latest[str(event.partition)] = {k: v.value for k, v in event.metadata.items()}
    return latest


def test_a_range_takes_archived_days_from_the_archive_and_the_rest_from_rest(
    archive_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    first = yesterday - dt.timedelta(days=2)  # first, first+1 archived; yesterday not published yet
    archive_sim.archive.remove("ETHUSDT", first)  # a day missing upstream falls back to REST
    archive_sim.archive.header = False
    instance = dg.DagsterInstance.ephemeral()
    with_archive = resources_for(archive_sim, tmp_path / "a", QT_BINANCE_ARCHIVE_URL=archive_sim.archive_url)

    result = materialize_range(ohlcv, instance, with_archive, SYMBOLS, first, yesterday)

    assert result.success
    meta = latest_metadata(instance)
    sources = {key: m["source"] for key, m in meta.items()}
    assert sources == {
        f"{first}|BTCUSDT": "archive",
        f"{first}|ETHUSDT": "rest",
        f"{first + dt.timedelta(days=1)}|BTCUSDT": "archive",
        f"{first + dt.timedelta(days=1)}|ETHUSDT": "archive",
        f"{yesterday}|BTCUSDT": "rest",
        f"{yesterday}|ETHUSDT": "rest",
    }
    assert "not in the archive" in meta[f"{first}|ETHUSDT"]["archive_fallback"]
    assert len(meta[f"{first}|BTCUSDT"]["archive_sha256"]) == 64
    summary = meta[f"{first}|BTCUSDT"]
    assert (summary["run_days_archive"], summary["run_days_rest"]) == (3, 3)
    # Zero API weight for archived days: 3 REST symbol-days, each one 288-candle request (limit 499, weight 2).
    assert summary["run_weight"] == 3 * 2
    assert archive_sim.stats.weight_used == 3 * 2

    # The same range from REST only: the stored files are byte-identical.
    rest_instance = dg.DagsterInstance.ephemeral()
    rest_only = resources_for(archive_sim, tmp_path / "r")
    assert materialize_range(ohlcv, rest_instance, rest_only, SYMBOLS, first, yesterday).success
    rest_meta = latest_metadata(rest_instance)
    assert {key: m["source"] for key, m in rest_meta.items()} == dict.fromkeys(meta, "rest")
    assert {key: m["sha256"] for key, m in meta.items()} == {key: m["sha256"] for key, m in rest_meta.items()}


def test_a_replaced_file_is_picked_up_by_the_next_run_and_a_corrupt_one_refetched(
    archive_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    first, last = yesterday - dt.timedelta(days=3), yesterday - dt.timedelta(days=2)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(archive_sim, tmp_path, QT_BINANCE_ARCHIVE_URL=archive_sim.archive_url)
    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], first, last).success
    before = latest_metadata(instance)[f"{first}|BTCUSDT"]

    archive_sim.archive.replace("BTCUSDT", first)
    archive_sim.archive.corrupt("BTCUSDT", last, times=1)
    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], first, last).success
    after = latest_metadata(instance)

    assert after[f"{first}|BTCUSDT"]["source"] == "archive"
    assert after[f"{first}|BTCUSDT"]["archive_sha256"] != before["archive_sha256"]
    assert after[f"{first}|BTCUSDT"]["sha256"] == before["sha256"]  # same candles, same stored bytes
    assert after[f"{last}|BTCUSDT"]["source"] == "archive"  # refused once, fetched again, verified
    assert archive_sim.archive.downloads[archive_path("BTCUSDT", last)] == 3  # 1 first run + 2 now
    assert after[f"{first}|BTCUSDT"]["run_weight"] == 0


def test_a_single_day_run_uses_rest(archive_sim: Simulator, tmp_path: Path, yesterday: dt.date) -> None:
    day = yesterday - dt.timedelta(days=3)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(archive_sim, tmp_path, QT_BINANCE_ARCHIVE_URL=archive_sim.archive_url)

    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], day, day).success

    assert latest_metadata(instance)[f"{day}|BTCUSDT"]["source"] == "rest"
    assert sum(archive_sim.archive.downloads.values()) == 0
