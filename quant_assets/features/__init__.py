"""The one feature library: training, the ``feature_table`` asset and live inference all call it.

Imports no Dagster. Public API:

* :func:`compute_features` candles -> one row of every registered feature per candle;
* :func:`feature_schema` names, hash and warm-up of the registry; :func:`check_schema` refuses a
  model built on another schema; :func:`feature_catalog` the ``feature_catalog`` view's rows;
* :func:`unexplained_nans` the NaN rule: NaN after a feature's lookback that its documented
  ``nan_when`` condition does not explain;
* :func:`compute_labels` forward returns (never inputs);
* :func:`latest_features` the live-inference entry point: the features at the last closed candle.
"""

from quant_assets.features.compute import compute_features
from quant_assets.features.inference import latest_features
from quant_assets.features.labels import compute_labels
from quant_assets.features.nan_check import unexplained_nans
from quant_assets.features.nan_rules import NanWhen
from quant_assets.features.registry import FEATURES, Feature
from quant_assets.features.schema import FeatureSchema, check_schema, feature_catalog, feature_schema

__all__ = [
    "FEATURES",
    "Feature",
    "FeatureSchema",
    "NanWhen",
    "check_schema",
    "compute_features",
    "compute_labels",
    "feature_catalog",
    "feature_schema",
    "latest_features",
    "unexplained_nans",
]
