"""Build one day of the feature and label tables from the lake, with the checks the asset reports.

Warm-up days are read straight from the store: features at the first bar of the day need
``feature_schema().warmup_bars`` earlier bars of each symbol, and labels at its last bar need the
next day's candles (NULL where those do not exist yet).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from quant_assets.features import FEATURES, compute_features, compute_labels, feature_catalog, feature_schema
from quant_assets.quality import CheckOutcome
from quant_assets.store import schemas
from quant_assets.store.lake import Lake, WriteResult

BARS_PER_DAY = 288
LABEL_HORIZON_DAYS = 1  # the longest label (48 bars) needs at most the next day
SCHEMA_HASH_KEY = "feature_schema_hash"


@dataclass(frozen=True)
class FeatureDay:
    """One day's features and labels, and what was checked about them."""

    day: dt.date
    features: pd.DataFrame
    labels: pd.DataFrame
    checks: list[CheckOutcome]
    symbols: int
    warmup_days: int


def warmup_days() -> int:
    """Whole days of candles to read before a day so every symbol has its warm-up bars."""
    return math.ceil(feature_schema().warmup_bars / BARS_PER_DAY)


def build_feature_day(lake: Lake, day: dt.date) -> FeatureDay:
    """Features and labels of every symbol with candles on `day` (UTC)."""
    schema = feature_schema()
    start_of_day = dt.datetime.combine(day, dt.time())
    end_of_day = start_of_day + dt.timedelta(days=1)
    warm = warmup_days()
    candles = lake.read_ohlcv(
        symbols=None,
        start=start_of_day - dt.timedelta(days=warm),
        end=end_of_day + dt.timedelta(days=LABEL_HORIZON_DAYS),
    )
    up_to_day_end = candles[candles["open_time"] < end_of_day]
    day_symbols = up_to_day_end.loc[up_to_day_end["open_time"] >= start_of_day, "symbol"].unique()
    up_to_day_end = up_to_day_end[up_to_day_end["symbol"].isin(day_symbols)].reset_index(drop=True)

    computed = compute_features(up_to_day_end)
    in_day = (up_to_day_end["open_time"] >= start_of_day).to_numpy()
    features = computed.loc[in_day, ["symbol", "open_time", *schema.names]].reset_index(drop=True)
    bars_before = up_to_day_end.groupby("symbol").cumcount().to_numpy()[in_day]

    labels = _labels_of_day(candles[candles["symbol"].isin(day_symbols)], start_of_day)
    return FeatureDay(
        day=day,
        features=features,
        labels=labels,
        checks=check_features(features, bars_before),
        symbols=len(day_symbols),
        warmup_days=warm,
    )


def build_labels(lake: Lake, day: dt.date) -> pd.DataFrame:
    """Labels of every symbol with candles on `day`, from that day and the next (when stored)."""
    start_of_day = dt.datetime.combine(day, dt.time())
    candles = lake.read_ohlcv(
        symbols=None, start=start_of_day, end=start_of_day + dt.timedelta(days=1 + LABEL_HORIZON_DAYS)
    )
    return _labels_of_day(candles, start_of_day)


def _labels_of_day(candles: pd.DataFrame, start_of_day: dt.datetime) -> pd.DataFrame:
    labels = compute_labels(candles.reset_index(drop=True))
    end_of_day = start_of_day + dt.timedelta(days=1)
    rows = (labels["open_time"] >= start_of_day) & (labels["open_time"] < end_of_day)
    return labels.loc[rows, schemas.LABELS.names].reset_index(drop=True)


def check_features(features: pd.DataFrame, bars_before: np.ndarray) -> list[CheckOutcome]:
    """No NaN once a feature's lookback is covered, no infinity anywhere.

    `bars_before[i]` is how many earlier candles row i's symbol had in the data the features were
    computed from; a feature may be NaN only while that is below the feature's lookback, or in the
    documented cases of its ``nan_when`` (no BTCUSDT at that time, a gap inside its window...),
    which are counted in the metadata but do not fail the check.
    """
    nan_after_warmup: dict[str, int] = {}
    documented_nan: dict[str, int] = {}
    infinite: dict[str, int] = {}
    for feature in FEATURES:
        values = features[feature.name].to_numpy(dtype=float)
        warmed = bars_before >= feature.lookback
        nans = int(np.isnan(values[warmed]).sum())
        if nans:
            (documented_nan if feature.nan_when else nan_after_warmup)[feature.name] = nans
        infs = int(np.isinf(values).sum())
        if infs:
            infinite[feature.name] = infs
    return [
        CheckOutcome(
            "no_nan_after_warmup",
            not nan_after_warmup,
            "ERROR",
            "every feature is a number once its lookback is covered",
            {
                "features_with_nan": nan_after_warmup,
                "documented_nan": documented_nan,
                "rows": len(features),
            },
        ),
        CheckOutcome(
            "no_infinities",
            not infinite,
            "ERROR",
            "no feature value is +/-inf",
            {"features_with_inf": infinite},
        ),
    ]


def write_feature_day(lake: Lake, built: FeatureDay) -> tuple[WriteResult, WriteResult, WriteResult]:
    """Store features (hash in the file's metadata), labels and the catalog of this schema."""
    schema = feature_schema()
    features = lake.write(
        "features",
        built.features,
        schema=schemas.features_schema(schema.names),
        metadata={SCHEMA_HASH_KEY: schema.hash},
        date=built.day,
    )
    labels = lake.write("labels", built.labels, date=built.day)
    catalog = lake.write("feature_catalog", feature_catalog(), schema_hash=schema.hash)
    return features, labels, catalog
