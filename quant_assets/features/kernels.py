"""Compiled loops (numba) for what NumPy can only do in many passes: sliding compositions over windows.

Each kernel releases the GIL (``nogil``), so the worker threads of ``compute_features`` run them side
by side, and is cached on disk after its first compilation (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def affine_window(
    a: np.ndarray, b: np.ndarray, steps: int
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """The last `steps` maps ``x -> a[i] x + b[i]`` (``i = t-steps+1 .. t``, applied in order) as one
    map ``x -> A[t] x + B[t]``; NaN for ``t < steps - 1``. With ``a = 1``, ``B`` is a window sum.

    Blocks of `steps` maps are aligned on the first bar: the maps from a block's start up to ``t``
    (a running prefix) are composed with those from ``t - steps + 1`` to the end of the previous
    block (its suffixes, kept in a buffer of `steps` maps). A value uses its window's maps only; its
    rounding (not its value) depends on where blocks start, within a few ulps.
    """
    n = a.shape[0]
    out_a, out_b = np.full(n, np.nan), np.full(n, np.nan)
    suffix_a, suffix_b = np.empty(steps), np.empty(steps)
    for start in range(0, n, steps):
        if start > 0:  # suffix[j]: the previous block's maps from its j-th to its last
            acc_a, acc_b = 1.0, 0.0
            for j in range(steps - 1, -1, -1):
                i = start - steps + j
                acc_b = acc_a * b[i] + acc_b
                acc_a = acc_a * a[i]
                suffix_a[j], suffix_b[j] = acc_a, acc_b
        prefix_a, prefix_b = 1.0, 0.0
        for t in range(start, min(start + steps, n)):
            prefix_b = a[t] * prefix_b + b[t]
            prefix_a = a[t] * prefix_a
            j = t - start + 1  # the window's first map sits at suffix position j
            if j == steps:  # the window is this whole block
                out_a[t], out_b[t] = prefix_a, prefix_b
            elif start > 0:  # this block's prefix after the previous block's suffix
                out_a[t] = prefix_a * suffix_a[j]
                out_b[t] = prefix_a * suffix_b[j] + prefix_b
    return out_a, out_b


@numba.njit(cache=True, nogil=True)
def window_sum_into(x: np.ndarray, window: int, out: np.ndarray) -> None:  # pragma: no cover
    """Write into `out` the sum of the last `window` values of `x` at each index (NaN for the first
    ``window - 1``).

    Blocks of `window` values are aligned on the first one; a window is the running sum of its
    last block's values up to ``t`` plus the sum of the previous block's values from
    ``t - window + 1`` to its end (suffix sums of the previous block, kept in a buffer of `window`
    values). Every addition stays inside two blocks, so the rounding error is that of summing about
    ``window`` values, whatever came before. A NaN or infinity affects only the windows holding it.
    """
    n = x.shape[0]
    suffix = np.empty(window)
    for t in range(min(window - 1, n)):
        out[t] = np.nan
    for start in range(0, n, window):
        if start > 0:  # suffix sums of the previous block: suffix[j] = x[start-window+j .. start-1]
            acc = 0.0
            for j in range(window - 1, -1, -1):
                acc += x[start - window + j]
                suffix[j] = acc
        stop = min(start + window, n)
        acc = 0.0
        for t in range(start, stop):
            acc += x[t]
            j = t - start + 1  # the window's first value sits at suffix position j
            if j == window:
                out[t] = acc
            elif start > 0:
                out[t] = acc + suffix[j]


@numba.njit(cache=True, nogil=True)
def window_sum(x: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """:func:`window_sum_into` a new array."""
    out = np.empty(x.shape[0])
    window_sum_into(x, window, out)
    return out


@numba.njit(cache=True, nogil=True)
def window_sums(xs: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """:func:`window_sum` of each row of the 2-D `xs`, in one call."""
    out = np.empty(xs.shape)
    for r in range(xs.shape[0]):
        window_sum_into(xs[r], window, out[r])
    return out


@numba.njit(cache=True, nogil=True)
def window_zscore(x: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """``(x_t - mean) / std`` over the last `window` values (population std); 0 where the variance
    is at most 1e-10 of the mean square (rounding noise of equal values); NaN before `window`
    values exist or where the window holds a NaN."""
    n = x.shape[0]
    squares = np.empty((2, n))
    for i in range(n):
        squares[0, i] = x[i]
        squares[1, i] = x[i] * x[i]
    sums = window_sums(squares, window)
    out = np.empty(n)
    for t in range(n):
        mean = sums[0, t] / window
        mean_square = sums[1, t] / window
        variance = mean_square - mean * mean
        if variance <= 1e-10 * mean_square:
            out[t] = 0.0
        else:
            out[t] = (x[t] - mean) / np.sqrt(variance)
    return out


@numba.njit(cache=True, nogil=True)
def window_correlation(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """Correlation of `x` and `y` over the last `window` values; NaN where either is constant
    (variance at most 1e-10 of its mean square), before `window` values exist, or where a NaN is."""
    n = x.shape[0]
    terms = np.empty((5, n))
    for i in range(n):
        terms[0, i] = x[i]
        terms[1, i] = y[i]
        terms[2, i] = x[i] * x[i]
        terms[3, i] = y[i] * y[i]
        terms[4, i] = x[i] * y[i]
    sums = window_sums(terms, window)
    out = np.empty(n)
    for t in range(n):
        mx, my = sums[0, t] / window, sums[1, t] / window
        square_x, square_y = sums[2, t] / window, sums[3, t] / window
        var_x, var_y = square_x - mx * mx, square_y - my * my
        if var_x > 1e-10 * square_x and var_y > 1e-10 * square_y:
            out[t] = (sums[4, t] / window - mx * my) / np.sqrt(var_x * var_y)
        else:
            out[t] = np.nan
    return out


@numba.njit(cache=True, nogil=True)
def window_sum_and_ramp(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """:func:`window_sum` and ``sum(k * x[t-k] for k in 0 .. window-1)`` at each index.

    Per block of `window` values (aligned on the first): running sums of ``x`` and of ``x`` times
    its offset in the block, forward from the block's start and backward from its end, so every
    product has a factor below `window` (no cancellation of large index-weighted sums).
    """
    n = x.shape[0]
    p0, p1, q0, q1 = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        k = i % window
        if k == 0:
            p0[i], p1[i] = x[i], 0.0 * x[i]
        else:
            p0[i], p1[i] = p0[i - 1] + x[i], p1[i - 1] + k * x[i]
    for i in range(n - 1, -1, -1):
        end = min((i // window) * window + window - 1, n - 1)
        if i == end:
            q0[i], q1[i] = x[i], 0.0 * x[i]
        else:
            q0[i], q1[i] = q0[i + 1] + x[i], q1[i + 1] + (end - i) * x[i]
    total, ramp = np.empty(n), np.empty(n)
    for t in range(n):
        if t < window - 1:
            total[t], ramp[t] = np.nan, np.nan
            continue
        first, start = t - window + 1, (t // window) * window
        own = (t - start) * p0[t] - p1[t]  # bars start .. t, weighted t - i
        if first == start:
            total[t], ramp[t] = p0[t], own
        else:  # bars first .. start - 1 of the previous block, weighted t - i = (t - e) + (e - i)
            e = start - 1
            total[t] = q0[first] + p0[t]
            ramp[t] = own + (t - e) * q0[first] + q1[first]
    return total, ramp


@numba.njit(cache=True, nogil=True)
def kama_steps(close: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """TA-Lib KAMA's step at each bar as an affine map ``kama -> a kama + b`` (NaN before `period`).

    ``a = 1 - sc``, ``b = sc close`` with ``sc = (ER (2/3 - 2/(period+1)) + 2/(period+1))^2`` and the
    efficiency ratio ``ER = |close - close[-period]| / sum of |1-bar moves|`` over `period` bars, 1
    where the sum is no more than the signed change or below 1e-14 (TA-Lib's rules).
    """
    n = close.shape[0]
    moves = np.empty(n)
    moves[0] = np.nan
    for i in range(1, n):
        moves[i] = abs(close[i] - close[i - 1])
    path = window_sum(moves, period)
    fastest, slowest = 2.0 / 3.0, 2.0 / (period + 1.0)
    a, b = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(period, n):
        change = close[i] - close[i - period]
        ratio = 1.0 if path[i] <= change or abs(path[i]) < 1e-14 else abs(change / path[i])
        sc = ratio * (fastest - slowest) + slowest
        sc *= sc
        a[i] = 1.0 - sc
        b[i] = sc * close[i]
    return a, b


@numba.njit(cache=True, nogil=True)
def paired_moments(
    count: np.ndarray, x: np.ndarray, y: np.ndarray, window: int
) -> np.ndarray:  # pragma: no cover
    """Covariance of x and y, variance of x and of y over the last `window` slots, as rows 0-2.

    `count` is 1 where a slot holds a pair, with `x` and `y` 0 where it does not. NaN where fewer
    than half the slots hold pairs, before slot `window` (slot 0 has no return), and for a variance
    within 1e-10 of its mean square (a series that did not move).
    """
    n = count.shape[0]
    terms = np.empty((6, n))
    for i in range(n):
        terms[0, i] = count[i]
        terms[1, i] = x[i]
        terms[2, i] = y[i]
        terms[3, i] = x[i] * y[i]
        terms[4, i] = x[i] * x[i]
        terms[5, i] = y[i] * y[i]
    sums = window_sums(terms, window)
    out = np.full((3, n), np.nan)
    for t in range(window, n):
        pairs = sums[0, t]
        if not pairs >= window / 2:
            continue
        mx, my = sums[1, t] / pairs, sums[2, t] / pairs
        out[0, t] = sums[3, t] / pairs - mx * my
        var_x, var_y = sums[4, t] / pairs - mx * mx, sums[5, t] / pairs - my * my
        if var_x > 1e-10 * sums[4, t] / pairs:
            out[1, t] = var_x
        if var_y > 1e-10 * sums[5, t] / pairs:
            out[2, t] = var_y
    return out
