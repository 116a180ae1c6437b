"""The daily chain on a real temporary instance: every tick evaluated, every request run, runs counted.

Each request is executed in process with its own tags and asset selection (what the daemon would
launch), against the simulator over HTTP; then every sensor must be quiet.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from quant_assets.definitions import defs
from quant_assets.defs.automation import (
    daily_refresh,
    feature_table_sensor,
    labels_sensor,
    model_evaluation_sensor,
    ohlcv_sensor,
    retrain_sensor,
)
from quant_assets.defs.ranges import RANGE_END, RANGE_START, day_range_tags
from quant_assets.features import feature_schema
from quant_assets.models.base import MODEL_NAMES
from quant_assets.models.registry import write_version
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import resources_for
from quant_assets_tests.defs.test_automation import version

SENSORS = (ohlcv_sensor, feature_table_sensor, labels_sensor, retrain_sensor, model_evaluation_sensor)


def tick(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    resources: dict[str, Any],
    cursors: dict[str, str | None],
) -> list[dg.RunRequest]:
    with dg.build_sensor_context(
        instance_ref=instance.get_ref(),
        definitions=defs,
        resources=resources,
        cursor=cursors.get(sensor.name),
    ) as context:
        result = sensor(context)
    if isinstance(result, dg.SensorResult):
        cursors[sensor.name] = result.cursor or cursors.get(sensor.name)
        default = sensor.job_name if len(sensor.targets) == 1 else None
        return [
            r if r.job_name else r.with_replaced_attrs(job_name=default) for r in result.run_requests or []
        ]
    return []


def execute(request: dg.RunRequest, instance: dg.DagsterInstance, resources: dict[str, Any]) -> None:
    """Run `request` in process as the daemon would launch it: its job's assets or its selection."""
    job = defs.resolve_job_def(request.job_name or "coin_universe_job")
    result = job.execute_in_process(
        instance=instance,
        resources=resources,
        tags=dict(request.tags),
        partition_key=request.partition_key,
        asset_selection=list(request.asset_selection) if request.asset_selection else None,
        run_config=request.run_config or None,
    )
    assert result.success, request


@pytest.fixture
def chain_env(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for name, value in {
        "QT_MAX_SYMBOLS": "3",
        "QT_DATA_LOOKBACK_DAYS": "2",
        "QT_DATA_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    return resources_for(sim, tmp_path, QT_MAX_SYMBOLS="3", QT_DATA_LOOKBACK_DAYS="2")


def test_a_fresh_deployment_s_day_takes_four_runs_and_ends_quiet(
    chain_env: dict[str, Any], yesterday: dt.date
) -> None:
    with dg.instance_for_test() as instance:
        now = dt.datetime.combine(yesterday + dt.timedelta(days=1), dt.time(0, 10), tzinfo=dt.UTC)
        context = dg.build_schedule_context(
            instance=instance, scheduled_execution_time=now, repository_def=defs.get_repository_def()
        )
        scheduled = daily_refresh(context)
        assert isinstance(scheduled, dg.RunRequest)
        execute(scheduled.with_replaced_attrs(job_name="coin_universe_job"), instance, chain_env)
        cursors: dict[str, str | None] = {}
        launched = [scheduled]
        for _ in range(4):  # rounds of ticks until the chain is quiet
            new = [r for sensor in SENSORS for r in tick(sensor, instance, chain_env, cursors)]
            if not new:
                break
            for request in new:
                execute(request, instance, chain_env)
            launched += new
        else:
            pytest.fail("the chain never went quiet")
        jobs = [r.job_name or "coin_universe_job" for r in launched]
        assert jobs == ["coin_universe_job", "ohlcv_job", "feature_table_job", "labels_job"]
        assert len(instance.get_runs()) == 4  # 3 symbols x 2 days: universe, candles, features, labels
        assert len(instance.get_materialized_partitions(dg.AssetKey("ohlcv"))) == 6
        assert instance.get_materialized_partitions(dg.AssetKey("feature_table")) == {
            str(yesterday - dt.timedelta(days=1)),
            str(yesterday),
        }


def test_once_a_model_predates_the_day_the_labels_run_also_retrains_and_predicts(
    chain_env: dict[str, Any], yesterday: dt.date, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candles of d land: ONE run rebuilds labels d-1..d, retrains what is due through d-1, predicts."""
    monkeypatch.setenv("QT_RETRAIN_EVERY_DAYS", "1")
    with dg.instance_for_test() as instance:
        scheduled = dg.RunRequest(partition_key=str(yesterday), job_name="coin_universe_job")
        execute(scheduled, instance, chain_env)
        cursors: dict[str, str | None] = {}
        # A model of each kind, trained (registry row and materialization) days before the candles.
        for model in MODEL_NAMES:
            write_version(
                Lake(tmp_path), version(model, yesterday - dt.timedelta(days=5), schema=feature_schema().hash)
            )
            instance.report_runless_asset_event(dg.AssetMaterialization(f"{model}_model"))
        for request in tick(ohlcv_sensor, instance, chain_env, cursors):
            execute(request, instance, chain_env)
        with dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=chain_env
        ) as context:
            waiting = labels_sensor(context)  # candles landed, the day's features not yet
        assert isinstance(waiting, dg.SkipReason)
        assert f"waiting for the features of {yesterday}" in str(waiting.skip_message)
        for request in tick(feature_table_sensor, instance, chain_env, cursors):
            execute(request, instance, chain_env)
        (request,) = tick(labels_sensor, instance, chain_env, cursors)
    assert request.job_name == "daily_models_job"
    assert set(request.asset_selection or []) == {
        dg.AssetKey("labels"),
        dg.AssetKey("predictions"),
        *(dg.AssetKey(f"{m}_model") for m in MODEL_NAMES),
    }
    first = yesterday - dt.timedelta(days=1)
    assert (
        request.tags["dagster/asset_partition_range_start"],
        request.tags["dagster/asset_partition_range_end"],
    ) == (str(first), str(yesterday))
    assert request.run_config["ops"]["lightgbm_model"]["config"] == {"end_day": str(first)}
    assert "2 new feature_table days since xgboost" in request.tags["quant_assets/reason"]


def test_a_day_is_scored_once_its_labels_know_the_last_hour_and_again_when_they_change(
    chain_env: dict[str, Any], yesterday: dt.date
) -> None:
    before = yesterday - dt.timedelta(days=1)
    with dg.instance_for_test() as instance:
        execute(
            dg.RunRequest(partition_key=str(yesterday), job_name="coin_universe_job"), instance, chain_env
        )
        cursors: dict[str, str | None] = {}
        for request in tick(ohlcv_sensor, instance, chain_env, cursors):
            execute(request, instance, chain_env)
        labels_run = dg.RunRequest(job_name="labels_job", tags=day_range_tags(before, yesterday))
        execute(labels_run, instance, chain_env)  # labels d-1 complete (d's candles are stored), d not
        for day in (before, yesterday):  # as if the models had predicted both days
            instance.report_runless_asset_event(dg.AssetMaterialization("predictions", partition=str(day)))

        (request,) = tick(model_evaluation_sensor, instance, chain_env, cursors)
        assert request.asset_selection == [dg.AssetKey("model_evaluation")]
        assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (str(before), str(before))

        instance.report_runless_asset_event(
            dg.AssetMaterialization("model_evaluation", partition=str(before))
        )
        assert tick(model_evaluation_sensor, instance, chain_env, cursors) == []  # scored, labels unchanged
        execute(labels_run, instance, chain_env)  # labels d-1 rewritten: score it again
        (again,) = tick(model_evaluation_sensor, instance, chain_env, cursors)
        assert (again.tags[RANGE_START], again.run_key != request.run_key) == (str(before), True)
