"""The panel a model reads: current schema hash only, each day's universe, joined to fwd_ret_12."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from quant_assets.errors import StoreError
from quant_assets.features import feature_schema
from quant_assets.models.base import TARGET, TimeRange
from quant_assets.models.data import design_matrix, load_panel
from quant_assets.store.lake import Lake
from quant_assets_tests.models.panels import write_synthetic_lake

FIRST = dt.date(2026, 3, 1)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=3, symbols=4, extra_symbols=("ZZZUSDT",))
    return lake


def test_the_panel_holds_the_universe_of_each_day_with_its_labels(lake: Lake) -> None:
    loaded = load_panel(lake, FIRST, FIRST + dt.timedelta(days=3))
    frame = loaded.panel.frame

    assert loaded.days == [FIRST + dt.timedelta(days=i) for i in range(3)]
    assert sorted(frame["symbol"].unique()) == ["S00USDT", "S01USDT", "S02USDT", "S03USDT"]
    assert loaded.outside_universe == {FIRST + dt.timedelta(days=i): ["ZZZUSDT"] for i in range(3)}
    assert len(frame) == 4 * 3 * 288
    assert list(frame.columns) == ["symbol", "open_time", *feature_schema().names, TARGET]
    stored = pq.read_table(lake.path("labels", date=FIRST)).to_pandas().set_index(["symbol", "open_time"])
    joined = frame.set_index(["symbol", "open_time"])[TARGET]
    first_day = joined.loc[joined.index.get_level_values("open_time") < np.datetime64("2026-03-02")]
    assert np.array_equal(first_day.to_numpy(), stored[TARGET].reindex(first_day.index).to_numpy())
    assert loaded.unlabelled_rows == 0


def test_days_of_another_schema_hash_are_skipped_and_named(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=2, symbols=3)
    stale_day = FIRST + dt.timedelta(days=2)
    write_synthetic_lake(lake, first_day=stale_day, days=1, symbols=3, schema_hash="ab" * 32)

    loaded = load_panel(lake, FIRST, FIRST + dt.timedelta(days=4))

    assert loaded.days == [FIRST, FIRST + dt.timedelta(days=1)]
    assert loaded.stale_days == {stale_day: "ab" * 32}
    assert loaded.missing_days == [FIRST + dt.timedelta(days=3)]
    assert loaded.panel.frame["open_time"].max() < np.datetime64(stale_day)
    assert "skipped 1 days of another schema hash: 2026-03-03" in loaded.describe()


def test_a_row_without_a_stored_label_reads_nan(lake: Lake) -> None:
    lake.path("labels", date=FIRST + dt.timedelta(days=2)).unlink()

    loaded = load_panel(lake, FIRST, FIRST + dt.timedelta(days=3))

    assert loaded.unlabelled_rows == 4 * 288
    assert loaded.panel.frame[TARGET].isna().sum() == 4 * 288


def test_no_universe_snapshot_is_a_clear_error(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=1, symbols=3)
    lake.path("coin_universe", date=FIRST).unlink()

    with pytest.raises(StoreError, match="no coin_universe snapshot is stored"):
        load_panel(lake, FIRST, FIRST + dt.timedelta(days=1))


def test_the_design_matrix_keeps_labelled_rows_of_the_range_in_schema_order(lake: Lake) -> None:
    panel = load_panel(lake, FIRST, FIRST + dt.timedelta(days=3)).panel
    frame = panel.frame.copy()
    frame.loc[5, TARGET] = np.nan
    panel = type(panel)(frame, panel.schema)
    day = TimeRange(dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 2))

    x, y, positions = design_matrix(panel, day, labelled_only=True)
    x_all, _, positions_all = design_matrix(panel, day, labelled_only=False)

    assert len(positions_all) == 4 * 288
    assert len(positions) == 4 * 288 - 1
    assert 5 not in positions
    assert x.dtype == np.float32
    assert x.shape == (len(positions), len(panel.features))
    assert np.array_equal(x[:, 3], frame["ret_12"].to_numpy(np.float32)[positions], equal_nan=True)
    assert np.array_equal(y, frame[TARGET].to_numpy()[positions])
    assert x_all.shape[0] == len(positions_all)
