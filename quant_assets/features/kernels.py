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
    block (a running suffix), three passes in all. A value uses its window's maps only; its
    rounding (not its value) depends on where blocks start, within a few ulps.
    """
    n = a.shape[0]
    pre_a, pre_b = np.empty(n), np.empty(n)
    suf_a, suf_b = np.empty(n), np.empty(n)
    for i in range(n):
        if i % steps == 0:
            pre_a[i], pre_b[i] = a[i], b[i]
        else:
            pre_a[i] = a[i] * pre_a[i - 1]
            pre_b[i] = a[i] * pre_b[i - 1] + b[i]
    for i in range(n - 1, -1, -1):
        if i % steps == steps - 1 or i == n - 1:
            suf_a[i], suf_b[i] = a[i], b[i]
        else:
            suf_a[i] = suf_a[i + 1] * a[i]
            suf_b[i] = suf_a[i + 1] * b[i] + suf_b[i + 1]
    out_a, out_b = np.full(n, np.nan), np.full(n, np.nan)
    for t in range(steps - 1, n):
        first = t - steps + 1
        if first % steps == 0:  # the window is one whole block
            out_a[t], out_b[t] = pre_a[t], pre_b[t]
        else:  # prefix of t's block after the suffix of the previous one
            out_a[t] = pre_a[t] * suf_a[first]
            out_b[t] = pre_a[t] * suf_b[first] + pre_b[t]
    return out_a, out_b


@numba.njit(cache=True, nogil=True)
def window_sum(x: np.ndarray, window: int) -> np.ndarray:  # pragma: no cover
    """Sum of the last `window` values at each index (NaN for the first ``window - 1``).

    Blocks of `window` values are aligned on the first one; a window is the running sum of its
    last block's values up to ``t`` plus the running sum, from its end, of the previous block's
    values from ``t - window + 1``: every addition stays inside two blocks, so the rounding error is
    that of summing about ``window`` values, whatever came before. A NaN or infinity affects only
    the windows that hold it.
    """
    n = x.shape[0]
    prefix, suffix, out = np.empty(n), np.empty(n), np.empty(n)
    k = 0
    for i in range(n):
        prefix[i] = x[i] if k == 0 else prefix[i - 1] + x[i]
        k += 1
        if k == window:
            k = 0
    for i in range(n - 1, -1, -1):
        if i == n - 1 or (i + 1) % window == 0:
            suffix[i] = x[i]
        else:
            suffix[i] = suffix[i + 1] + x[i]
    for t in range(min(window - 1, n)):
        out[t] = np.nan
    for t in range(window - 1, n):
        first = t - window + 1
        out[t] = prefix[t] if first % window == 0 else suffix[first] + prefix[t]
    return out
