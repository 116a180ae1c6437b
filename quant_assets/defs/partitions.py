"""Partition definitions, and the helpers that turn keys into (symbol, day) pairs.

Every partitioned asset starts on the same day: Dagster splits backfills at random when start
dates differ (dagster#19625).
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from quant_assets.symbols import checked_symbol

START_DATE = "2026-01-01"  # first day any asset is partitioned for (UTC); history before it is not kept

# end_offset=0: the last partition is the last COMPLETE UTC day; today is never a partition.
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=0)
symbol_partitions = dg.DynamicPartitionsDefinition(name="symbol")
ohlcv_partitions = dg.MultiPartitionsDefinition({"date": daily_partitions, "symbol": symbol_partitions})


def split_ohlcv_key(key: str | dg.MultiPartitionKey) -> tuple[str, dt.date]:
    """``"2026-11-23|BTCUSDT"`` -> ``("BTCUSDT", date(2026, 11, 23))``; the symbol is validated."""
    dims = (
        key.keys_by_dimension
        if isinstance(key, dg.MultiPartitionKey)
        else dict(zip(("date", "symbol"), str(key).split("|", 1), strict=True))
    )
    return checked_symbol(dims["symbol"]), dt.date.fromisoformat(dims["date"])


def ohlcv_key(symbol: str, day: dt.date) -> dg.MultiPartitionKey:
    """The ``ohlcv`` partition key of (symbol, day)."""
    return dg.MultiPartitionKey({"date": day.isoformat(), "symbol": checked_symbol(symbol)})


def last_complete_day(now: dt.datetime | None = None) -> dt.date:
    """The last UTC day that has fully ended at `now` (default: the wall clock)."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(dt.UTC).date() - dt.timedelta(days=1)
