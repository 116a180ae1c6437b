"""The simulator's OKX endpoints over raw HTTP: OKX's envelope and shapes, confirm, and its 429."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from quant_assets.simulator import Simulator
from quant_assets.simulator.okx_api import CANDLES_PATH, HISTORY_CANDLES_PATH, INSTRUMENTS_PATH

NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
FORMING = NOW_MS // 300_000 * 300_000


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as simulator:
        yield simulator


def get(sim: Simulator, path: str, **params: object) -> requests.Response:
    return requests.get(sim.okx_url + path, params=params, timeout=5)


def test_candles_are_newest_first_with_the_forming_one_unconfirmed(sim: Simulator) -> None:
    sim.reset()

    body = get(sim, CANDLES_PATH, instId="BTC-USDT-SWAP", bar="5m", limit=3).json()

    assert (body["code"], body["msg"]) == ("0", "")
    assert [int(row[0]) for row in body["data"]] == [FORMING, FORMING - 300_000, FORMING - 600_000]
    assert [row[8] for row in body["data"]] == ["0", "1", "1"]
    assert all(len(row) == 9 for row in body["data"])


def test_after_and_before_are_exclusive_bounds(sim: Simulator) -> None:
    sim.reset()
    old = FORMING - 10 * 86_400_000

    body = get(
        sim, HISTORY_CANDLES_PATH, instId="BTC-USDT-SWAP", bar="5m", after=old, before=old - 900_000
    ).json()

    assert [int(row[0]) for row in body["data"]] == [old - 300_000, old - 600_000]


def test_candles_reach_back_1440_bars_and_history_candles_further(sim: Simulator) -> None:
    sim.reset()
    old = FORMING - 10 * 86_400_000

    recent = get(sim, CANDLES_PATH, instId="BTC-USDT-SWAP", bar="5m", after=old).json()["data"]
    history = get(sim, HISTORY_CANDLES_PATH, instId="BTC-USDT-SWAP", bar="5m", after=old).json()["data"]

    assert recent == []
    assert len(history) == 100


def test_an_armed_candle_is_served_unconfirmed_the_number_of_times_asked(sim: Simulator) -> None:
    sim.reset()
    at = datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    sim.okx.faults.unconfirmed("BTCUSDT", at, times=1)
    after = int(at.timestamp() * 1000) + 1

    flags = [
        get(sim, CANDLES_PATH, instId="BTC-USDT-SWAP", bar="5m", after=after, limit=1).json()["data"][0][8]
        for _ in range(2)
    ]

    assert flags == ["0", "1"]


def test_swaps_carry_their_contract_value(sim: Simulator) -> None:
    sim.reset()

    data = get(sim, INSTRUMENTS_PATH, instType="SWAP").json()["data"]

    btc = next(entry for entry in data if entry["instId"] == "BTC-USDT-SWAP")
    assert (btc["ctVal"], btc["ctValCcy"], btc["ctType"], btc["settleCcy"], btc["state"]) == (
        "0.01",
        "BTC",
        "linear",
        "USDT",
        "live",
    )


def test_over_the_limit_okx_answers_429_code_50011(sim: Simulator) -> None:
    sim.reset()
    sim.okx.set_rate_limit(1, window_seconds=60.0)

    answers = [get(sim, INSTRUMENTS_PATH, instType="SWAP") for _ in range(2)]

    assert answers[0].status_code == 200
    assert (answers[1].status_code, answers[1].json()["code"]) == (429, "50011")
    sim.reset()
