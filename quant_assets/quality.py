"""Checks on stored candles: pure functions on frames that report, and never repair.

A gap is a fact of the market (an outage, a listing mid-day): it is reported as a warning with the
missing minutes, never filled. Everything else here is an error: a candle off the 5-minute grid, one
open time served twice with differing values, an inconsistent bar or a negative volume means the
data cannot be trusted.

The frames checked are the candles as served (:mod:`quant_assets.sources.binance`): the client
leaves out only exact repeats, the still-open candle and candles outside the days asked for, and
counts them. A rule that cannot fail on that path is not kept: candles are split by UTC day before
they are checked (so none is outside its day), and the parser refuses non-finite numbers.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

FIVE_MINUTES = pd.Timedelta(minutes=5)
CANDLES_PER_DAY = 288


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named check on one partition."""

    name: str
    passed: bool
    severity: str  # "ERROR" or "WARN": what a failure means
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


OHLCV_CHECKS: dict[str, tuple[str, str]] = {
    "complete_day": ("WARN", "288 closed candles; missing ones are listed, never filled"),
    "unique_open_time": ("ERROR", "no open_time served twice with differing values"),
    "five_minute_grid": ("ERROR", "every open_time is a multiple of 5 minutes"),
    "ohlc_consistent": ("ERROR", "low <= open, close <= high and low <= high"),
    "volumes_non_negative": ("ERROR", "volume, quote volume, taker-buy volumes and trades are >= 0"),
}


def missing_open_times(frame: pd.DataFrame, day: dt.date) -> list[pd.Timestamp]:
    """The 5-minute open times of `day` (UTC) that have no candle in `frame`."""
    expected = pd.date_range(pd.Timestamp(day), periods=CANDLES_PER_DAY, freq=FIVE_MINUTES)
    present = pd.DatetimeIndex(frame["open_time"]).as_unit("ns")
    return list(expected.difference(present))


def gap_ranges(missing: list[pd.Timestamp]) -> list[str]:
    """Missing open times folded into ``HH:MM-HH:MM`` ranges (inclusive), for people to read."""
    ranges: list[str] = []
    start = previous = None
    for moment in missing:
        if previous is not None and moment - previous == FIVE_MINUTES:
            previous = moment
            continue
        if start is not None and previous is not None:
            ranges.append(_range_text(start, previous))
        start = previous = moment
    if start is not None and previous is not None:
        ranges.append(_range_text(start, previous))
    return ranges


def _range_text(start: pd.Timestamp, end: pd.Timestamp) -> str:
    return start.strftime("%H:%M") if start == end else f"{start:%H:%M}-{end:%H:%M}"


def check_ohlcv_partition(frame: pd.DataFrame, day: dt.date) -> list[CheckOutcome]:
    """Run every check of :data:`OHLCV_CHECKS` on one (symbol, day) partition's candles."""
    open_time = pd.DatetimeIndex(frame["open_time"]).as_unit("ns")
    start = pd.Timestamp(day)
    results: dict[str, tuple[bool, dict[str, Any]]] = {}

    missing = missing_open_times(frame, day)
    day_facts: dict[str, Any] = {
        "candles": len(frame),
        "missing_candles": len(missing),
        "gaps": gap_ranges(missing)[:50],
    }
    if frame.empty:
        day_facts["note"] = "no candles served: not listed yet, or an outage all day"
    results["complete_day"] = (not missing, day_facts)
    duplicated = open_time[open_time.duplicated()].unique()
    results["unique_open_time"] = (
        duplicated.empty,
        {"duplicated_open_times": len(duplicated), "first": [str(t) for t in duplicated[:5]]},
    )
    off_grid = open_time[(open_time - start) % FIVE_MINUTES != pd.Timedelta(0)]
    results["five_minute_grid"] = (
        off_grid.empty,
        {"off_grid": len(off_grid), "first": [str(t) for t in off_grid[:5]]},
    )
    o, h, lo, c = (frame[col].to_numpy(dtype=float) for col in ("open", "high", "low", "close"))
    bad = ~((lo <= o) & (lo <= c) & (o <= h) & (c <= h) & (lo <= h))
    results["ohlc_consistent"] = (
        not bad.any(),
        {"inconsistent": int(bad.sum()), "first": [str(t) for t in open_time[bad][:5]]},
    )
    volume_columns = ["volume", "quote_volume", "taker_buy_volume", "taker_buy_quote_volume", "trades"]
    negative = {col: int((frame[col].to_numpy() < 0).sum()) for col in volume_columns}
    results["volumes_non_negative"] = (not any(negative.values()), {"negative": negative})
    return [
        CheckOutcome(name, passed, OHLCV_CHECKS[name][0], OHLCV_CHECKS[name][1], metadata)
        for name, (passed, metadata) in results.items()
    ]


def failure_summary(outcomes: list[CheckOutcome]) -> str:
    """One line naming each failed ERROR rule and its first offending open times ("" when none)."""
    parts = []
    for outcome in outcomes:
        if outcome.passed or outcome.severity != "ERROR":
            continue
        first = outcome.metadata.get("first")
        where = f" (first: {', '.join(first)})" if first else ""
        parts.append(f"{outcome.name}: {outcome.description}{where}")
    return "; ".join(parts)
