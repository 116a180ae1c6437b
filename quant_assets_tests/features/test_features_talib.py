"""Standard indicators equal TA-Lib's on the candles the simulator served over HTTP.

The candles are fetched from the simulator's ``/fapi/v1/klines`` with plain ``requests`` and parsed
by the production parser, so the test sees the decimals the venue sends (a 1000PEPE contract priced
around 0.01, and BTC around 100k). TA-Lib is then called here directly on those candles.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
import requests
import talib

from quant_assets.features import compute_features
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import parse_klines

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "1000PEPEUSDT")


def _klines(sim: Simulator, symbol: str) -> pd.DataFrame:
    now_ms = int(NOW.timestamp() * 1000)
    response = requests.get(
        f"{sim.url}/fapi/v1/klines",
        params={"symbol": symbol, "interval": "5m", "endTime": now_ms - 1, "limit": 1500},
        timeout=10,
    )
    response.raise_for_status()
    return parse_klines(response.json(), symbol=symbol, now_ms=now_ms)


@pytest.fixture(scope="module")
def served() -> Iterator[pd.DataFrame]:
    with Simulator(now=NOW) as sim:
        yield pd.concat([_klines(sim, s) for s in SYMBOLS], ignore_index=True)


@pytest.fixture(scope="module")
def features(served: pd.DataFrame) -> pd.DataFrame:
    return compute_features(served)


def _by_symbol(
    served: pd.DataFrame, features: pd.DataFrame
) -> Iterator[tuple[dict[str, np.ndarray], pd.DataFrame]]:
    for symbol in SYMBOLS:
        rows = served["symbol"] == symbol
        candles = {
            c: served.loc[rows, c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")
        }
        yield candles, features.loc[rows]


def test_the_simulator_served_full_histories(served: pd.DataFrame) -> None:
    sizes = served.groupby("symbol").size()

    assert set(sizes.index) == set(SYMBOLS)
    assert (sizes >= 1400).all()
    assert served.loc[served["symbol"] == "1000PEPEUSDT", "close"].max() < 1.0


@pytest.mark.parametrize(
    ("name", "indicator"),
    [
        ("rsi_14", lambda c: talib.RSI(c["close"], 14)),
        ("natr_14", lambda c: talib.NATR(c["high"], c["low"], c["close"], 14)),
        ("adx_14", lambda c: talib.ADX(c["high"], c["low"], c["close"], 14)),
        ("cci_20", lambda c: talib.CCI(c["high"], c["low"], c["close"], 20)),
        ("mfi_14", lambda c: talib.MFI(c["high"], c["low"], c["close"], c["volume"], 14)),
        ("willr_14", lambda c: talib.WILLR(c["high"], c["low"], c["close"], 14)),
        ("roc_12", lambda c: talib.ROC(c["close"], 12)),
        ("stoch_k_14", lambda c: talib.STOCH(c["high"], c["low"], c["close"], 14, 3, 0, 3, 0)[0]),
        ("stoch_d_14", lambda c: talib.STOCH(c["high"], c["low"], c["close"], 14, 3, 0, 3, 0)[1]),
    ],
)
def test_indicator_is_talibs_value_to_the_bit(
    served: pd.DataFrame, features: pd.DataFrame, name, indicator
) -> None:
    for candles, computed in _by_symbol(served, features):
        np.testing.assert_array_equal(computed[name].to_numpy(), indicator(candles))


def _pctb(c: dict[str, np.ndarray]) -> np.ndarray:
    upper, _, lower = talib.BBANDS(c["close"], 20, 2.0, 2.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(upper == lower, 0.5, (c["close"] - lower) / (upper - lower))


def _width(c: dict[str, np.ndarray]) -> np.ndarray:
    upper, middle, lower = talib.BBANDS(c["close"], 20, 2.0, 2.0)
    return (upper - lower) / middle


def _obv_slope(c: dict[str, np.ndarray]) -> np.ndarray:
    obv = pd.Series(talib.OBV(c["close"], c["volume"]))
    traded = pd.Series(c["volume"]).rolling(12).sum()
    return (obv.diff(12) / traded).to_numpy()


@pytest.mark.parametrize(
    ("name", "derived"),
    [
        ("macd_norm", lambda c: talib.MACD(c["close"], 12, 26, 9)[0] / c["close"]),
        ("macd_signal_norm", lambda c: talib.MACD(c["close"], 12, 26, 9)[1] / c["close"]),
        ("macd_hist_norm", lambda c: talib.MACD(c["close"], 12, 26, 9)[2] / c["close"]),
        ("bb_pctb_20", _pctb),
        ("bb_width_20", _width),
        ("tema_dist_30", lambda c: c["close"] / talib.TEMA(c["close"], 30) - 1.0),
        ("obv_slope_12", _obv_slope),
        ("max_48", lambda c: talib.MAX(c["high"], 48) / c["close"]),
        ("min_288", lambda c: talib.MIN(c["low"], 288) / c["close"]),
    ],
)
def test_indicator_built_on_talib_matches(
    served: pd.DataFrame, features: pd.DataFrame, name, derived
) -> None:
    for candles, computed in _by_symbol(served, features):
        expected = derived(candles)
        np.testing.assert_allclose(computed[name].to_numpy(), expected, rtol=1e-12, atol=1e-15)
        assert np.isfinite(expected[-1000:]).all()  # the comparison is not between two NaN columns


def test_kama_is_talibs_kama_of_the_last_864_bars_alone(served: pd.DataFrame, features: pd.DataFrame) -> None:
    for candles, computed in _by_symbol(served, features):
        close, kama_dist = candles["close"], computed["kama_dist_30"].to_numpy()
        # From the first bar while fewer than 864 bars exist, then from each bar's last 864 bars.
        expected = close[:863] / talib.KAMA(close[:863], 30) - 1.0
        np.testing.assert_allclose(kama_dist[:863], expected, rtol=1e-12, atol=1e-15)
        for t in range(863, len(close)):
            window = close[t - 863 : t + 1]
            expected_t = window[-1] / talib.KAMA(window, 30)[-1] - 1.0
            np.testing.assert_allclose(kama_dist[t], expected_t, rtol=1e-9, atol=1e-13, err_msg=str(t))
        # Over 864 bars of a moving market the seed has faded: TA-Lib over the whole history agrees.
        np.testing.assert_allclose(kama_dist[863:], (close / talib.KAMA(close, 30) - 1.0)[863:], atol=1e-9)
