"""``feature_table`` materialized for a day from candles the ohlcv asset stored and its universe."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import RANGE_END, RANGE_START, feature_table_sensor
from quant_assets.feature_days import SCHEMA_HASH_KEY, DayReader
from quant_assets.features import feature_schema, latest_features
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for
from quant_assets_tests.feature_helpers import latest_metadata, write_universe

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]


@pytest.fixture
def built(sim: Simulator, tmp_path: Path, yesterday: dt.date) -> tuple[dg.DagsterInstance, dict]:
    gap_start = dt.datetime.combine(yesterday, dt.time(6, 0), dt.UTC)
    sim.faults.gap("SOLUSDT", gap_start, gap_start + dt.timedelta(minutes=30))
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    write_universe(tmp_path, yesterday - dt.timedelta(days=2), SYMBOLS)
    assert materialize_range(
        ohlcv, instance, resources, SYMBOLS, yesterday - dt.timedelta(days=2), yesterday
    ).success
    result = dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    )
    assert result.success
    return instance, resources


def test_features_of_every_symbol_for_the_day_with_passing_checks(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    instance, _ = built
    schema = feature_schema()
    rows = query(tmp_path, "SELECT symbol, count(*) FROM features GROUP BY symbol ORDER BY symbol")
    assert rows == [("BTCUSDT", 288), ("ETHUSDT", 288), ("SOLUSDT", 282), ("XRPUSDT", 288)]
    columns = [r[0] for r in query(tmp_path, "SELECT column_name FROM (DESCRIBE features)")]
    assert columns == ["symbol", "open_time", SCHEMA_HASH_KEY, *schema.names]
    assert len(schema.names) >= 60
    assert query(tmp_path, "SELECT DISTINCT feature_schema_hash FROM features") == [(schema.hash,)]
    for check in ("no_nan_after_warmup", "stored_days_match_schema"):
        record = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey("feature_table"), check), limit=1
        )[0]
        assert record.status.value == "SUCCEEDED", check
    path = Lake(tmp_path).path("features", date=yesterday)
    assert pq.read_schema(path).metadata[SCHEMA_HASH_KEY.encode()].decode() == schema.hash
    assert query(tmp_path, "SELECT feature_schema_hash, count(*) FROM feature_catalog GROUP BY 1") == [
        (schema.hash, len(schema.names))
    ]


def test_the_gap_is_visible_and_still_gets_features(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    after_gap = dt.datetime.combine(yesterday, dt.time(6, 30))
    gap_column = next(n for n in feature_schema().names if "since" in n or "gap" in n)
    rows = query(
        tmp_path,
        f'SELECT "{gap_column}" FROM features WHERE symbol = ? AND open_time = ?',
        ["SOLUSDT", after_gap],
    )
    assert rows == [(7.0,)]  # 35 minutes since the previous candle: seven 5-minute bars


def test_feature_table_writes_no_labels(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    assert not Lake(tmp_path).path("labels", date=yesterday).exists()  # the labels asset writes them
    feature_columns = {r[0] for r in query(tmp_path, "SELECT column_name FROM (DESCRIBE features)")}
    assert not {c for c in feature_columns if c.startswith("fwd_")}


@pytest.mark.parametrize("asked", [SYMBOLS, ["ETHUSDT"]])
def test_live_inference_equals_the_stored_training_row(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date, asked: list[str]
) -> None:
    as_of = dt.datetime.combine(yesterday + dt.timedelta(days=1), dt.time(), dt.UTC)
    live = latest_features(asked, as_of, lake=Lake(tmp_path)).set_index("symbol")
    stored = pd.read_parquet(Lake(tmp_path).path("features", date=yesterday))
    last = stored.sort_values("open_time").groupby("symbol").tail(1).set_index("symbol")
    names = feature_schema().names
    assert live.attrs["feature_schema_hash"] == feature_schema().hash
    assert list(live.index) == asked
    for symbol in asked:
        np.testing.assert_allclose(
            live.loc[symbol, names].to_numpy(dtype=float),
            last.loc[symbol, names].to_numpy(dtype=float),
            rtol=1e-9,
            equal_nan=True,
        )


def test_live_inference_ranks_among_the_days_universe_as_training_did(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    # XRPUSDT left the universe but its candles are still collected (history is kept): training
    # ranked ETHUSDT among the universe alone, so serving must too, not among all stored symbols.
    instance, resources = dg.DagsterInstance.ephemeral(), resources_for(sim, tmp_path)
    universe = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    write_universe(tmp_path, yesterday - dt.timedelta(days=1), universe)
    assert materialize_range(
        ohlcv, instance, resources, SYMBOLS, yesterday - dt.timedelta(days=1), yesterday
    ).success
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    as_of = dt.datetime.combine(yesterday + dt.timedelta(days=1), dt.time(), dt.UTC)

    live = latest_features(["ETHUSDT", "XRPUSDT"], as_of, lake=Lake(tmp_path)).set_index("symbol")

    stored = pd.read_parquet(Lake(tmp_path).path("features", date=yesterday))
    assert sorted(stored["symbol"].unique()) == sorted(universe)
    last = stored.sort_values("open_time").groupby("symbol").tail(1).set_index("symbol")
    names = feature_schema().names
    np.testing.assert_allclose(
        live.loc["ETHUSDT", names].to_numpy(dtype=float),
        last.loc["ETHUSDT", names].to_numpy(dtype=float),
        rtol=1e-9,
        equal_nan=True,
    )
    assert live.attrs["universe_snapshot"] == yesterday - dt.timedelta(days=1)
    assert "XRPUSDT" in live.index  # asked for outside the universe: ranked among it and itself


def test_a_range_of_days_is_one_run_with_the_same_bytes_as_day_by_day(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    instance, resources = built
    first = yesterday - dt.timedelta(days=1)
    dg.materialize([feature_table], instance=instance, resources=resources, partition_key=str(first))
    one_by_one = {d: Lake(tmp_path).path("features", date=d).read_bytes() for d in (first, yesterday)}
    result = dg.materialize(
        [feature_table],
        instance=instance,
        resources=resources,
        tags={RANGE_START: str(first), RANGE_END: str(yesterday)},
    )
    assert result.success
    assert {d: Lake(tmp_path).path("features", date=d).read_bytes() for d in (first, yesterday)} == one_by_one
    assert sorted(instance.get_materialized_partitions(dg.AssetKey("feature_table"))) == [
        str(first),
        str(yesterday),
    ]


def test_the_sensor_requests_one_run_per_range_of_days(
    built: tuple[dg.DagsterInstance, dict], yesterday: dt.date
) -> None:
    instance, resources = built
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = feature_table_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests] == [
        (str(yesterday - dt.timedelta(days=2)), str(yesterday))
    ]


def test_new_candles_rebuild_the_later_days_they_warm_up(
    built: tuple[dg.DagsterInstance, dict], sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance, resources = built
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        first = feature_table_sensor(context)
    assert isinstance(first, dg.SensorResult)
    early = yesterday - dt.timedelta(days=2)
    materialize_range(ohlcv, instance, resources, ["ETHUSDT"], early, early)  # a late correction
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor) as context:
        second = feature_table_sensor(context)
    assert isinstance(second, dg.SensorResult)
    # yesterday's features were built and read `early` as warm-up: they are rebuilt too.
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in second.run_requests] == [
        (str(early), str(yesterday))
    ]


def test_the_sensor_waits_while_any_ohlcv_run_is_in_flight(built: tuple[dg.DagsterInstance, dict]) -> None:
    instance, resources = built
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",  # what a UI or CLI materialization runs as
            status=dg.DagsterRunStatus.STARTED,
            tags={RANGE_START: "2026-11-20|BTCUSDT", RANGE_END: "2026-11-21|ETHUSDT"},
        )
    )
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        assert isinstance(feature_table_sensor(context), dg.SkipReason)


def test_the_day_covers_its_universe_snapshot_not_whatever_has_candles(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    instance, resources = built
    # XRPUSDT has candles but left the universe; DOGEUSDT entered it without candles stored;
    # BTCUSDT is not in it but is the cross-section's reference.
    write_universe(tmp_path, yesterday, ["ETHUSDT", "SOLUSDT", "DOGEUSDT"])
    result = dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    )
    assert result.success
    rows = query(tmp_path, "SELECT DISTINCT symbol FROM features ORDER BY symbol")
    assert rows == [("BTCUSDT",), ("ETHUSDT",), ("SOLUSDT",)]
    metadata = latest_metadata(instance, "feature_table", yesterday)
    assert metadata["universe_snapshot"] == str(yesterday)
    assert metadata["universe_point_in_time"] is True
    assert metadata["without_candles"] == ["DOGEUSDT"]
    assert metadata["symbols"] == 3


def test_a_day_before_the_first_snapshot_says_it_is_not_point_in_time(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    before = yesterday - dt.timedelta(days=1)
    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], before, yesterday).success
    write_universe(tmp_path, yesterday, ["ETHUSDT"])  # the first snapshot is taken after `before`
    for day in (before, yesterday):
        assert dg.materialize(
            [feature_table], instance=instance, resources=resources, partition_key=str(day)
        ).success
    early, late = (latest_metadata(instance, "feature_table", day) for day in (before, yesterday))
    assert (early["universe_snapshot"], early["universe_point_in_time"]) == (str(yesterday), False)
    assert (late["universe_snapshot"], late["universe_point_in_time"]) == (str(yesterday), True)


def test_no_snapshot_at_all_fails_the_day_with_a_clear_error(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday).success
    result = dg.materialize(
        [feature_table],
        instance=instance,
        resources=resources,
        partition_key=str(yesterday),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert "no coin_universe snapshot is stored" in str(
        failure.step_failure_data.user_failure_data.description
    )
    assert not Lake(tmp_path).path("features", date=yesterday).exists()


def test_a_new_universe_snapshot_rebuilds_its_day_only_when_it_has_features(
    built: tuple[dg.DagsterInstance, dict], yesterday: dt.date
) -> None:
    instance, resources = built
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        settled = feature_table_sensor(context)
    assert isinstance(settled, dg.SensorResult)
    for day in (yesterday, yesterday - dt.timedelta(days=5)):  # built / never built
        assert dg.materialize(
            [coin_universe], instance=instance, resources=resources, partition_key=str(day)
        ).success
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=settled.cursor) as context:
        result = feature_table_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests] == [
        (str(yesterday), str(yesterday))
    ]
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor) as context:
        assert isinstance(feature_table_sensor(context), dg.SkipReason)


def test_a_runs_day_reader_returns_what_the_lake_returns(
    built: tuple[dg.DagsterInstance, dict], tmp_path: Path, yesterday: dt.date
) -> None:
    lake, first = Lake(tmp_path), yesterday - dt.timedelta(days=2)
    reader = DayReader(lake)
    for start, symbols in [(first, ["SOLUSDT", "BTCUSDT"]), (first + dt.timedelta(days=1), None)]:
        expected = lake.read_ohlcv(
            symbols=symbols,
            start=dt.datetime.combine(start, dt.time()),
            end=dt.datetime.combine(yesterday + dt.timedelta(days=1), dt.time()),
        )
        pd.testing.assert_frame_equal(reader.candles(start, yesterday, symbols), expected)
