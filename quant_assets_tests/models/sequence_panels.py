"""Synthetic panels for the sequence models: the window channels, and a planted lag pattern.

Each symbol's 1-bar log return is Gaussian noise plus, with ``beta > 0``, ``beta * SIGMA`` times the
channel ``volz_48`` of ``LAG`` bars earlier. So the next hour's return (the label ``fwd_ret_12``, the
sum of the next 12 one-bar returns, computed from the same path) is partly known at bar t: the
returns of bars t+1 .. t+LAG follow volz_48 at t+1-LAG .. t, all in the window ending at t.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from quant_assets.features.schema import FeatureSchema
from quant_assets.features.sequences import SEQUENCE_CHANNELS
from quant_assets.models.base import HORIZON_BARS, TARGET, Panel, TimeRange

START = datetime(2026, 3, 1)
BAR = timedelta(minutes=5)
SIGMA = 0.002  # per-bar log-return noise
LAG = 3  # bars between the volume channel and the return it moves
FEATURES = ("ret_1", "ret_12", "volz_48", "taker_buy_ratio", "noise_0")


def schema_of(names: tuple[str, ...]) -> FeatureSchema:
    """A schema of `names` whose hash is derived from them."""
    return FeatureSchema(
        _names=names, hash=hashlib.sha256("|".join(names).encode()).hexdigest(), warmup_bars=0
    )


def lagged_panel(*, symbols: int = 4, bars: int = 1200, beta: float = 3.0, seed: int = 0) -> Panel:
    """`symbols` x `bars` five-minute bars from START with the planted pattern (module docstring)."""
    assert set(SEQUENCE_CHANNELS) <= set(FEATURES)
    rng = np.random.default_rng(seed)
    times = pd.date_range(START, periods=bars, freq="5min").astype("datetime64[ms]")
    frames = []
    for k in range(symbols):
        volume_z = rng.standard_normal(bars + HORIZON_BARS)
        returns = SIGMA * rng.standard_normal(bars + HORIZON_BARS)
        returns[LAG:] += beta * SIGMA * volume_z[:-LAG]
        log_price = np.cumsum(returns)
        frame = pd.DataFrame({"symbol": f"S{k:02d}USDT", "open_time": times})
        frame["ret_1"] = returns[:bars]
        frame["ret_12"] = np.r_[
            np.full(HORIZON_BARS, np.nan), log_price[HORIZON_BARS:bars] - log_price[: bars - HORIZON_BARS]
        ]
        frame["volz_48"] = volume_z[:bars]
        frame["taker_buy_ratio"] = rng.uniform(0.3, 0.7, bars)
        frame["noise_0"] = rng.standard_normal(bars)
        frame[TARGET] = log_price[HORIZON_BARS : bars + HORIZON_BARS] - log_price[:bars]
        frames.append(frame)
    return Panel(pd.concat(frames, ignore_index=True), schema_of(FEATURES))


def split(bars: int = 1200) -> tuple[TimeRange, TimeRange, TimeRange]:
    """Train 70 %, validation and test 15 % each of `bars`, an embargo of 12 bars after each part."""
    train_end, valid_end = round(bars * 0.70), round(bars * 0.85)
    return (
        TimeRange(START, START + (train_end - HORIZON_BARS) * BAR),
        TimeRange(START + train_end * BAR, START + (valid_end - HORIZON_BARS) * BAR),
        TimeRange(START + valid_end * BAR, START + (bars - HORIZON_BARS) * BAR),
    )


def with_frame(panel: Panel, frame: pd.DataFrame) -> Panel:
    """`panel` with another frame (same schema)."""
    return replace(panel, frame=frame)
