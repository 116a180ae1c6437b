"""The sequence models' input windows: shapes, no look-ahead, no mixing of symbols, and the hash."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_assets.features import candles, sequences
from quant_assets.features.schema import HASHED_MODULES, schema_hash
from quant_assets.features.sequences import (
    SEQUENCE_CHANNELS,
    input_windows,
    sequence_table,
    window_rows,
)


def feature_rows(bars: dict[str, int], *, seed: int = 0) -> pd.DataFrame:
    """Feature rows sorted by (symbol, open_time): the window channels random, one row per bar."""
    rng = np.random.default_rng(seed)
    parts = []
    for symbol, count in bars.items():
        times = pd.date_range("2026-11-01", periods=count, freq="5min").as_unit("ms")
        part = pd.DataFrame({"symbol": symbol, "open_time": times})
        for name in SEQUENCE_CHANNELS:
            part[name] = rng.normal(size=count)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_windows_have_the_asked_shape_and_end_at_their_own_row() -> None:
    frame = feature_rows({"BTCUSDT": 50, "ETHUSDT": 40})
    table = sequence_table(frame)
    rows = np.array([10, 49, 50, 89])

    windows = input_windows(table, rows, input_size=8)

    assert windows.shape == (4, 8, len(SEQUENCE_CHANNELS))
    assert windows.dtype == np.float32
    expected_last = frame.loc[rows, list(SEQUENCE_CHANNELS)].to_numpy(dtype=np.float32)
    np.testing.assert_array_equal(windows[:, -1, :], expected_last)
    # Column input_size - 1 - k is the bar k rows earlier: row 49's window is rows 42 .. 49.
    np.testing.assert_array_equal(
        windows[1], frame.loc[42:49, list(SEQUENCE_CHANNELS)].to_numpy(dtype=np.float32)
    )


def test_a_window_never_reads_another_symbols_rows() -> None:
    frame = feature_rows({"BTCUSDT": 20, "ETHUSDT": 20})
    table = sequence_table(frame)

    rows = window_rows(table.position, np.array([22]), input_size=5)  # ETHUSDT's third row

    assert rows.tolist() == [[40, 40, 20, 21, 22]]  # two padding positions, never rows 18, 19
    assert np.isnan(input_windows(table, np.array([22]), input_size=5)[0, :2]).all()


def test_a_window_ending_at_bar_t_is_unchanged_by_bar_t_plus_one() -> None:
    frame = feature_rows({"BTCUSDT": 60, "ETHUSDT": 60}, seed=3)
    before = input_windows(sequence_table(frame), np.arange(120), input_size=16)
    t = 30
    changed = frame.copy()
    changed.loc[t + 1 :, list(SEQUENCE_CHANNELS)] = 1e6  # every later bar of both symbols

    after = input_windows(sequence_table(changed), np.arange(120), input_size=16)

    np.testing.assert_array_equal(after[: t + 1], before[: t + 1])
    assert not np.array_equal(after[t + 1], before[t + 1])  # the probe does reach bar t + 1


def test_windows_keep_nan_features_as_nan() -> None:
    frame = feature_rows({"BTCUSDT": 10})
    frame.loc[3, "volz_48"] = np.nan

    window = input_windows(sequence_table(frame), np.array([5]), input_size=4)[0]

    column = list(SEQUENCE_CHANNELS).index("volz_48")
    assert np.isnan(window[1, column])
    assert np.isfinite(np.delete(window.ravel(), 1 * len(SEQUENCE_CHANNELS) + column)).all()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        pytest.param(feature_rows({"BTCUSDT": 5}).iloc[::-1], "sorted by open_time", id="time-desc"),
        pytest.param(
            pd.concat(
                [feature_rows({"BTCUSDT": 3}), feature_rows({"ETHUSDT": 3}), feature_rows({"BTCUSDT": 2})]
            ),
            "split",
            id="symbol-split",
        ),
        pytest.param(
            pd.concat([feature_rows({"BTCUSDT": 3}), feature_rows({"BTCUSDT": 3})]),
            "one row per",
            id="duplicate",
        ),
    ],
)
def test_unsorted_rows_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sequence_table(frame)


def test_a_missing_channel_is_named() -> None:
    with pytest.raises(KeyError, match="volz_48"):
        sequence_table(feature_rows({"BTCUSDT": 5}).drop(columns=["volz_48"]))


def test_rows_outside_the_frame_are_refused() -> None:
    table = sequence_table(feature_rows({"BTCUSDT": 5}))
    with pytest.raises(ValueError, match=r"0 \.\. 4"):
        window_rows(table.position, np.array([5]), input_size=3)


def _load_copy(tmp_path: Path, text: str, name: str) -> object:
    """`text` as a module of the features package; its source stays on disk for the hash to read."""
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"quant_assets.features._{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def test_the_schema_hash_covers_the_window_function() -> None:
    assert sequences in HASHED_MODULES
    assert schema_hash(modules=(candles,)) != schema_hash()


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("INPUT_SIZE = 96", "INPUT_SIZE = 64", id="input_size"),
        pytest.param('"volz_48", "taker_buy_ratio")', '"volz_288", "taker_buy_ratio")', id="channel"),
        pytest.param("offsets[None, :] >= -position", "offsets[None, :] > -position", id="window-rule"),
    ],
)
def test_editing_a_parameter_of_the_window_function_changes_the_hash(
    tmp_path: Path, old: str, new: str
) -> None:
    original = Path(sequences.__file__).read_text()
    assert original.count(old) == 1
    edited = _load_copy(tmp_path, original.replace(old, new), "edited")
    same = _load_copy(tmp_path, original.replace('"""Input windows', '"""Reworded: input windows', 1), "same")

    def hash_with(module: object) -> str:
        return schema_hash(modules=(candles, module))  # type: ignore[arg-type]

    assert hash_with(same) == schema_hash()  # a docstring is not code
    assert hash_with(edited) != schema_hash()
