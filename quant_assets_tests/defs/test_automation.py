"""Schedule and sensors: what they request, evaluated on a real temporary instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from quant_assets.definitions import defs
from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import (
    RANGE_END,
    RANGE_START,
    daily_refresh,
    day_range_requests,
    ohlcv_rectangles,
    ohlcv_sensor,
)
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import resources_for

D = dt.date(2026, 11, 20)


def days(first: dt.date, n: int) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range(n)]


def test_new_symbols_history_and_the_daily_refresh_are_two_rectangles() -> None:
    order = ["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT"]
    missing = [(s, D) for s in order[:2]]  # old symbols: only the new day is missing
    missing += [(s, d) for s in order[2:] for d in days(D - dt.timedelta(days=89), 90)]  # new ones: all
    assert ohlcv_rectangles(missing, order) == [
        (D - dt.timedelta(days=89), D, ["CCCUSDT", "DDDUSDT"]),
        (D, D, ["AAAUSDT", "BBBUSDT"]),
    ]


def test_rectangles_split_where_symbols_are_not_adjacent() -> None:
    order = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    assert ohlcv_rectangles([("AAAUSDT", D), ("CCCUSDT", D)], order) == [
        (D, D, ["AAAUSDT"]),
        (D, D, ["CCCUSDT"]),
    ]


def test_every_missing_pair_is_covered_by_exactly_the_rectangles() -> None:
    order = [f"S{i:02d}USDT" for i in range(12)]
    missing = {(s, d) for i, s in enumerate(order) for d in days(D, 1 + i % 3)}
    covered = {
        (s, first + dt.timedelta(days=k))
        for first, last, block in ohlcv_rectangles(missing, order)
        for s in block
        for k in range((last - first).days + 1)
    }
    assert covered == missing


def test_daily_refresh_snapshots_yesterday() -> None:
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 27, 0, 10, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
        request = daily_refresh(context)
    assert request.partition_key == "2026-11-26"


def test_ohlcv_sensor_requests_few_runs_for_a_new_universe(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    resources = resources_for(sim, tmp_path, QT_MAX_SYMBOLS="6", QT_DATA_LOOKBACK_DAYS="5")
    with dg.instance_for_test() as instance:
        dg.materialize([coin_universe], instance=instance, resources=resources, partition_key=str(yesterday))
        symbols = instance.get_dynamic_partitions("symbol")
        assert len(symbols) == 6
        # `with`: the context opens its own instance from the ref and must close it again.
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=resources
        ) as context:
            result = ohlcv_sensor(context)
        assert isinstance(result, dg.SensorResult)
        assert len(result.run_requests) == 1  # 6 symbols x 5 days: one run, not 30
        request = result.run_requests[0]
        first = yesterday - dt.timedelta(days=4)
        assert request.tags[RANGE_START] == f"{first}|{symbols[0]}"
        assert request.tags[RANGE_END] == f"{yesterday}|{symbols[-1]}"

        # That run happens (here: in process), the cursor moves on, and a second tick has nothing to do.
        run = dg.materialize([ohlcv], instance=instance, resources=resources, tags=dict(request.tags))
        assert run.success
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=resources, cursor=result.cursor
        ) as context:
            assert isinstance(ohlcv_sensor(context), dg.SkipReason)


def test_feature_days_become_one_run_per_range_with_keys_of_their_own() -> None:
    wanted = [*days(D, 3), D + dt.timedelta(days=5)]  # a hole splits the ranges
    requests = day_range_requests(wanted, key="feature_table-schema-abc", reason="test")
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests] == [
        (str(D), str(D + dt.timedelta(days=2))),
        (str(D + dt.timedelta(days=5)), str(D + dt.timedelta(days=5))),
    ]
    assert [r.run_key for r in requests] == [
        f"feature_table-schema-abc-{D}-{D + dt.timedelta(days=2)}",
        f"feature_table-schema-abc-{D + dt.timedelta(days=5)}-{D + dt.timedelta(days=5)}",
    ]
