"""One Arrow schema per stored table: the data contract of DESIGN.md §3, in code.

Timestamps are UTC, stored as naive ``timestamp[ms]`` so DuckDB reads them as ``TIMESTAMP``.
"""

from __future__ import annotations

import pyarrow as pa

TIMESTAMP = pa.timestamp("ms")

COIN_UNIVERSE = pa.schema(
    [
        ("snapshot_date", pa.date32()),
        ("rank", pa.int32()),
        ("symbol", pa.string()),
        ("base_asset", pa.string()),
        ("coingecko_id", pa.string()),
        ("categories", pa.string()),  # comma-separated CoinGecko category ids, e.g. "layer-1"
        ("volume_24h_usd", pa.float64()),
        ("market_cap_usd", pa.float64()),
        ("source", pa.string()),  # 'coingecko' or 'binance_fallback'
        ("fetched_at", TIMESTAMP),
    ]
)

# One row per coin of the day's coin_universe: CoinGecko coins/markets (market_data asset coin_market).
COIN_MARKET = pa.schema(
    [
        ("snapshot_date", pa.date32()),
        ("symbol", pa.string()),
        ("coingecko_id", pa.string()),
        ("market_cap_usd", pa.float64()),  # NULL: CoinGecko gave none for the coin
        ("total_volume_usd", pa.float64()),  # 24h volume, USD
        ("circulating_supply", pa.float64()),
        ("point_in_time", pa.bool_()),  # False: an older day filled from the market data of its fetch
        ("fetched_at", TIMESTAMP),
    ]
)

OHLCV = pa.schema(
    [
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("open_time", TIMESTAMP),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
        ("quote_volume", pa.float64()),
        ("trades", pa.int64()),
        ("taker_buy_volume", pa.float64()),
        ("taker_buy_quote_volume", pa.float64()),
        # The venue's own instrument name (BTCUSDT on Binance and Bybit, BTC-USDT-SWAP on OKX);
        # `symbol` is the universe's Binance symbol on every venue. NULL in day files written before.
        ("venue_symbol", pa.string()),
    ]
)
OHLCV_COLUMNS: tuple[str, ...] = tuple(OHLCV.names)

LABELS = pa.schema(
    [
        ("symbol", pa.string()),
        ("open_time", TIMESTAMP),
        ("fwd_ret_1", pa.float64()),
        ("fwd_ret_12", pa.float64()),
        ("fwd_ret_48", pa.float64()),
    ]
)

FEATURE_CATALOG = pa.schema(
    [
        ("name", pa.string()),
        ("group", pa.string()),
        ("description", pa.string()),
        ("lookback_bars", pa.int32()),
        ("feature_schema_hash", pa.string()),  # the schema these definitions belong to
    ]
)


MODEL_REGISTRY = pa.schema(
    [
        ("model", pa.string()),  # xgboost, lightgbm, nhits, patchtst
        ("version", pa.string()),  # unique per training, e.g. xgboost-20261129T171530.123456Z
        ("trained_at", pa.timestamp("us")),  # UTC, to the microsecond the version names
        ("train_start", TIMESTAMP),  # first open_time of the training rows (inclusive)
        ("train_end", TIMESTAMP),  # rows fitted or judged have open time < train_end (test end)
        ("feature_schema_hash", pa.string()),
        ("features", pa.list_(pa.string())),  # input columns in order
        ("metrics", pa.string()),  # JSON: test metrics, both baselines, the bootstrap bounds
        ("artifact_path", pa.string()),  # absolute directory of the saved model
        ("promoted", pa.bool_()),
        ("reason", pa.string()),  # why promoted or not, with the numbers
    ]
)

PREDICTIONS = pa.schema(
    [
        ("model", pa.string()),
        ("version", pa.string()),
        ("symbol", pa.string()),
        ("open_time", TIMESTAMP),  # the candle whose close the prediction starts from
        ("horizon", pa.int32()),  # bars of 5 minutes ahead (12: fwd_ret_12)
        ("prediction", pa.float64()),  # predicted forward log return over `horizon` bars
        ("promoted", pa.bool_()),  # the version's promotion verdict
    ]
)

MODEL_EVALUATION = pa.schema(
    [
        ("model", pa.string()),
        ("version", pa.string()),
        ("day", pa.date32()),
        ("promoted", pa.bool_()),
        ("rows", pa.int64()),  # predictions of the day with a realized label
        ("ic", pa.float64()),
        ("directional_accuracy", pa.float64()),
        ("rmse", pa.float64()),
        ("mae", pa.float64()),
        ("baseline_zero_ic", pa.float64()),
        ("baseline_zero_directional_accuracy", pa.float64()),
        ("baseline_zero_rmse", pa.float64()),
        ("baseline_zero_mae", pa.float64()),
        ("baseline_last_ic", pa.float64()),
        ("baseline_last_directional_accuracy", pa.float64()),
        ("baseline_last_rmse", pa.float64()),
        ("baseline_last_mae", pa.float64()),
    ]
)


FEATURE_SCHEMA_HASH = "feature_schema_hash"  # the registry hash a features row was built with


def features_schema(feature_names: list[str]) -> pa.Schema:
    """Schema of the features table: symbol, open_time, feature_schema_hash, one DOUBLE per feature.

    The hash is on every row (as well as in the file's metadata) so the ``features`` view can keep
    days built under another schema apart.
    """
    return pa.schema(
        [("symbol", pa.string()), ("open_time", TIMESTAMP), (FEATURE_SCHEMA_HASH, pa.string())]
        + [(name, pa.float64()) for name in feature_names]
    )
