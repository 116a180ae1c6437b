"""After `quant-assets demo`, every lake table reads where users read it: pandas, pyarrow, DuckDB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.dataset as pads
import pytest

from quant_assets.store.lake import TABLES

# The catalog view that shows each lake table's rows (ohlcv reads the compacted day files).
VIEW_OF = {"ohlcv": "ohlcv", "ohlcv_daily": "ohlcv"}


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a small demo: 3 symbols x 2 days, the whole graph, an ephemeral instance."""
    data = tmp_path_factory.mktemp("demo") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_HOME"))}
    env["QT_DATA_DIR"] = str(data)
    done = subprocess.run(
        [sys.executable, "-m", "quant_assets.cli", "demo", "--symbols", "3", "--days", "2"],
        env=env,
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=600,  # bounds a failure only; the demo takes about 10 s
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return data


def test_the_demo_writes_the_tables_users_read(demo_data: Path) -> None:
    written = {p.name for p in (demo_data / "lake").iterdir() if not p.name.startswith(".")}
    assert written >= {"coin_universe", "ohlcv", "ohlcv_daily", "features", "feature_catalog", "labels"}
    assert written <= set(TABLES)  # every directory is a table the store knows (and this file tests)


def test_every_table_of_the_demo_reads_with_pandas_pyarrow_and_its_view(demo_data: Path) -> None:
    lake = demo_data / "lake"
    tables = sorted(p.name for p in lake.iterdir() if not p.name.startswith("."))
    with duckdb.connect(str(demo_data / "quant.duckdb"), read_only=True) as con:
        for table in tables:
            by_pandas = pd.read_parquet(lake / table)
            by_pyarrow = pads.dataset(lake / table, partitioning="hive").to_table()
            view = VIEW_OF.get(table, table)
            columns = [row[0] for row in con.execute(f'DESCRIBE "{view}"').fetchall()]
            rows = con.execute(f'SELECT count(*) FROM "{view}"').fetchone()
            assert rows is not None
            assert rows[0] > 0, f"{view} is empty after the demo"
            # The same rows and the same columns, none lost and none repeated, as the view shows.
            assert sorted(by_pandas.columns) == sorted(by_pyarrow.column_names), table
            if table != "features":  # the view keeps only the current schema's days and columns
                assert sorted(by_pandas.columns) == sorted(columns), table
                assert len(by_pandas) == by_pyarrow.num_rows == rows[0], table
            else:
                assert set(columns) <= set(by_pandas.columns)
                assert len(by_pandas) >= rows[0]
    ohlcv = pd.read_parquet(lake / "ohlcv")
    assert set(ohlcv["exchange"].astype(str)) == {"binance"}
    assert ohlcv.groupby(ohlcv["symbol"].astype(str), observed=True).size().tolist() == [576] * 3
