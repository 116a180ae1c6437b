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
CHAIN_TIMEOUT_S = 480  # bounds a failure only: a process per run on 2 busy cores
RESTART_TICKS_TIMEOUT_S = 400  # each chain sensor ticks again after the restart (interval <= 120 s)
IN_FLIGHT = (
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
)
CHAIN = ("coin_universe", "ohlcv", "labels", "feature_table")
CHAIN_SENSORS = ("ohlcv_sensor", "labels_sensor", "feature_table_sensor")


class Operator:
    """What a person does in the UI, done on the instance: the schedule's and sensors' states.

    The code location is loaded once, as the daemon loads it, so the states recorded here are the
    ones the daemon reads (same origins and selector ids).
    """

    def __init__(self, instance: dg.DagsterInstance, workspace: Path) -> None:
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import WorkspaceFileTarget

        self.instance = instance
        self._context = WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace)]))
        location = self._context.create_request_context().get_code_location("quant_assets")
        self.repo = location.get_repository("__repository__")

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def owe_the_last_schedule_tick(self, name: str) -> dt.datetime:
        """Record schedule `name` as running since 24 h ago, so the daemon owes it the last 00:10 tick.

        That is the state of a deployment whose daemon was down at 00:10: on start, the daemon
        catches up the missed tick (at most ``max_catchup_runs``). Returns the tick's scheduled time.
        """
        from dagster._core.scheduler.instigation import (
            InstigatorState,
            InstigatorStatus,
            InstigatorType,
            ScheduleInstigatorData,
        )

        now = dt.datetime.now(dt.UTC)
        schedule = self.repo.get_schedule(name)
        self.instance.add_instigator_state(
            InstigatorState(
                schedule.get_remote_origin(),
                InstigatorType.SCHEDULE,
                InstigatorStatus.DECLARED_IN_CODE,
                ScheduleInstigatorData(schedule.cron_schedule, (now - dt.timedelta(days=1)).timestamp()),
            )
        )
        tick = now.replace(hour=0, minute=10, second=0, microsecond=0)
        return tick if tick <= now else tick - dt.timedelta(days=1)

    def stop_every_sensor(self) -> None:
        for sensor in self.repo.get_sensors():
            self.instance.stop_sensor(sensor.get_remote_origin_id(), sensor.selector_id, sensor)

    def start_sensor(self, name: str) -> None:
        self.instance.start_sensor(self.repo.get_sensor(name))


def instigators(instance: dg.DagsterInstance) -> dict[str, Any]:
    """{name: state} of every schedule and sensor the instance has state for."""
    return {state.instigator_name: state for state in instance.all_instigator_state()}


def ticks_of(instance: dg.DagsterInstance, name: str, *, after: float | None = None) -> list[Any]:
    state = instigators(instance)[name]
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
            "QT_SENSOR_INTERVAL_SECONDS": "5",  # each tick waits 5 s after the last, not 60-120 s
            "QT_HISTORY_START": str(today - dt.timedelta(days=4)),
        }
        daemon_argv = [str(BIN / "dagster-daemon"), "run", "-w", str(home / "workspace.yaml")]
        daemon_env = base_env(**qt_env)
        with environ(qt_env), dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            assert instance.managed_python_loggers == ["quant_assets"]
            operator = Operator(instance, home / "workspace.yaml")
            try:
                tick_time = operator.owe_the_last_schedule_tick("daily_refresh")
                day = tick_time.date() - dt.timedelta(days=1)  # the schedule snapshots the day that ended
                # The sensors are turned on as their inputs land, as an operator would on a new
                # deployment: each first tick comes at once instead of after its interval (60-120 s).
                # Sensors outside this chain (models) stay off.
                operator.stop_every_sensor()

                # Act 1: the daemon alone, from the schedule's tick to the last sensor's run.
                daemon = Service(daemon_argv, env=daemon_env, log=tmp_path / "daemon-1.log", cwd=tmp_path)
                try:

                    def reached(**wanted: int) -> bool:
                        assert daemon.alive(), daemon.tail()
                        now = chain_state(instance, day)
                        return all(now[key] == value for key, value in wanted.items())

                    wait_for(lambda: reached(coin_universe=1, in_flight=0), timeout_s=CHAIN_TIMEOUT_S,
                             what=f"the schedule's coin_universe {day}")  # fmt: skip
                    operator.start_sensor("ohlcv_sensor")
                    wait_for(lambda: reached(ohlcv=3, in_flight=0), timeout_s=CHAIN_TIMEOUT_S,
                             what=f"ohlcv of {day} for 3 symbols")  # fmt: skip
                    operator.start_sensor("labels_sensor")
                    operator.start_sensor("feature_table_sensor")
                    wait_for(lambda: reached(labels=1, feature_table=1, in_flight=0), timeout_s=CHAIN_TIMEOUT_S,
                             what=f"labels and features of {day}")  # fmt: skip
                finally:
                    daemon.stop()
                runs_before = {r.run_id: (r.job_name, r.status) for r in instance.get_runs()}
                cursors_before = {n: instigators(instance)[n].instigator_data.cursor for n in CHAIN_SENSORS}
                partitions_before = {a: instance.get_materialized_partitions(dg.AssetKey(a)) for a in CHAIN}

                # Act 2: a new daemon process on the same database, until every chain sensor ticked.
                restarted = time.time()
                daemon = Service(daemon_argv, env=daemon_env, log=tmp_path / "daemon-2.log", cwd=tmp_path)
                try:
                    wait_for(
                        lambda: not daemon.alive()
                        or all(ticks_of(instance, n, after=restarted) for n in CHAIN_SENSORS),
                        timeout_s=RESTART_TICKS_TIMEOUT_S,
                        what="one tick of every chain sensor after the restart",
                        every_s=2,
                    )  # fmt: skip
                    assert daemon.alive(), daemon.tail()
                finally:
                    daemon.stop()
            finally:
                operator.close()

            # Assert: the first daemon's work is all there and succeeded: one run per stage ...
            jobs = sorted(job for job, _ in runs_before.values())
            assert jobs == ["coin_universe_job", "feature_table_job", "labels_job", "ohlcv_job"], runs_before
            assert {status for _, status in runs_before.values()} == {dg.DagsterRunStatus.SUCCESS}
            schedule_ticks = ticks_of(instance, "daily_refresh")
            assert [t.status.value for t in schedule_ticks] == ["SUCCESS"]
            assert dt.datetime.fromtimestamp(schedule_ticks[0].timestamp, dt.UTC) == tick_time
            assert all(cursors_before.values()), cursors_before
            # The ohlcv run went through the queue under the venue pool, whose limit is the default 1.
            assert instance.event_log_storage.get_concurrency_info("binance").slot_count == 1
            # ... it survived the restart: run history, partitions, sensor cursors ...
            assert {r.run_id: (r.job_name, r.status) for r in instance.get_runs()} == runs_before
            partitions_after = {a: instance.get_materialized_partitions(dg.AssetKey(a)) for a in CHAIN}
            assert partitions_after == partitions_before
            assert len(partitions_after["ohlcv"]) == 3
            assert {
                n: instigators(instance)[n].instigator_data.cursor for n in CHAIN_SENSORS
            } == cursors_before
            # ... and the restarted daemon found nothing left to do: its sensor ticks skipped, and the
            # schedule's tick, recorded as done, was not caught up again.
            for name in CHAIN_SENSORS:
                after = ticks_of(instance, name, after=restarted)
                assert after, f"{name} did not tick after the restart"
                assert {t.status.value for t in after} == {"SKIPPED"}, (name, after)
            assert ticks_of(instance, "daily_refresh", after=restarted) == []
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
