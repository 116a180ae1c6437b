"""The NaN rule: after its lookback, a feature is NaN only where its documented condition holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from quant_assets.features.candles import REFERENCE_SYMBOL, Reference
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
    counts = dict.fromkeys((f.name for f in declared), 0)
    if not judged.any():
        return {}
    panel = _panel(candles)
    reference = None
    if REFERENCE_SYMBOL in panel.symbols:
        ref = panel.candles(panel.symbols.index(REFERENCE_SYMBOL), None)
        reference = Reference(ref.open_time_ms, ref.close)
    values = {f.name: features[f.name].to_numpy(dtype=np.float64, na_value=np.nan) for f in declared}
    for k in range(len(panel.symbols)):
        symbol_rows = panel.rows(k)
        judged_here = judged[symbol_rows]
        if not judged_here.any():
            continue
        c = panel.candles(k, reference)
        position = np.arange(len(c))
        for f in declared:
            nan = np.isnan(values[f.name][symbol_rows]) & judged_here & (position >= f.lookback)
            if nan.any() and f.nan_when is not None:
                nan &= ~f.nan_when.holds(c)
            counts[f.name] += int(nan.sum())
    return {name: n for name, n in counts.items() if n}
