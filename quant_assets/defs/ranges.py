"""Ranges of partitions as Dagster runs them: the lookback window, and the tags of ONE run over a range.

Every path that launches a range run (the sensors' run requests, ``quant-assets backfill``, ``demo``
and ``features``, the benchmarks, the tests) takes its tags from here, and every path that needs the
lookback window takes it from :func:`lookback_window`, so no two of them can disagree on what a
range or the window is.
"""

import datetime as dt
from collections.abc import Sequence

from quant_assets.defs.partitions import START_DATE, last_complete_day, ohlcv_key

# Dagster's own tags: a run carrying both covers every partition between the two keys; for ``ohlcv``
# the product of the date range and the symbol range, in the order the symbols were registered.
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def lookback_window(days: int, *, end: dt.date | None = None) -> list[dt.date]:
    """The `days` UTC days ending with `end` (default: the last complete day), oldest first.

    Days before the first partition (``START_DATE``, i.e. ``QT_HISTORY_START``) are left out: the
    list is shorter than `days`, or empty, when the window reaches back before it.
    """
    last = end or last_complete_day()
    first = max(last - dt.timedelta(days=days - 1), dt.date.fromisoformat(START_DATE))
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def ohlcv_range_tags(symbols: Sequence[str], first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags of ONE ``ohlcv`` run over days [first, last] x the symbols ``symbols[0]..symbols[-1]``.

    The symbols must be contiguous in the ``symbol`` partitions' order (``ohlcv_rectangles`` cuts
    them so); the run covers every registered symbol between the first and the last.
    Raises ``ValueError`` for no symbols or a range that ends before it starts.
    """
    if not symbols or last < first:
        raise ValueError(f"an ohlcv range needs symbols and first <= last, got {symbols!r}, {first}..{last}")
    return {RANGE_START: str(ohlcv_key(symbols[0], first)), RANGE_END: str(ohlcv_key(symbols[-1], last))}


def day_range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """Tags of ONE run of a daily asset (``feature_table``, ``labels``) over days [first, last].

    Raises ``ValueError`` for a range that ends before it starts.
    """
    if last < first:
        raise ValueError(f"a day range needs first <= last, got {first}..{last}")
    return {RANGE_START: first.isoformat(), RANGE_END: last.isoformat()}
