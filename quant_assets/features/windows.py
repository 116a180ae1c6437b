"""Windowed arithmetic on one symbol's bars, independent of the history before the window.

Every function takes and returns 1-D float64 arrays indexed by bar (oldest first, one symbol). A
window of ``w`` bars ending at bar ``t`` is bars ``t-w+1 .. t``; where fewer than ``w`` bars exist the
result is NaN, and a NaN inside a window makes that window's result NaN.

Why not running sums (``cumsum`` differences, pandas ``rolling``, TA-Lib ``SUM``): their rounding
error depends on everything added and removed before the window, so the same window computed from a
short trailing slice and from a long batch differs (by up to 1e-8 relative on price-level sums).
:func:`window_sum` and the functions built on it add only values of the window's own two blocks
(compiled loops in ``kernels.py``), so their rounding error is that of a sum of about ``w`` values
whatever came before: a trailing slice and a long batch agree to ~1e-13 relative, far inside the
1e-9 parity tolerance.
"""

from __future__ import annotations

import math

import numpy as np

from quant_assets.features import kernels


def lag(x: np.ndarray, bars: int) -> np.ndarray:
    """``x`` delayed by `bars` bars: ``out[t] = x[t - bars]``; the first `bars` entries are NaN."""
    out = np.full(x.shape[0], np.nan)
    if bars < x.shape[0]:
        out[bars:] = x[: x.shape[0] - bars]
    return out


def window_sum(x: np.ndarray, window: int) -> np.ndarray:
    """Sum of the last `window` bars at each bar (:func:`kernels.window_sum`, compiled): NaN before
    `window` bars exist, and where a window holds a NaN."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return kernels.window_sum(np.ascontiguousarray(x, dtype=np.float64), window)


def window_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` bars (see :func:`window_sum`)."""
    return window_sum(x, window) / window


def window_sum_and_ramp(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`window_sum` and ``sum(k * x[t-k] for k in 0 .. window-1)`` (the bars-ago-weighted sum),
    from the window's own bars (:func:`kernels.window_sum_and_ramp`)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return kernels.window_sum_and_ramp(np.ascontiguousarray(x, dtype=np.float64), window)


def divide(numerator: np.ndarray, denominator: np.ndarray, *, where_zero: float = np.nan) -> np.ndarray:
    """``numerator / denominator``, and `where_zero` where the denominator is 0 (a NaN stays NaN)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    zero = denominator == 0
    if zero.any():
        out[zero & ~np.isnan(numerator)] = where_zero
    return out


def zscore(x: np.ndarray, window: int) -> np.ndarray:
    """``(x_t - mean) / std`` over the last `window` bars (the current bar included, population std).

    A window whose variance is rounding noise (at most 1e-10 of the mean square) has z = 0: its bars
    are equal, and any other value there would be the rounding of one particular history.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return kernels.window_zscore(np.ascontiguousarray(x, dtype=np.float64), window)


def correlation(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Correlation of `x` and `y` over the last `window` bars; NaN where either is constant over
    the window (a variance within 1e-10 of its mean square: no correlation is defined)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    as_float = [np.ascontiguousarray(v, dtype=np.float64) for v in (x, y)]
    return kernels.window_correlation(as_float[0], as_float[1], window)


def settle_bars(alpha: float, *, order: int = 1, tolerance: float = 1e-12) -> int:
    """Bars after which a recursive smoother has forgotten its seed to within `tolerance`.

    An exponential smoother with factor `alpha` carries a seed error as ``(1-alpha)**n``; `order`
    smoothers in cascade (TEMA: 3, ADX: 2) carry it as ``C(n+order-1, order-1) (1-alpha)**n``. The
    smallest such ``n`` is returned. With the seed error at most the indicator's own scale, 1e-12
    leaves three orders of magnitude under the 1e-9 parity tolerance.
    """
    decay = math.log1p(-alpha)
    n = 1
    while math.log(math.comb(n + order - 1, order - 1)) + n * decay > math.log(tolerance):
        n += 1
    return n
