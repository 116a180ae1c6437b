"""Labels: forward log returns, kept apart from features so they can never become model inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.features.candles import FIVE_MINUTES_MS, epoch_ms

LABEL_HORIZONS = (1, 12, 48)  # bars of 5 minutes


def compute_labels(candles: pd.DataFrame) -> pd.DataFrame:
    """Forward log returns ``fwd_ret_<k> = ln(close at open_time + k*5 min / close)`` for k in 1, 12, 48.

    The label of a candle is the return from its close to the close of the candle that opens
    exactly k five-minute slots later. Where that candle is not in `candles` (the future is not
    known yet, or the venue has a gap there) the label is NaN rather than a return over another
    horizon.

    Args:
        candles: ``symbol``, ``open_time`` (naive UTC or tz-aware) and ``close`` for one or many
            symbols, rows in any order, one row per (symbol, open_time).

    Returns:
        One row per input row, the input's index and order: ``symbol``, ``open_time``
        (``datetime64[ms]``, naive UTC), ``fwd_ret_1``, ``fwd_ret_12``, ``fwd_ret_48`` (float64).

    Raises:
        KeyError: a required column is missing.
        ValueError: a close is not finite and positive, or a (symbol, open_time) appears twice.
    """
    missing = [c for c in ("symbol", "open_time", "close") if c not in candles.columns]
    if missing:
        raise KeyError(f"candles lack the columns {missing}")
    out = pd.DataFrame(
        {
            "symbol": candles["symbol"].astype("str"),
            "open_time": pd.Series(
                epoch_ms(candles["open_time"]).view("datetime64[ms]"), index=candles.index
            ),
        },
        index=candles.index,
    )
    if out.empty:
        for k in LABEL_HORIZONS:
            out[f"fwd_ret_{k}"] = np.zeros(0)
        return out
    close = candles["close"].to_numpy(dtype=np.float64, na_value=np.nan)
    if not (np.isfinite(close) & (close > 0)).all():
        raise ValueError("close must be finite and > 0 on every row")
    times = out["open_time"].to_numpy().view(np.int64)
    codes, _ = pd.factorize(candles["symbol"], sort=True)
    order = np.lexsort((times, codes))
    # One int64 key per candle, ordered like (symbol, open_time), with room between symbols: the
    # candle k slots after a candle has key + k * 5 min exactly when it exists.
    first = int(times.min())
    span = int(times.max()) - first + FIVE_MINUTES_MS * (max(LABEL_HORIZONS) + 1)
    keys = codes[order].astype(np.int64) * span + (times[order] - first)
    if (np.diff(keys) == 0).any():
        raise ValueError("a (symbol, open_time) appears twice")
    log_close = np.log(close[order])
    last = len(keys) - 1
    for k in LABEL_HORIZONS:
        target = keys + k * FIVE_MINUTES_MS
        position = np.minimum(np.searchsorted(keys, target), last)
        label = np.empty(len(keys))
        label[order] = np.where(keys[position] == target, log_close[position] - log_close, np.nan)
        out[f"fwd_ret_{k}"] = label
    return out
