"""The lake and catalog on real files: atomic writes, identical bytes, compaction, read-only queries."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from quant_assets import cli
from quant_assets.errors import InvalidSymbolError, StoreError
from quant_assets.store import schemas
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import TABLES, Lake

DAY = dt.date(2026, 11, 23)


def candles(symbol: str, day: dt.date, n: int = 288, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    start = pd.Timestamp(day)
    return pd.DataFrame(
        {
            "exchange": "binance",
            "symbol": symbol,
            "open_time": pd.date_range(start, periods=n, freq="5min").astype("datetime64[ms]"),
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, n),
            "quote_volume": rng.uniform(100, 1000, n),
            "trades": rng.integers(1, 100, n),
            "taker_buy_volume": rng.uniform(0, 1, n),
            "taker_buy_quote_volume": rng.uniform(0, 100, n),
        }
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rewrite_gives_identical_bytes_whatever_the_row_order(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    frame = candles("BTCUSDT", DAY)
    first = lake.write("ohlcv", frame, exchange="binance", symbol="BTCUSDT", date=DAY)
    second = lake.write(
        "ohlcv", frame.sample(frac=1, random_state=1), exchange="binance", symbol="BTCUSDT", date=DAY
    )
    assert first.sha256 == second.sha256 == sha(first.path)
    assert (
        first.path
        == tmp_path.resolve() / "lake/ohlcv/exchange=binance/symbol=BTCUSDT/date=2026-11-23.parquet"
    )
    assert first.rows == 288


@pytest.mark.parametrize("hostile", ["../etc", "BTC|USDT", "X'Y", "btcusdt", "A", ""])
def test_hostile_symbol_never_becomes_a_path(tmp_path: Path, hostile: str) -> None:
    with pytest.raises(InvalidSymbolError, match="refusing symbol"):
        Lake(tmp_path).path("ohlcv", exchange="binance", symbol=hostile, date=DAY)
    assert not (tmp_path / "lake").exists()


def test_bad_frame_is_refused_and_the_previous_partition_survives(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    good = lake.write("ohlcv", candles("ETHUSDT", DAY), exchange="binance", symbol="ETHUSDT", date=DAY)
    before = sha(good.path)
    with pytest.raises(StoreError, match="without columns"):
        lake.write(
            "ohlcv",
            candles("ETHUSDT", DAY).drop(columns=["trades"]),
            exchange="binance",
            symbol="ETHUSDT",
            date=DAY,
        )
    assert sha(good.path) == before
    assert list(good.path.parent.iterdir()) == [good.path]


def test_a_writer_killed_mid_write_leaves_the_previous_partition_intact(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    good = lake.write("ohlcv", candles("SOLUSDT", DAY), exchange="binance", symbol="SOLUSDT", date=DAY)
    before = sha(good.path)
    # A child process writes the same partition with a very large table, over and over, and is killed
    # with SIGKILL while it writes: no cleanup code of ours gets to run.
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, pandas as pd
        from quant_assets.store.lake import Lake
        n = 3_000_000
        frame = pd.DataFrame({{
            "exchange": "binance", "symbol": "SOLUSDT",
            "open_time": pd.date_range("2026-11-23", periods=n, freq="1ms").astype("datetime64[ms]"),
            **{{c: np.random.default_rng(0).random(n) for c in
               ["open", "high", "low", "close", "volume", "quote_volume",
                "taker_buy_volume", "taker_buy_quote_volume"]}},
            "trades": np.arange(n),
        }})
        print("ready", flush=True)
        while True:
            Lake({str(tmp_path)!r}).write("ohlcv", frame, exchange="binance", symbol="SOLUSDT", date="2026-11-23")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 120  # bounds a failure only: the child imports pandas first
    while not any(p.name.endswith(".tmp") for p in good.path.parent.iterdir()):
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.005)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # Either the old file or a complete new one; never a torn one. The child may have finished a
    # full write before the kill, so accept the new complete file too, but it must read whole.
    stored = pd.read_parquet(good.path)
    assert len(stored) in (288, 3_000_000)
    if len(stored) == 288:
        assert sha(good.path) == before
    # A left-over temporary file is never picked up by the lake's globs.
    assert lake.files("ohlcv") == [good.path]


def test_compaction_and_views_see_every_symbol_of_a_day(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    for i, symbol in enumerate(["BTCUSDT", "ETHUSDT", "1000PEPEUSDT"]):
        lake.write("ohlcv", candles(symbol, DAY, seed=i), exchange="binance", symbol=symbol, date=DAY)
    lake.compact_ohlcv([DAY])
    catalog = Catalog(lake)
    assert set(catalog.ensure_views()) >= {"ohlcv", "coin_universe"}
    with catalog.connect() as con:
        rows = con.execute("SELECT symbol, count(*) FROM ohlcv GROUP BY symbol ORDER BY symbol").fetchall()
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE ohlcv)").fetchall())
    assert rows == [("1000PEPEUSDT", 288), ("BTCUSDT", 288), ("ETHUSDT", 288)]
    assert types["open_time"] == "TIMESTAMP"
    assert types["trades"] == "BIGINT"


def test_empty_views_exist_before_any_data_and_fill_later(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    catalog = Catalog(lake)
    with catalog.connect() as con:
        assert con.execute("SELECT count(*) FROM ohlcv").fetchone() == (0,)
    lake.write("ohlcv", candles("BTCUSDT", DAY), exchange="binance", symbol="BTCUSDT", date=DAY)
    lake.compact_ohlcv([DAY])
    with catalog.connect() as con:
        assert con.execute("SELECT count(*) FROM ohlcv").fetchone() == (288,)


def test_readers_hold_the_catalog_while_writers_write(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    catalog = Catalog(lake)
    lake.write("ohlcv", candles("BTCUSDT", DAY), exchange="binance", symbol="BTCUSDT", date=DAY)
    lake.compact_ohlcv([DAY])
    catalog.ensure_views()
    reader = duckdb.connect(str(catalog.path), read_only=True)  # a notebook left open
    try:
        next_day = DAY + dt.timedelta(days=1)
        lake.write("ohlcv", candles("BTCUSDT", next_day), exchange="binance", symbol="BTCUSDT", date=next_day)
        lake.compact_ohlcv([next_day])
        assert catalog.ensure_views(timeout_s=0.5) == []  # nothing to create: globs see new files
        assert reader.execute("SELECT count(*) FROM ohlcv").fetchone() == (576,)
    finally:
        reader.close()


def test_read_ohlcv_returns_the_half_open_window(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    for day in (DAY, DAY + dt.timedelta(days=1)):
        for symbol in ("BTCUSDT", "ETHUSDT"):
            lake.write("ohlcv", candles(symbol, day), exchange="binance", symbol=symbol, date=day)
        lake.compact_ohlcv([day])
    start = dt.datetime(2026, 11, 23, 23, 0, tzinfo=dt.UTC)
    frame = lake.read_ohlcv(symbols=["ETHUSDT"], start=start, end=start + dt.timedelta(hours=2))
    assert frame["symbol"].unique().tolist() == ["ETHUSDT"]
    assert len(frame) == 24
    assert frame["open_time"].min() == pd.Timestamp("2026-11-23 23:00")
    assert frame["open_time"].max() == pd.Timestamp("2026-11-24 00:55")


def old_layout_file(path: Path, frame: pd.DataFrame) -> None:
    """Write `frame` as the lake did before the hive keys left the files: every OHLCV column inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    before = pa.schema([f for f in schemas.OHLCV if f.name != "venue_symbol"])  # added later
    table = pa.Table.from_pandas(frame, preserve_index=False).cast(before)
    pq.write_table(table.replace_schema_metadata(None), path, compression="zstd")


def test_hive_keys_live_in_the_path_and_reads_put_them_back(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    frame = candles("BTCUSDT", DAY)
    written = lake.write("ohlcv", frame, exchange="binance", symbol="BTCUSDT", date=DAY)
    lake.compact_ohlcv([DAY])
    assert "exchange" not in pq.read_schema(written.path).names
    assert "symbol" not in pq.read_schema(written.path).names
    daily = lake.path("ohlcv_daily", exchange="binance", date=DAY)
    assert pq.read_schema(daily).names == [n for n in schemas.OHLCV.names if n != "exchange"]
    got = lake.read("ohlcv", exchange="binance", symbol="BTCUSDT", date=DAY)
    # venue_symbol defaults to the partition's symbol (Binance names the instrument as the universe).
    expected = frame.astype({"trades": "int64"}).assign(venue_symbol="BTCUSDT")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert list(got.columns) == list(schemas.OHLCV.names)
    window = lake.read_ohlcv(symbols=None, start=dt.datetime(2026, 11, 23), end=dt.datetime(2026, 11, 24))
    assert list(window.columns) == list(schemas.OHLCV.names)
    assert set(window["exchange"]) == {"binance"}
    assert len(window) == 288


def test_a_row_of_another_symbol_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    mixed = pd.concat([candles("BTCUSDT", DAY), candles("ETHUSDT", DAY).head(1)])
    with pytest.raises(StoreError, match=r"symbol=BTCUSDT cannot hold rows with symbol \['ETHUSDT'\]"):
        lake.write("ohlcv", mixed, exchange="binance", symbol="BTCUSDT", date=DAY)
    with pytest.raises(StoreError, match=r"exchange=binance cannot hold rows with exchange \['bybit'\]"):
        lake.write(
            "ohlcv",
            candles("BTCUSDT", DAY).assign(exchange="bybit"),
            exchange="binance",
            symbol="BTCUSDT",
            date=DAY,
        )
    assert lake.files("ohlcv") == []


def test_every_table_reads_with_pandas_and_pyarrow_and_matches_its_view(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    for day in (DAY, DAY + dt.timedelta(days=1)):
        for i, symbol in enumerate(["BTCUSDT", "1000PEPEUSDT"]):
            lake.write("ohlcv", candles(symbol, day, seed=i), exchange="binance", symbol=symbol, date=day)
        lake.compact_ohlcv([day])
    with Catalog(lake).connect() as con:
        view = con.sql("SELECT * FROM ohlcv ORDER BY symbol, open_time").df()
    assert list(view.columns) == list(schemas.OHLCV.names)  # the contract's order, keys first
    for table in ("ohlcv", "ohlcv_daily"):
        by_pandas = pd.read_parquet(lake.root / table)
        by_pyarrow = pads.dataset(lake.root / table, partitioning="hive").to_table().to_pandas()
        for frame in (by_pandas, by_pyarrow):
            assert sorted(frame.columns) == sorted(schemas.OHLCV.names)  # no key lost or repeated
            frame = frame.astype({"exchange": str, "symbol": str})[view.columns]
            frame = frame.sort_values(["symbol", "open_time"], ignore_index=True)
            pd.testing.assert_frame_equal(frame, view, check_dtype=False)


def test_an_older_lake_is_read_alike_and_the_catalog_command_rewrites_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lake = Lake(tmp_path)
    frame = candles("ETHUSDT", DAY)
    old_layout_file(lake.path("ohlcv", exchange="binance", symbol="ETHUSDT", date=DAY), frame)
    old_layout_file(lake.path("ohlcv_daily", exchange="binance", date=DAY), frame)
    with pytest.raises(pa.ArrowTypeError, match="Field exchange has incompatible types"):
        pd.read_parquet(lake.root / "ohlcv")  # what users met before
    expected = frame.astype({"trades": "int64"}).assign(venue_symbol="ETHUSDT")
    got = lake.read("ohlcv", exchange="binance", symbol="ETHUSDT", date=DAY)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    start = dt.datetime(2026, 11, 23)
    window = lake.read_ohlcv(symbols=["ETHUSDT"], start=start, end=start + dt.timedelta(days=1))
    pd.testing.assert_frame_equal(window, expected, check_dtype=False)
    with Catalog(lake).connect() as con:
        assert con.sql("SELECT exchange, symbol, count(*) FROM ohlcv GROUP BY ALL").fetchall() == [
            ("binance", "ETHUSDT", 288)
        ]

    monkeypatch.setenv("QT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "1")
    assert cli.main(["catalog"]) == 0
    assert len(pd.read_parquet(lake.root / "ohlcv")) == len(pd.read_parquet(lake.root / "ohlcv_daily")) == 288
    rewritten = lake.path("ohlcv", exchange="binance", symbol="ETHUSDT", date=DAY)
    fresh = Lake(tmp_path / "fresh").write("ohlcv", frame, exchange="binance", symbol="ETHUSDT", date=DAY)
    assert sha(rewritten) == fresh.sha256  # the same bytes as written today
    assert lake.strip_path_columns() == []  # nothing left to rewrite


KEYS = {
    "date": DAY,
    "exchange": "binance",
    "symbol": "BTCUSDT",
    "schema_hash": "ab" * 32,
    "model": "xgboost",
    "version": "xgboost-20261123T000000.000000Z",
}


def typed_rows(schema: pa.Schema, n: int = 3) -> pa.Table:
    """`n` rows of every column of `schema`, each value typed as the column and tied to `KEYS`."""
    values: dict[str, list[object]] = {}
    for field in schema:
        if field.name in KEYS:
            values[field.name] = [KEYS[field.name]] * n
        elif pa.types.is_string(field.type):
            values[field.name] = [f"{field.name}-{i}" for i in range(n)]
        elif pa.types.is_floating(field.type):
            values[field.name] = [i + 0.5 for i in range(n)]
        elif pa.types.is_integer(field.type):
            values[field.name] = list(range(n))
        elif pa.types.is_date(field.type):
            values[field.name] = [DAY] * n
        elif pa.types.is_timestamp(field.type):
            values[field.name] = [dt.datetime(2026, 11, 23) + dt.timedelta(minutes=5 * i) for i in range(n)]
        elif pa.types.is_boolean(field.type):
            values[field.name] = [i % 2 == 0 for i in range(n)]
        elif pa.types.is_list(field.type):
            values[field.name] = [[f"{field.name}-{i}", "b"] for i in range(n)]
        else:
            raise AssertionError(f"typed_rows: add a value for {field.type} ({field.name})")
    return pa.table(values, schema=schema)


@pytest.mark.parametrize("table", sorted(TABLES))
def test_each_table_reads_whole_with_plain_pandas_and_pyarrow(tmp_path: Path, table: str) -> None:
    lake = Lake(tmp_path)
    spec = TABLES[table]
    schema = spec.schema or schemas.features_schema(["ret_1", "rsi_14"])
    path_keys = re.findall(r"\{([a-z_]+)\}", spec.template)
    lake.write(table, typed_rows(schema), schema=schema, **{k: KEYS[k] for k in path_keys})
    expected = lake.read(table, **{k: KEYS[k] for k in path_keys})
    assert list(expected.columns) == schema.names

    by_pandas = pd.read_parquet(lake.root / table)
    by_pyarrow = pads.dataset(lake.root / table, partitioning="hive").to_table().to_pandas()
    for frame in (by_pandas, by_pyarrow):
        assert sorted(frame.columns) == sorted(schema.names)  # no key column lost or repeated
        frame = frame.astype({k: str for k in spec.path_keys})[schema.names]
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
