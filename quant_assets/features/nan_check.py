"""The NaN rule: after its lookback, a feature is NaN only where its documented condition holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from quant_assets.features.candles import REFERENCE_SYMBOL, Candles, Reference
from quant_assets.features.compute import _panel
from quant_assets.features.registry import FEATURES, Feature


def unexplained_nans(
    candles: pd.DataFrame,
    features: pd.DataFrame,
    rows: np.ndarray | None = None,
    *,
    declared: Sequence[Feature] = FEATURES,
) -> dict[str, int]:
    """Per feature, how many of the judged rows are NaN although nothing documented explains it.

    A NaN is explained when the row's symbol has fewer than the feature's ``lookback`` earlier bars
    in `candles`, or when the feature's ``nan_when`` condition holds at that bar (tested on the
    candles, not on the feature). Features absent from the result have no unexplained NaN.

    Args:
        candles: what `features` was computed from (the ``ohlcv`` columns, any row order), e.g. a
            day plus its warm-up.
        features: ``compute_features(candles)``: one row per candle, same index and order.
        rows: boolean mask over the rows to judge (e.g. the partition's day); default all rows.
        declared: the features to judge (default the registry).

    Returns:
        ``{feature name: unexplained NaN rows}``, only features with at least one, registry order.

    Raises:
        ValueError: `features` is not row-aligned with `candles`, lacks a declared feature's column,
            or `rows` has the wrong length; and whatever :func:`compute_features` raises on `candles`.
    """
    if len(features) != len(candles) or not features.index.equals(candles.index):
        raise ValueError(
            f"features ({len(features)} rows) must be compute_features(candles) ({len(candles)} rows), "
            "row for row with the same index"
        )
    missing = [f.name for f in declared if f.name not in features.columns]
    if missing:
        raise ValueError(f"features lack the declared columns {missing}")
    judged = np.ones(len(candles), dtype=bool) if rows is None else np.asarray(rows, dtype=bool)
    if judged.shape != (len(candles),):
        raise ValueError(f"rows must be one boolean per candle ({len(candles)}), got shape {judged.shape}")
    if not judged.any():
        return {}
    panel = _panel(candles)
    # Each row's position among its symbol's bars (0 for the first), in the input's row order.
    position = np.empty(len(candles), dtype=np.int64)
    for k in range(len(panel.symbols)):
        position[panel.rows(k)] = np.arange(int(panel.starts[k + 1] - panel.starts[k]))
    values = features[[f.name for f in declared]].to_numpy(dtype=np.float64, na_value=np.nan)
    lookbacks = np.array([f.lookback for f in declared], dtype=np.int64)
    suspect = np.isnan(values) & judged[:, None] & (position[:, None] >= lookbacks[None, :])
    found: dict[str, int] = {}
    with_nan = np.flatnonzero(suspect.any(axis=0))
    if with_nan.size == 0:
        return found
    reference = None
    if REFERENCE_SYMBOL in panel.symbols:
        ref = panel.candles(panel.symbols.index(REFERENCE_SYMBOL), None)
        reference = Reference(ref.open_time_ms, ref.close)
    candles_of: dict[int, Candles] = {}
    for j in with_nan:  # registry order
        f = declared[j]
        column = suspect[:, j]
        if f.nan_when is None:
            found[f.name] = int(column.sum())
            continue
        unexplained = 0
        for k in np.unique(panel.symbol_code[column]):
            rows = panel.rows(int(k))
            if int(k) not in candles_of:
                candles_of[int(k)] = panel.candles(int(k), reference)
            unexplained += int((column[rows] & ~f.nan_when.holds(candles_of[int(k)])).sum())
        if unexplained:
            found[f.name] = unexplained
    return found
