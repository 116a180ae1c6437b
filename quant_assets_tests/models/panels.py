"""Synthetic panels for model tests: random-walk prices per symbol, an optional planted signal.

The honest way to test the evaluation machinery on known truth: every bar's log return is
Gaussian noise, and with ``signal > 0`` the next bar's return of a symbol also carries
``signal * sigma * x`` where ``x`` is the feature ``x_signal`` of the current bar. ``ret_12`` is
computed from the same prices as the label, so the last-return baseline is the real one.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pandas as pd

from quant_assets.features.schema import FeatureSchema
from quant_assets.models.base import HORIZON_BARS, TARGET, Panel

START = datetime(2026, 3, 1)
BARS_PER_DAY = 288
SIGMA = 0.002  # per-bar log-return volatility


def synthetic_schema(names: tuple[str, ...]) -> FeatureSchema:
    digest = hashlib.sha256("|".join(names).encode()).hexdigest()
    return FeatureSchema(_names=names, hash=digest, warmup_bars=0)


def synthetic_panel(
    *,
    symbols: int = 8,
    days: int = 6,
    signal: float = 0.0,
    seed: int = 0,
    noise_features: int = 3,
    extra: tuple[str, ...] = (),
) -> Panel:
    """A panel of `symbols` x `days` whole days of 5-minute bars from `START`."""
    rng = np.random.default_rng(seed)
    bars = days * BARS_PER_DAY
    times = pd.date_range(START, periods=bars, freq="5min").astype("datetime64[ms]")
    names = ("ret_12", "x_signal", *(f"noise_{i}" for i in range(noise_features)), *extra)
    frames = []
    for k in range(symbols):
        x = rng.standard_normal(bars)
        returns = SIGMA * rng.standard_normal(bars + HORIZON_BARS)
        returns[1 : bars + 1] += signal * SIGMA * x  # the return of bar t + 1 follows x at t
        log_price = np.cumsum(returns)
        frame = pd.DataFrame({"symbol": f"S{k:02d}USDT", "open_time": times})
        ret_12 = np.full(bars, np.nan)
        ret_12[HORIZON_BARS:] = log_price[HORIZON_BARS:bars] - log_price[: bars - HORIZON_BARS]
        frame["ret_12"] = ret_12
        frame["x_signal"] = x
        for name in names[2:]:
            frame[name] = rng.standard_normal(bars)
        frame[TARGET] = log_price[HORIZON_BARS : bars + HORIZON_BARS] - log_price[:bars]
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    return Panel(frame[["symbol", "open_time", *names, TARGET]], synthetic_schema(names))
