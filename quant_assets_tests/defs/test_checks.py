"""Freshness checks: the newest partition against the expected day, evaluated through the instance."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.definitions import defs
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import freshness_sensor
from quant_assets.defs.checks import expected_latest_day
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, resources_for


@pytest.mark.parametrize(
    ("asset", "now", "expected"),
    [
        ("ohlcv", dt.datetime(2026, 11, 27, 1, 59, tzinfo=dt.UTC), dt.date(2026, 11, 25)),  # before 02:00
        ("ohlcv", dt.datetime(2026, 11, 27, 2, 0, tzinfo=dt.UTC), dt.date(2026, 11, 26)),
        ("feature_table", dt.datetime(2026, 11, 27, 2, 30, tzinfo=dt.UTC), dt.date(2026, 11, 25)),
        ("predictions", dt.datetime(2026, 11, 27, 4, 0, tzinfo=dt.UTC), dt.date(2026, 11, 26)),
    ],
)
def test_the_expected_day_turns_at_each_asset_s_deadline(
    asset: str, now: dt.datetime, expected: dt.date
) -> None:
    assert expected_latest_day(asset, now) == expected


def evaluate_freshness(instance: dg.DagsterInstance) -> dict[str, dg.AssetCheckEvaluation]:
    """Run the freshness checks job on `instance`; each check's evaluation as recorded."""
    result = defs.resolve_job_def("freshness_checks_job").execute_in_process(instance=instance)
    assert result.success
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(a), "fresh") for a in ("ohlcv", "feature_table", "predictions")]
    )
    return {
        key.asset_key.path[-1]: record.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
        for key, record in latest.items()
    }


def freshness_tick(instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    with dg.build_sensor_context(instance_ref=instance.get_ref(), definitions=defs) as context:
        return freshness_sensor(context)


def test_ohlcv_freshness_fails_on_an_old_latest_partition_and_passes_once_yesterday_lands(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    resources = resources_for(sim, tmp_path)
    old = yesterday - dt.timedelta(days=3)
    with dg.instance_for_test() as instance:
        request = freshness_tick(instance)  # never evaluated: evaluate
        assert isinstance(request, dg.RunRequest)
        assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], old, old).success
        checks = evaluate_freshness(instance)
        assert not checks["ohlcv"].passed
        assert checks["ohlcv"].metadata["latest_partition"].value == str(old)
        behind = (expected_latest_day("ohlcv", dt.datetime.now(dt.UTC)) - old).days  # 2 before 02:00 UTC
        assert f"{behind} day(s) older than expected" in (checks["ohlcv"].description or "")
        assert not checks["feature_table"].passed  # nothing at all
        assert "no materialized partition" in (checks["feature_table"].description or "")
        assert isinstance(freshness_tick(instance), dg.SkipReason)  # outcomes unchanged: no run

        assert materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday).success
        request = freshness_tick(instance)  # ohlcv would pass now: evaluate it again
        assert isinstance(request, dg.RunRequest)
        assert request.asset_check_keys == [dg.AssetCheckKey(dg.AssetKey("ohlcv"), "fresh")]
        checks = evaluate_freshness(instance)
        assert checks["ohlcv"].passed
        assert checks["ohlcv"].metadata["latest_partition"].value == str(yesterday)
        assert isinstance(freshness_tick(instance), dg.SkipReason)


def test_predictions_freshness_fails_without_the_expected_day_and_passes_with_it(yesterday: dt.date) -> None:
    expected = expected_latest_day("predictions", dt.datetime.now(dt.UTC))
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("predictions", partition=str(expected - dt.timedelta(days=1)))
        )
        checks = evaluate_freshness(instance)
        assert not checks["predictions"].passed
        assert "1 day(s) older than expected" in (checks["predictions"].description or "")
        instance.report_runless_asset_event(dg.AssetMaterialization("predictions", partition=str(expected)))
        request = freshness_tick(instance)
        assert isinstance(request, dg.RunRequest)
        assert request.asset_check_keys == [dg.AssetCheckKey(dg.AssetKey("predictions"), "fresh")]
        assert evaluate_freshness(instance)["predictions"].passed
