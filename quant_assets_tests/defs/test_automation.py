"""Schedule and sensors: what they request, evaluated on a real temporary instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from quant_assets.definitions import defs
from quant_assets.defs import automation
from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import (
    RANGE_END,
    RANGE_START,
    daily_refresh,
    day_range_requests,
    ohlcv_rectangles,
    ohlcv_sensor,
    retrain_sensor,
    retrain_triggers,
)
from quant_assets.defs.ranges import day_range_tags
from quant_assets.defs.resources import LakeResource
from quant_assets.features import feature_schema
from quant_assets.models.base import MODEL_NAMES
from quant_assets.models.registry import ModelVersion, write_version
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, resources_for
from quant_assets_tests.feature_helpers import write_universe

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


# ------------------------------------------------------------------------------------ retraining
CURRENT = "c" * 64


def version(model: str, through: dt.date, *, schema: str = CURRENT, promoted: bool = True) -> ModelVersion:
    """A registry row of `model` trained on days up to `through` (its train_end: 23:00 of that day)."""
    end = dt.datetime.combine(through, dt.time(23))
    return ModelVersion(
        model=model,
        version=f"{model}-{through:%Y%m%d}T230000.000000Z",
        trained_at=end + dt.timedelta(hours=2),
        train_start=end - dt.timedelta(days=10),
        train_end=end,
        feature_schema_hash=schema,
        features=("ret_1",),
        metrics={},
        artifact_path=Path("unused"),
        promoted=promoted,
    )


def hashes(first: dt.date, n: int, schema: str = CURRENT) -> dict[dt.date, str | None]:
    return dict.fromkeys(days(first, n), schema)


def evaluation(model: str, ver: str, ics: list[float], zero: float, last: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": model,
            "version": ver,
            "day": [str(d) for d in days(D, len(ics))],
            "ic": ics,
            "baseline_zero_ic": zero,
            "baseline_last_ic": last,
        }
    )


NO_EVALUATION = pd.DataFrame(columns=["model", "version", "day", "ic"])


def all_trained(through: dt.date, **overrides: ModelVersion) -> list[ModelVersion]:
    return [overrides.get(m, version(m, through)) for m in MODEL_NAMES]


def test_no_model_and_the_window_of_features_stored_retrains_every_model() -> None:
    triggers = retrain_triggers([], hashes(D, 5), CURRENT, NO_EVALUATION, every_days=7, window_days=5)
    assert [(t.model, t.key) for t in triggers] == [
        (m, f"initial:{D + dt.timedelta(days=4)}") for m in MODEL_NAMES
    ]
    assert triggers[0].reason.startswith("no xgboost model yet; the 5 feature days up to")


def test_no_model_waits_for_the_whole_window_of_features() -> None:
    holed = hashes(D, 5)
    del holed[D + dt.timedelta(days=2)]
    assert retrain_triggers([], holed, CURRENT, NO_EVALUATION, every_days=7, window_days=5) == []
    assert retrain_triggers([], hashes(D, 4), CURRENT, NO_EVALUATION, every_days=7, window_days=5) == []


@pytest.mark.parametrize(("new_days", "due"), [(6, False), (7, True)])
def test_retrains_once_qt_retrain_every_days_new_feature_days_landed(new_days: int, due: bool) -> None:
    versions = all_trained(D)
    triggers = retrain_triggers(
        versions,
        hashes(D - dt.timedelta(days=9), 10 + new_days),
        CURRENT,
        NO_EVALUATION,
        every_days=7,
        window_days=5,
    )
    assert [t.model for t in triggers] == (list(MODEL_NAMES) if due else [])
    if due:
        assert triggers[0].reason.startswith(f"7 new feature_table days since xgboost xgboost-{D:%Y%m%d}")


def test_a_model_trained_under_another_schema_hash_is_retrained() -> None:
    versions = all_trained(D, lightgbm=version("lightgbm", D, schema="o" * 64))
    triggers = retrain_triggers(
        versions, hashes(D - dt.timedelta(days=9), 11), CURRENT, NO_EVALUATION, every_days=7, window_days=5
    )
    assert [(t.model, t.key.split(":")[0]) for t in triggers] == [("lightgbm", "schema")]
    assert "trained under oooooooooooo, the registry's hash is cccccccccccc" in triggers[0].reason


@pytest.mark.parametrize(
    ("ics", "zero", "last", "due"),
    [
        ([0.01] * 7, 0.02, 0.03, True),  # below both baselines
        ([0.01] * 7, 0.0, 0.03, False),  # beats the zero-return baseline
        ([0.01] * 6, 0.02, 0.03, False),  # fewer than 7 evaluated days: no verdict yet
    ],
)
def test_a_promoted_model_whose_rolling_ic_is_below_both_baselines_is_retrained(
    ics: list[float], zero: float, last: float, due: bool
) -> None:
    versions = all_trained(D)
    scores = evaluation("xgboost", f"xgboost-{D:%Y%m%d}T230000.000000Z", ics, zero, last)
    triggers = retrain_triggers(
        versions, hashes(D - dt.timedelta(days=9), 12), CURRENT, scores, every_days=7, window_days=5
    )
    assert [t.model for t in triggers] == (["xgboost"] if due else [])
    if due:
        assert "mean IC 0.0100 over its last 7 evaluated days is below both baselines" in triggers[0].reason


@pytest.fixture
def feature_lake(sim: Simulator, tmp_path: Path, yesterday: dt.date, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three days of real features for two symbols (simulator -> ohlcv -> feature_table)."""
    monkeypatch.setattr(automation, "MIN_TRAIN_WINDOW_DAYS", 3)  # a tiny deployment, on purpose
    monkeypatch.setenv("QT_MODEL_TRAIN_DAYS", "3")
    monkeypatch.setenv("QT_DATA_LOOKBACK_DAYS", "3")
    monkeypatch.delenv("QT_RETRAIN_EVERY_DAYS", raising=False)
    first = yesterday - dt.timedelta(days=2)
    write_universe(tmp_path, first, ["BTCUSDT", "ETHUSDT"])
    resources = resources_for(sim, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    assert materialize_range(ohlcv, instance, resources, ["BTCUSDT", "ETHUSDT"], first, yesterday).success
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, tags=day_range_tags(first, yesterday)
    ).success
    return tmp_path


def retrain_tick(instance: dg.DagsterInstance, data_dir: Path, cursor: str | None = None) -> Any:
    with dg.build_sensor_context(
        instance_ref=instance.get_ref(),
        definitions=defs,
        resources={"lake": LakeResource(data_dir=str(data_dir))},
        cursor=cursor,
    ) as context:
        return retrain_sensor(context)


def test_retrain_sensor_trains_a_fresh_deployment_and_predicts_its_newest_day_once(
    feature_lake: Path, yesterday: dt.date
) -> None:
    with dg.instance_for_test() as instance:
        result = retrain_tick(instance, feature_lake)
        assert isinstance(result, dg.SensorResult)
        (request,) = result.run_requests
        assert set(request.asset_selection or []) == {
            *(dg.AssetKey(f"{m}_model") for m in MODEL_NAMES),
            dg.AssetKey("predictions"),
        }
        assert request.partition_key == str(yesterday)  # the newest features day gets predictions ...
        before = str(yesterday - dt.timedelta(days=1))  # ... from models trained through the day before
        assert request.run_config["ops"]["xgboost_model"]["config"] == {"end_day": before}
        assert request.tags["quant_assets/reason"].startswith(
            "no xgboost model yet; the 3 feature days up to"
        )
        assert request.tags["quant_assets/retrain_nhits"] == f"initial:{yesterday}"

        # The same state again: nothing new, also after a restart that keeps only the cursor ...
        assert isinstance(retrain_tick(instance, feature_lake, result.cursor), dg.SkipReason)
        # ... and, without the cursor, when a run already carries the trigger (however launched).
        instance.add_run(dg.DagsterRun(job_name="daily_models_job", tags=dict(request.tags)))
        skipped = retrain_tick(instance, feature_lake)
        assert isinstance(skipped, dg.SkipReason)
        assert "no model is due" in str(skipped.skip_message)


def test_retrain_sensor_waits_while_features_are_being_built(feature_lake: Path) -> None:
    with dg.instance_for_test() as instance:
        instance.add_run(dg.DagsterRun(job_name="feature_table_job", status=dg.DagsterRunStatus.STARTED))
        result = retrain_tick(instance, feature_lake)
        assert isinstance(result, dg.SkipReason)
        assert "1 runs upstream of the models in flight" in str(result.skip_message)


def test_retrain_sensor_retrains_a_model_of_another_schema_without_predicting_a_predicted_day(
    feature_lake: Path, yesterday: dt.date
) -> None:
    store = Lake(feature_lake)
    current = feature_schema().hash
    for model in MODEL_NAMES:
        schema = "0" * 64 if model == "patchtst" else current
        write_version(store, version(model, yesterday, schema=schema))
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("predictions", partition=str(yesterday)))
        result = retrain_tick(instance, feature_lake)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests
    assert request.asset_selection == [dg.AssetKey("patchtst_model")]
    assert request.partition_key is None
    assert request.tags["quant_assets/reason"].startswith("feature schema changed: patchtst")


def test_a_deployment_with_fewer_days_than_a_split_needs_never_starts_training(
    feature_lake: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(automation, "MIN_TRAIN_WINDOW_DAYS", 7)
    with dg.instance_for_test() as instance:
        assert isinstance(retrain_tick(instance, feature_lake), dg.SkipReason)


@pytest.mark.parametrize("asset", ["coin_universe", "ohlcv"])
def test_every_asset_calling_binance_shares_the_binance_pool(asset: str) -> None:
    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey(asset)).pools == {"binance"}
