"""``ohlcv`` over several venues (``QT_VENUES=binance,bybit,okx``) and its ``cross_venue_close`` check.

Real HTTP against the simulator's Binance, Bybit and OKX endpoints, real Parquet, real Dagster
materializations and check evaluations read back through the instance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.resources import VenuesResource
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for

OHLCV = dg.AssetKey("ohlcv")
ALL_VENUES = {"QT_VENUES": "binance,bybit,okx"}


@pytest.fixture
def venues_sim(sim: Simulator) -> Iterator[Simulator]:
    """The session's simulator with the Bybit and OKX faults and counters cleared around the test."""
    sim.bybit.reset()
    sim.okx.reset()
    yield sim
    sim.bybit.reset()
    sim.okx.reset()


def resources(sim: Simulator, data_dir: Path, **venue_fields: Any) -> dict[str, Any]:
    built = resources_for(
        sim, data_dir, QT_BYBIT_API_URL=sim.bybit_url, QT_OKX_API_URL=sim.okx_url, **ALL_VENUES
    )
    if venue_fields:
        built["venues"] = VenuesResource(**{**built["venues"].model_dump(), **venue_fields})
    return built


def latest_evaluation(instance: dg.DagsterInstance, check: str, partition: str) -> Any:
    key = dg.AssetCheckKey(OHLCV, check)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key], partition_filter=PartitionKeyFilter(key=partition)
    ).get(key)


def run_summary(instance: dg.DagsterInstance, check: str) -> Any:
    """The newest evaluation of `check` without a partition: the run's one result of the check."""
    records = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(OHLCV, check), limit=100
    )
    return max((r for r in records if r.partition is None), key=lambda r: r.id)


def test_every_enabled_venue_is_stored_per_coin_under_the_universe_symbol(
    venues_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()

    result = materialize_range(
        ohlcv, instance, resources(venues_sim, tmp_path), ["BTCUSDT", "1000PEPEUSDT"], yesterday, yesterday
    )

    assert result.success
    rows = query(
        tmp_path,
        "SELECT exchange, symbol, venue_symbol, count(*), count(trades), count(taker_buy_volume) "
        "FROM ohlcv GROUP BY ALL ORDER BY ALL",
    )
    assert rows == [
        ("binance", "1000PEPEUSDT", "1000PEPEUSDT", 288, 288, 288),
        ("binance", "BTCUSDT", "BTCUSDT", 288, 288, 288),
        ("bybit", "1000PEPEUSDT", "1000PEPEUSDT", 288, 0, 0),  # not served: NULL, never 0
        ("bybit", "BTCUSDT", "BTCUSDT", 288, 0, 0),
        ("okx", "1000PEPEUSDT", "PEPE-USDT-SWAP", 288, 0, 0),
        ("okx", "BTCUSDT", "BTC-USDT-SWAP", 288, 0, 0),
    ]
    # Binance quotes 1000PEPEUSDT per 1,000 PEPE; Bybit (1000PEPEUSDT) and OKX are stored per coin.
    ratios = query(
        tmp_path,
        "SELECT o.exchange, avg(o.close / (b.close / 1000)) FROM ohlcv o JOIN ohlcv b USING (symbol, open_time) "
        "WHERE symbol = '1000PEPEUSDT' AND b.exchange = 'binance' AND o.exchange <> 'binance' GROUP BY ALL ORDER BY 1",
    )
    assert [venue for venue, _ in ratios] == ["bybit", "okx"]
    assert all(abs(ratio - 1) < 5e-4 for _, ratio in ratios)
    assert run_summary(instance, "cross_venue_close").status.value == "SUCCEEDED"
    assert latest_evaluation(instance, "cross_venue_close", f"{yesterday}|BTCUSDT") is None  # never failed


def test_a_planted_divergence_fails_cross_venue_close_naming_its_minutes_until_mended(
    venues_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    start = dt.datetime.combine(yesterday, dt.time(10, 0), dt.UTC)
    venues_sim.bybit.faults.diverge("BTCUSDT", start, start + dt.timedelta(minutes=15), bp=200)
    instance = dg.DagsterInstance.ephemeral()
    built = resources(venues_sim, tmp_path)
    key = f"{yesterday}|BTCUSDT"

    first = materialize_range(ohlcv, instance, built, ["BTCUSDT"], yesterday, yesterday)

    assert first.success  # a failed check reports; the candles stay stored as served
    record = latest_evaluation(instance, "cross_venue_close", key)
    assert record.status.value == "FAILED"
    metadata = record.event.dagster_event.asset_check_evaluation_data.metadata
    assert metadata["divergent"].value == {"bybit": {"BTCUSDT": ["10:00", "10:05", "10:10"]}}
    assert metadata["venues"].value == ["binance", "bybit", "okx"]
    assert 190 < metadata["worst_bp"].value < 210
    assert run_summary(instance, "cross_venue_close").status.value == "FAILED"

    venues_sim.bybit.faults.clear()
    second = materialize_range(ohlcv, instance, built, ["BTCUSDT"], yesterday, yesterday)

    assert second.success
    assert latest_evaluation(instance, "cross_venue_close", key).status.value == "SUCCEEDED"  # mended


def test_an_okx_candle_that_stays_unconfirmed_fails_its_partition_and_is_never_stored(
    venues_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    at = dt.datetime.combine(yesterday, dt.time(23, 55), dt.UTC)
    venues_sim.okx.faults.unconfirmed("BTCUSDT", at, times=None)
    instance = dg.DagsterInstance.ephemeral()
    built = resources(venues_sim, tmp_path, okx_confirm_attempts=3, okx_confirm_wait_seconds=0.05)

    result = materialize_range(ohlcv, instance, built, ["BTCUSDT"], yesterday, yesterday)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    assert f"{yesterday}|BTCUSDT: okx: " in message
    assert "23:55 UTC still unconfirmed (confirm 0) after 3 requests" in message
    lake = Lake(tmp_path)
    assert not lake.path("ohlcv", exchange="okx", symbol="BTCUSDT", date=yesterday).exists()
    assert len(lake.read("ohlcv", exchange="binance", symbol="BTCUSDT", date=yesterday)) == 288
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OHLCV, asset_partitions=[f"{yesterday}|BTCUSDT"]), limit=1
    ).records
    assert records == []  # not whole: not recorded as materialized

    venues_sim.okx.faults.clear()
    again = materialize_range(ohlcv, instance, built, ["BTCUSDT"], yesterday, yesterday)

    assert again.success
    assert len(lake.read("ohlcv", exchange="okx", symbol="BTCUSDT", date=yesterday)) == 288


def test_binance_alone_by_default_never_calls_the_other_venues(
    venues_sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    venues_sim.stats.reset()

    result = materialize_range(
        ohlcv,
        dg.DagsterInstance.ephemeral(),
        resources_for(venues_sim, tmp_path),
        ["BTCUSDT"],
        yesterday,
        yesterday,
    )

    assert result.success
    assert query(tmp_path, "SELECT DISTINCT exchange FROM ohlcv") == [("binance",)]
    assert not [path for path in venues_sim.stats.requests if path.startswith(("/v5/", "/api/v5/"))]
