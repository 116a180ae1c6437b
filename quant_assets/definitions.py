"""The one ``Definitions`` object of quant_assets: every asset, check, job, schedule and sensor."""

from __future__ import annotations

import dagster as dg

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.labels import labels
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import (
    coin_universe_job,
    daily_refresh,
    feature_table_job,
    feature_table_sensor,
    labels_job,
    labels_sensor,
    ohlcv_job,
    ohlcv_sensor,
)
from quant_assets.defs.executors import select_executor
from quant_assets.defs.resources import build_resources

defs = dg.Definitions(
    assets=[coin_universe, ohlcv, feature_table, labels],
    jobs=[coin_universe_job, ohlcv_job, feature_table_job, labels_job],
    schedules=[daily_refresh],
    sensors=[ohlcv_sensor, feature_table_sensor, labels_sensor],
    resources=build_resources(),
    # QT_EXECUTOR: in_process (default; a run is a batch of partitions in one process),
    # multiprocess or celery; the code is the same locally and on workers (defs/executors.py).
    executor=select_executor(),
)
