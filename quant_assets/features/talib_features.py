"""Thin wrappers over TA-Lib, the field's reference implementation: each value is TA-Lib's own.

Each wrapper calls TA-Lib on the symbol's raw candles and, where TA-Lib returns a price, divides it
by the close, so the feature is scale-free. TA-Lib's global "unstable period" is never set (0).

Indicators built on exponential smoothing (RSI, ATR/NATR, ADX, MACD, TEMA) remember their seed
forever. Their ``settle`` constants below are the extra bars after which the seed's influence is
below 1e-12 of the indicator's scale (:func:`~quant_assets.features.windows.settle_bars`), so a
trailing window of ``lookback + settle + 1`` bars reproduces the value of any longer history within
the 1e-9 parity tolerance. KAMA's smoothing can be as slow as ``(2/31)^2`` per bar (a market going
nowhere), which would need 6,656 bars (23 days) to settle: it is computed over a fixed trailing
window of :data:`KAMA_WINDOW` bars instead, as TA-Lib computes it on those bars alone.
"""

from __future__ import annotations

import numpy as np
import talib

from quant_assets.features import kernels
from quant_assets.features.candles import Candles
from quant_assets.features.windows import divide, settle_bars, window_sum

# Wilder's smoothing (RSI, ATR, ADX) uses alpha = 1/period; an EMA of n bars alpha = 2/(n+1).
RSI_SETTLE = settle_bars(1 / 14)
NATR_SETTLE = settle_bars(1 / 14)
ADX_SETTLE = settle_bars(1 / 14, order=2)  # DM/TR smoothing, then ADX smooths DX again
MACD_SETTLE = settle_bars(2 / 27, order=2)  # slow EMA (26), then the signal EMA on the MACD line
TEMA_SETTLE = settle_bars(2 / 31, order=3)  # three EMA(30) in cascade
KAMA_PERIOD = 30
KAMA_WINDOW = 864  # bars behind each KAMA value, the current one included: 3 days
KAMA_SETTLE = KAMA_WINDOW - KAMA_PERIOD - 1  # its warm-up is then exactly KAMA_WINDOW bars


def _macd(c: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return c.memo("MACD", lambda: talib.MACD(c.close, fastperiod=12, slowperiod=26, signalperiod=9))


def _bbands(c: Candles) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return c.memo("BBANDS", lambda: talib.BBANDS(c.close, timeperiod=20, nbdevup=2.0, nbdevdn=2.0))


def _stoch(c: Candles) -> tuple[np.ndarray, np.ndarray]:
    return c.memo(
        "STOCH",
        lambda: talib.STOCH(
            c.high, c.low, c.close, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3
        ),
    )


def rsi(c: Candles) -> np.ndarray:
    """TA-Lib RSI(14), 0..100."""
    return talib.RSI(c.close, timeperiod=14)


def natr(c: Candles) -> np.ndarray:
    """TA-Lib NATR(14): average true range in percent of the close."""
    return talib.NATR(c.high, c.low, c.close, timeperiod=14)


def adx(c: Candles) -> np.ndarray:
    """TA-Lib ADX(14): trend strength, 0..100."""
    return talib.ADX(c.high, c.low, c.close, timeperiod=14)


def cci(c: Candles) -> np.ndarray:
    """TA-Lib CCI(20): typical price's distance from its mean in mean deviations / 0.015."""
    return talib.CCI(c.high, c.low, c.close, timeperiod=20)


def mfi(c: Candles) -> np.ndarray:
    """TA-Lib MFI(14): volume-weighted RSI, 0..100."""
    return talib.MFI(c.high, c.low, c.close, c.volume, timeperiod=14)


def willr(c: Candles) -> np.ndarray:
    """TA-Lib WILLR(14): close within the 14-bar range, -100..0."""
    return talib.WILLR(c.high, c.low, c.close, timeperiod=14)


def macd_line(c: Candles) -> np.ndarray:
    """TA-Lib MACD(12, 26, 9) line divided by the close."""
    return _macd(c)[0] / c.close


def macd_signal(c: Candles) -> np.ndarray:
    """TA-Lib MACD(12, 26, 9) signal line divided by the close."""
    return _macd(c)[1] / c.close


def macd_hist(c: Candles) -> np.ndarray:
    """TA-Lib MACD(12, 26, 9) histogram divided by the close."""
    return _macd(c)[2] / c.close


def bollinger_pctb(c: Candles) -> np.ndarray:
    """Bollinger %B from TA-Lib BBANDS(20, 2): 0 at the lower band, 1 at the upper; 0.5 if bands touch."""
    upper, _, lower = _bbands(c)
    return divide(c.close - lower, upper - lower, where_zero=0.5)


def bollinger_width(c: Candles) -> np.ndarray:
    """Bollinger band width from TA-Lib BBANDS(20, 2): ``(upper - lower) / middle``."""
    upper, middle, lower = _bbands(c)
    return (upper - lower) / middle


def stoch_k(c: Candles) -> np.ndarray:
    """TA-Lib STOCH(14, 3, 3) slow %K, 0..100."""
    return _stoch(c)[0]


def stoch_d(c: Candles) -> np.ndarray:
    """TA-Lib STOCH(14, 3, 3) slow %D, 0..100."""
    return _stoch(c)[1]


def roc(c: Candles) -> np.ndarray:
    """TA-Lib ROC(12): percent change of the close over 12 bars."""
    return talib.ROC(c.close, timeperiod=12)


def obv_slope(c: Candles, *, window: int) -> np.ndarray:
    """Change of TA-Lib OBV over `window` bars divided by the volume traded in them, -1..1.

    0 when nothing traded. OBV's running total is differenced, so its starting point cancels.
    """
    obv = talib.OBV(c.close, c.volume)
    change = np.full(len(c), np.nan)
    change[window:] = obv[window:] - obv[:-window]
    # OBV adds a bar's volume signed by its close's move, so the change over `window` bars covers
    # bars t-window+1 .. t: the same bars as the volume sum.
    return divide(change, window_sum(c.volume, window), where_zero=0.0)


def kama_windowed(close: np.ndarray) -> np.ndarray:
    """TA-Lib's KAMA(30) at each bar, computed from that bar's last :data:`KAMA_WINDOW` bars alone.

    On ``close[t - KAMA_WINDOW + 1 .. t]`` TA-Lib seeds KAMA with the close 834 bars back, then
    applies ``kama += sc_i (close_i - kama)`` over the 834 bars up to ``t``, with TA-Lib's smoothing
    constant ``sc_i = (ER_i (2/3 - 2/31) + 2/31)^2`` and efficiency ratio ``ER_i`` over 30 bars.
    Those steps are affine maps, composed over each window (:func:`kernels.affine_window`). Bars
    with fewer than KAMA_WINDOW bars behind them get TA-Lib's KAMA from the first bar.
    """
    n = close.shape[0]
    head = min(n, KAMA_WINDOW - 1)
    out = np.empty(n)
    out[:head] = talib.KAMA(close[:head], timeperiod=KAMA_PERIOD) if head > KAMA_PERIOD else np.nan
    if n < KAMA_WINDOW:
        return out
    steps = KAMA_WINDOW - KAMA_PERIOD
    a, b = kernels.affine_window(*kernels.kama_steps(close, KAMA_PERIOD), steps)
    out[head:] = a[head:] * close[head - steps : n - steps] + b[head:]
    return out


def kama_distance(c: Candles) -> np.ndarray:
    """``close / KAMA(30) - 1`` with TA-Lib's Kaufman adaptive moving average over the last
    :data:`KAMA_WINDOW` bars (:func:`kama_windowed`)."""
    return c.close / kama_windowed(c.close) - 1.0


def tema_distance(c: Candles) -> np.ndarray:
    """``close / TEMA(30) - 1`` with TA-Lib's triple exponential moving average."""
    return c.close / talib.TEMA(c.close, timeperiod=30) - 1.0
