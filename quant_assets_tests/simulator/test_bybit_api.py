"""The simulator's Bybit endpoints over raw HTTP: Bybit's envelope and shapes, and its 403."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from quant_assets.simulator import Simulator
from quant_assets.simulator.bybit_api import INSTRUMENTS_PATH, KLINE_PATH

NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


def get(sim: Simulator, path: str, **params: object) -> requests.Response:
    return requests.get(sim.bybit_url + path, params=params, timeout=5)


def test_kline_serves_the_newest_candles_of_the_range_newest_first(sim: Simulator) -> None:
    sim.reset()
    start = NOW_MS - 3_600_000

    body = get(
        sim, KLINE_PATH, category="linear", symbol="BTCUSDT", interval="5", start=start, limit=5
    ).json()

    assert (body["retCode"], body["retMsg"], body["result"]["symbol"]) == (0, "OK", "BTCUSDT")
    opens = [int(row[0]) for row in body["result"]["list"]]
    forming = NOW_MS // 300_000 * 300_000
    assert opens == [forming - n * 300_000 for n in range(5)]  # the newest 5, the forming one first
    assert all(len(row) == 7 and all(isinstance(v, str) for v in row) for row in body["result"]["list"])


def test_instruments_info_pages_with_a_cursor(sim: Simulator) -> None:
    sim.reset()

    first = get(sim, INSTRUMENTS_PATH, category="linear", limit=50).json()["result"]
    rest = get(sim, INSTRUMENTS_PATH, category="linear", limit=1000, cursor=first["nextPageCursor"]).json()[
        "result"
    ]

    assert len(first["list"]) == 50
    assert first["nextPageCursor"] == "50"
    assert rest["nextPageCursor"] == ""
    names = [entry["symbol"] for entry in first["list"] + rest["list"]]
    assert len(names) == len(set(names)) == len(sim.bybit.listed())
    pepe = next(e for e in first["list"] + rest["list"] if e["symbol"] == "1000PEPEUSDT")
    assert (pepe["baseCoin"], pepe["contractType"], pepe["status"]) == (
        "1000PEPE",
        "LinearPerpetual",
        "Trading",
    )


def test_an_unknown_symbol_is_ret_code_10001(sim: Simulator) -> None:
    sim.reset()

    response = get(sim, KLINE_PATH, category="linear", symbol="NOPEUSDT", interval="5")

    assert response.status_code == 200
    assert response.json()["retCode"] == 10001


def test_over_the_limit_bybit_answers_403(sim: Simulator) -> None:
    sim.reset()
    sim.bybit.set_rate_limit(1, window_seconds=60.0)

    statuses = [get(sim, INSTRUMENTS_PATH, category="linear").status_code for _ in range(2)]

    assert statuses == [200, 403]
    sim.reset()
