"""The retrain job on a real distributed executor: Celery workers and a Redis broker.

Everything is started here: ``redis-server`` on a free port, two ``dagster-celery`` workers (one
task at a time each, their own process groups), and ``dagster job execute`` with ``QT_EXECUTOR=celery``:
the same definitions as everywhere else, only the environment differs. The four model steps are
Celery tasks; each worker reports the steps it ran as engine events in the run's log.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.executors import select_executor
from quant_assets.defs.ranges import day_range_tags
from quant_assets.errors import ConfigError
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for
from quant_assets_tests.deploy_helpers import BIN, REPO, Service, base_env, free_port, wait_for
from quant_assets_tests.feature_helpers import write_universe

REDIS = shutil.which("redis-server")
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
FIRST, LAST = dt.date(2026, 6, 1), dt.date(2026, 6, 8)  # fixed days: the same candles every run
MODELS = ("xgboost", "lightgbm", "nhits", "patchtst")
WORKERS = ("w1", "w2")
START_TIMEOUT_S = 180  # bounds a failure only: two workers import dagster on 2 busy cores
RUN_TIMEOUT_S = 600


def tiny_lake(sim: Simulator, data_dir: Path) -> None:
    """Candles, features and labels of SYMBOLS over FIRST..LAST (and the next day, for the labels)."""
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, data_dir)
    write_universe(data_dir, FIRST, SYMBOLS)
    assert materialize_range(ohlcv, instance, resources, SYMBOLS, FIRST, LAST + dt.timedelta(days=1)).success
    assert dg.materialize(
        [feature_table, labels], instance=instance, resources=resources, tags=day_range_tags(FIRST, LAST)
    ).success


def workers_answering(broker: str) -> set[str]:
    """Names of the Celery workers that answer a ping on `broker`."""
    import celery  # installed with dagster-celery

    app = celery.Celery(broker=broker)
    try:
        replies = app.control.ping(timeout=1.0) or []
    finally:
        app.close()
    return {name.split("@")[0] for reply in replies for name in reply}


def step_spans(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[str, float, float]]:
    """{step key: (worker, start, end)} from the run's events (workers report themselves)."""
    worker: dict[str, str] = {}
    start: dict[str, float] = {}
    end: dict[str, float] = {}
    for entry in instance.all_logs(run_id):
        event, step = entry.dagster_event, entry.step_key
        if event is None or step is None:
            continue
        if event.is_engine_event and "in celery worker" in entry.message:
            meta = event.engine_event_data.metadata
            worker[step] = str(meta["Celery worker"].value).split("@")[0]
        elif event.event_type == dg.DagsterEventType.STEP_START:
            start[step] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            end[step] = entry.timestamp
    return {step: (worker.get(step, "?"), start[step], end.get(step, float("inf"))) for step in start}


def test_a_bad_executor_name_stops_the_definitions_loading_named() -> None:
    with pytest.raises(
        ConfigError, match=r"^QT_EXECUTOR='dask': expected one of in_process, multiprocess, celery"
    ):
        select_executor({"QT_EXECUTOR": "dask"})
    with pytest.raises(ConfigError, match=r"^QT_CELERY_BROKER='localhost:6379'"):
        select_executor({"QT_EXECUTOR": "celery", "QT_CELERY_BROKER": "localhost:6379"})


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "in_process"),
        ({"QT_EXECUTOR": "multiprocess"}, "multiprocess"),
        ({"QT_EXECUTOR": "celery"}, "celery"),
    ],
)
def test_qt_executor_picks_the_executor(env: dict[str, str], expected: str) -> None:
    assert select_executor(env).name == expected


def test_the_retrain_job_runs_its_four_model_steps_on_two_celery_workers(
    sim: Simulator, tmp_path: Path
) -> None:
    if REDIS is None:
        pytest.skip("no redis-server binary (Debian package redis-server; .ci/run installs it)")
    data_dir, home = tmp_path / "data", tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.local.yaml", home / "dagster.yaml")  # one host: SQLite
    # Create the instance's databases once, here: processes that all open a fresh SQLite instance at
    # the same moment can each stamp its schema version (alembic: "more than one head present").
    dg.DagsterInstance.from_config(str(home)).dispose()
    tiny_lake(sim, data_dir)
    port = free_port()
    broker, backend = f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/1"
    env = base_env(
        DAGSTER_HOME=str(home),
        QT_DATA_DIR=str(data_dir),
        QT_BINANCE_FAPI_URL=sim.url,
        QT_COINGECKO_API_URL=sim.coingecko_url,
        QT_EXECUTOR="celery",
        QT_CELERY_BROKER=broker,
        QT_CELERY_BACKEND=backend,
        QT_HISTORY_START=str(FIRST),
    )
    services: list[Service] = []
    try:
        redis = Service(
            [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            env=env, log=tmp_path / "redis.log", cwd=tmp_path,
        )  # fmt: skip
        services.append(redis)
        for name in WORKERS:
            services.append(
                Service(
                    [
                        str(BIN / "dagster-celery"),
                        "worker",
                        "start",
                        "-A",
                        "dagster_celery.app",
                        "-y",
                        str(REPO / "deploy" / "celery_worker.yaml"),
                        "-n",
                        name,
                        "--",
                        "--concurrency",
                        "1",
                    ],
                    env=env,
                    log=tmp_path / f"{name}.log",
                    cwd=tmp_path,
                )
            )
        wait_for(
            lambda: workers_answering(broker) == set(WORKERS) or not all(s.alive() for s in services),
            timeout_s=START_TIMEOUT_S,
            what="two Celery workers answering on the broker",
        )
        assert all(s.alive() for s in services), "\n\n".join(s.tail() for s in services)

        # Act: the job as a deployment launches it, small model configs on the tiny lake.
        model_config = {"profile": "small", "days": (LAST - FIRST).days + 1, "end_day": str(LAST)}
        run_config = {"ops": {f"{m}_model": {"config": model_config} for m in MODELS}}
        (tmp_path / "run.yaml").write_text(json.dumps(run_config))
        done = subprocess.run(
            [str(BIN / "dagster"), "job", "execute", "-m", "quant_assets.definitions", "-j", "retrain_job",
             "-c", str(tmp_path / "run.yaml")],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:] + "\n\n".join(s.tail(30) for s in services)
    finally:
        for service in reversed(services):
            service.stop()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs(dg.RunsFilter(job_name="retrain_job"))
        assert run.status == dg.DagsterRunStatus.SUCCESS
        spans = step_spans(instance, run.run_id)
    # Every model step ran on a worker, both workers took steps, and two steps overlapped in time.
    assert set(spans) == {f"{m}_model" for m in MODELS}
    assert {worker for worker, _, _ in spans.values()} == set(WORKERS), spans
    overlapping = [
        (a, b)
        for a, (wa, sa, ea) in spans.items()
        for b, (wb, sb, eb) in spans.items()
        if a < b and wa != wb and sa < eb and sb < ea
    ]
    assert overlapping, spans
    rows = query(data_dir, "SELECT model, count(*) FROM model_registry GROUP BY model ORDER BY model")
    assert rows == [(m, 1) for m in sorted(MODELS)]
