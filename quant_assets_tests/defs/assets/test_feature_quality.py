"""What the feature and label days do with bad data the simulator serves: the NaN check fails on a
NaN no documented condition explains, and a symbol-day that failed ``candles_valid`` never reaches
the features or the labels. Each is read back through the instance, then mended."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import check_evaluations, materialize_range, query, resources_for
from quant_assets_tests.feature_helpers import latest_metadata, write_universe

NAN_CHECK = dg.AssetCheckKey(dg.AssetKey("feature_table"), "no_nan_after_warmup")


def latest_check(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> tuple[bool, dict]:
    record = instance.get_latest_asset_check_evaluation_record(key)
    assert record is not None
    assert record.event is not None
    evaluation = record.event.dagster_event.event_specific_data
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def test_a_nan_no_condition_explains_fails_the_check_until_the_candles_are_mended(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    before = yesterday - dt.timedelta(days=1)
    write_universe(tmp_path, before, ["BTCUSDT", "ETHUSDT"])
    start = dt.datetime.combine(yesterday, dt.time(), dt.UTC)
    sim.faults.sparse_candles("ETHUSDT", start, start + dt.timedelta(days=1))  # a thin market's day
    materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], before, yesterday)
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success

    passed, metadata = latest_check(instance, NAN_CHECK)
    assert (passed, metadata["failing"]) == (False, [str(yesterday)])
    day = check_evaluations(instance, "feature_table", "no_nan_after_warmup")[str(yesterday)]
    day_metadata = day.event.dagster_event.event_specific_data.metadata
    # beta and correlation to BTCUSDT lose their 5-minute returns: NaN that no nan_when explains.
    assert day_metadata["features_with_nan"].value == {"beta_btc_288": 71, "corr_btc_288": 71}

    sim.faults.clear()  # the venue serves the day whole again; the candles are fetched again
    assert materialize_range(ohlcv, instance, resources, ["ETHUSDT"], yesterday, yesterday).success
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    passed, metadata = latest_check(instance, NAN_CHECK)
    assert (passed, metadata["partitions_failing"]) == (True, 0)


def test_an_invalid_symbol_day_never_reaches_features_or_labels_and_is_named(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    before = yesterday - dt.timedelta(days=1)
    symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    write_universe(tmp_path, before, symbols)
    # A duplicated candle whose values differ: SOLUSDT fails candles_valid on both days.
    for day in (before, yesterday):
        sim.faults.bad_candle("SOLUSDT", dt.datetime.combine(day, dt.time(12, 0), dt.UTC), "duplicate")
    materialize_range(ohlcv, instance, resources, symbols, before, yesterday)
    invalid = Lake(tmp_path).invalid_ohlcv(yesterday)
    assert list(invalid) == ["SOLUSDT"]
    assert Lake(tmp_path).path("ohlcv", exchange="binance", symbol="SOLUSDT", date=yesterday).exists()

    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    assert dg.materialize([labels], instance=instance, resources=resources, partition_key=str(before)).success
    assert query(tmp_path, "SELECT DISTINCT symbol FROM features ORDER BY 1") == [("BTCUSDT",), ("ETHUSDT",)]
    assert query(tmp_path, "SELECT DISTINCT symbol FROM labels ORDER BY 1") == [("BTCUSDT",), ("ETHUSDT",)]
    features_metadata = latest_metadata(instance, "feature_table", yesterday)
    assert features_metadata["left_out_invalid"] == invalid
    assert features_metadata["warmup_days_dropped_invalid"] == {"SOLUSDT": [str(before)]}
    assert features_metadata["without_candles"] == []
    labels_metadata = latest_metadata(instance, "labels", before)
    assert list(labels_metadata["left_out_invalid"]) == ["SOLUSDT"]
    assert list(labels_metadata["next_day_left_out_invalid"]) == ["SOLUSDT"]

    sim.faults.clear()  # mended at the source; the candles are fetched again
    assert materialize_range(ohlcv, instance, resources, ["SOLUSDT"], before, yesterday).success
    assert Lake(tmp_path).invalid_ohlcv(yesterday) == {}
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    assert query(tmp_path, "SELECT count(DISTINCT symbol) FROM features") == [(3,)]
    features_metadata = latest_metadata(instance, "feature_table", yesterday)
    assert (features_metadata["left_out_invalid"], features_metadata["warmup_days_dropped_invalid"]) == (
        {},
        {},
    )
