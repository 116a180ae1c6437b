"""latest_features: the warm-up window read from a real lake gives the batch features of the last closed candle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_assets.errors import InvalidSymbolError, StoreError
from quant_assets.features import compute_features, feature_schema, latest_features
from quant_assets.store.lake import Lake
from quant_assets_tests.feature_helpers import write_universe
from quant_assets_tests.features.test_features import close_enough, random_candles

DAYS = 26  # history to 2026-05-27: the as_of moments below lie well past the 3-day warm-up
START = "2026-05-01T00:00"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


class RecordingLake(Lake):
    """The real lake, noting the time ranges and rows each read returned."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.reads: list[tuple[dt.datetime, dt.datetime, int]] = []

    def read_ohlcv(
        self,
        *,
        symbols: Sequence[str] | None,
        start: dt.datetime,
        end: dt.datetime,
        exchange: str = "binance",
    ) -> pd.DataFrame:
        frame = super().read_ohlcv(symbols=symbols, start=start, end=end, exchange=exchange)
        self.reads.append((start, end, len(frame)))
        return frame


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return random_candles(SYMBOLS, DAYS * 288, seed=77, start=START, gaps=5)


@pytest.fixture(scope="module")
def lake_dir(tmp_path_factory: pytest.TempPathFactory, history: pd.DataFrame) -> Path:
    root = tmp_path_factory.mktemp("lake")
    lake = Lake(root)
    days = history["open_time"].dt.date
    for (symbol, day), frame in history.groupby(["symbol", days]):
        lake.write("ohlcv", frame, exchange="binance", symbol=symbol, date=day)
    lake.compact_ohlcv(sorted(set(days)))
    write_universe(root, dt.date.fromisoformat(START[:10]), SYMBOLS)
    return root


@pytest.fixture(scope="module")
def batch(history: pd.DataFrame) -> pd.DataFrame:
    return compute_features(history)


def _expected(batch: pd.DataFrame, symbol: str, as_of: dt.datetime) -> pd.Series:
    closed = batch["open_time"] + pd.Timedelta(minutes=5) <= pd.Timestamp(as_of.replace(tzinfo=None))
    return batch[(batch["symbol"] == symbol) & closed].iloc[-1]


def test_latest_features_equal_the_batch_row_of_the_last_closed_candle(
    lake_dir: Path, batch: pd.DataFrame
) -> None:
    as_of = dt.datetime(2026, 5, 26, 13, 47, 12, tzinfo=dt.UTC)

    latest = latest_features(SYMBOLS, as_of, lake=Lake(lake_dir))

    assert latest["symbol"].tolist() == SYMBOLS
    assert list(latest.columns) == ["symbol", "open_time", *feature_schema().names]
    for _, row in latest.iterrows():
        expected = _expected(batch, row["symbol"], as_of)
        assert row["open_time"] == expected["open_time"]
        names = feature_schema().names
        ok = close_enough(row[names].to_numpy(np.float64), expected[names].to_numpy(np.float64))
        assert ok.all(), [n for n, good in zip(names, ok, strict=True) if not good]


def test_the_candle_still_forming_at_as_of_is_left_out(lake_dir: Path) -> None:
    opened = dt.datetime(2026, 5, 20, 8, 0, tzinfo=dt.UTC)

    closed_just_now = latest_features(["ETHUSDT"], opened + dt.timedelta(minutes=5), lake=Lake(lake_dir))
    still_open = latest_features(
        ["ETHUSDT"], opened + dt.timedelta(minutes=4, seconds=59), lake=Lake(lake_dir)
    )

    assert closed_just_now["open_time"].iloc[0] == pd.Timestamp("2026-05-20 08:00")
    assert still_open["open_time"].iloc[0] < pd.Timestamp("2026-05-20 08:00")


def test_result_carries_the_schema_hash_and_names_missing_symbols(lake_dir: Path) -> None:
    as_of = dt.datetime(2026, 5, 25, tzinfo=dt.UTC)

    latest = latest_features(["SOLUSDT", "DOGEUSDT"], as_of, lake=Lake(lake_dir))

    assert latest.attrs["feature_schema_hash"] == feature_schema().hash
    assert latest.attrs["missing_symbols"] == ["DOGEUSDT"]
    assert latest["symbol"].tolist() == ["SOLUSDT"]


def test_btcusdt_is_read_as_reference_even_when_not_asked_for(lake_dir: Path, batch: pd.DataFrame) -> None:
    as_of = dt.datetime(2026, 5, 25, 6, tzinfo=dt.UTC)

    latest = latest_features(["ETHUSDT"], as_of, lake=Lake(lake_dir))

    assert latest["symbol"].tolist() == ["ETHUSDT"]
    expected = _expected(batch, "ETHUSDT", as_of)
    assert np.isfinite(latest["beta_btc_288"].iloc[0])
    assert close_enough(
        latest[["beta_btc_288"]].to_numpy()[0], expected[["beta_btc_288"]].to_numpy(np.float64)
    ).all()


def test_only_the_warmup_window_is_read(lake_dir: Path) -> None:
    lake = RecordingLake(lake_dir)
    as_of = dt.datetime(2026, 5, 26, 12, tzinfo=dt.UTC)

    latest_features(SYMBOLS, as_of, lake=lake)

    earliest = min(start for start, _, _ in lake.reads)
    span = feature_schema().warmup + dt.timedelta(days=1)  # warm-up plus the slack for gaps
    assert earliest >= as_of - dt.timedelta(minutes=5) - span * 2  # at most one wider read for gaps
    assert max(end for _, end, _ in lake.reads) <= as_of - dt.timedelta(minutes=5) + dt.timedelta(
        milliseconds=1
    )
    assert sum(rows for _, _, rows in lake.reads) < len(SYMBOLS) * (feature_schema().warmup_bars + 2 * 288)


def test_invalid_symbols_are_refused_before_any_read(lake_dir: Path) -> None:
    lake = RecordingLake(lake_dir)

    with pytest.raises(InvalidSymbolError):
        latest_features(["ETHUSDT", "../etc"], dt.datetime(2026, 5, 25, tzinfo=dt.UTC), lake=lake)

    assert lake.reads == []


def test_a_lake_without_candles_gives_no_rows_and_lists_every_symbol_missing(tmp_path: Path) -> None:
    write_universe(tmp_path, dt.date(2026, 5, 1), SYMBOLS)

    latest = latest_features(["ETHUSDT"], dt.datetime(2026, 5, 25, tzinfo=dt.UTC), lake=Lake(tmp_path))

    assert latest.empty
    assert list(latest.columns) == ["symbol", "open_time", *feature_schema().names]
    assert latest.attrs["missing_symbols"] == ["ETHUSDT"]


def test_without_a_universe_snapshot_the_cross_section_is_undefined_and_refused(lake_dir: Path) -> None:
    empty = Lake(lake_dir.parent / "no-universe")

    with pytest.raises(StoreError, match="coin_universe"):
        latest_features(["ETHUSDT"], dt.datetime(2026, 5, 25, tzinfo=dt.UTC), lake=empty)
