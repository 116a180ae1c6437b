"""End to end through the web server, as the UI uses it.

``dagster dev`` (webserver and daemon) runs against the exchange simulator with a temporary
``DAGSTER_HOME`` and data directory; from then on the test speaks only GraphQL to it, with the UI's
own operations: it lists assets, checks, schedules and sensors, turns the sensors on, previews the
daily schedule's tick for today and launches what it asks for ("Preview tick result" -> "Launch
all"), then waits until the instance is quiet. Every run must have succeeded, and the catalog, read
with DuckDB in read-only mode, must hold yesterday's universe, candles, labels, features, and, once
the model assets are defined, predictions and their evaluation.

Kept tiny (3 symbols, a few days of lookback); the time goes to Dagster's process starts and to the
sensors' minimum intervals, so every wait is a bounded poll on a condition.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quant_assets.settings import lookback_start
from quant_assets.simulator import Simulator
from quant_assets.webui import REPO_SELECTOR, DevServer, failure_messages, runs, typed, wait_for_quiet
from quant_assets_tests.dagster_helpers import query

REPO = Path(__file__).resolve().parents[2]
LOOKBACK_DAYS = 4
SYMBOLS = 3
# The chain's assets and checks (predictions and model_evaluation asserted once defined).
CHAIN_ASSETS = {
    "coin_universe",
    "ohlcv",
    "labels",
    "feature_table",
    "xgboost_model",
    "lightgbm_model",
    "nhits_model",
    "patchtst_model",
}
CHECKS = {
    ("ohlcv", "candles_valid"),
    ("ohlcv", "complete_day"),
    ("feature_table", "no_nan_after_warmup"),
    ("feature_table", "stored_days_match_schema"),
}
QUIET_TIMEOUT_S = 1500.0  # bounds a failure only; the chain takes a few sensor intervals

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
        "QT_HISTORY_START": str(lookback_start(LOOKBACK_DAYS)),
        "QT_MODEL_TRAIN_DAYS": str(LOOKBACK_DAYS),
    }
    with DevServer(cwd=REPO, env=env, log_path=tmp_path / "dagster_dev.log") as server:
        yield server


def _rows_per_symbol(data: Path, view: str, day: dt.date) -> dict[str, int]:
    """{symbol: rows} of a catalog view on one UTC day, read-only."""
    bounds = [dt.datetime.combine(day, dt.time()), dt.datetime.combine(day + dt.timedelta(days=1), dt.time())]
    sql = f"SELECT symbol, count(*) FROM {view} WHERE open_time >= ? AND open_time < ? GROUP BY 1"
    return dict(query(data, sql, bounds))


@pytest.mark.timeout(2400)
def test_the_daily_chain_runs_itself_through_the_web_server(dev_server: DevServer, tmp_path: Path) -> None:
    server = dev_server

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
    serving_defined = {"predictions", "model_evaluation"} <= assets
    repository = typed(
        server.graphql(REPOSITORY_QUERY, {"selector": REPO_SELECTOR})["repositoryOrError"],
        "Repository",
        "repo",
    )
    schedules = {s["name"]: s for s in repository["schedules"]}
    sensors = [s["name"] for s in repository["sensors"]]
    assert "daily_refresh" in schedules
    assert schedules["daily_refresh"]["executionTimezone"] == "UTC"
    assert {"ohlcv_sensor", "feature_table_sensor", "labels_sensor"} <= set(sensors)

    # Turn every sensor on, as the UI's toggle does.
    for name in sensors:
        started = server.graphql(START_SENSOR, {"selector": {**REPO_SELECTOR, "sensorName": name}})
        assert typed(started["startSensor"], "Sensor", name)["sensorState"]["status"] == "RUNNING"

    # Preview the schedule's tick for today and launch what it requests.
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    midnight = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC).timestamp()
    schedule = {**REPO_SELECTOR, "scheduleName": "daily_refresh"}
    ticks = server.graphql(TICK_TIMES, {"selector": schedule, "start": midnight})["scheduleOrError"]
    # The tick at or after today's midnight (and the one before it, which the API adds).
    candidates = typed(ticks, "Schedule", "daily_refresh")["potentialTickTimestamps"]
    todays = [t for t in candidates if dt.datetime.fromtimestamp(t, dt.UTC).date() == today]
    assert len(todays) == 1, candidates
    tick_time = todays[0]
    dry_run = server.graphql(SCHEDULE_DRY_RUN, {"selectorData": schedule, "timestamp": tick_time})
    evaluation = typed(dry_run["scheduleDryRun"], "DryRunInstigationTick", "dry run")["evaluationResult"]
    assert evaluation["error"] is None, evaluation["error"]
    requests_ = evaluation["runRequests"]
    assert requests_, f"today's tick requested nothing: {evaluation['skipReason']}"
    params = [
        {
            "runConfigData": request["runConfigYaml"],
            "selector": {
                **REPO_SELECTOR,
                # A request of a schedule that targets a job names none: the UI takes the schedule's.
                "jobName": request["jobName"] or schedules["daily_refresh"]["pipelineName"],
                "assetSelection": [{"path": a["path"]} for a in request["assetSelection"] or []],
                "assetCheckSelection": [
                    {"assetKey": {"path": c["assetKey"]["path"]}, "name": c["name"]}
                    for c in request["assetChecks"] or []
                ],
            },
            "mode": "default",
            "executionMetadata": {"tags": [{"key": t["key"], "value": t["value"]} for t in request["tags"]]},
        }
        for request in requests_
    ]
    launched_at = time.time()
    launched = server.graphql(LAUNCH_MULTIPLE_RUNS, {"executionParamsList": params})["launchMultipleRuns"]
    results = typed(launched, "LaunchMultipleRunsResult", "launch")["launchMultipleRunsResult"]
    assert [r["__typename"] for r in results] == ["LaunchRunSuccess"] * len(params), results

    # The daemon and the sensors take it from there; wait until nothing is left to do.
    wait_for_quiet(server, since=launched_at, timeout=QUIET_TIMEOUT_S)
    every_run = runs(server)
    failed = {
        run["runId"]: (run["jobName"], run["status"], failure_messages(server, run["runId"])[-3:])
        for run in every_run
        if run["status"] != "SUCCESS"
    }
    assert not failed, json.dumps(failed, indent=1)[:6000]
    jobs = {run["jobName"] for run in every_run}
    assert {"coin_universe_job", "ohlcv_job", "labels_job", "feature_table_job"} <= jobs, jobs

    # The catalog, read-only as anyone would, holds yesterday's chain.
    data = tmp_path / "data"
    universe = [
        s for (s,) in query(data, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [yesterday])
    ]
    assert len(universe) == SYMBOLS
    for view in ("ohlcv", "features", "labels"):
        rows = _rows_per_symbol(data, view, yesterday)
        assert {s: rows.get(s) for s in universe} == dict.fromkeys(universe, 288), view
    if serving_defined:
        assert set(universe) <= set(_rows_per_symbol(data, "predictions", yesterday))
        evaluated = query(data, "SELECT count(*) FROM model_evaluation")
        assert evaluated[0][0] > 0
