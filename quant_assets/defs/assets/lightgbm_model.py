"""``lightgbm_model``: LightGBM gradient-boosted trees, a new version at every materialization."""

from quant_assets.defs.assets._model_asset import build_model_asset

lightgbm_model = build_model_asset("lightgbm", kinds={"lightgbm", "parquet"})
