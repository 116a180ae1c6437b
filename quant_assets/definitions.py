"""The one ``Definitions`` object of quant_assets: every asset, check, job, schedule and sensor."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.assets._model_asset import retrain_job
from quant_assets.defs.assets.coin_market import coin_market
from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.lightgbm_model import lightgbm_model
from quant_assets.defs.assets.model_evaluation import model_evaluation
from quant_assets.defs.assets.nhits_model import nhits_model
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.assets.patchtst_model import patchtst_model
from quant_assets.defs.assets.predictions import predictions
from quant_assets.defs.assets.xgboost_model import xgboost_model
from quant_assets.defs.automation import (
    coin_universe_job,
    daily_models_job,
    daily_refresh,
    feature_table_job,
    feature_table_sensor,
    freshness_checks_job,
    freshness_sensor,
    labels_job,
    labels_sensor,
    model_evaluation_sensor,
    ohlcv_job,
    ohlcv_sensor,
    retrain_sensor,
)
from quant_assets.defs.checks import feature_table_fresh, ohlcv_fresh, predictions_fresh
from quant_assets.defs.executors import select_executor
from quant_assets.defs.resources import build_resources

defs = dg.Definitions(
    assets=[
        coin_universe,
        coin_market,
        ohlcv,
        feature_table,
        labels,
        xgboost_model,
        lightgbm_model,
        nhits_model,
        patchtst_model,
        predictions,
        model_evaluation,
    ],
    asset_checks=[ohlcv_fresh, feature_table_fresh, predictions_fresh],
    jobs=[
        coin_universe_job,
        ohlcv_job,
        feature_table_job,
        labels_job,
        retrain_job,
        freshness_checks_job,
        daily_models_job,
    ],
    schedules=[daily_refresh],
    sensors=[
        ohlcv_sensor,
        feature_table_sensor,
        labels_sensor,
        retrain_sensor,
        model_evaluation_sensor,
        freshness_sensor,
    ],
    resources=build_resources(),
    # QT_EXECUTOR: in_process (default; a run is a batch of partitions in one process),
    # multiprocess or celery; the code is the same locally and on workers (defs/executors.py).
    executor=select_executor(),
)
