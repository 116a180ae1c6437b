"""Properties of compute_features over random cut points: parity from the warm-up alone, no look-ahead.

Parity: for a cut time t, every symbol's last bar at or before t computed from only its trailing
``warmup_bars`` bars (all symbols together, as live inference does) equals the batch value within
1e-9 relative. Per feature, the trailing ``feature.warmup_bars`` are enough. No look-ahead:
altering, dropping or adding candles after t never changes a row at or before t, to the bit.

Data: synthetic random walks with gaps, a coarse tick and a flat stretch (longer than the warm-up),
and the real freqtrade 5-minute series with their real gaps.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quant_assets.features import FEATURES, compute_features, feature_schema
from quant_assets_tests.features.test_features import close_enough, random_candles, real_spot_candles

WARMUP = feature_schema().warmup_bars
SYMBOLS = ["BTCUSDT", "TICKUSDT", "SOLUSDT", "ADAUSDT"]
SYNTHETIC_BARS = WARMUP + 700
PROPERTY_SETTINGS = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@cache
def synthetic() -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = random_candles(SYMBOLS, SYNTHETIC_BARS, seed=2026, gaps=6)
    return candles, compute_features(candles)


@cache
def real() -> tuple[pd.DataFrame, pd.DataFrame]:
    candles = real_spot_candles()
    return candles, compute_features(candles)


def _trailing(candles: pd.DataFrame, cut: np.datetime64, bars: int) -> pd.DataFrame:
    """Each symbol's last `bars` candles with open_time <= cut."""
    return candles[candles["open_time"] <= cut].groupby("symbol", sort=False).tail(bars)


def _last_rows(features: pd.DataFrame) -> pd.DataFrame:
    return features.groupby("symbol", sort=False).tail(1).set_index(["symbol", "open_time"])


def _assert_parity(batch: pd.DataFrame, window: pd.DataFrame, names: list[str]) -> None:
    last = _last_rows(window)
    if not last.index.size:
        return
    expected = batch.set_index(["symbol", "open_time"]).loc[last.index, names]
    for name in names:
        ok = close_enough(last[name].to_numpy(), expected[name].to_numpy())
        assert ok.all(), (
            name,
            last.index[~ok].tolist(),
            last[name][~ok].tolist(),
            expected[name][~ok].tolist(),
        )


def _cut(candles: pd.DataFrame, fraction: float, min_bars: int) -> np.datetime64:
    """An open time, `fraction` of the way through those where every symbol has `min_bars` bars."""
    earliest = candles.groupby("symbol")["open_time"].nth(min_bars - 1).max() if min_bars else None
    times = np.sort(candles["open_time"].unique())
    times = times[times >= earliest] if earliest is not None else times
    return times[int(fraction * (len(times) - 1))]


@PROPERTY_SETTINGS
@given(fraction=st.floats(0.0, 1.0))
def test_last_row_from_the_warmup_alone_equals_the_batch_value(fraction: float) -> None:
    candles, batch = synthetic()
    cut = _cut(candles, fraction, WARMUP)  # every symbol has a full warm-up up to the cut

    window = compute_features(_trailing(candles, cut, WARMUP))

    assert window.groupby("symbol").size().min() == WARMUP
    _assert_parity(batch, window, feature_schema().names)


def _per_feature_parity(candles: pd.DataFrame, batch: pd.DataFrame, cut: np.datetime64) -> int:
    """Check every feature from its own warm-up; return how many features were checked."""
    shortest = candles[candles["open_time"] <= cut].groupby("symbol").size().min()
    checked = 0
    for bars in sorted({f.warmup_bars for f in FEATURES}):
        if bars > shortest:
            break
        window = compute_features(_trailing(candles, cut, bars))
        own = [f.name for f in FEATURES if f.warmup_bars == bars and f.group != "cross_section"]
        _assert_parity(batch, window, own)
        # A rank or a beta at a symbol's last bar needs the other symbols' (BTCUSDT's) bars at that
        # time: in `bars` trailing bars they are there for the symbols trading at the cut (a symbol
        # inside a gap has its last bar earlier, which the full warm-up covers, a short one not).
        across = [f.name for f in FEATURES if f.warmup_bars == bars and f.group == "cross_section"]
        _assert_parity(batch, window[window["open_time"] == cut], across)
        checked += len(own) + len(across)
    return checked


@PROPERTY_SETTINGS
@given(fraction=st.floats(0.0, 1.0))
def test_each_feature_needs_only_its_own_warmup_on_synthetic_candles(fraction: float) -> None:
    candles, batch = synthetic()
    cut = _cut(candles, fraction, WARMUP)

    assert _per_feature_parity(candles, batch, cut) == len(FEATURES)


@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(fraction=st.floats(0.0, 1.0))
def test_each_feature_needs_only_its_own_warmup_on_real_candles_with_gaps(fraction: float) -> None:
    candles, batch = real()
    cut = _cut(candles, fraction, WARMUP)

    checked = _per_feature_parity(candles, batch, cut)

    # 20 days of real data hold every warm-up (the longest is 864 bars, 3 days).
    assert checked == len(FEATURES)


def test_real_candles_have_the_gaps_these_tests_rely_on() -> None:
    _, batch = real()

    gaps = batch.groupby("symbol")["bars_since_prev"].max()

    assert (gaps > 1).sum() >= 4  # ADA, TRX, DASH, XMR, ZEC have missing candles
    assert gaps["ADAUSDT"] >= 3


def _alter_future(candles: pd.DataFrame, cut: np.datetime64, seed: int) -> pd.DataFrame:
    """Rewrite everything after `cut`: new prices and volumes, some candles dropped, a new symbol."""
    rng = np.random.default_rng(seed)
    future = candles["open_time"] > cut
    altered = candles.copy()
    factor = rng.uniform(0.5, 2.0, int(future.sum()))
    for column in ("open", "high", "low", "close", "quote_volume", "taker_buy_quote_volume"):
        altered.loc[future, column] = altered.loc[future, column] * factor
    altered.loc[future, "volume"] = altered.loc[future, "volume"] * rng.uniform(0.1, 10.0, int(future.sum()))
    dropped = altered[future].sample(frac=0.2, random_state=seed).index
    newcomer = altered[future & (altered["symbol"] == "SOLUSDT")].assign(symbol="NEWUSDT")
    return pd.concat([altered.drop(index=dropped), newcomer], ignore_index=True)


@PROPERTY_SETTINGS
@given(fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_altering_future_candles_never_changes_past_rows(fraction: float, seed: int) -> None:
    candles, batch = synthetic()
    cut = _cut(candles, fraction, 0)

    altered = compute_features(_alter_future(candles, cut, seed))

    past = batch[batch["open_time"] <= cut].set_index(["symbol", "open_time"]).sort_index()
    again = altered[altered["open_time"] <= cut].set_index(["symbol", "open_time"]).sort_index()
    pd.testing.assert_frame_equal(again, past, check_exact=True)


def test_declared_lookback_is_where_each_feature_starts() -> None:
    candles = random_candles(["BTCUSDT", "ETHUSDT"], 700, seed=3, gaps=0, zero_volume=False)
    candles = candles[candles["symbol"] == "BTCUSDT"]  # plain bars: no ticks, gaps or zero volume
    candles = candles.assign(market_cap_usd=1e9, market_volume_usd=2e8)  # CoinGecko data: mcap_rank, turnover

    result = compute_features(candles)

    for f in FEATURES:
        defined = np.flatnonzero(result[f.name].notna().to_numpy())
        assert defined.size, f.name
        assert defined[0] == f.lookback, (f.name, defined[0], f.lookback)
        assert result[f.name].iloc[f.lookback :].notna().all(), f.name
