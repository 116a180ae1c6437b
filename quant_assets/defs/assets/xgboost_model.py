"""``xgboost_model``: XGBoost gradient-boosted trees (hist), a new version at every materialization."""

from quant_assets.defs.assets._model_asset import build_model_asset

xgboost_model = build_model_asset("xgboost", kinds={"xgboost", "parquet"})
