"""compute_features on worker threads: the same result to the bit as in the calling thread.

Inputs of 50,000 rows or more are computed on threads, so these frames are just above that size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quant_assets.features import compute_features, feature_schema
from quant_assets_tests.features.test_features import random_candles

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "TICKUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "LINKUSDT"]


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    # 8 x 6,500 bars, less the gaps: ~51,700 rows, over the threshold for threads.
    frame = random_candles(SYMBOLS, 6_500, seed=21, gaps=3)
    assert len(frame) >= 50_000
    return frame


def bits(frame: pd.DataFrame) -> np.ndarray:
    """The feature columns as raw 64-bit patterns: NaN payloads and signed zeros included."""
    return frame[feature_schema().names].to_numpy(dtype=np.float64).view(np.int64)


@pytest.mark.parametrize("workers", [2, 3])
def test_threads_give_the_serial_result_to_the_bit(candles: pd.DataFrame, workers: int) -> None:
    shuffled = candles.sample(frac=1.0, random_state=8)  # rows scattered: threads write everywhere

    serial = compute_features(shuffled, workers=1)
    threaded = compute_features(shuffled, workers=workers)

    assert threaded.index.equals(serial.index)
    assert threaded["symbol"].tolist() == serial["symbol"].tolist()
    assert (threaded["open_time"].to_numpy() == serial["open_time"].to_numpy()).all()
    assert np.array_equal(bits(threaded), bits(serial))
    assert np.isnan(serial[feature_schema().names].to_numpy()).mean() < 0.2  # mostly numbers compared


def test_rows_grouped_by_symbol_at_the_same_times_give_the_bits_of_any_other_order() -> None:
    # Every symbol at the same open times, grouped by symbol in time order: the cross-section is a
    # transpose of the rows instead of a scatter. Shuffled, the same candles take the general path.
    grouped = random_candles(SYMBOLS[:5], 2_000, seed=5, gaps=0)
    shuffled = grouped.sample(frac=1.0, random_state=2)

    expected = compute_features(shuffled).loc[grouped.index]
    actual = compute_features(grouped)

    assert np.array_equal(bits(actual), bits(expected))


def test_a_bad_value_is_named_by_its_column_then_row_whatever_thread_finds_it(candles: pd.DataFrame) -> None:
    # Two bad values in different symbols: columns are checked in ohlcv order, so the close
    # (a later row) is reported before the volume (an earlier row).
    bad = candles.copy()
    bad.loc[bad.index[40_000], "close"] = np.nan
    bad.loc[bad.index[100], "volume"] = -1.0

    with pytest.raises(ValueError, match=rf"close is not finite \(nan\) at row {bad.index[40_000]}"):
        compute_features(bad, workers=2)


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_must_be_positive(candles: pd.DataFrame, workers: int) -> None:
    with pytest.raises(ValueError, match="workers must be >= 1"):
        compute_features(candles.iloc[:10], workers=workers)
