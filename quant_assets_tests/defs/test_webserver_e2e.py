"""End to end through the web server, as the UI uses it.

``dagster dev`` (webserver and daemon) runs against the exchange simulator with a temporary
``DAGSTER_HOME`` and data directory; from then on the test speaks only GraphQL to it, with the UI's
own operations: it lists assets, checks, schedules and sensors, turns the sensors on, previews the
daily schedule's tick and launches what it asks for ("Preview tick result" -> "Launch all"), then
waits until the instance is quiet (no run in flight, every sensor evaluated since and asking for
nothing). Two days run this way: yesterday's tick (the deployment's first day: the lookback's
candles, features and labels, the first models, predictions of its newest day), then today's. A
day's evaluation needs the next day's first hour of candles, so after today's tick the catalog
holds yesterday's universe, candles, features, labels and predictions, and the evaluation of the
day before. Every run must have succeeded, and today's tick must have cost at most 5 runs.

Kept tiny (3 symbols, the 8-day lookback that the 7-day training window needs); the time goes to
Dagster's process starts, the sensors' minimum intervals and the models' training, so every wait is
a bounded poll on a condition.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quant_assets.settings import lookback_start
from quant_assets.simulator import Simulator
from quant_assets.webui import REPO_SELECTOR, DevServer, failure_messages, runs, typed, wait_for_quiet
from quant_assets_tests.dagster_helpers import query

REPO = Path(__file__).resolve().parents[2]
# The smallest deployment that trains: models wait for a window of 7 feature days (automation.py).
LOOKBACK_DAYS = 8
TRAIN_DAYS = 7
SYMBOLS = 3
CHAIN_ASSETS = {
    "coin_universe",
    "ohlcv",
    "labels",
    "feature_table",
    "xgboost_model",
    "lightgbm_model",
    "nhits_model",
    "patchtst_model",
    "predictions",
    "model_evaluation",
}
MODELS = ("xgboost", "lightgbm", "nhits", "patchtst")
SENSORS = {
    "ohlcv_sensor",
    "feature_table_sensor",
    "labels_sensor",
    "retrain_sensor",
    "model_evaluation_sensor",
}
RUNS_PER_DAY = 5  # the daily chain's promise, whatever the universe size
CHECKS = {
    ("ohlcv", "candles_valid"),
    ("ohlcv", "complete_day"),
    ("feature_table", "no_nan_after_warmup"),
    ("feature_table", "stored_days_match_schema"),
}
QUIET_TIMEOUT_S = 1800.0  # bounds a failure only; a day takes a few sensor intervals

ASSETS_QUERY = """
query Assets {
  assetNodes {
    assetKey { path }
    assetChecksOrError {
      __typename
      ... on AssetChecks { checks { name } }
    }
  }
}
"""

REPOSITORY_QUERY = """
query Repository($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository {
      schedules { name pipelineName cronSchedule executionTimezone scheduleState { status } }
      sensors { name sensorType minIntervalSeconds sensorState { status } }
    }
    ... on PythonError { message }
  }
}
"""

START_SENSOR = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message }
  }
}
"""

TICK_TIMES = """
query ScheduleTicks($selector: ScheduleSelector!, $start: Float!) {
  scheduleOrError(scheduleSelector: $selector) {
    __typename
    ... on Schedule { potentialTickTimestamps(startTimestamp: $start, upperLimit: 1, lowerLimit: 1) }
  }
}
"""

# The UI's "Preview tick result" (ScheduleDryRunMutation with its RunRequestFragment).
SCHEDULE_DRY_RUN = """
mutation ScheduleDryRun($selectorData: ScheduleSelector!, $timestamp: Float) {
  scheduleDryRun(selectorData: $selectorData, timestamp: $timestamp) {
    __typename
    ... on DryRunInstigationTick {
      timestamp
      evaluationResult {
        runRequests {
          runConfigYaml
          tags { key value }
          runKey
          jobName
          assetSelection { path }
          assetChecks { name assetKey { path } }
        }
        skipReason
        error { message }
      }
    }
    ... on PythonError { message }
  }
}
"""

# The UI's "Launch all" after a preview.
LAUNCH_MULTIPLE_RUNS = """
mutation LaunchMultipleRuns($executionParamsList: [ExecutionParams!]!) {
  launchMultipleRuns(executionParamsList: $executionParamsList) {
    __typename
    ... on LaunchMultipleRunsResult {
      launchMultipleRunsResult {
        __typename
        ... on LaunchRunSuccess { run { id status } }
        ... on PythonError { message }
        ... on RunConfigValidationInvalid { errors { message } }
        ... on InvalidSubsetError { message }
      }
    }
    ... on PythonError { message }
  }
}
"""


@pytest.fixture
def dev_server(sim: Simulator, tmp_path: Path) -> Iterator[DevServer]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The local instance `make dev` runs on (SQLite under DAGSTER_HOME).
    shutil.copyfile(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "QT_MAX_SYMBOLS": str(SYMBOLS),
        "QT_DATA_LOOKBACK_DAYS": str(LOOKBACK_DAYS),
        # Yesterday's tick is the first: its lookback starts one day earlier than today's.
        "QT_HISTORY_START": str(lookback_start(LOOKBACK_DAYS + 1)),
        "QT_MODEL_TRAIN_DAYS": str(TRAIN_DAYS),
        # The chain, not the models' quality, is under test: the small configs train in seconds, and
        # every sensor looks again within seconds instead of each one's production interval.
        "QT_MODEL_PROFILE": "small",
        "QT_SENSOR_INTERVAL_SECONDS": "5",
    }
    with DevServer(cwd=REPO, env=env, log_path=tmp_path / "dagster_dev.log") as server:
        yield server


def _rows_per_symbol(data: Path, view: str, day: dt.date) -> dict[str, int]:
    """{symbol: rows} of a catalog view on one UTC day, read-only."""
    bounds = [dt.datetime.combine(day, dt.time()), dt.datetime.combine(day + dt.timedelta(days=1), dt.time())]
    sql = f"SELECT symbol, count(*) FROM {view} WHERE open_time >= ? AND open_time < ? GROUP BY 1"
    return dict(query(data, sql, bounds))


def _launch_tick(server: DevServer, schedule: dict[str, Any], day: dt.date) -> list[str]:
    """Preview the schedule's tick on `day` and launch what it requests, as the UI's dialog does.

    Returns the ids of the launched runs.
    """
    midnight = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
    selector = {**REPO_SELECTOR, "scheduleName": schedule["name"]}
    ticks = server.graphql(TICK_TIMES, {"selector": selector, "start": midnight})["scheduleOrError"]
    # The tick at or after the day's midnight (and the one before it, which the API adds).
    candidates = typed(ticks, "Schedule", schedule["name"])["potentialTickTimestamps"]
    on_day = [t for t in candidates if dt.datetime.fromtimestamp(t, dt.UTC).date() == day]
    assert len(on_day) == 1, candidates
    dry_run = server.graphql(SCHEDULE_DRY_RUN, {"selectorData": selector, "timestamp": on_day[0]})
    evaluation = typed(dry_run["scheduleDryRun"], "DryRunInstigationTick", "dry run")["evaluationResult"]
    assert evaluation["error"] is None, evaluation["error"]
    assert evaluation["runRequests"], f"the tick of {day} requested nothing: {evaluation['skipReason']}"
    params = [
        {
            "runConfigData": request["runConfigYaml"],
            "selector": {
                **REPO_SELECTOR,
                # A request of a schedule that targets a job names none: the UI takes the schedule's.
                "jobName": request["jobName"] or schedule["pipelineName"],
                "assetSelection": [{"path": a["path"]} for a in request["assetSelection"] or []],
                "assetCheckSelection": [
                    {"assetKey": {"path": c["assetKey"]["path"]}, "name": c["name"]}
                    for c in request["assetChecks"] or []
                ],
            },
            "mode": "default",
            "executionMetadata": {"tags": [{"key": t["key"], "value": t["value"]} for t in request["tags"]]},
        }
        for request in evaluation["runRequests"]
    ]
    launched = server.graphql(LAUNCH_MULTIPLE_RUNS, {"executionParamsList": params})["launchMultipleRuns"]
    results = typed(launched, "LaunchMultipleRunsResult", "launch")["launchMultipleRunsResult"]
    assert [r["__typename"] for r in results] == ["LaunchRunSuccess"] * len(params), results
    return [r["run"]["id"] for r in results]


def _settle(server: DevServer, since: float) -> list[dict[str, Any]]:
    """Wait for a quiet instance; return the runs created since `since`, all of which succeeded."""
    wait_for_quiet(server, since=since, timeout=QUIET_TIMEOUT_S)
    every_run = runs(server)
    failed = {
        run["runId"]: (run["jobName"], run["status"], failure_messages(server, run["runId"])[-3:])
        for run in every_run
        if run["status"] != "SUCCESS"
    }
    assert not failed, json.dumps(failed, indent=1)[:6000]
    return [run for run in every_run if (run["startTime"] or 0) >= since - 1]


@pytest.mark.timeout(3600)
def test_the_daily_chain_runs_itself_through_the_web_server(dev_server: DevServer, tmp_path: Path) -> None:
    server = dev_server
    data = tmp_path / "data"
    today = dt.datetime.now(dt.UTC).date()
    yesterday, day_before = today - dt.timedelta(days=1), today - dt.timedelta(days=2)

    # What the UI lists: assets with their checks, the schedule, the sensors.
    nodes = server.graphql(ASSETS_QUERY)["assetNodes"]
    assets = {"/".join(node["assetKey"]["path"]) for node in nodes}
    checks = {
        ("/".join(node["assetKey"]["path"]), check["name"])
        for node in nodes
        for check in typed(node["assetChecksOrError"], "AssetChecks", "checks")["checks"]
    }
    assert assets >= CHAIN_ASSETS, f"missing assets: {CHAIN_ASSETS - assets}"
    assert checks >= CHECKS, f"missing checks: {CHECKS - checks}"
    repository = typed(
        server.graphql(REPOSITORY_QUERY, {"selector": REPO_SELECTOR})["repositoryOrError"],
        "Repository",
        "repo",
    )
    schedule = next(s for s in repository["schedules"] if s["name"] == "daily_refresh")
    assert (schedule["cronSchedule"], schedule["executionTimezone"]) == ("10 0 * * *", "UTC")
    sensors = [s["name"] for s in repository["sensors"]]
    assert set(sensors) >= SENSORS, f"missing sensors: {SENSORS - set(sensors)}"

    # Turn every sensor on, as the UI's toggle does.
    for name in sensors:
        started = server.graphql(START_SENSOR, {"selector": {**REPO_SELECTOR, "sensorName": name}})
        assert typed(started["startSensor"], "Sensor", name)["sensorState"]["status"] == "RUNNING"

    # Yesterday's tick: the deployment's first day, from its lookback to its first predictions.
    first_at = time.time()
    _launch_tick(server, schedule, yesterday)
    _settle(server, first_at)
    trained = query(data, "SELECT model, count(*) FROM model_registry GROUP BY 1 ORDER BY 1")
    assert trained == sorted((m, 1) for m in MODELS), trained
    assert set(_rows_per_symbol(data, "predictions", day_before)) == set(
        s for (s,) in query(data, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [day_before])
    ), "the first day ends with predictions of its newest day"

    # Today's tick: one more day of the chain, in at most RUNS_PER_DAY runs.
    second_at = time.time()
    launched = _launch_tick(server, schedule, today)
    second_day = _settle(server, second_at)
    assert set(launched) <= {run["runId"] for run in second_day}
    # Freshness check runs evaluate checks only, and only when an outcome changes: not the chain.
    chain = [r for r in second_day if r["jobName"] != "freshness_checks_job"]
    assert len(chain) <= RUNS_PER_DAY, [
        (r["jobName"], {t["key"]: t["value"] for t in r["tags"] if not t["key"].startswith("dagster/")})
        for r in chain
    ]

    # The catalog, read-only as anyone would, holds yesterday's chain and the evaluation before it.
    universe = [
        s for (s,) in query(data, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [yesterday])
    ]
    assert len(universe) == SYMBOLS
    for view in ("ohlcv", "features", "labels"):
        rows = _rows_per_symbol(data, view, yesterday)
        assert {s: rows.get(s) for s in universe} == dict.fromkeys(universe, 288), view
    predicted = query(
        data,
        "SELECT model, count(DISTINCT symbol) FROM predictions WHERE open_time >= ? AND open_time < ? GROUP BY 1",
        [dt.datetime.combine(yesterday, dt.time()), dt.datetime.combine(today, dt.time())],
    )
    assert sorted(predicted) == sorted((m, SYMBOLS) for m in MODELS), predicted
    evaluated = query(
        data, "SELECT model, rows FROM model_evaluation WHERE day = ? ORDER BY model", [day_before]
    )
    assert sorted(m for m, _ in evaluated) == sorted(MODELS), evaluated
    assert all(rows > 0 for _, rows in evaluated), evaluated
