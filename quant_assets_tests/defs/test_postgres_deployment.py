"""The multi-machine deployment: Dagster's instance on a real PostgreSQL server, same code.

`pgserver` runs a real PostgreSQL 16 from a pip wheel; the CLI then materializes the graph with
instance storage in it, exactly as a deployment would (only `dagster.yaml` differs).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import query
from quant_assets_tests.deploy_helpers import (
    BIN,
    REPO,
    Service,
    base_env,
    deployment_home,
    environ,
    postgres_server,
    wait_for,
)

pgserver = pytest.importorskip("pgserver", reason="pgserver is a dev extra: pip install -e '.[dev]'")


def test_the_graph_runs_on_postgres_instance_storage(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    try:
        socket_dir = server.get_uri().split("host=")[-1].split("&")[0]
        home = tmp_path / "home"
        home.mkdir()
        # psycopg2 spelled out: with psycopg 3 installed a bare postgresql:// picks it, and Dagster's
        # NOTIFY then fails (see DAGSTER_NOTES).
        (home / "dagster.yaml").write_text(
            "storage:\n  postgres:\n    postgres_url: "
            f'"postgresql+psycopg2://postgres@/postgres?host={socket_dir}"\n'
            "telemetry:\n  enabled: false\n"
        )
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "QT_DATA_DIR": str(tmp_path / "data"),
            "QT_BINANCE_FAPI_URL": sim.url,
            "QT_COINGECKO_API_URL": sim.coingecko_url,
            "QT_MAX_SYMBOLS": "3",
        }
        for select, partition in (("coin_universe", str(yesterday)),):
            done = subprocess.run(
                [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_assets.definitions",
                 "--select", select, "--partition", partition],
                env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
        backfill = subprocess.run(
            [sys.executable, "-m", "quant_assets.cli", "backfill", "--days", "2"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert backfill.returncode == 0, backfill.stderr[-3000:]
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert len(instance.get_materialized_partitions(dg.AssetKey("ohlcv"))) == 6
            assert len(instance.get_dynamic_partitions("symbol")) == 3
        assert query(tmp_path / "data", "SELECT count(*) FROM ohlcv") == [(6 * 288,)]
    finally:
        server.cleanup()


# ------------------------------------------------------------------------------------------------
# deploy/dagster.yaml itself: the daemon runs the schedule and the sensors on it, and a restart of
# the daemon neither loses nor redoes anything.
DAEMON_START_TIMEOUT_S = 180  # bounds a failure only: loading the code on 2 busy cores is slow
CHAIN_TIMEOUT_S = 600  # sensor intervals (60-120 s) and a process per run; bounds a failure only
QUIET_SENSOR_TIMEOUT_S = 400  # every sensor ticks once more after the restart (interval <= 120 s)
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
CHAIN = ("coin_universe", "ohlcv", "labels", "feature_table")


def arm_todays_schedule_tick(instance: dg.DagsterInstance, workspace: Path) -> dt.datetime:
    """Record the schedule as running since 24 h ago, so the daemon owes it the last 00:10 tick.

    That is the state of a deployment whose daemon was down at 00:10: on start, the daemon catches
    up the missed tick (at most `max_catchup_runs`). Returns the tick's scheduled time.
    """
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    now = dt.datetime.now(dt.UTC)
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)])) as context:
        repo = (
            context.create_request_context()
            .get_code_location("quant_assets")
            .get_repository("__repository__")
        )
        schedule = repo.get_schedule("daily_refresh")
        instance.add_instigator_state(
            InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.DECLARED_IN_CODE,
                ScheduleInstigatorData(schedule.cron_schedule, (now - dt.timedelta(days=1)).timestamp()),
            )
        )
    tick = now.replace(hour=0, minute=10, second=0, microsecond=0)
    return tick if tick <= now else tick - dt.timedelta(days=1)


def instigators(instance: dg.DagsterInstance) -> dict[str, Any]:
    """{name: state} of every schedule and sensor the instance has state for."""
    return {state.instigator_name: state for state in instance.all_instigator_state()}


def ticks_of(instance: dg.DagsterInstance, state: Any, *, after: float | None = None) -> list[Any]:
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after))


def chain_state(instance: dg.DagsterInstance, day: dt.date) -> dict[str, int]:
    """Partitions of `day` materialized per asset of the chain, and runs still in flight."""
    state = {"in_flight": len(instance.get_runs(dg.RunsFilter(statuses=list(IN_FLIGHT))))}
    for asset in CHAIN:
        keys = instance.get_materialized_partitions(dg.AssetKey(asset))
        state[asset] = sum(1 for key in keys if key.split("|")[0] == day.isoformat())
    return state


def test_the_daemon_on_the_deployment_file_survives_a_restart(sim: Simulator, tmp_path: Path) -> None:
    with postgres_server(tmp_path / "pg") as pg_env:
        home = deployment_home(tmp_path / "home")
        today = dt.datetime.now(dt.UTC).date()
        qt_env = {
            "DAGSTER_HOME": str(home),
            **pg_env,
            "DAGSTER_EVENT_BATCH_SIZE": "1000",
            "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
            "QT_DATA_DIR": str(tmp_path / "data"),
            "QT_BINANCE_FAPI_URL": sim.url,
            "QT_COINGECKO_API_URL": sim.coingecko_url,
            "QT_MAX_SYMBOLS": "3",
            "QT_DATA_LOOKBACK_DAYS": "1",
            "QT_HISTORY_START": str(today - dt.timedelta(days=4)),
        }
        daemon_env = base_env(**qt_env)
        with environ(qt_env), dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.managed_python_loggers == ["quant_assets"]
            tick_time = arm_todays_schedule_tick(instance, home / "workspace.yaml")
            day = tick_time.date() - dt.timedelta(days=1)  # the schedule snapshots the day that ended

            # Arrange/Act: the daemon alone, from the schedule's tick to the last sensor's run.
            daemon = Service(
                [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")],
                env=daemon_env, log=tmp_path / "daemon-1.log", cwd=tmp_path,
            )  # fmt: skip
            try:
                done = {"coin_universe": 1, "ohlcv": 3, "labels": 1, "feature_table": 1, "in_flight": 0}
                wait_for(
                    lambda: (daemon.alive() and chain_state(instance, day) == done) or not daemon.alive(),
                    timeout_s=CHAIN_TIMEOUT_S,
                    what=f"the chain of {day} (now {chain_state(instance, day)})",
                    every_s=2,
                )
                assert daemon.alive(), daemon.tail()
            finally:
                daemon.stop()
            runs_before = {r.run_id: r.status for r in instance.get_runs()}
            states_before = instigators(instance)
            partitions_before = {a: instance.get_materialized_partitions(dg.AssetKey(a)) for a in CHAIN}

            # Restart: a new daemon process on the same database.
            restarted = time.time()
            daemon = Service(
                [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")],
                env=daemon_env, log=tmp_path / "daemon-2.log", cwd=tmp_path,
            )  # fmt: skip
            sensors = [n for n, s in states_before.items() if s.instigator_type.value == "SENSOR"]
            try:
                wait_for(
                    lambda: (
                        all(ticks_of(instance, instigators(instance)[n], after=restarted) for n in sensors)
                        or not daemon.alive()
                    ),
                    timeout_s=QUIET_SENSOR_TIMEOUT_S,
                    what="one tick of every sensor after the restart",
                    every_s=2,
                )
                assert daemon.alive(), daemon.tail()
            finally:
                daemon.stop()
            states_after = instigators(instance)

            # Assert: the first daemon's work is all there and succeeded ...
            chain_runs = [r for r in instance.get_runs() if r.run_id in runs_before]
            assert {r.job_name for r in chain_runs} >= {
                "coin_universe_job",
                "ohlcv_job",
                "labels_job",
                "feature_table_job",
            }
            assert all(status == dg.DagsterRunStatus.SUCCESS for status in runs_before.values()), runs_before
            schedule = states_before["daily_refresh"]
            schedule_ticks = ticks_of(instance, schedule)
            assert [t.status.value for t in schedule_ticks] == ["SUCCESS"]
            assert dt.datetime.fromtimestamp(schedule_ticks[0].timestamp, dt.UTC) == tick_time
            # ... survived the restart (run history, partitions, sensor cursors) ...
            assert {r.run_id: r.status for r in instance.get_runs()} == runs_before
            assert {
                a: instance.get_materialized_partitions(dg.AssetKey(a)) for a in CHAIN
            } == partitions_before
            assert len(partitions_before["ohlcv"]) == 3
            # The sensors that requested runs: ohlcv's after the snapshot, then labels and features.
            active = [
                n
                for n in sensors
                if any(t.status.value == "SUCCESS" for t in ticks_of(instance, states_before[n]))
            ]
            assert len(active) >= 2, sensors
            for name in active:
                assert states_before[name].instigator_data.cursor, f"{name} never stored a cursor"
            for name in sensors:
                assert states_after[name].instigator_data.cursor == states_before[name].instigator_data.cursor
                # ... and the restarted daemon's ticks found nothing left to do.
                after = ticks_of(instance, states_after[name], after=restarted)
                assert after, f"{name} did not tick after the restart"
                assert all(t.status.value == "SKIPPED" for t in after), (name, after)
            assert ticks_of(instance, states_after["daily_refresh"], after=restarted) == []
            assert query(tmp_path / "data", "SELECT count(DISTINCT symbol) FROM ohlcv") == [(3,)]


# ------------------------------------------------------------------------------------------------
# deploy/purge_runs.py: run retention that never deletes the record of a partition.
@dg.asset
def recorded() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"rows": 1})


@dg.asset
def broken() -> None:
    raise RuntimeError("fails before writing anything")


def purge(home: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "purge_runs.py"), *args],
        env=base_env(DAGSTER_HOME=str(home)), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_run_retention_deletes_only_old_runs_that_recorded_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        kept = dg.materialize([recorded], instance=instance).run_id
        failed = dg.materialize([broken], instance=instance, raise_on_error=False).run_id
    assert purge(home, "--older-than-days", "1").endswith(
        "deleted 0 runs older than 1 days that recorded nothing"
    )
    assert purge(home, "--older-than-days", "0", "--dry-run").startswith("purge_runs: would delete 1 runs")
    assert purge(home, "--older-than-days", "0").startswith("purge_runs: deleted 1 runs")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert [r.run_id for r in instance.get_runs()] == [kept]
        assert instance.get_run_by_id(failed) is None
        assert instance.fetch_materializations(dg.AssetKey("recorded"), limit=10).records
