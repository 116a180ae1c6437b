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
