"""The multi-machine deployment: Dagster's instance on a real PostgreSQL server, same code.

`pgserver` runs a real PostgreSQL 16 from a pip wheel; the CLI then materializes the graph with
instance storage in it, exactly as a deployment would (only `dagster.yaml` differs).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import query

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
