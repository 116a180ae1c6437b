"""collect_ohlcv against the exchange simulator over real HTTP: batches of (symbol, day) partitions."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest

from quant_assets.errors import StoreError
from quant_assets.ohlcv_collect import (
    CollectProgress,
    CollectResult,
    SymbolDay,
    collect_ohlcv,
    consecutive_runs,
)
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import FIVE_MINUTES_MS, BinanceFuturesClient

NOW = dt.datetime(2026, 3, 10, 12, 2, 30, tzinfo=dt.UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TODAY = NOW.date()
DAY_MS = 86_400_000
KLINES = "/fapi/v1/klines"
GAP_START = dt.datetime(2026, 3, 8, 10, 0, tzinfo=dt.UTC)  # one hour missing from ETHUSDT on 03-08


def _day(days_ago: int) -> dt.date:
    return TODAY - dt.timedelta(days=days_ago)


def _day_ms(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)


@dataclass
class Batch:
    """One collection run and what the simulator saw."""

    result: CollectResult
    frames: dict[SymbolDay, pd.DataFrame]
    progress: list[CollectProgress]
    write_threads: set[str]
    klines_requests: int
    listed: str  # a symbol listed mid-history
    listing_day: dt.date
    partitions: list[SymbolDay]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


def _run(sim: Simulator, *, workers: int) -> Batch:
    sim.reset()
    sim.faults.gap("ETHUSDT", GAP_START, GAP_START + dt.timedelta(hours=1))
    contract = next(
        c for c in sim.market.contracts.values() if _day_ms(_day(40)) < c.onboard_ms < _day_ms(_day(3))
    )
    listing_day = dt.datetime.fromtimestamp(contract.onboard_ms / 1000, dt.UTC).date()
    partitions = [
        *(SymbolDay("BTCUSDT", _day(n)) for n in (1, 2, 3, 5)),  # two runs: 3 days, then 1 day
        SymbolDay("BTCUSDT", _day(1)),  # a repeat is collected once
        SymbolDay("BTCUSDT", TODAY),  # not over yet
        *(SymbolDay("ETHUSDT", _day(n)) for n in (1, 2)),
        SymbolDay("FTMUSDT", _day(1)),  # delisted: the venue answers -1121
        *(SymbolDay(contract.symbol, listing_day + dt.timedelta(days=n)) for n in (-1, 0, 1)),
        SymbolDay("BAD|SYM", _day(1)),
    ]
    frames: dict[SymbolDay, pd.DataFrame] = {}
    progress: list[CollectProgress] = []
    threads: set[str] = set()

    def write(partition: SymbolDay, frame: pd.DataFrame) -> None:
        threads.add(threading.current_thread().name)
        frames[partition] = frame

    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, backoff_base=0.01, backoff_max=0.05)
    result = collect_ohlcv(client, partitions, write, on_progress=progress.append, workers=workers)
    return Batch(
        result,
        frames,
        progress,
        threads,
        sim.stats.requests[KLINES],
        contract.symbol,
        listing_day,
        partitions,
    )


@pytest.fixture(scope="module")
def batch(sim: Simulator) -> Batch:
    return _run(sim, workers=2)


def test_each_complete_day_is_written_once_with_its_288_candles(batch: Batch) -> None:
    written = {k: v for k, v in batch.result.written.items() if k.symbol == "BTCUSDT"}

    assert written == {SymbolDay("BTCUSDT", _day(n)): 288 for n in (1, 2, 3, 5)}
    for partition in written:
        start = _day_ms(partition.day)
        opens = batch.frames[partition]["open_time"].astype("int64").tolist()
        assert opens == list(range(start, start + DAY_MS, FIVE_MINUTES_MS))
        assert set(batch.frames[partition]["symbol"]) == {"BTCUSDT"}


def test_a_gap_stays_a_gap(batch: Batch) -> None:
    gap_day = SymbolDay("ETHUSDT", GAP_START.date())

    opens = set(batch.frames[gap_day]["open_time"].astype("int64"))

    gap_ms = int(GAP_START.timestamp() * 1000)
    missing = set(range(_day_ms(gap_day.day), _day_ms(gap_day.day) + DAY_MS, FIVE_MINUTES_MS)) - opens
    assert missing == set(range(gap_ms, gap_ms + 3_600_000, FIVE_MINUTES_MS))
    assert batch.result.written[gap_day] == 276
    assert batch.result.written[SymbolDay("ETHUSDT", _day(1))] == 288


def test_a_day_before_a_listing_is_stored_empty_as_served(batch: Batch) -> None:
    before = SymbolDay(batch.listed, batch.listing_day - dt.timedelta(days=1))

    assert before not in batch.result.failed
    assert batch.result.written[before] == 0
    assert batch.frames[before].empty
    assert list(batch.frames[before].columns) == list(
        batch.frames[SymbolDay(batch.listed, batch.listing_day)].columns
    )
    assert batch.result.written[SymbolDay(batch.listed, batch.listing_day)] == 288
    assert batch.result.written[SymbolDay(batch.listed, batch.listing_day + dt.timedelta(days=1))] == 288


def test_a_delisted_symbol_fails_with_the_venue_message_and_the_others_go_on(batch: Batch) -> None:
    message = batch.result.failed[SymbolDay("FTMUSDT", _day(1))]

    assert message == (
        "binance /fapi/v1/klines (HTTP 400): unknown symbol 'FTMUSDT': Invalid symbol. (code -1121)"
    )
    assert SymbolDay("ETHUSDT", _day(1)) in batch.result.written


def test_an_invalid_symbol_fails_before_any_request(batch: Batch) -> None:
    assert batch.result.failed[SymbolDay("BAD|SYM", _day(1))].startswith("refusing symbol 'BAD|SYM'")


def test_a_day_that_has_not_ended_is_not_collected(batch: Batch) -> None:
    assert batch.result.failed[SymbolDay("BTCUSDT", TODAY)] == (
        f"{TODAY} (UTC) has not ended yet for BTCUSDT: only complete days are collected"
    )


def test_every_partition_is_written_or_failed_exactly_once(batch: Batch) -> None:
    assert set(batch.result.written) | set(batch.result.failed) == set(batch.partitions)
    assert not set(batch.result.written) & set(batch.result.failed)
    assert set(batch.frames) == set(batch.result.written)


def test_runs_of_days_cost_one_page_per_499_candles(batch: Batch) -> None:
    # BTC 3 days (2 pages) + 1 day; ETH 2 days (2 pages); FTM 1 refused; listing: 2 days served.
    assert batch.klines_requests == 2 + 1 + 2 + 1 + 2
    assert (batch.result.requests, batch.result.weight) == (batch.klines_requests, 2 * batch.klines_requests)


def test_progress_is_reported_per_symbol_up_to_the_total(batch: Batch) -> None:
    total = len(set(batch.partitions))

    assert len(batch.progress) == 5  # BTCUSDT, ETHUSDT, FTMUSDT, the listing, BAD|SYM
    assert [p.days_total for p in batch.progress] == [total] * 5
    done = [p.days_done for p in batch.progress]
    assert done == sorted(done)
    assert done[-1] == total
    last = batch.progress[-1]
    assert (last.candles, last.requests, last.eta_s) == (sum(batch.result.written.values()), 8, 0.0)


def test_writes_happen_in_the_calling_thread(batch: Batch) -> None:
    assert batch.write_threads == {threading.current_thread().name}


def test_one_worker_collects_the_same_as_two(sim: Simulator, batch: Batch) -> None:
    serial = _run(sim, workers=1)

    assert serial.result.written == batch.result.written
    assert serial.result.failed == batch.result.failed
    for partition, frame in batch.frames.items():
        pd.testing.assert_frame_equal(serial.frames[partition], frame)


def test_a_store_error_fails_that_partition_only(sim: Simulator) -> None:
    sim.reset()
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS)
    refused = SymbolDay("BTCUSDT", _day(2))

    def write(partition: SymbolDay, frame: pd.DataFrame) -> None:
        if partition == refused:
            raise StoreError("disk full")

    result = collect_ohlcv(client, [SymbolDay("BTCUSDT", _day(n)) for n in (1, 2)], write)

    assert result.failed == {refused: "write failed: disk full"}
    assert result.written == {SymbolDay("BTCUSDT", _day(1)): 288}


def test_a_bug_in_write_is_not_swallowed(sim: Simulator) -> None:
    sim.reset()
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS)

    def write(partition: SymbolDay, frame: pd.DataFrame) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        collect_ohlcv(client, [SymbolDay("BTCUSDT", _day(1))], write)


@pytest.mark.parametrize(
    ("days", "runs"),
    [
        ([], []),
        ([3], [(3, 3)]),
        ([3, 1, 2], [(1, 3)]),
        ([1, 2, 4, 5, 5, 9], [(1, 2), (4, 5), (9, 9)]),
    ],
)
def test_consecutive_runs(days: list[int], runs: list[tuple[int, int]]) -> None:
    def day(n: int) -> dt.date:
        return dt.date(2026, 2, 26) + dt.timedelta(days=n)  # crosses the end of February

    assert consecutive_runs([day(n) for n in days]) == [(day(a), day(b)) for a, b in runs]
