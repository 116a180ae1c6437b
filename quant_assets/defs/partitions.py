"""Partition definitions, and the helpers that turn keys into (symbol, day) pairs.

Every partitioned asset starts on the same day, ``QT_HISTORY_START`` (default 2026-01-01): Dagster
splits backfills at random when start dates differ (dagster#19625). Partitions are built when the
definitions load, so this is the one setting read then (by the code server, the daemon, each run's
process and every CLI alike); a bad value stops the code location from loading, naming the variable.
Set it to the first day the deployment keeps, so the UI's "missing" partitions are the ones to fetch.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from quant_assets.settings import history_start
from quant_assets.symbols import checked_symbol

# First day any asset is partitioned for (UTC, YYYY-MM-DD); history before it is not kept.
START_DATE = history_start().isoformat()

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
