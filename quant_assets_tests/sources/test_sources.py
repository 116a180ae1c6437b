"""The venue clients against the exchange simulator over real HTTP on 127.0.0.1.

Retries, Retry-After holds shared by the process, weight pacing without a single 429 or 418, typed
errors, the closed-candle rule, pagination, gaps and listings; plus parsing of recorded payloads.
"""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
import requests

from quant_assets.errors import InvalidSymbolError, RateLimitError, SourceError, UnknownSymbolError
from quant_assets.simulator import Simulator
from quant_assets.sources import binance, payloads
from quant_assets.sources.binance import (
    FIVE_MINUTES_MS,
    BinanceFuturesClient,
    MalformedKlineError,
    kline_weight,
    parse_klines,
)
from quant_assets.sources.coingecko import CoinGeckoClient, api_key_header
from quant_assets.sources.http import VenueSession, WeightBudget
from quant_assets.sources.payloads import parse_coins_markets, parse_kline_page
from quant_assets.store.schemas import OHLCV_COLUMNS

REAL_FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"

PING = "/fapi/v1/ping"
TIME = "/fapi/v1/time"
EXCHANGE_INFO = "/fapi/v1/exchangeInfo"
KLINES = "/fapi/v1/klines"
CG_MARKETS = "/api/v3/coins/markets"

# A fixed market clock 2.5 minutes into a candle: the 12:00 candle is still forming.
NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
TODAY_MS = NOW_MS // DAY_MS * DAY_MS  # 2026-03-10 00:00 UTC
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}  # tiny sleeps between retries in tests


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[BinanceFuturesClient]:
    with BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, timeout=(1.0, 5.0), **FAST) as binance:
        yield binance


def _real_fixture(*parts: str) -> Path:
    path = REAL_FIXTURES.joinpath(*parts)
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"../shared/fixtures/real is absent (fresh clone): {path.name} not available")
    return path


def _raw_klines(sim: Simulator, **params: Any) -> list[list[Any]]:
    """The simulator's rows fetched with plain requests, beside the client under test."""
    response = requests.get(sim.url + KLINES, params={"interval": "5m", **params}, timeout=5)
    response.raise_for_status()
    return response.json()


def _open_times_ms(frame: pd.DataFrame) -> list[int]:
    return (frame["open_time"].astype("int64")).tolist()  # datetime64[ms] -> epoch ms


# ----------------------------------------------------------------------------------- retries


def test_a_503_is_retried_until_it_succeeds(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.fail_next(PING, 503, times=2)

    client.ping()

    assert sim.stats.requests[PING] == 3
    assert sim.stats.statuses[503] == 2


def test_a_read_timeout_is_retried(sim: Simulator) -> None:
    sim.faults.timeout_next(TIME, seconds=1.0)
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, timeout=(1.0, 0.25), **FAST)

    assert client.server_time_ms() == NOW_MS

    assert sim.stats.requests[TIME] == 2


def test_a_truncated_body_is_retried(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.truncate_next(EXCHANGE_INFO)

    info = client.exchange_info()

    assert "BTCUSDT" in {c.symbol for c in info.contracts}
    assert sim.stats.requests[EXCHANGE_INFO] == 2


def test_a_body_that_is_not_json_is_retried(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.fail_next(TIME, 200, body="<html>maintenance</html>")

    assert client.server_time_ms() == NOW_MS
    assert sim.stats.requests[TIME] == 2


def test_a_503_retry_after_is_waited_exactly(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.fail_next(PING, 503, retry_after=0.4)
    started = time.monotonic()

    client.ping()

    assert time.monotonic() - started >= 0.4
    assert sim.stats.requests[PING] == 2


def test_a_429_retry_after_is_honoured(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.fail_next(PING, 429, retry_after=0.6)
    started = time.monotonic()

    client.ping()

    assert time.monotonic() - started >= 0.6
    assert sim.stats.banned_requests == 0  # the simulator bans a client that comes back early
    assert client.budget.stats.rate_limited == 1


def test_a_429_holds_every_other_client_of_the_process(sim: Simulator) -> None:
    first = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, **FAST)
    second = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, **FAST)
    assert second.budget is first.budget
    sim.faults.fail_next(PING, 429, retry_after=0.8)
    worker = threading.Thread(target=first.ping)
    worker.start()
    deadline = time.monotonic() + 60  # bounds a failure only
    while first.budget.stats.rate_limited == 0:
        assert time.monotonic() < deadline, "the first client never got its 429"
        time.sleep(0.001)
    asked_at = time.monotonic()
    hold_left = first.budget.hold_remaining()  # read after `asked_at`: asked_at + hold_left <= its end

    second.server_time_ms()  # another path, another client: it must still wait
    returned = time.monotonic()
    worker.join()

    # Judged by the hold's end, not by a measured wait: on a busy machine the poll may see the 429 late.
    assert hold_left > 0
    assert returned >= asked_at + hold_left - 0.01
    assert sim.stats.banned_requests == 0
    assert sim.stats.requests[PING] == 2


def test_a_real_429_is_waited_out_and_never_becomes_a_ban() -> None:
    with Simulator(now=NOW, weight_limit=5, window_seconds=1.0, ban_seconds=30.0) as sim:
        unpaced = BinanceFuturesClient(
            sim.url, clock=lambda: NOW_MS, weight_per_minute=None, window_seconds=1.0, **FAST
        )

        for _ in range(8):
            unpaced.ping()

        assert sim.stats.requests[PING] == 8 + sim.stats.rate_limited
        assert sim.stats.rate_limited >= 1
        assert sim.stats.banned_requests == 0
        assert unpaced.budget.stats.rate_limited == sim.stats.rate_limited


def test_exhausted_retries_raise_an_error_naming_venue_endpoint_and_status(sim: Simulator) -> None:
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, max_attempts=3, **FAST)
    sim.faults.fail_next(KLINES, 503, times=3)

    with pytest.raises(SourceError) as caught:
        client.klines("BTCUSDT", limit=10)

    error = caught.value
    assert (error.venue, error.endpoint, error.status) == ("binance", KLINES, 503)
    assert str(error).startswith("binance /fapi/v1/klines (HTTP 503): gave up after 3 attempts")
    assert sim.stats.requests[KLINES] == 3


def test_a_venue_that_refuses_connections_raises_a_source_error_without_status() -> None:
    with Simulator(now=NOW) as stopped:
        url = stopped.url  # the port is closed once the simulator stops
    client = BinanceFuturesClient(url, clock=lambda: NOW_MS, max_attempts=2, **FAST)

    with pytest.raises(SourceError, match=r"^binance /fapi/v1/ping: gave up after 2 attempts") as caught:
        client.ping()

    assert caught.value.status is None


def test_exhausted_429s_raise_a_rate_limit_error(sim: Simulator) -> None:
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, max_attempts=2, **FAST)
    sim.faults.fail_next(PING, 429, times=2, retry_after=0.5)

    with pytest.raises(RateLimitError) as caught:
        client.ping()

    assert (caught.value.status, caught.value.retry_after) == (429, 0.5)
    assert client.budget.hold_remaining() > 0.4  # the last 429 still holds the rest of the process
    client.server_time_ms()
    assert sim.stats.banned_requests == 0


def test_a_retry_after_beyond_the_limit_fails_at_once(sim: Simulator) -> None:
    client = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS, **FAST)
    client.session.max_retry_after = 1.0
    sim.faults.fail_next(PING, 418, retry_after=3600)

    with pytest.raises(RateLimitError, match="wait 3600 s") as caught:
        client.ping()

    assert caught.value.status == 418
    assert sim.stats.requests[PING] == 1
    with pytest.raises(RateLimitError, match="wait"):  # the ban holds the whole process
        client.server_time_ms()
    assert sim.stats.requests[TIME] == 0


def test_a_client_error_is_not_retried_and_carries_the_venue_message(
    sim: Simulator, client: BinanceFuturesClient
) -> None:
    sim.faults.fail_next(EXCHANGE_INFO, 403)

    with pytest.raises(SourceError, match=r"HTTP 403.*An unknown error occured") as caught:
        client.exchange_info()

    assert not isinstance(caught.value, RateLimitError)
    assert sim.stats.requests[EXCHANGE_INFO] == 1


def test_an_unknown_symbol_raises_at_once(sim: Simulator, client: BinanceFuturesClient) -> None:
    with pytest.raises(UnknownSymbolError) as caught:
        client.klines("NOPEUSDT")

    assert str(caught.value) == (
        "binance /fapi/v1/klines (HTTP 400): unknown symbol 'NOPEUSDT': Invalid symbol. (code -1121)"
    )
    assert sim.stats.requests[KLINES] == 1


def test_a_delisted_symbol_is_unknown(sim: Simulator, client: BinanceFuturesClient) -> None:
    sim.faults.delist("ETHUSDT")

    with pytest.raises(UnknownSymbolError, match="ETHUSDT"):
        client.fetch_candles("ETHUSDT", TODAY_MS - DAY_MS, TODAY_MS)


@pytest.mark.parametrize("symbol", ["../etc", "BTC|USDT", "btcusdt", ""])
def test_an_invalid_symbol_never_reaches_the_venue(
    sim: Simulator, client: BinanceFuturesClient, symbol: str
) -> None:
    with pytest.raises(InvalidSymbolError):
        client.fetch_candles(symbol, TODAY_MS - DAY_MS, TODAY_MS)

    assert sum(sim.stats.requests.values()) == 0


# ----------------------------------------------------------------------------------- pacing


def test_pacing_through_a_small_budget_draws_no_429_and_no_418() -> None:
    with Simulator(now=NOW, weight_limit=20, window_seconds=1.0, ban_seconds=30.0) as sim:
        clients = [
            BinanceFuturesClient(
                sim.url, clock=lambda: NOW_MS, weight_per_minute=20, window_seconds=1.0, **FAST
            )
            for _ in range(2)
        ]
        frames: list[pd.DataFrame] = []
        start_ms = TODAY_MS - 2 * DAY_MS

        def backfill(client: BinanceFuturesClient, offset_days: int) -> None:
            first = start_ms + offset_days * DAY_MS
            frames.append(client.fetch_candles("BTCUSDT", first, first + 300 * FIVE_MINUTES_MS, limit=10))

        threads = [threading.Thread(target=backfill, args=(c, i)) for i, c in enumerate(clients)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        assert [len(f) for f in frames] == [300, 300]
        assert sim.stats.requests[KLINES] == 60  # 30 pages of 10 each, weight 1 apiece
        assert (sim.stats.rate_limited, sim.stats.banned_requests) == (0, 0)
        assert sim.stats.weight_used == 60
        assert clients[0].budget.stats.waited_seconds > 0
        assert elapsed > 1.0  # 60 weight cannot pass a 20-per-second limit in under two boundaries


# ------------------------------------------------------------------------------ fetch_candles


def test_fetch_candles_returns_exactly_the_closed_candles_served(
    sim: Simulator, client: BinanceFuturesClient
) -> None:
    start_ms = NOW_MS - 6 * 3_600_000
    raw = _raw_klines(sim, symbol="BTCUSDT", startTime=start_ms, limit=1500)
    forming_open = NOW_MS // FIVE_MINUTES_MS * FIVE_MINUTES_MS
    assert raw[-1][0] == forming_open  # the venue serves the forming candle...

    candles = client.fetch_candles("BTCUSDT", start_ms, NOW_MS + DAY_MS)

    closed = [row for row in raw if row[6] < NOW_MS]
    assert _open_times_ms(candles) == [row[0] for row in closed]  # ...the client drops it
    assert _open_times_ms(candles)[-1] == forming_open - FIVE_MINUTES_MS
    assert list(candles.columns) == list(OHLCV_COLUMNS)
    expected = np.array([[float(row[i]) for i in (1, 2, 3, 4, 5, 7, 9, 10)] for row in closed])
    numbers = ["open", "high", "low", "close", "volume", "quote_volume"]
    np.testing.assert_array_equal(
        candles[[*numbers, "taker_buy_volume", "taker_buy_quote_volume"]].to_numpy(), expected
    )
    assert candles["trades"].tolist() == [row[8] for row in closed]
    assert set(candles["symbol"]) == {"BTCUSDT"}
    assert set(candles["exchange"]) == {"binance"}


def test_fetch_candles_pages_through_many_pages_of_499(sim: Simulator, client: BinanceFuturesClient) -> None:
    start_ms, end_ms = TODAY_MS - 5 * DAY_MS, TODAY_MS

    candles = client.fetch_candles("ETHUSDT", start_ms, end_ms)

    assert _open_times_ms(candles) == list(range(start_ms, end_ms, FIVE_MINUTES_MS))  # 1,440
    queries = sim.stats.klines_queries()
    assert len(queries) == 3  # ceil(1440 / 499): a short page ends the fetch, no empty request
    assert {q["limit"] for q in queries} == {"499"}
    assert [int(q["startTime"]) for q in queries] == [
        start_ms,
        start_ms + 499 * FIVE_MINUTES_MS,
        start_ms + 998 * FIVE_MINUTES_MS,
    ]
    assert {int(q["endTime"]) for q in queries} == {end_ms - 1}


def test_fetch_candles_served_keeps_differing_rows_and_counts_exact_repeats_at_a_page_end(
    sim: Simulator, client: BinanceFuturesClient
) -> None:
    start_ms = TODAY_MS - DAY_MS
    page_end = datetime.fromtimestamp((start_ms + 9 * FIVE_MINUTES_MS) / 1000, UTC)  # 10th candle
    sim.faults.bad_candle("BTCUSDT", page_end, "repeat")
    sim.faults.bad_candle("BTCUSDT", page_end + timedelta(minutes=5), "duplicate")  # next page's 1st

    served = client.fetch_candles_served("BTCUSDT", start_ms, start_ms + 20 * FIVE_MINUTES_MS, limit=10)

    opens = _open_times_ms(served.candles)
    second = start_ms + 10 * FIVE_MINUTES_MS
    assert opens == sorted([*range(start_ms, start_ms + 20 * FIVE_MINUTES_MS, FIVE_MINUTES_MS), second])
    assert (
        served.candles.loc[served.candles["open_time"] == pd.Timestamp(second, unit="ms"), "close"].nunique()
        == 2
    )
    assert served.repeated_ms == (start_ms + 9 * FIVE_MINUTES_MS,)
    assert served.still_open_ms == ()
    assert served.outside_ms == ()


def test_fetch_candles_keeps_a_gap_as_a_gap(sim: Simulator, client: BinanceFuturesClient) -> None:
    gap_start = datetime(2026, 3, 8, 10, 0, tzinfo=UTC)
    sim.faults.gap("SOLUSDT", gap_start, gap_start + timedelta(hours=1))
    start_ms, end_ms = TODAY_MS - 2 * DAY_MS, TODAY_MS

    candles = client.fetch_candles("SOLUSDT", start_ms, end_ms)

    gap = set(range(_ms(gap_start), _ms(gap_start) + 3_600_000, FIVE_MINUTES_MS))
    assert _open_times_ms(candles) == [t for t in range(start_ms, end_ms, FIVE_MINUTES_MS) if t not in gap]


def test_fetch_candles_crosses_a_gap_longer_than_a_page(sim: Simulator, client: BinanceFuturesClient) -> None:
    gap_start = datetime(2026, 3, 5, tzinfo=UTC)
    sim.faults.gap("XRPUSDT", gap_start, gap_start + timedelta(days=3))
    start_ms, end_ms = TODAY_MS - 6 * DAY_MS, TODAY_MS

    candles = client.fetch_candles("XRPUSDT", start_ms, end_ms, limit=200)

    assert len(candles) == 3 * 288
    assert _open_times_ms(candles)[288] == _ms(gap_start) + 3 * DAY_MS
    assert len(sim.stats.klines_queries()) == 5  # ceil(864 / 200): the gap costs no request


def test_fetch_candles_of_a_symbol_listed_mid_range_starts_at_the_listing(
    sim: Simulator, client: BinanceFuturesClient
) -> None:
    listed = [
        c
        for c in sim.market.contracts.values()
        if TODAY_MS - 60 * DAY_MS < c.onboard_ms < TODAY_MS - 2 * DAY_MS
    ]
    assert listed, "the simulator lists some symbols within the last 60 days"
    contract = listed[0]
    start_ms, end_ms = contract.onboard_ms - 30 * DAY_MS, contract.onboard_ms + 2 * DAY_MS

    candles = client.fetch_candles(contract.symbol, start_ms, end_ms)

    assert _open_times_ms(candles) == list(range(contract.onboard_ms, end_ms, FIVE_MINUTES_MS))
    assert len(sim.stats.klines_queries()) == 2  # the 30 empty days before the listing cost nothing


def test_fetch_candles_before_a_listing_is_empty(sim: Simulator, client: BinanceFuturesClient) -> None:
    contract = max(
        sim.market.contracts.values(), key=lambda c: c.onboard_ms if c.onboard_ms < TODAY_MS else 0
    )

    candles = client.fetch_candles(contract.symbol, contract.onboard_ms - 2 * DAY_MS, contract.onboard_ms)

    assert candles.empty
    assert list(candles.columns) == list(OHLCV_COLUMNS)
    assert str(candles["open_time"].dtype) == "datetime64[ms]"
    assert len(sim.stats.klines_queries()) == 1


def test_fetch_candles_of_the_future_sends_nothing(sim: Simulator, client: BinanceFuturesClient) -> None:
    candles = client.fetch_candles("BTCUSDT", NOW_MS, NOW_MS + DAY_MS)

    assert candles.empty
    assert sim.stats.requests[KLINES] == 0


# ---------------------------------------------------------------------------------- parsing


def test_parses_the_recorded_binance_kline_row() -> None:
    rows = json.loads(_real_fixture("nautilus", "binance", "http_futures_market_klines.json").read_text())

    candles = parse_klines(rows, symbol="BTCUSDT", now_ms=1_499_644_800_000)

    assert candles.to_dict("records") == [
        {
            "exchange": "binance",
            "symbol": "BTCUSDT",
            "open_time": pd.Timestamp("2017-07-03 00:00:00"),
            "open": 0.0163479,
            "high": 0.8,
            "low": 0.015758,
            "close": 0.015771,
            "volume": 148976.11427815,
            "quote_volume": 2434.19055334,
            "trades": 308,
            "taker_buy_volume": 1756.87402397,
            "taker_buy_quote_volume": 28.46694368,
            "venue_symbol": "BTCUSDT",
        }
    ]
    assert candles.dtypes.astype(str).tolist() == [
        "str",
        "str",
        "datetime64[ms]",
        *["float64"] * 6,
        "int64",
        "float64",
        "float64",
        "str",
    ]


def test_the_recorded_kline_is_dropped_while_it_is_still_open() -> None:
    rows = json.loads(_real_fixture("nautilus", "binance", "http_futures_market_klines.json").read_text())

    assert parse_klines(rows, symbol="BTCUSDT", now_ms=1_499_644_799_999).empty  # now == close_time


def _row(open_ms: int, close: str = "1.5") -> list[Any]:
    return [open_ms, "1.0", "2.0", "0.5", close, "10", open_ms + FIVE_MINUTES_MS - 1, "15", 3, "4", "6", "0"]


def test_parse_klines_sorts_keeps_differing_rows_of_one_open_time_and_counts_exact_repeats() -> None:
    rows = [_row(600_000), _row(0, close="1.1"), _row(300_000), _row(0, close="1.2"), _row(300_000)]

    page = parse_kline_page(rows, symbol="ABCUSDT", now_ms=10**12)

    assert _open_times_ms(page.candles) == [0, 0, 300_000, 600_000]
    assert page.candles["close"].tolist() == [1.1, 1.2, 1.5, 1.5]  # as served, in the order served
    assert page.repeated_ms == (300_000,)
    assert page.still_open_ms == ()


def test_parse_kline_page_counts_the_still_open_candle() -> None:
    page = parse_kline_page([_row(0), _row(300_000)], symbol="ABCUSDT", now_ms=300_000 + 1)

    assert _open_times_ms(page.candles) == [0]
    assert page.still_open_ms == (300_000,)


def test_kline_parsing_lives_beside_the_other_payloads_and_stays_importable_from_the_client() -> None:
    assert binance.parse_klines is payloads.parse_klines
    assert binance.MalformedKlineError is payloads.MalformedKlineError


def test_integers_sent_as_strings_parse_like_numbers() -> None:
    as_numbers = [_row(0), _row(300_000)]
    as_strings = [[str(v) if i in (0, 6, 8) else v for i, v in enumerate(row)] for row in as_numbers]

    pd.testing.assert_frame_equal(
        parse_klines(as_strings, symbol="ABCUSDT", now_ms=10**12),
        parse_klines(as_numbers, symbol="ABCUSDT", now_ms=10**12),
    )


@pytest.mark.parametrize(
    ("bad_row", "reason"),
    [
        ([0, "1", "2"], "expected a list of 12 fields"),
        ({"open": 1}, "expected a list of 12 fields"),
        ([0, "1.0", "2.0", "0.5", "abc", "10", 299_999, "15", 3, "4", "6", "0"], "could not convert"),
        ([0, "1.0", "2.0", "0.5", "NaN", "10", 299_999, "15", 3, "4", "6", "0"], "expected a finite number"),
        ([None, "1.0", "2.0", "0.5", "1.5", "10", 299_999, "15", 3, "4", "6", "0"], "expected an integer"),
        ([0, "1.0", "2.0", "0.5", "1.5", "10", 299_999, "15", True, "4", "6", "0"], "expected an integer"),
    ],
)
def test_a_malformed_kline_row_is_refused_naming_the_row(bad_row: Any, reason: str) -> None:
    with pytest.raises(MalformedKlineError, match=rf"ABCUSDT kline row 1 is malformed \({reason}") as caught:
        parse_klines([_row(0), bad_row], symbol="ABCUSDT", now_ms=10**12)

    assert isinstance(caught.value, ValueError)
    assert caught.value.endpoint == KLINES


@pytest.mark.parametrize(
    ("limit", "weight"),
    [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10), (1500, 10)],
)
def test_kline_weight_follows_binance_table(limit: int, weight: int) -> None:
    assert kline_weight(limit) == weight


def test_parses_the_recorded_coingecko_markets_page() -> None:
    payload = json.loads(_real_fixture("coingecko", "coins_markets_2025-03-04_top30.json").read_text())

    coins = parse_coins_markets(payload)

    assert len(coins) == 30
    bitcoin = coins[0]
    assert (bitcoin.id, bitcoin.symbol, bitcoin.market_cap_rank) == ("bitcoin", "btc", 1)
    assert (bitcoin.current_price, bitcoin.total_volume) == (79847.0, 70779623474.0)


# -------------------------------------------------------------------------------- CoinGecko


def test_coingecko_top_by_volume_is_ranked_and_stops_at_a_short_page(sim: Simulator) -> None:
    client = CoinGeckoClient(sim.coingecko_url, **FAST)

    coins = client.top_by_volume(category=None, limit=1000)

    volumes = [c.total_volume or 0.0 for c in coins]
    assert volumes == sorted(volumes, reverse=True)
    assert len({c.id for c in coins}) == len(coins) == len(sim.market.coins)
    assert sim.stats.requests[CG_MARKETS] == len(coins) // 250 + 1
    assert [c.id for c in client.top_by_volume(category=None, limit=5)] == [c.id for c in coins[:5]]


def test_coingecko_pages_do_not_overlap(sim: Simulator) -> None:
    client = CoinGeckoClient(sim.coingecko_url, **FAST)

    first = client.coins_markets(category="layer-1", per_page=10, page=1)
    second = client.coins_markets(category="layer-1", per_page=10, page=2)

    assert len(first) == len(second) == 10
    assert not {c.id for c in first} & {c.id for c in second}


def test_the_api_key_reaches_coingecko_as_a_header(sim: Simulator) -> None:
    client = CoinGeckoClient(sim.coingecko_url, api_key="CG-secret-key-123", **FAST)

    client.ping()

    headers = sim.stats.last_headers["coingecko"]
    assert headers["x-cg-demo-api-key"] == "CG-secret-key-123"
    assert not any("CG-secret" in q for query in [sim.stats.requests] for q in query)


@pytest.mark.parametrize(
    ("base_url", "header"),
    [
        ("https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key"),
        ("https://api.coingecko.com/api/v3", "x-cg-demo-api-key"),
        ("http://127.0.0.1:8080/api/v3", "x-cg-demo-api-key"),
    ],
)
def test_the_key_header_depends_on_the_plan_host(base_url: str, header: str) -> None:
    assert api_key_header(base_url) == header


def test_the_api_key_never_appears_in_errors_logs_or_repr(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    client = CoinGeckoClient(sim.coingecko_url, api_key="CG-secret-key-123", max_attempts=2, **FAST)
    sim.faults.coingecko_down(503)

    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as caught:
        client.coins_markets()

    assert (caught.value.venue, caught.value.endpoint, caught.value.status) == (
        "coingecko",
        "/coins/markets",
        503,
    )
    assert sim.stats.requests[CG_MARKETS] == 2
    assert caplog.records, "the retry was logged"
    for text in (str(caught.value), repr(caught.value), caplog.text, repr(client), repr(client.session)):
        assert "CG-secret-key-123" not in text


def test_a_coingecko_429_retry_after_is_honoured(sim: Simulator) -> None:
    client = CoinGeckoClient(sim.coingecko_url, **FAST)
    sim.faults.fail_next(CG_MARKETS, 429, retry_after=0.5)
    started = time.monotonic()

    coins = client.coins_markets(per_page=3)

    assert time.monotonic() - started >= 0.5
    assert len(coins) == 3
    assert sim.stats.requests[CG_MARKETS] == 2


class _BrokenRateLimitHandler(http.server.BaseHTTPRequestHandler):
    """Answers the first request with a 429 whose body breaks off, then serves JSON."""

    calls: ClassVar[list[float]] = []

    def do_GET(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "200")  # promises more than it sends
            self.end_headers()
            self.wfile.write(b'{"code": -1003, "msg": "Too many')
            self.wfile.flush()
            self.close_connection = True
            return
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_429_whose_body_breaks_off_still_honours_its_retry_after() -> None:
    _BrokenRateLimitHandler.calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BrokenRateLimitHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        budget = WeightBudget(None)
        session = VenueSession("binance", base, budget=budget, backoff_base=0.01, max_attempts=3)
        assert session.get_json("/fapi/v1/ping") == {}
    finally:
        server.shutdown()
    first, second = _BrokenRateLimitHandler.calls
    assert second - first >= 1.0  # the Retry-After of the broken 429, not a 10 ms backoff
    assert budget.stats.rate_limited == 1
