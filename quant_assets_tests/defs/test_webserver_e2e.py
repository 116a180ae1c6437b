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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quant_assets.settings import lookback_start
from quant_assets.simulator import Simulator
from quant_assets.webui import LOCATION, REPOSITORY, DevServer, WebUIError, poll
from quant_assets_tests.dagster_helpers import query

REPO = Path(__file__).resolve().parents[2]
LOOKBACK_DAYS = 4
SYMBOLS = 3
# Assets and checks the daily chain is made of today (the model assets, predictions and
# model_evaluation are asserted when the definitions have them: MODEL_CHAIN).
CHAIN_ASSETS = {"coin_universe", "ohlcv", "labels", "feature_table"}
MODEL_CHAIN = {
    "xgboost_model",
    "lightgbm_model",
    "nhits_model",
    "patchtst_model",
    "predictions",
    "model_evaluation",
}
CHECKS = {
    ("ohlcv", "candles_valid"),
    ("ohlcv", "complete_day"),
    ("feature_table", "no_nan_after_warmup"),
    ("feature_table", "stored_days_match_schema"),
}
IN_FLIGHT = ("QUEUED", "NOT_STARTED", "MANAGED", "STARTING", "STARTED", "CANCELING")
QUIET_TIMEOUT_S = 1500.0  # bounds a failure only; the chain takes a few sensor intervals

REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

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

RUNS_QUERY = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results {
        runId
        jobName
        status
        startTime
        endTime
        tags { key value }
      }
    }
    ... on PythonError { message }
  }
}
"""

SENSOR_TICKS = """
query SensorTicks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      name
      sensorState {
        status
        ticks(limit: 1) { status timestamp endTimestamp runIds skipReason error { message } }
      }
    }
  }
}
"""

BACKFILLS_QUERY = """
query Backfills {
  partitionBackfillsOrError(status: REQUESTED) {
    __typename
    ... on PartitionBackfills { results { id } }
  }
}
"""

RUN_ERRORS = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message level stepKey }
      }
    }
  }
}
"""


@pytest.fixture
def dev_server(sim: Simulator, tmp_path: Path) -> Iterator[DevServer]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    # As `make dev`'s local instance: runs of one pool take turns, no telemetry.
    (home / "dagster.yaml").write_text(
        "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"
    )
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


def _typed(payload: dict[str, Any], typename: str, what: str) -> dict[str, Any]:
    if payload.get("__typename") != typename:
        raise AssertionError(f"{what}: expected {typename}, got {payload}")
    return payload


def _runs(server: DevServer, statuses: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    variables = {"filter": {"statuses": list(statuses)} if statuses else {}}
    return _typed(server.graphql(RUNS_QUERY, variables)["runsOrError"], "Runs", "runs")["results"]


def _latest_ticks(server: DevServer, sensors: list[str]) -> dict[str, dict[str, Any] | None]:
    latest = {}
    for name in sensors:
        sensor = server.graphql(SENSOR_TICKS, {"selector": {**REPO_SELECTOR, "sensorName": name}})
        ticks = _typed(sensor["sensorOrError"], "Sensor", name)["sensorState"]["ticks"]
        latest[name] = ticks[0] if ticks else None
    return latest


def _quiet(server: DevServer, sensors: list[str], since: float) -> bool:
    """No run or backfill in flight, and every sensor has ticked since the last run ended and asked
    for nothing. A failed sensor tick fails at once, naming its error."""
    if _runs(server, IN_FLIGHT):
        return False
    backfills = server.graphql(BACKFILLS_QUERY)["partitionBackfillsOrError"]
    if _typed(backfills, "PartitionBackfills", "backfills")["results"]:
        return False
    last_end = max([since, *(run["endTime"] or 0 for run in _runs(server))])
    for name, tick in _latest_ticks(server, sensors).items():
        if tick is not None and tick["status"] == "FAILURE":
            raise AssertionError(f"sensor {name} failed: {tick['error']}\n{server.log_tail()}")
        if tick is None or tick["status"] == "STARTED" or tick["timestamp"] <= last_end or tick["runIds"]:
            return False
    return True


def _failure_messages(server: DevServer, run_id: str) -> list[str]:
    logs = _typed(server.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"], "EventConnection", run_id)
    return [e["message"] for e in logs["events"] if e.get("level") in {"ERROR", "CRITICAL"}]


@pytest.mark.timeout(2400)
def test_the_daily_chain_runs_itself_through_the_web_server(dev_server: DevServer, tmp_path: Path) -> None:
    server = dev_server

    # What the UI lists: assets with their checks, the schedule, the sensors.
    nodes = server.graphql(ASSETS_QUERY)["assetNodes"]
    assets = {"/".join(node["assetKey"]["path"]) for node in nodes}
    checks = {
        ("/".join(node["assetKey"]["path"]), check["name"])
        for node in nodes
        for check in _typed(node["assetChecksOrError"], "AssetChecks", "checks")["checks"]
    }
    assert assets >= CHAIN_ASSETS, f"missing assets: {CHAIN_ASSETS - assets}"
    assert checks >= CHECKS, f"missing checks: {CHECKS - checks}"
    models_defined = bool(MODEL_CHAIN & assets)
    if models_defined:
        assert assets >= MODEL_CHAIN, f"the model chain is incomplete: {MODEL_CHAIN - assets} missing"
    repository = _typed(
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
        assert _typed(started["startSensor"], "Sensor", name)["sensorState"]["status"] == "RUNNING"

    # Preview the schedule's tick for today and launch what it requests.
    today = dt.datetime.now(dt.UTC).date()
    yesterday = today - dt.timedelta(days=1)
    midnight = dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC).timestamp()
    schedule = {**REPO_SELECTOR, "scheduleName": "daily_refresh"}
    ticks = server.graphql(TICK_TIMES, {"selector": schedule, "start": midnight})["scheduleOrError"]
    # The tick at or after today's midnight (and the one before it, which the API adds).
    candidates = _typed(ticks, "Schedule", "daily_refresh")["potentialTickTimestamps"]
    todays = [t for t in candidates if dt.datetime.fromtimestamp(t, dt.UTC).date() == today]
    assert len(todays) == 1, candidates
    tick_time = todays[0]
    dry_run = server.graphql(SCHEDULE_DRY_RUN, {"selectorData": schedule, "timestamp": tick_time})
    evaluation = _typed(dry_run["scheduleDryRun"], "DryRunInstigationTick", "dry run")["evaluationResult"]
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
    results = _typed(launched, "LaunchMultipleRunsResult", "launch")["launchMultipleRunsResult"]
    assert [r["__typename"] for r in results] == ["LaunchRunSuccess"] * len(params), results

    # The daemon and the sensors take it from there; wait until nothing is left to do.
    try:
        poll(
            lambda: _quiet(server, sensors, launched_at),
            timeout=QUIET_TIMEOUT_S,
            what="a quiet instance",
            interval=3,
        )
    except WebUIError as error:
        in_flight = [(r["jobName"], r["status"]) for r in _runs(server, IN_FLIGHT)]
        raise AssertionError(f"{error}; in flight: {in_flight}\n{server.log_tail()}") from None

    runs = _runs(server)
    failed = {
        run["runId"]: (run["jobName"], run["status"], _failure_messages(server, run["runId"])[-3:])
        for run in runs
        if run["status"] != "SUCCESS"
    }
    assert not failed, json.dumps(failed, indent=1)[:6000]
    jobs = {run["jobName"] for run in runs}
    assert {"coin_universe_job", "ohlcv_job", "labels_job", "feature_table_job"} <= jobs, jobs

    # The catalog, read-only as anyone would, holds yesterday's chain.
    data = tmp_path / "data"
    universe = [
        s for (s,) in query(data, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [yesterday])
    ]
    assert len(universe) == SYMBOLS
    day = [dt.datetime.combine(yesterday, dt.time()), dt.datetime.combine(today, dt.time())]
    candles = dict(
        query(
            data, "SELECT symbol, count(*) FROM ohlcv WHERE open_time >= ? AND open_time < ? GROUP BY 1", day
        )
    )
    assert {s: candles.get(s) for s in universe} == dict.fromkeys(universe, 288)
    features = dict(
        query(
            data,
            "SELECT symbol, count(*) FROM features WHERE open_time >= ? AND open_time < ? GROUP BY 1",
            day,
        )
    )
    assert {s: features.get(s) for s in universe} == dict.fromkeys(universe, 288)
    labels = dict(
        query(
            data, "SELECT symbol, count(*) FROM labels WHERE open_time >= ? AND open_time < ? GROUP BY 1", day
        )
    )
    assert {s: labels.get(s) for s in universe} == dict.fromkeys(universe, 288)
    if models_defined:
        predicted = dict(
            query(
                data,
                "SELECT symbol, count(*) FROM predictions WHERE open_time >= ? AND open_time < ? GROUP BY 1",
                day,
            )
        )
        assert set(universe) <= set(predicted), predicted
        evaluated = query(data, "SELECT count(*), max(day) FROM model_evaluation")
        assert evaluated[0][0] > 0, evaluated
