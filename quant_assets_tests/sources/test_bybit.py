"""The Bybit client against the simulator over real HTTP, and on Bybit's recorded payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import requests

from quant_assets.errors import SourceError, UnknownSymbolError
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.bybit import (
    INSTRUMENTS_PATH,
    KLINE_PATH,
    BybitClient,
    parse_instrument,
    parse_kline_rows,
    result_of,
)
from quant_assets.sources.venues import Instrument
from quant_assets.store.schemas import OHLCV_COLUMNS
from quant_assets_tests.conftest import real_fixture

# 2.5 minutes into the 12:00 candle: it is still forming.
NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
DAY_START = NOW_MS // DAY_MS * DAY_MS - DAY_MS  # 2026-03-09 00:00 UTC, a completed day
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


@pytest.fixture
def bybit(sim: Simulator) -> Iterator[BybitClient]:
    sim.reset()
    with BybitClient(sim.bybit_url, clock=lambda: NOW_MS, timeout=(1.0, 5.0), **FAST) as client:
        yield client


def instrument(client: BybitClient, name: str) -> Instrument:
    return next(i for i in client.instruments() if i.name == name)


def test_newest_first_pages_are_stored_in_time_order(sim: Simulator, bybit: BybitClient) -> None:
    raw = requests.get(
        sim.bybit_url + KLINE_PATH,
        params={"category": "linear", "symbol": "BTCUSDT", "interval": "5", "start": DAY_START, "limit": 5},
        timeout=5,
    ).json()["result"]["list"]
    sim.stats.reset()
    served = bybit.fetch_candles_served(
        instrument(bybit, "BTCUSDT"), "BTCUSDT", DAY_START, DAY_START + DAY_MS, limit=100
    )

    assert [int(row[0]) for row in raw] == sorted((int(row[0]) for row in raw), reverse=True)  # newest first
    opens = served.candles["open_time"].astype("int64")  # datetime64[ms] -> epoch ms
    assert len(served.candles) == 288
    assert opens.is_monotonic_increasing
    assert opens.is_unique
    assert opens.iloc[0] == DAY_START
    assert opens.iloc[-1] == DAY_START + DAY_MS - 300_000
    assert sim.stats.requests[KLINE_PATH] == 3  # 288 bars in windows of 100
    assert list(served.candles.columns) == list(OHLCV_COLUMNS)


def test_the_forming_candle_is_left_out(bybit: BybitClient) -> None:
    btc = instrument(bybit, "BTCUSDT")
    rows = bybit.klines("BTCUSDT", start_ms=NOW_MS - 3_600_000, end_ms=NOW_MS)

    page = parse_kline_rows(rows, instrument=btc, symbol="BTCUSDT", now_ms=NOW_MS)

    forming = NOW_MS // 300_000 * 300_000
    assert int(rows[0][0]) == forming  # Bybit serves it, first
    assert page.still_open_ms == (forming,)
    assert page.candles["open_time"].max().value // 1_000_000 == forming - 300_000


def test_contract_units_are_converted_to_one_coin(sim: Simulator, bybit: BybitClient) -> None:
    pepe = instrument(bybit, "1000PEPEUSDT")
    binance = BinanceFuturesClient(sim.url, clock=lambda: NOW_MS)
    start, end = DAY_START + 36_000_000, DAY_START + 36_000_000 + 3_600_000
    raw = bybit.klines("1000PEPEUSDT", start_ms=start, end_ms=end - 1)[::-1]

    candles = bybit.fetch_candles_served(pepe, "1000PEPEUSDT", start, end).candles
    reference = binance.fetch_candles("1000PEPEUSDT", start, end)

    assert (pepe.coin, pepe.price_unit, pepe.volume_unit) == ("PEPE", 1000.0, 1000.0)
    np.testing.assert_allclose(candles["close"], [float(r[4]) / 1000 for r in raw])
    np.testing.assert_allclose(candles["volume"], [float(r[5]) * 1000 for r in raw])
    # Per coin, Bybit's close is Binance's (quoted per 1,000 PEPE) within the venues' basis.
    np.testing.assert_allclose(candles["close"], reference["close"] / 1000, rtol=5e-4)
    assert candles["trades"].isna().all()
    assert candles["taker_buy_volume"].isna().all()
    assert set(candles["venue_symbol"]) == {"1000PEPEUSDT"}
    assert set(candles["symbol"]) == {"1000PEPEUSDT"}


def test_a_suffixed_contract_name_is_matched_to_its_coin(bybit: BybitClient) -> None:
    xec = instrument(bybit, "XEC1000USDT")

    assert (xec.coin, xec.price_unit) == ("XEC", 1000.0)


def test_http_403_holds_and_retries_within_the_venue_budget(sim: Simulator) -> None:
    sim.reset()
    sim.bybit.set_rate_limit(2, window_seconds=1.0)
    client = BybitClient(
        sim.bybit_url, clock=lambda: NOW_MS, requests_per_window=None, forbidden_hold_seconds=1.0, **FAST
    )
    btc = Instrument("bybit", "BTCUSDT", "BTC", 1.0, 1.0, 0, True)

    served = client.fetch_candles_served(btc, "BTCUSDT", DAY_START, DAY_START + DAY_MS, limit=50)

    assert len(served.candles) == 288
    assert sim.bybit.limiter.refused >= 1  # the venue said 403 at least once, and every window came


def test_an_unknown_symbol_is_a_typed_error(bybit: BybitClient) -> None:
    with pytest.raises(UnknownSymbolError, match="NOPEUSDT"):
        bybit.klines("NOPEUSDT", start_ms=DAY_START, end_ms=DAY_START + 3_600_000)


def test_a_non_zero_ret_code_is_refused() -> None:
    with pytest.raises(SourceError, match="params error"):
        result_of({"retCode": 10001, "retMsg": "params error", "result": {}}, endpoint=KLINE_PATH)


def test_parses_the_recorded_bybit_payloads() -> None:
    klines = json.loads(real_fixture("nautilus", "bybit", "http_get_klines_linear.json").read_text())
    listing = json.loads(real_fixture("nautilus", "bybit", "http_get_instruments_linear.json").read_text())

    btc = parse_instrument(result_of(listing, endpoint=INSTRUMENTS_PATH)["list"][0])
    rows = result_of(klines, endpoint=KLINE_PATH)["list"]
    page = parse_kline_rows(rows, instrument=btc, symbol="BTCUSDT", now_ms=1_709_891_679_050 + 300_000)

    assert btc == Instrument("bybit", "BTCUSDT", "BTC", 1.0, 1.0, 1_699_990_000_000, True)
    record = page.candles.iloc[0]
    assert (record["open"], record["high"], record["low"], record["close"]) == (27450, 27460, 27440, 27455)
    assert (record["volume"], record["quote_volume"]) == (123.45, 3390000)
    assert record["venue_symbol"] == "BTCUSDT"
    assert record["exchange"] == "bybit"
