"""The exchange simulator over real HTTP: payload shapes, Binance semantics, determinism, faults."""

from __future__ import annotations

import json
import math
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests

from quant_assets.simulator import EPOCH, Simulator
from quant_assets.simulator.catalog import LAYER_1, LAYER_2, STABLECOINS
from quant_assets.symbols import is_valid_symbol

REAL = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real"
NOW = datetime(2026, 11, 23, 12, 2, 30, tzinfo=UTC)  # 2.5 minutes into the 12:00 candle
NOW_MS = int(NOW.timestamp() * 1000)
FIVE_MIN_MS = 300_000
KLINES, TICKER, EXCHANGE_INFO = "/fapi/v1/klines", "/fapi/v1/ticker/24hr", "/fapi/v1/exchangeInfo"
MARKETS = "/api/v3/coins/markets"
# Bounds only a failure (a local answer takes milliseconds): generous, so a busy machine never trips it.
WAIT_S = 60


def real_fixture(relative: str) -> Any:
    path = REAL / relative
    if not path.exists():
        pytest.skip(f"../shared/fixtures/real is absent (fresh clone): {relative}")
    return json.loads(path.read_text())


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture(scope="module")
def sim():
    with Simulator(now=NOW) as simulator:
        yield simulator


@pytest.fixture(autouse=True)
def _fresh(request):
    # Faults and counters never leak from one test into the next.
    if "sim" in request.fixturenames:
        request.getfixturevalue("sim").reset()


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


def get(http: requests.Session, sim: Simulator, path: str, **params: Any) -> requests.Response:
    return http.get(sim.url + path, params=params, timeout=WAIT_S)


def klines(http, sim, **params) -> list[list[Any]]:
    response = get(http, sim, KLINES, **{"interval": "5m", **params})
    assert response.status_code == 200, response.text
    return response.json()


def type_names(values) -> list[str]:
    return [type(v).__name__ for v in values]


# ------------------------------------------------------------------------------------- shapes
def test_exchange_info_has_the_real_keys_types_and_order(sim, http):
    real = real_fixture("nautilus/binance/http_futures_market_exchange_info.json")
    ours = get(http, sim, EXCHANGE_INFO).json()

    assert list(ours) == list(real)
    assert list(ours["rateLimits"][0]) == list(real["rateLimits"][0])
    assert list(ours["assets"][0]) == list(real["assets"][0])
    real_symbol = real["symbols"][0]
    for entry in ours["symbols"]:
        assert list(entry) == list(real_symbol), entry["symbol"]
        assert type_names(entry.values()) == type_names(real_symbol.values()), entry["symbol"]
        assert [list(f) for f in entry["filters"]] == [list(f) for f in real_symbol["filters"]]


def test_klines_rows_have_the_real_types(sim, http):
    real_row = real_fixture("nautilus/binance/http_futures_market_klines.json")[0]
    rows = klines(http, sim, symbol="BTCUSDT", limit=3)

    assert len(rows) == 3
    for row in rows:
        assert type_names(row) == type_names(real_row)
        assert row[6] == row[0] + FIVE_MIN_MS - 1  # close_time
        assert row[11] == "0"


def test_ticker_has_the_real_keys_and_types(sim, http):
    real = real_fixture("nautilus/binance/http_futures_market_ticker_24hr.json")
    one = get(http, sim, TICKER, symbol="ETHUSDT").json()
    every = get(http, sim, TICKER).json()

    assert list(one) == list(real)
    assert type_names(one.values()) == type_names(real.values())
    assert all(list(entry) == list(real) for entry in every)
    assert one in every


def test_coins_markets_rows_have_the_26_real_fields_in_order(sim, http):
    real = real_fixture("coingecko/coins_markets_2025-03-04_top30.json")
    real_types = {key: {type(c[key]).__name__ for c in real} for key in real[0]}
    numeric = {"int", "float"}
    rows = get(http, sim, MARKETS, vs_currency="usd", per_page=250).json()

    assert len(rows) > 100
    for row in rows:
        assert list(row) == list(real[0]), row["id"]
        for key, value in row.items():
            allowed = real_types[key] | (numeric if real_types[key] & numeric else set()) | {"NoneType"}
            assert type(value).__name__ in allowed, (row["id"], key, value)
    assert {type(r["market_cap"]) for r in rows} == {int}
    assert {type(r["total_volume"]) for r in rows} == {int}


# -------------------------------------------------------------------------------- determinism
def test_a_candle_is_the_same_whatever_range_asked_for_it(sim, http):
    target = ms(datetime(2026, 10, 1, 7, 35, tzinfo=UTC))
    from_start = klines(http, sim, symbol="SOLUSDT", startTime=target, limit=1)[0]
    from_end = klines(http, sim, symbol="SOLUSDT", endTime=target + 3 * 3600_000, limit=1500)
    from_earlier = klines(http, sim, symbol="SOLUSDT", startTime=target - 86_400_000, limit=499)

    assert from_start[0] == target
    assert from_start in from_end
    assert from_start in from_earlier


def test_simulators_with_the_same_seed_serve_identical_bytes(sim):
    def payloads(simulator: Simulator) -> list[bytes]:
        with requests.Session() as session:
            return [
                session.get(simulator.url + path, params=params, timeout=WAIT_S).content
                for path, params in (
                    (KLINES, {"symbol": "ADAUSDT", "interval": "5m", "limit": 1000}),
                    (KLINES, {"symbol": "1000PEPEUSDT", "interval": "1h", "startTime": ms(EPOCH)}),
                    (TICKER, {}),
                    (EXCHANGE_INFO, {}),
                    (MARKETS, {"vs_currency": "usd", "per_page": 250}),
                )
            ]

    with Simulator(now=NOW) as twin, Simulator(now=NOW, seed=8) as other:
        ours, twins, others = payloads(sim), payloads(twin), payloads(other)

    assert ours == twins
    assert ours[0] != others[0]


# ------------------------------------------------------------------------ klines semantics
def test_start_time_gives_candles_from_the_next_boundary_ascending(sim, http):
    start = ms(datetime(2026, 11, 1, tzinfo=UTC))
    rows = klines(http, sim, symbol="BTCUSDT", startTime=start + 1, limit=10)

    assert [r[0] for r in rows] == [start + FIVE_MIN_MS * (i + 1) for i in range(10)]


def test_end_time_caps_a_start_time_range(sim, http):
    start = ms(datetime(2026, 11, 1, tzinfo=UTC))
    rows = klines(http, sim, symbol="BTCUSDT", startTime=start, endTime=start + 3 * FIVE_MIN_MS, limit=500)

    assert [r[0] for r in rows] == [start + FIVE_MIN_MS * i for i in range(4)]  # open_time <= endTime


def test_end_time_alone_gives_the_last_limit_candles_up_to_it(sim, http):
    end = ms(datetime(2026, 11, 2, tzinfo=UTC))
    rows = klines(http, sim, symbol="ETHUSDT", endTime=end, limit=5)

    assert [r[0] for r in rows] == [end - FIVE_MIN_MS * i for i in (4, 3, 2, 1, 0)]


def test_latest_candles_end_with_the_forming_one_and_never_the_future(sim, http):
    rows = klines(http, sim, symbol="BTCUSDT", limit=500)
    forming, closed = rows[-1], rows[-2]

    assert len(rows) == 500
    assert forming[0] == NOW_MS - NOW_MS % FIVE_MIN_MS
    assert forming[0] <= NOW_MS < forming[6]
    assert closed[6] < NOW_MS
    assert forming[1] == closed[4]  # opens at the previous close
    assert float(forming[5]) < float(closed[5])  # half a bar's volume so far (partial)
    assert klines(http, sim, symbol="BTCUSDT", startTime=NOW_MS + FIVE_MIN_MS) == []


def test_the_forming_candle_grows_into_the_closed_one(sim, http):
    later = Simulator(now=NOW + timedelta(minutes=10))
    with later:
        closed = klines(http, later, symbol="XRPUSDT", startTime=NOW_MS - NOW_MS % FIVE_MIN_MS, limit=1)[0]
    forming = klines(http, sim, symbol="XRPUSDT", limit=1)[0]

    assert forming[0] == closed[0]
    assert forming[1] == closed[1]
    assert float(forming[5]) < float(closed[5])
    assert float(closed[3]) <= float(forming[3])
    assert float(forming[2]) <= float(closed[2])


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "BTCUSDT", "interval": "5m", "limit": 1501}, -1130),
        ({"symbol": "BTCUSDT", "interval": "5m", "limit": 0}, -1130),
        ({"symbol": "BTCUSDT", "interval": "7m"}, -1120),
        ({"symbol": "NOPEUSDT", "interval": "5m"}, -1121),
        ({"symbol": "FTMUSDT", "interval": "5m"}, -1121),  # delisted: SETTLING
        ({"symbol": "BTCUSDT", "interval": "5m", "startTime": 2, "endTime": 1}, -1023),
        ({"symbol": "BTCUSDT", "interval": "5m", "startTime": "soon"}, -1100),
        ({"interval": "5m"}, -1102),
    ],
)
def test_bad_klines_requests_get_binance_errors(sim, http, params, code):
    response = get(http, sim, KLINES, **params)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert "X-MBX-USED-WEIGHT-1M" in response.headers


@pytest.mark.parametrize(
    ("limit", "weight"), [(1, 1), (99, 1), (100, 2), (499, 2), (500, 5), (1000, 5), (1001, 10)]
)
def test_klines_weight_follows_the_limit(sim, http, limit, weight):
    response = get(http, sim, KLINES, symbol="BTCUSDT", interval="5m", limit=limit)

    assert sim.stats.weight_used == weight
    assert int(response.headers["X-MBX-USED-WEIGHT-1M"]) >= weight


def test_ticker_weights_forty_for_all_symbols_and_one_for_one(sim, http):
    get(http, sim, TICKER)
    get(http, sim, TICKER, symbol="BTCUSDT")

    assert sim.stats.weight_used == 41


def test_candles_are_consistent_over_a_long_range(sim, http):
    rows = np.array(
        [
            [float(v) for v in row]
            for row in klines(http, sim, symbol="DOGEUSDT", endTime=NOW_MS - 86_400_000, limit=1500)
        ]
    )
    open_, high, low, close, volume, quote, trades, taker = (rows[:, i] for i in (1, 2, 3, 4, 5, 7, 8, 9))

    assert np.all(np.diff(rows[:, 0]) == FIVE_MIN_MS)
    assert np.all(open_[1:] == close[:-1])
    assert np.all(low <= np.minimum(open_, close))
    assert np.all(np.maximum(open_, close) <= high)
    assert np.all(volume > 0)
    assert np.all(trades >= 1)
    assert np.all((quote / volume >= low * 0.999) & (quote / volume <= high * 1.001))
    assert (taker / volume).min() >= 0.38
    assert (taker / volume).max() <= 0.62


def test_coarser_intervals_aggregate_the_5m_candles(sim, http):
    hour = ms(datetime(2026, 11, 20, 14, tzinfo=UTC))
    fives = klines(http, sim, symbol="AVAXUSDT", startTime=hour, limit=12)
    (hourly,) = klines(http, sim, symbol="AVAXUSDT", interval="1h", startTime=hour, limit=1)

    assert hourly[0] == hour
    assert hourly[6] == hour + 3600_000 - 1
    assert hourly[1] == fives[0][1]
    assert hourly[4] == fives[-1][4]
    assert float(hourly[2]) == max(float(r[2]) for r in fives)
    assert float(hourly[3]) == min(float(r[3]) for r in fives)
    assert hourly[8] == sum(r[8] for r in fives)


def test_a_recent_listing_has_no_candles_before_its_onboard_date(sim, http):
    info = get(http, sim, EXCHANGE_INFO).json()
    recent = [s for s in info["symbols"] if s["onboardDate"] > NOW_MS - 60 * 86_400_000]
    symbol = recent[0]

    rows = klines(http, sim, symbol=symbol["symbol"], startTime=ms(EPOCH), limit=10)

    assert len(recent) >= 5
    assert all(s["status"] == "TRADING" and s["onboardDate"] <= NOW_MS for s in recent)
    assert rows[0][0] == symbol["onboardDate"]


def test_prices_are_realistic(sim, http):
    last = {t["symbol"]: float(t["lastPrice"]) for t in get(http, sim, TICKER).json()}

    assert 50_000 < last["BTCUSDT"] < 150_000
    assert 1_500 < last["ETHUSDT"] < 6_000
    assert 60 < last["SOLUSDT"] < 300
    assert last["DOGEUSDT"] < 1
    assert last["ADAUSDT"] < 2
    assert 0.995 < last["USDCUSDT"] < 1.005
    assert 0.001 < last["1000PEPEUSDT"] < 0.1  # quoted per 1000 PEPE


# ---------------------------------------------------------------------------------- catalogue
def test_enough_valid_layer_1_and_layer_2_perpetuals_for_a_100_symbol_universe(sim, http):
    info = {s["symbol"]: s for s in get(http, sim, EXCHANGE_INFO).json()["symbols"]}
    chains = [
        c.binance_symbol
        for c in sim.market.coins
        if c.is_layer_1_or_2 and STABLECOINS not in c.categories and c.binance_symbol in info
    ]
    tradable = [
        s
        for s in chains
        if is_valid_symbol(s)
        and info[s]["status"] == "TRADING"
        and info[s]["contractType"] == "PERPETUAL"
        and info[s]["quoteAsset"] == "USDT"
    ]

    assert len(tradable) >= 110


@pytest.mark.parametrize(
    ("coingecko_id", "ticker", "symbol", "base"),
    [
        ("bitcoin", "btc", "BTCUSDT", "BTC"),
        ("polygon-ecosystem-token", "pol", "POLUSDT", "POL"),
        ("ecash", "xec", "1000XECUSDT", "1000XEC"),
        ("terra-luna", "lunc", "1000LUNCUSDT", "1000LUNC"),
        ("terra-luna-2", "luna", "LUNA2USDT", "LUNA2"),
        ("beam-2", "beam", "BEAMXUSDT", "BEAMX"),
        ("pepe", "pepe", "1000PEPEUSDT", "1000PEPE"),
        ("binancecoin", "bnb", "BNBUSDT", "BNB"),
    ],
)
def test_catalogue_maps_coins_to_their_real_perpetuals(sim, http, coingecko_id, ticker, symbol, base):
    coin = sim.market.coin(coingecko_id)
    info = {s["symbol"]: s for s in get(http, sim, EXCHANGE_INFO).json()["symbols"]}

    assert (coin.ticker, coin.binance_symbol) == (ticker, symbol)
    assert info[symbol]["baseAsset"] == base


def test_catalogue_holds_the_traps_a_universe_rule_must_handle(sim):
    coins = sim.market.coins
    by_ticker: dict[str, list] = {}
    for coin in coins:
        by_ticker.setdefault(coin.ticker, []).append(coin)
    impostors_in_chains = [
        c
        for ticker in ("doge", "op")
        for c in by_ticker[ticker]
        if c.is_layer_1_or_2 and c.binance_symbol is None and c.volume_usd >= 5e8
    ]
    stables_in_chains = [c for c in coins if STABLECOINS in c.categories and c.is_layer_1_or_2]

    assert len(by_ticker["doge"]) == 3
    assert len(by_ticker["op"]) == 2
    assert {c.coingecko_id for c in impostors_in_chains} == {"binance-peg-dogecoin", "optio-network"}
    assert [c.binance_symbol for c in stables_in_chains] == ["FDUSDUSDT"]
    assert {"wrapped-bitcoin", "weth", "staked-ether", "wrapped-steth", "tether", "usd-coin"} <= {
        c.coingecko_id for c in coins
    }


def test_exchange_info_lists_the_binance_only_contracts(sim, http):
    info = {s["symbol"]: s for s in get(http, sim, EXCHANGE_INFO).json()["symbols"]}

    assert info["BTCUSDT_261225"]["contractType"] == "CURRENT_QUARTER"
    assert info["BTCUSDC"]["quoteAsset"] == "USDC"
    assert info["USDCUSDT"]["baseAsset"] == "USDC"
    assert info["FDUSDUSDT"]["baseAsset"] == "FDUSD"
    assert info["FTMUSDT"]["status"] == "SETTLING"


# ------------------------------------------------------------------------------------- faults
def test_a_gap_removes_candles_and_limit_counts_existing_ones(sim, http):
    start = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
    sim.faults.gap("BTCUSDT", start + timedelta(minutes=10), start + timedelta(minutes=30))

    rows = klines(http, sim, symbol="BTCUSDT", startTime=ms(start), limit=6)

    minutes = [(r[0] - ms(start)) // 60_000 for r in rows]
    assert minutes == [0, 5, 30, 35, 40, 45]


def test_a_delisted_symbol_settles_and_serves_no_candles(sim, http):
    sim.faults.delist("SOLUSDT")

    info = {s["symbol"]: s for s in get(http, sim, EXCHANGE_INFO).json()["symbols"]}
    response = get(http, sim, KLINES, symbol="SOLUSDT", interval="5m")
    tickers = {t["symbol"] for t in get(http, sim, TICKER).json()}

    assert info["SOLUSDT"]["status"] == "SETTLING"
    assert response.status_code == 400
    assert response.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert "SOLUSDT" not in tickers
    assert "ETHUSDT" in tickers


@pytest.mark.parametrize("raw", ["BAD|SYM", "../../etc", "X'; DROP TABLE", "btcusdt", "A"])
def test_hostile_symbols_are_listed_as_ordinary_perpetuals(sim, http, raw):
    sim.faults.add_symbol(raw)

    info = {s["symbol"]: s for s in get(http, sim, EXCHANGE_INFO).json()["symbols"]}
    tickers = {t["symbol"]: t for t in get(http, sim, TICKER).json()}

    assert info[raw]["status"] == "TRADING"
    assert info[raw]["contractType"] == "PERPETUAL"
    assert info[raw]["quoteAsset"] == "USDT"
    assert float(tickers[raw]["quoteVolume"]) > 1e8


def test_a_bad_candle_is_served_spoiled_on_every_page_that_holds_it(sim, http):
    start = datetime(2026, 11, 10, 3, 0, tzinfo=UTC)
    sim.faults.bad_candle("BTCUSDT", start + timedelta(minutes=5), "duplicate")
    sim.faults.bad_candle("BTCUSDT", start + timedelta(minutes=10), "repeat")
    sim.faults.bad_candle("BTCUSDT", start + timedelta(minutes=15), "off_grid")

    rows = klines(http, sim, symbol="BTCUSDT", startTime=ms(start), limit=4)
    again = klines(http, sim, symbol="BTCUSDT", startTime=ms(start), limit=4)

    minutes = [(r[0] - ms(start)) // 60_000 for r in rows]
    assert minutes == [0, 5, 5, 10, 10, 16]
    assert rows[1][4] != rows[2][4]  # the duplicate's close differs ...
    assert float(rows[2][2]) >= float(rows[2][4])  # ... and the row stays a consistent bar
    assert rows[3] == rows[4]  # the repeat is an exact copy
    assert again == rows


def test_a_failure_armed_after_n_requests_lets_those_through_first(sim, http):
    sim.faults.fail_next(KLINES, 400, after=2)

    statuses = [
        get(http, sim, KLINES, symbol="BTCUSDT", interval="5m", limit=1).status_code for _ in range(4)
    ]

    assert statuses == [200, 200, 400, 200]


def test_failures_answer_their_status_then_the_path_recovers(sim, http):
    sim.faults.fail_next(KLINES, 503, times=2)
    sim.faults.fail_next(MARKETS, 429, retry_after=0.25)

    first = get(http, sim, KLINES, symbol="BTCUSDT", interval="5m", limit=1)
    second = get(http, sim, KLINES, symbol="BTCUSDT", interval="5m", limit=1)
    third = get(http, sim, KLINES, symbol="BTCUSDT", interval="5m", limit=1)
    limited = get(http, sim, MARKETS, vs_currency="usd")

    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Content-Type"].startswith("text/html")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "0.25"
    assert limited.json()["status"]["error_code"] == 429


def test_a_stalled_request_times_out_and_the_next_one_is_served(sim, http):
    # A stall far longer than the client's timeout: a client descheduled on a busy machine still
    # finds no answer when it starts waiting (the stall ends early when the module's server stops).
    sim.faults.timeout_next(KLINES, seconds=30.0)

    with pytest.raises(requests.exceptions.ReadTimeout):
        http.get(sim.url + KLINES, params={"symbol": "BTCUSDT", "interval": "5m"}, timeout=1.0)
    assert get(http, sim, KLINES, symbol="BTCUSDT", interval="5m").status_code == 200


def test_a_truncated_body_is_shorter_than_its_content_length(sim, http):
    sim.faults.truncate_next(EXCHANGE_INFO)
    host, port = sim.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT_S) as raw:
        raw.sendall(f"GET {EXCHANGE_INFO} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )

    sim.faults.truncate_next(EXCHANGE_INFO)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(sim.url + EXCHANGE_INFO, timeout=WAIT_S)
    assert 0 < len(body) < length
    assert get(http, sim, EXCHANGE_INFO).status_code == 200


def test_one_shot_faults_stack_failures_first_then_a_truncated_answer(sim, http):
    sim.faults.fail_next(KLINES, 502)
    sim.faults.truncate_next(KLINES)
    params = {"symbol": "BTCUSDT", "interval": "5m", "limit": 50}

    failed = http.get(sim.url + KLINES, params=params, timeout=WAIT_S)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(sim.url + KLINES, params=params, timeout=WAIT_S)
    whole = http.get(sim.url + KLINES, params=params, timeout=WAIT_S)

    assert failed.status_code == 502
    assert len(whole.json()) == 50


def test_coingecko_down_answers_every_request_until_cleared(sim, http):
    sim.faults.coingecko_down(502)

    down = [get(http, sim, path, vs_currency="usd").status_code for path in (MARKETS, "/api/v3/ping")]
    binance = get(http, sim, "/fapi/v1/ping").status_code
    sim.faults.clear()
    up = get(http, sim, "/api/v3/ping")

    assert down == [502, 502]
    assert binance == 200
    assert up.json() == {"gecko_says": "(V3) To the Moon!"}


def _window(seconds: float) -> int:
    return math.floor(time.time() / seconds)


def test_a_client_that_comes_back_before_retry_after_is_banned():
    params = {"symbol": "BTCUSDT", "interval": "5m", "limit": 100}  # weight 2
    # The six weighed requests must share one 2-second wall-clock window, and the next one must come
    # before Retry-After has passed. On a busy machine a window may turn in between: such an attempt
    # proves nothing either way and is made again on a fresh simulator (bounded, never a hang).
    for _attempt in range(20):
        with (
            Simulator(now=NOW, weight_limit=10, window_seconds=2.0, ban_seconds=30.0) as limited,
            requests.Session() as session,
        ):
            url = limited.url + KLINES
            time.sleep(2.0 - time.time() % 2.0 + 0.02)  # start at the beginning of a window
            window = _window(2.0)
            statuses = [session.get(url, params=params, timeout=WAIT_S).status_code for _ in range(5)]
            over = session.get(url, params=params, timeout=WAIT_S)
            one_window = _window(2.0) == window
            asked_back_at = time.time()
            too_early = session.get(limited.url + "/fapi/v1/ping", timeout=WAIT_S)
            in_time = time.time() < asked_back_at + int(over.headers.get("Retry-After", "0"))
            still = session.get(limited.url + "/fapi/v1/time", timeout=WAIT_S)
        if one_window and (in_time or over.status_code != 429):  # a wrong answer is asserted below
            break
    else:
        pytest.fail("no attempt fitted its requests in one rate-limit window")

    assert statuses == [200] * 5
    assert over.status_code == 429
    assert over.json()["code"] == -1003
    assert int(over.headers["Retry-After"]) >= 1
    assert over.headers["X-MBX-USED-WEIGHT-1M"] == "10"
    assert too_early.status_code == 418
    assert too_early.headers["Retry-After"] == "30"
    assert still.status_code == 418
    assert (limited.stats.rate_limited, limited.stats.banned_requests) == (1, 2)


def test_a_client_that_waits_out_retry_after_is_served_again():
    with (
        Simulator(now=NOW, weight_limit=1, window_seconds=1.0, ban_seconds=30.0) as limited,
        requests.Session() as session,
    ):
        ping = limited.url + "/fapi/v1/ping"
        session.get(ping, timeout=WAIT_S)
        refused = session.get(ping, timeout=WAIT_S)
        deadline = time.monotonic() + 60
        while refused.status_code == 200:  # the window turned between two pings: ping again
            assert time.monotonic() < deadline, "never refused in 60 s at 1 weight per second"
            refused = session.get(ping, timeout=WAIT_S)
        time.sleep(float(refused.headers["Retry-After"]))  # what the venue asks: the behaviour under test
        served = session.get(ping, timeout=WAIT_S)

    assert refused.status_code == 429
    assert served.status_code == 200
    assert served.headers["X-MBX-USED-WEIGHT-1M"] == "1"


# ----------------------------------------------------------------------------------- CoinGecko
@pytest.mark.parametrize(
    ("order", "key", "descending"),
    [
        ("volume_desc", "total_volume", True),
        ("volume_asc", "total_volume", False),
        ("market_cap_desc", "market_cap", True),
        ("market_cap_asc", "market_cap", False),
        ("id_asc", "id", False),
    ],
)
def test_coins_markets_orders(sim, http, order, key, descending):
    rows = get(http, sim, MARKETS, vs_currency="usd", order=order, per_page=250).json()
    values = [r[key] for r in rows]

    assert values == sorted(values, reverse=descending)


def test_market_cap_rank_follows_market_cap(sim, http):
    rows = get(http, sim, MARKETS, vs_currency="usd", per_page=250).json()

    assert [r["market_cap_rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0]["id"] == "bitcoin"


def test_category_filter_returns_only_that_category(sim, http):
    layer_2 = get(http, sim, MARKETS, vs_currency="usd", category=LAYER_2, per_page=250).json()
    expected = {c.coingecko_id for c in sim.market.coins if LAYER_2 in c.categories}
    unknown = get(http, sim, MARKETS, vs_currency="usd", category="no-such-category")

    assert {r["id"] for r in layer_2} == expected
    assert "optio-network" in expected
    assert "optimism" in expected
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "category not found"}


def test_pages_ids_and_currency(sim, http):
    first = get(http, sim, MARKETS, vs_currency="usd", per_page=50, page=1).json()
    second = get(http, sim, MARKETS, vs_currency="usd", per_page=50, page=2).json()
    chosen = get(http, sim, MARKETS, vs_currency="usd", ids="solana,bitcoin,nope").json()
    euro = get(http, sim, MARKETS, vs_currency="eur")

    assert len(first) == len(second) == 50
    assert not {r["id"] for r in first} & {r["id"] for r in second}
    assert [r["id"] for r in chosen] == ["bitcoin", "solana"]
    assert euro.status_code == 400
    assert "error" in euro.json()


def test_coingecko_volume_agrees_with_binance_volume(sim, http):
    binance = {t["symbol"]: float(t["quoteVolume"]) for t in get(http, sim, TICKER).json()}
    rows = get(http, sim, MARKETS, vs_currency="usd", category=LAYER_1, per_page=250).json()
    ratios = [
        r["total_volume"] / binance[sim.market.coin(r["id"]).binance_symbol]
        for r in rows
        if sim.market.coin(r["id"]).binance_symbol in binance
        and STABLECOINS not in sim.market.coin(r["id"]).categories
    ]
    btc = next(r for r in rows if r["id"] == "bitcoin")

    assert len(ratios) > 50
    assert min(ratios) > 1.19
    assert max(ratios) < 3.01
    assert btc["current_price"] == round(float(get(http, sim, TICKER, symbol="BTCUSDT").json()["lastPrice"]))


def test_coingecko_api_key_header_is_recorded(sim, http):
    http.get(sim.coingecko_url + "/ping", headers={"x-cg-demo-api-key": "CG-test"}, timeout=WAIT_S)

    assert sim.stats.last_headers["coingecko"]["x-cg-demo-api-key"] == "CG-test"
    assert sim.stats.requests["/api/v3/ping"] == 1


# ---------------------------------------------------------------------------------- server
def test_concurrent_clients_are_all_served_and_klines_queries_recorded(sim):
    def pull(symbol: str) -> int:
        with requests.Session() as session:
            codes = [
                session.get(
                    sim.url + KLINES,
                    params={"symbol": symbol, "interval": "5m", "limit": 499},
                    timeout=WAIT_S,
                ).status_code
                for _ in range(5)
            ]
        return sum(code == 200 for code in codes)

    with ThreadPoolExecutor(max_workers=8) as pool:
        served = list(pool.map(pull, ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"] * 2))

    assert served == [5] * 8
    assert len(sim.stats.klines_queries()) == 40
    assert {q["limit"] for q in sim.stats.klines_queries()} == {"499"}


def test_unknown_paths_answer_404_json(sim, http):
    response = get(http, sim, "/nope")

    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


def test_stop_releases_the_port():
    simulator = Simulator(now=NOW)
    simulator.start()
    port = simulator.port
    keep_alive = requests.Session()
    keep_alive.get(simulator.url + "/fapi/v1/ping", timeout=WAIT_S)  # leaves an idle connection open
    stopped_at = time.perf_counter()
    simulator.stop()
    took = time.perf_counter() - stopped_at

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert took < 2.0
    assert not [t for t in threading.enumerate() if t.name == f"simulator:{port}"]


def test_a_499_row_page_costs_a_few_milliseconds(sim, http):
    start = NOW_MS - 90 * 86_400_000
    symbols = ["LTCUSDT", "NEARUSDT", "DOTUSDT", "TRXUSDT"]
    began = time.perf_counter()
    for i in range(40):
        rows = klines(
            http, sim, symbol=symbols[i % 4], startTime=start + (i // 4) * 499 * FIVE_MIN_MS, limit=499
        )
        assert len(rows) == 499
    per_request_ms = (time.perf_counter() - began) / 40 * 1000

    assert per_request_ms < 40  # client parsing included; typically 2-4 ms on this machine


def _sigint_as_in_a_terminal() -> None:
    # A suite started without job control (`make test &`, nohup, some CI runners) hands its children
    # SIGINT ignored, and Python then never raises KeyboardInterrupt: Ctrl-C in a terminal, what
    # this test stands for, always has the default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _first_line(child: subprocess.Popen[str], *, within_s: float) -> str:
    """The child's first line of output; fails (never hangs) if none comes within `within_s`."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], within_s)
    assert ready, f"no output from the child within {within_s} s"
    return child.stdout.readline()


def test_run_server_serves_until_interrupted():
    repo = Path(__file__).resolve().parents[2]
    script = "from quant_assets.simulator import run_server; run_server(port=0)"
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=repo,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_in_a_terminal,  # sets one signal before exec: no locks, no threads
    )
    try:
        # Generous bounds: they only stop a broken server from hanging the suite on a busy machine.
        base = _first_line(child, within_s=120).strip().rsplit("=", 1)[1]
        pong = requests.get(base + "/fapi/v1/ping", timeout=WAIT_S)
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=120)
    finally:
        child.kill()
        child.wait()

    assert pong.status_code == 200
    assert code == 0


# --------------------------------------------------------------------------- market helpers
def test_reference_candles_match_what_the_server_sends(sim, http):
    day = datetime(2026, 11, 20, tzinfo=UTC)
    frame = sim.market.candles("ETHUSDT", day, day + timedelta(days=1))
    rows = klines(http, sim, symbol="ETHUSDT", startTime=ms(day), limit=288)

    assert len(frame) == 288
    assert frame["open_time"].iloc[0] == pd.Timestamp("2026-11-20 00:00")
    assert [f"{v:.2f}" for v in frame["close"]] == [r[4] for r in rows]
    assert frame["trades"].tolist() == [r[8] for r in rows]


def test_reference_candles_hold_closed_candles_only(sim):
    frame = sim.market.candles("BTCUSDT", NOW - timedelta(hours=1), NOW + timedelta(hours=1))

    # Asked from 11:02:30: the first candle opens at 11:05; the 12:00 one is still forming.
    assert frame["open_time"].iloc[0] == pd.Timestamp("2026-11-23 11:05")
    assert frame["open_time"].iloc[-1] == pd.Timestamp("2026-11-23 11:55")
    assert len(frame) == 11


def test_a_clock_moved_before_a_listing_shows_it_pending_without_candles():
    with Simulator(now=NOW) as moved, requests.Session() as session:
        recent = min(
            (c for c in moved.market.contracts.values() if c.onboard_ms > NOW_MS - 60 * 86_400_000),
            key=lambda c: c.onboard_ms,
        )
        moved.market.set_now(datetime.fromtimestamp((recent.onboard_ms - 86_400_000) / 1000, tz=UTC))
        info = {
            s["symbol"]: s for s in session.get(moved.url + EXCHANGE_INFO, timeout=WAIT_S).json()["symbols"]
        }
        rows = session.get(
            moved.url + KLINES, params={"symbol": recent.symbol, "interval": "5m"}, timeout=WAIT_S
        )
        tickers = {t["symbol"] for t in session.get(moved.url + TICKER, timeout=WAIT_S).json()}

    assert info[recent.symbol]["status"] == "PENDING_TRADING"
    assert rows.json() == []
    assert recent.symbol not in tickers
    assert "BTCUSDT" in tickers


def test_a_naive_clock_is_read_as_utc():
    with Simulator(now=NOW.replace(tzinfo=None)) as naive:
        assert naive.market.now_ms() == NOW_MS
