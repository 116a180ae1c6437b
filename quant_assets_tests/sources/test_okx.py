"""The OKX client against the simulator over real HTTP, and on OKX's recorded payloads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest
import requests

from quant_assets.errors import UnknownSymbolError
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import IncompleteFetchError
from quant_assets.sources.okx import (
    CANDLES_PATH,
    HISTORY_CANDLES_PATH,
    INSTRUMENTS_PATH,
    OkxClient,
    UnconfirmedCandleError,
    data_of,
    parse_candle_rows,
    parse_instrument,
)
from quant_assets.sources.venues import Instrument
from quant_assets_tests.conftest import real_fixture

NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)  # the 12:00 candle is forming
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
YESTERDAY = NOW_MS // DAY_MS * DAY_MS - DAY_MS  # within the latest 1,440 bars
LONG_AGO = YESTERDAY - 20 * DAY_MS  # only history-candles has it
FAST = {"backoff_base": 0.01, "backoff_max": 0.05, "confirm_wait_seconds": 0.05}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


@pytest.fixture
def okx(sim: Simulator) -> Iterator[OkxClient]:
    sim.reset()
    sim.okx.set_rate_limit(None)
    with OkxClient(sim.okx_url, clock=lambda: NOW_MS, timeout=(1.0, 5.0), **FAST) as client:
        yield client


def instrument(client: OkxClient, name: str) -> Instrument:
    return next(i for i in client.instruments() if i.name == name)


@pytest.mark.parametrize(
    ("day_ms", "endpoint"), [(YESTERDAY, CANDLES_PATH), (LONG_AGO, HISTORY_CANDLES_PATH)]
)
def test_newest_first_pages_are_stored_in_time_order(
    sim: Simulator, okx: OkxClient, day_ms: int, endpoint: str
) -> None:
    btc = instrument(okx, "BTC-USDT-SWAP")
    raw = okx.candles(
        "BTC-USDT-SWAP", after_ms=day_ms + 3_600_000, before_ms=day_ms - 1, limit=12, history=True
    )
    sim.stats.reset()

    candles = okx.fetch_candles_served(btc, "BTCUSDT", day_ms, day_ms + DAY_MS).candles

    assert [int(r[0]) for r in raw] == sorted((int(r[0]) for r in raw), reverse=True)  # newest first
    opens = candles["open_time"].astype("int64")  # datetime64[ms] -> epoch ms
    assert len(candles) == 288
    assert opens.is_monotonic_increasing
    assert opens.is_unique
    assert opens.iloc[0] == day_ms
    assert opens.iloc[-1] == day_ms + DAY_MS - 300_000
    assert sim.stats.requests[endpoint] == 3  # windows of 100 bars


def test_the_forming_candle_is_left_out(okx: OkxClient) -> None:
    btc = instrument(okx, "BTC-USDT-SWAP")
    rows = okx.candles(
        "BTC-USDT-SWAP", after_ms=NOW_MS + 1, before_ms=NOW_MS - 3_600_000, limit=20, history=False
    )

    page, late = parse_candle_rows(
        rows, instrument=btc, symbol="BTCUSDT", now_ms=NOW_MS, endpoint=CANDLES_PATH
    )

    forming = NOW_MS // 300_000 * 300_000
    assert (int(rows[0][0]), rows[0][8]) == (forming, "0")  # served first, unconfirmed
    assert page.still_open_ms == (forming,)
    assert late == ()
    assert page.candles["open_time"].max().value // 1_000_000 == forming - 300_000


def test_contract_sizes_are_converted_to_coins(sim: Simulator, okx: OkxClient) -> None:
    btc = instrument(okx, "BTC-USDT-SWAP")
    rows = okx.candles(
        "BTC-USDT-SWAP", after_ms=YESTERDAY + 3_600_000, before_ms=YESTERDAY - 1, limit=12, history=False
    )

    candles = okx.fetch_candles_served(btc, "BTCUSDT", YESTERDAY, YESTERDAY + 3_600_000).candles

    assert btc.volume_unit == 0.01  # ctVal: 0.01 BTC a contract
    rows = rows[::-1]
    np.testing.assert_allclose(candles["volume"], [float(r[5]) * 0.01 for r in rows])
    np.testing.assert_allclose(candles["volume"], [float(r[6]) for r in rows], rtol=1e-6)  # volCcy
    np.testing.assert_allclose(candles["quote_volume"], [float(r[7]) for r in rows])
    assert candles["trades"].isna().all()
    assert candles["taker_buy_quote_volume"].isna().all()
    assert set(candles["venue_symbol"]) == {"BTC-USDT-SWAP"}


def test_an_unconfirmed_closed_candle_is_fetched_again_until_confirmed(
    sim: Simulator, okx: OkxClient
) -> None:
    btc = instrument(okx, "BTC-USDT-SWAP")
    sim.okx.faults.unconfirmed("BTCUSDT", datetime(2026, 3, 9, 10, 0, tzinfo=UTC), times=2)
    sim.stats.reset()

    candles = okx.fetch_candles_served(btc, "BTCUSDT", YESTERDAY, YESTERDAY + DAY_MS).candles

    assert len(candles) == 288
    assert sim.stats.requests[CANDLES_PATH] == 3 + 2  # the window of 10:00 asked three times


def test_a_candle_that_stays_unconfirmed_fails_its_day_and_is_never_stored(
    sim: Simulator, okx: OkxClient
) -> None:
    btc = instrument(okx, "BTC-USDT-SWAP")
    sim.okx.faults.unconfirmed("BTCUSDT", datetime(2026, 3, 9, 23, 55, tzinfo=UTC), times=None)

    with pytest.raises(IncompleteFetchError, match="23:55 UTC still unconfirmed") as caught:
        okx.fetch_candles_served(btc, "BTCUSDT", YESTERDAY - DAY_MS, YESTERDAY + DAY_MS)

    assert isinstance(caught.value.__cause__, UnconfirmedCandleError)
    kept = caught.value.served.candles
    assert kept["open_time"].max() < datetime(2026, 3, 9, 23, 55)  # nothing from the bad window on


def test_http_429_code_50011_holds_and_retries(sim: Simulator) -> None:
    sim.reset()
    sim.okx.set_rate_limit(2, window_seconds=1.0)
    client = OkxClient(
        sim.okx_url, clock=lambda: NOW_MS, requests_per_window=None, rate_limit_hold_seconds=1.0, **FAST
    )
    btc = Instrument("okx", "BTC-USDT-SWAP", "BTC", 1.0, 0.01, 0, True)
    for _ in range(10):  # two a window pass: the third of a window is refused
        refused = requests.get(
            sim.okx_url + CANDLES_PATH, params={"instId": "BTC-USDT-SWAP", "bar": "5m"}, timeout=5
        )
        if refused.status_code == 429:
            break

    candles = client.fetch_candles_served(btc, "BTCUSDT", YESTERDAY, YESTERDAY + DAY_MS, limit=50).candles

    assert (refused.status_code, refused.json()["code"]) == (429, "50011")
    assert len(candles) == 288
    assert sim.okx.limiter.refused >= 2  # ours above, and at least one of the client's


def test_an_unknown_instrument_is_a_typed_error(okx: OkxClient) -> None:
    with pytest.raises(UnknownSymbolError, match="NOPE-USDT-SWAP"):
        okx.candles("NOPE-USDT-SWAP", after_ms=NOW_MS, before_ms=NOW_MS - 3_600_000, limit=10, history=False)


def test_parses_the_recorded_okx_payloads() -> None:
    candles = json.loads(real_fixture("nautilus", "okx", "http_get_candlesticks_full.json").read_text())
    swaps = json.loads(real_fixture("nautilus", "okx", "http_get_instruments_swap.json").read_text())

    instruments = [parse_instrument(entry) for entry in data_of(swaps, endpoint=INSTRUMENTS_PATH)]
    btc = next(i for i in instruments if i.name == "BTC-USDT-SWAP")
    page, late = parse_candle_rows(
        data_of(candles, endpoint=CANDLES_PATH),
        instrument=btc,
        symbol="BTCUSDT",
        now_ms=1_747_094_040_000 + 300_000,
        endpoint=CANDLES_PATH,
    )

    assert [i.name for i in instruments if i.trading] == ["ETH-USDT-SWAP", "BTC-USDT-SWAP"]  # not the inverse
    assert (btc.coin, btc.volume_unit) == ("BTC", 0.01)
    assert late == ()
    assert page.candles["open_time"].is_monotonic_increasing  # served newest first
    assert page.candles["volume"].tolist() == pytest.approx([71.6404, 10.4037])  # vol x ctVal = volCcy
    assert page.candles["quote_volume"].tolist() == [7364701.57952, 1069603.34883]
