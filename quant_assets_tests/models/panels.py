"""Synthetic panels for model tests: random-walk prices per symbol, an optional planted signal.

The honest way to test the evaluation machinery on known truth: every bar's log return is
Gaussian noise, and with ``signal > 0`` the next bar's return of a symbol also carries
``signal * sigma * x`` where ``x`` is the feature ``x_signal`` of the current bar. ``ret_12`` is
computed from the same prices as the label, so the last-return baseline is the real one.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from quant_assets.features.schema import FeatureSchema, feature_schema
from quant_assets.models.base import HORIZON_BARS, TARGET, Panel
from quant_assets.store import schemas
from quant_assets.store.lake import Lake
from quant_assets.store.schemas import FEATURE_SCHEMA_HASH

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
    start: datetime = START,
) -> Panel:
    """A panel of `symbols` x `days` whole days of 5-minute bars from `start`."""
    rng = np.random.default_rng(seed)
    bars = days * BARS_PER_DAY
    times = pd.date_range(start, periods=bars, freq="5min").astype("datetime64[ms]")
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


def write_synthetic_lake(
    lake: Lake,
    *,
    first_day: date,
    days: int,
    symbols: int = 8,
    signal: float = 0.0,
    seed: int = 0,
    schema_hash: str | None = None,
    extra_symbols: tuple[str, ...] = (),
) -> list[str]:
    """Store `days` feature and label days (real Parquet, the current feature names) from `first_day`.

    The universe snapshot of `first_day` holds `symbols` symbols; `extra_symbols` get feature rows
    too but are outside the universe. The features are a synthetic panel's columns spread over the
    library's names: ``ret_12`` is the real last-12-bar return, ``rsi_14`` carries the planted
    ``x_signal``, every other feature is noise. Returns the universe's symbols.
    """
    current = feature_schema()
    names = current.names
    panel = synthetic_panel(
        symbols=symbols + len(extra_symbols),
        days=days,
        signal=signal,
        seed=seed,
        start=datetime.combine(first_day, datetime.min.time()),
    )
    source = panel.frame
    universe = sorted(source["symbol"].unique())[:symbols]
    renamed = dict(zip(sorted(source["symbol"].unique())[symbols:], extra_symbols, strict=True))
    source = source.assign(symbol=source["symbol"].replace(renamed))
    rng = np.random.default_rng(seed + 1)
    features = pd.DataFrame({"symbol": source["symbol"], "open_time": source["open_time"]})
    features[FEATURE_SCHEMA_HASH] = schema_hash or current.hash
    for name in names:
        if name == "ret_12":
            features[name] = source["ret_12"]
        elif name == "rsi_14":
            features[name] = source["x_signal"]
        else:
            features[name] = rng.standard_normal(len(source))
    features = features.sort_values(["symbol", "open_time"], ignore_index=True)
    labels = source[["symbol", "open_time"]].assign(
        fwd_ret_1=np.nan, fwd_ret_12=source[TARGET], fwd_ret_48=np.nan
    )
    lake.write(
        "coin_universe",
        pd.DataFrame(
            {
                "snapshot_date": first_day,
                "rank": np.arange(1, symbols + 1, dtype=np.int32),
                "symbol": universe,
                "base_asset": [s.removesuffix("USDT") for s in universe],
                "coingecko_id": [s.lower() for s in universe],
                "categories": "layer-1",
                "volume_24h_usd": 1e9,
                "market_cap_usd": 1e10,
                "source": "coingecko",
                "fetched_at": datetime.combine(first_day, datetime.min.time()),
            }
        ),
        date=first_day,
    )
    stored_hash = schema_hash or current.hash
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        start = np.datetime64(datetime.combine(day, datetime.min.time()), "ms")
        in_day = (features["open_time"] >= start) & (features["open_time"] < start + np.timedelta64(1, "D"))
        lake.write(
            "features",
            features.loc[in_day],
            schema=schemas.features_schema(names),
            metadata={FEATURE_SCHEMA_HASH: stored_hash},
            date=day,
        )
        in_day_labels = (labels["open_time"] >= start) & (
            labels["open_time"] < start + np.timedelta64(1, "D")
        )
        lake.write("labels", labels.loc[in_day_labels], date=day)
    return universe
