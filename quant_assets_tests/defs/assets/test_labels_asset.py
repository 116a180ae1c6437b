"""``labels``: an asset of its own, rebuilt as a recorded materialization when the next day lands."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from quant_assets.definitions import defs
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import RANGE_END, RANGE_START, labels_sensor
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for
from quant_assets_tests.feature_helpers import latest_metadata, materializations

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
COUNTS = (
    "SELECT count(*), count(fwd_ret_1), count(fwd_ret_12), count(fwd_ret_48) FROM labels WHERE symbol = ?"
)


def test_labels_are_null_only_where_the_future_is_not_stored(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    assert materialize_range(ohlcv, instance, resources, SYMBOLS, yesterday, yesterday).success
    assert dg.materialize(
        [labels], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    assert query(tmp_path, COUNTS, ["BTCUSDT"]) == [(288, 287, 276, 240)]  # no later day is stored
    metadata = latest_metadata(instance, "labels", yesterday)
    assert (metadata["next_day_candles"], metadata["future_known"]) == (0, False)
    feature_like = [r[0] for r in query(tmp_path, "SELECT column_name FROM (DESCRIBE labels)")]
    assert feature_like == ["symbol", "open_time", "fwd_ret_1", "fwd_ret_12", "fwd_ret_48"]


def test_when_the_next_day_lands_the_sensor_rebuilds_the_day_before_as_a_materialization(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    before = yesterday - dt.timedelta(days=1)
    resources = resources_for(sim, tmp_path)
    with dg.instance_for_test() as instance:
        assert materialize_range(ohlcv, instance, resources, SYMBOLS, before, before).success
        with dg.build_sensor_context(instance=instance) as context:
            first = labels_sensor(context)
        assert isinstance(first, dg.SensorResult)
        assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in first.run_requests] == [
            (str(before), str(before))
        ]
        assert dg.materialize(
            [labels], instance=instance, resources=resources, tags=first.run_requests[0].tags
        ).success
        assert query(tmp_path, COUNTS, ["ETHUSDT"]) == [(288, 287, 276, 240)]

        assert materialize_range(
            ohlcv, instance, resources, SYMBOLS, yesterday, yesterday
        ).success  # day d lands
        with dg.build_sensor_context(instance=instance, cursor=first.cursor) as context:
            second = labels_sensor(context)
        assert isinstance(second, dg.SensorResult)
        # d - 1 (its future arrived) and d, in one run.
        assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in second.run_requests] == [
            (str(before), str(yesterday))
        ]
        assert dg.materialize(
            [labels], instance=instance, resources=resources, tags=second.run_requests[0].tags
        ).success

        assert query(
            tmp_path, f"{COUNTS} AND open_time < ?", ["ETHUSDT", dt.datetime.combine(yesterday, dt.time())]
        ) == [(288, 288, 288, 288)]
        assert materializations(instance, "labels", before) == 2  # the rewrite is on record
        assert latest_metadata(instance, "labels", before)["next_day_candles"] == 2 * 288
        with dg.build_sensor_context(instance=instance, cursor=second.cursor) as context:
            assert isinstance(labels_sensor(context), dg.SkipReason)


def test_labels_have_the_lineage_they_really_have() -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("labels")).parent_keys == {dg.AssetKey("ohlcv")}
    assert graph.get(dg.AssetKey("feature_table")).parent_keys == {
        dg.AssetKey("ohlcv"),
        dg.AssetKey("coin_universe"),
        dg.AssetKey("coin_market"),  # of the day before: mcap_rank and turnover
    }
    assert dg.AssetKey("labels") not in graph.get(dg.AssetKey("feature_table")).child_keys


def test_the_labels_sensor_waits_while_any_ohlcv_run_is_in_flight() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_run(
        dg.DagsterRun(
            job_name="__ASSET_JOB",  # what a UI or CLI materialization runs as
            status=dg.DagsterRunStatus.STARTED,
            tags={RANGE_START: "2026-11-20|BTCUSDT", RANGE_END: "2026-11-21|ETHUSDT"},
        )
    )
    with dg.build_sensor_context(instance=instance) as context:
        result = labels_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "1 ohlcv runs in flight" in str(result.skip_message)
