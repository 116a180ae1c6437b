"""The one lookback window and the one way a range run is tagged, on a real temporary instance."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from quant_assets.defs.partitions import START_DATE, ohlcv_partitions
from quant_assets.defs.ranges import RANGE_END, RANGE_START, day_range_tags, lookback_window, ohlcv_range_tags

FIRST = dt.date.fromisoformat(START_DATE)


def test_the_window_ends_with_its_last_day_oldest_first() -> None:
    end = FIRST + dt.timedelta(days=30)

    window = lookback_window(3, end=end)

    assert window == [end - dt.timedelta(days=2), end - dt.timedelta(days=1), end]


def test_the_window_never_reaches_before_the_first_partition() -> None:
    assert lookback_window(90, end=FIRST + dt.timedelta(days=1)) == [FIRST, FIRST + dt.timedelta(days=1)]
    assert lookback_window(5, end=FIRST - dt.timedelta(days=1)) == []


def test_the_window_defaults_to_the_last_complete_utc_day() -> None:
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)

    assert lookback_window(1) == [yesterday]


def test_day_range_tags_name_both_ends() -> None:
    tags = day_range_tags(dt.date(2026, 11, 20), dt.date(2026, 11, 22))

    assert tags == {RANGE_START: "2026-11-20", RANGE_END: "2026-11-22"}


def test_ohlcv_range_tags_cover_the_rectangle_of_days_and_registered_symbols() -> None:
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"])
    first = FIRST + dt.timedelta(days=10)
    tags = ohlcv_range_tags(["ETHUSDT", "SOLUSDT"], first, first + dt.timedelta(days=1))

    keys = ohlcv_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(tags[RANGE_START], tags[RANGE_END]), dynamic_partitions_store=instance
    )

    assert sorted(map(str, keys)) == sorted(
        f"{first + dt.timedelta(days=d)}|{symbol}" for d in (0, 1) for symbol in ("ETHUSDT", "SOLUSDT")
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: ohlcv_range_tags([], FIRST, FIRST),
        lambda: ohlcv_range_tags(["BTCUSDT"], FIRST + dt.timedelta(days=1), FIRST),
        lambda: day_range_tags(FIRST + dt.timedelta(days=1), FIRST),
    ],
)
def test_an_empty_or_reversed_range_is_refused(call) -> None:
    with pytest.raises(ValueError, match="first <= last"):
        call()
