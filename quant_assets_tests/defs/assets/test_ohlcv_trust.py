"""``ohlcv`` checks that can fail on served data, show each partition's latest outcome, and stop bad
data; lineage by day; a refused request that keeps the days fetched before it.

Everything runs against the simulator over real HTTP, writes real Parquet and records real Dagster
evaluations, read back through the instance.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.event_api import PartitionKeyFilter

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.partitions import daily_partitions, ohlcv_partitions
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for

KLINES = "/fapi/v1/klines"
OHLCV = dg.AssetKey("ohlcv")


def latest_evaluation(instance: dg.DagsterInstance, check: str, partition: str) -> Any:
    """The latest recorded evaluation of `check` for one partition (None when it never had one)."""
    key = dg.AssetCheckKey(OHLCV, check)
    return instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key], partition_filter=PartitionKeyFilter(key=partition)
    ).get(key)


def latest_materialization(instance: dg.DagsterInstance, partition: str) -> dict[str, Any]:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=OHLCV, asset_partitions=[partition]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def stored_rows(data_dir: Path, symbol: str, day: dt.date) -> int:
    return len(Lake(data_dir).read("ohlcv", exchange="binance", symbol=symbol, date=day))


def test_a_candle_served_twice_with_differing_values_fails_candles_valid_until_mended(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    at = dt.datetime.combine(yesterday, dt.time(10, 0), dt.UTC)
    sim.faults.bad_candle("BTCUSDT", at, "duplicate")
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    bad, good = f"{yesterday}|BTCUSDT", f"{yesterday}|ETHUSDT"

    first = materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], yesterday, yesterday)

    assert first.success  # a failed check reports; the run still stores what was served
    record = latest_evaluation(instance, "candles_valid", bad)
    assert record.status.value == "FAILED"
    evaluation = record.event.dagster_event.asset_check_evaluation_data
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["failed_rules"].value == ["unique_open_time"]
    assert evaluation.metadata["unique_open_time"].value["duplicated_open_times"] == 1
    assert stored_rows(tmp_path, "BTCUSDT", yesterday) == 289  # both rows kept: report, never repair
    assert latest_materialization(instance, bad)["candles_valid"] is False
    assert latest_evaluation(instance, "candles_valid", good) is None  # never failed, nothing logged
    invalid = Lake(tmp_path).invalid_ohlcv(yesterday)
    assert list(invalid) == ["BTCUSDT"]
    assert "unique_open_time" in invalid["BTCUSDT"]
    assert str(at.replace(tzinfo=None)) in invalid["BTCUSDT"]
    # The partition file keeps what was served; the catalog's ohlcv view keeps the invalid day out.
    assert query(tmp_path, "SELECT symbol, count(*) FROM ohlcv GROUP BY symbol") == [("ETHUSDT", 288)]

    sim.faults.clear()
    second = materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], yesterday, yesterday)

    assert second.success
    assert latest_evaluation(instance, "candles_valid", bad).status.value == "SUCCEEDED"
    assert latest_evaluation(instance, "candles_valid", good) is None
    assert stored_rows(tmp_path, "BTCUSDT", yesterday) == 288
    assert latest_materialization(instance, bad)["candles_valid"] is True
    assert Lake(tmp_path).invalid_ohlcv(yesterday) == {}
    assert query(tmp_path, "SELECT symbol, count(*) FROM ohlcv GROUP BY symbol ORDER BY symbol") == [
        ("BTCUSDT", 288),
        ("ETHUSDT", 288),
    ]


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("off_grid", "five_minute_grid"),
        ("inconsistent", "ohlc_consistent"),
        ("negative_volume", "volumes_non_negative"),
    ],
)
def test_each_validity_rule_fails_on_what_the_simulator_serves(
    sim: Simulator, tmp_path: Path, yesterday: dt.date, kind: str, rule: str
) -> None:
    sim.faults.bad_candle("SOLUSDT", dt.datetime.combine(yesterday, dt.time(3, 35), dt.UTC), kind)
    instance = dg.DagsterInstance.ephemeral()

    materialize_range(ohlcv, instance, resources_for(sim, tmp_path), ["SOLUSDT"], yesterday, yesterday)

    record = latest_evaluation(instance, "candles_valid", f"{yesterday}|SOLUSDT")
    assert record.status.value == "FAILED"
    assert record.event.dagster_event.asset_check_evaluation_data.metadata["failed_rules"].value == [rule]
    assert rule in Lake(tmp_path).invalid_ohlcv(yesterday)["SOLUSDT"]


def test_an_exact_repeat_is_left_out_and_counted_not_failed(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    sim.faults.bad_candle("BTCUSDT", dt.datetime.combine(yesterday, dt.time(7, 0), dt.UTC), "repeat")
    instance = dg.DagsterInstance.ephemeral()

    result = materialize_range(
        ohlcv, instance, resources_for(sim, tmp_path), ["BTCUSDT"], yesterday, yesterday
    )

    assert result.success
    metadata = latest_materialization(instance, f"{yesterday}|BTCUSDT")
    assert metadata["candles_valid"] is True
    assert metadata["left_out_exact_repeats"] == 1
    assert metadata["left_out_still_open"] == 0
    assert metadata["left_out_outside_range"] == 0
    assert stored_rows(tmp_path, "BTCUSDT", yesterday) == 288
    assert Lake(tmp_path).invalid_ohlcv(yesterday) == {}


def test_a_gap_warns_and_the_partition_shows_passed_once_refetched_whole(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    start = dt.datetime.combine(yesterday, dt.time(12, 0), dt.UTC)
    sim.faults.gap("ETHUSDT", start, start + dt.timedelta(minutes=15))
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    partition = f"{yesterday}|ETHUSDT"

    materialize_range(ohlcv, instance, resources, ["ETHUSDT"], yesterday, yesterday)
    failed = latest_evaluation(instance, "complete_day", partition)
    sim.faults.clear()
    materialize_range(ohlcv, instance, resources, ["ETHUSDT"], yesterday, yesterday)
    mended = latest_evaluation(instance, "complete_day", partition)

    assert failed.status.value == "FAILED"
    assert failed.event.dagster_event.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.WARN
    assert mended.status.value == "SUCCEEDED"
    assert latest_evaluation(instance, "candles_valid", partition) is None  # gaps are not invalid
    summary = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(OHLCV, "complete_day"))
    assert summary is not None
    assert summary.status.value == "SUCCEEDED"


def test_a_run_that_mends_one_partition_and_breaks_another_shows_both_and_a_failed_badge(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    start = dt.datetime.combine(yesterday, dt.time(12, 0), dt.UTC)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    sim.faults.gap("SOLUSDT", start, start + dt.timedelta(minutes=15))
    materialize_range(ohlcv, instance, resources, ["ETHUSDT", "SOLUSDT"], yesterday, yesterday)
    sim.faults.clear()
    sim.faults.gap("ETHUSDT", start, start + dt.timedelta(minutes=15))

    materialize_range(ohlcv, instance, resources, ["ETHUSDT", "SOLUSDT"], yesterday, yesterday)

    assert latest_evaluation(instance, "complete_day", f"{yesterday}|ETHUSDT").status.value == "FAILED"
    assert latest_evaluation(instance, "complete_day", f"{yesterday}|SOLUSDT").status.value == "SUCCEEDED"
    badge = instance.get_latest_asset_check_evaluation_record(dg.AssetCheckKey(OHLCV, "complete_day"))
    assert badge is not None
    assert badge.status.value == "FAILED"


def test_a_request_refused_mid_range_keeps_the_days_fetched_whole_before_it(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    first_day = yesterday - dt.timedelta(days=4)
    # BTCUSDT's first page (499 candles: one whole day and most of the next) is served, the second
    # is refused for good (400: not retried); ETHUSDT's requests follow and are served.
    sim.faults.fail_next(KLINES, 400, after=1)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)

    result = materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], first_day, yesterday)

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    lost = [first_day + dt.timedelta(days=n) for n in range(1, 5)]
    for day in lost:
        assert f"{day}|BTCUSDT: not fetched: " in message
    assert f"{first_day}|BTCUSDT" not in message
    assert "4 of 10 symbol-days failed" in message
    assert f"quant-assets backfill --symbols BTCUSDT --end {yesterday} --days 4" in message
    materialized = instance.get_materialized_partitions(OHLCV)
    assert f"{first_day}|BTCUSDT" in materialized
    assert not {f"{day}|BTCUSDT" for day in lost} & materialized
    assert len(materialized) == 6
    assert stored_rows(tmp_path, "BTCUSDT", first_day) == 288
    assert not Lake(tmp_path).path("ohlcv", exchange="binance", symbol="BTCUSDT", date=lost[0]).exists()

    sim.stats.reset()
    rerun = materialize_range(ohlcv, instance, resources, ["BTCUSDT"], lost[0], lost[-1])

    assert rerun.success
    assert sim.stats.requests[KLINES] == 3  # 4 days = 1,152 candles = 3 pages of 499, nothing more
    assert len(instance.get_materialized_partitions(OHLCV)) == 10


def test_ohlcv_of_a_day_depends_on_that_days_universe_only() -> None:
    graph = AssetGraph.from_assets([coin_universe, ohlcv])
    mapping = graph.get_partition_mapping(OHLCV, dg.AssetKey("coin_universe"))
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("symbol", ["BTCUSDT", "ETHUSDT"])
    day = dt.date(2026, 11, 20)

    downstream = mapping.get_downstream_partitions_for_partitions(
        daily_partitions.subset_with_partition_keys([day.isoformat()]),
        daily_partitions,
        ohlcv_partitions,
        dynamic_partitions_store=instance,
    )
    upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(
        ohlcv_partitions.subset_with_partition_keys([f"{day - dt.timedelta(days=1)}|BTCUSDT"]),
        ohlcv_partitions,
        daily_partitions,
        dynamic_partitions_store=instance,
    )

    assert sorted(downstream.get_partition_keys()) == [f"{day}|BTCUSDT", f"{day}|ETHUSDT"]
    assert list(upstream.partitions_subset.get_partition_keys()) == [str(day - dt.timedelta(days=1))]


def test_the_cli_names_the_lost_days_and_its_rerun_fetches_only_those(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "DAGSTER_HOME": str(home),
    }
    backfill = [sys.executable, "-m", "quant_assets.cli", "backfill"]
    sim.faults.fail_next(KLINES, 400, after=1)

    done = subprocess.run(
        [*backfill, "--days", "5", "--symbols", "BTCUSDT"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 1, done.stderr[-2000:]
    for offset in range(4):
        assert f"{yesterday - dt.timedelta(days=offset)}|BTCUSDT: not fetched: " in done.stdout
    assert f"{yesterday - dt.timedelta(days=4)}|BTCUSDT" not in done.stdout
    rerun = f"quant-assets backfill --symbols BTCUSDT --end {yesterday} --days 4"
    assert rerun in done.stdout

    sim.stats.reset()
    again = subprocess.run(
        [*backfill, *rerun.split()[2:]], env=env, capture_output=True, text=True, timeout=300
    )

    assert again.returncode == 0, again.stderr[-2000:]
    assert "4 symbol-days in 1 runs, ok" in again.stdout
    assert sim.stats.requests[KLINES] == 3
