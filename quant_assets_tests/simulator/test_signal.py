"""The planted signal, both ways: off, returns hold nothing to learn; on, taker-buy flow predicts the
next hour at the documented size, over real HTTP, from Python and from ``quant-assets simulator``.

The market is fixed (seed 7, clock 2026-11-23 12:00 UTC), so every figure here is deterministic. The
bounds come from 40 seeds of the same statistics (``quant_assets.simulator.market``'s docstring):
each lies well above the largest value noise gave and well below the effect it must catch.
"""

from __future__ import annotations

import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import requests
from scipy.stats import norm, rankdata

from quant_assets.simulator import Simulator
from quant_assets.simulator.market import BARS_PER_DAY, CLOSE, DAY_MS, EPOCH_MS, Market

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT")
HTTP_SYMBOLS = (*SYMBOLS, "BNBUSDT", "AVAXUSDT")
LAGS = range(1, 25)
HOUR = 12  # bars
AUTOCORR_DAYS = 120
HTTP_DAYS = 30
# Over 40 seeds of 6 symbols x 120 days the largest |autocorrelation| over lags 1..24 was 0.017
# (5m returns) and 0.050 (12-bar returns).
MAX_AUTOCORR_5M, MAX_AUTOCORR_12 = 0.03, 0.065
# Cross-sectional IC of 8 symbols x 30 days over 40 seeds: taker_buy_ratio_12 with the signal on
# 0.263 +- 0.011 (0.239 .. 0.288); off, and the last 12-bar return either way, 0.00 +- 0.012.
SIGNAL_IC = (0.20, 0.34)
NOISE_IC = 0.05
WAIT_S = 120  # bounds only a failure: a local answer takes milliseconds


def _day_index(moment: datetime) -> int:
    return (int(moment.timestamp() * 1000) - EPOCH_MS) // DAY_MS


def _normal_scores(values: np.ndarray) -> np.ndarray:
    """Ranks mapped to standard normal quantiles: fat tails cannot dominate a correlation."""
    return norm.ppf((rankdata(values) - 0.5) / len(values))


def _standardized_returns(market: Market, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Per symbol (rows): 5m log returns and non-overlapping 12-bar log returns, each divided by its
    symbol-day's standard deviation, as normal scores."""
    last_day = _day_index(NOW)  # the days before today: all closed
    first = (last_day - days) * BARS_PER_DAY
    fives, hours = [], []
    for symbol in SYMBOLS:
        bars = market.bars_5m(symbol, first - 1, last_day * BARS_PER_DAY - 1)
        returns = np.diff(np.log(bars[:, CLOSE])).reshape(days, BARS_PER_DAY)
        z = returns / returns.std(axis=1, keepdims=True)
        fives.append(_normal_scores(z.ravel()))
        hours.append(_normal_scores(z.reshape(days, -1, HOUR).sum(axis=2).ravel()))
    return np.array(fives), np.array(hours)


def _max_autocorrelation(z: np.ndarray) -> float:
    """Largest |autocorrelation| over lags 1..24 of each row's series, pooled over the rows."""

    def at(lag: int) -> float:
        a, b = z[:, :-lag], z[:, lag:]
        return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))

    return max(abs(at(lag)) for lag in LAGS)


@pytest.fixture(scope="module")
def markets() -> dict[bool, tuple[np.ndarray, np.ndarray]]:
    return {
        on: _standardized_returns(Market(seed=7, now=NOW, n_symbols=20, signal=on), AUTOCORR_DAYS)
        for on in (False, True)
    }


@pytest.mark.parametrize("on", [False, True], ids=["signal_off", "signal_on"])
def test_returns_have_no_autocorrelation_at_lags_1_to_24(markets, on):
    fives, hours = markets[on]

    assert _max_autocorrelation(fives) < MAX_AUTOCORR_5M
    assert _max_autocorrelation(hours) < MAX_AUTOCORR_12


def test_the_autocorrelation_bounds_catch_momentum_of_the_planted_size(markets):
    fives, hours = (z.copy() for z in markets[False])
    fives[:, HOUR:] += 0.05 * markets[False][0][:, :-HOUR]  # each 5m return leans on the one an hour back
    hours[:, 1:] += 0.15 * markets[False][1][:, :-1]  # each hour leans on the previous one

    assert _max_autocorrelation(fives) > MAX_AUTOCORR_5M
    assert _max_autocorrelation(hours) > MAX_AUTOCORR_12


def test_candles_with_the_signal_are_a_pure_function_of_open_time():
    day = _day_index(NOW) - 3
    alone = Market(seed=7, now=NOW, n_symbols=20, signal=True)
    ranged = Market(seed=7, now=NOW, n_symbols=20, signal=True)
    ranged.bars_5m("ETHUSDT", (day - 2) * BARS_PER_DAY, day * BARS_PER_DAY - 1)  # the days before first

    # The day's first hour reads the flow of the day before: the same whichever was generated first.
    assert np.array_equal(
        alone.bars_5m("ETHUSDT", day * BARS_PER_DAY, (day + 1) * BARS_PER_DAY - 1),
        ranged.bars_5m("ETHUSDT", day * BARS_PER_DAY, (day + 1) * BARS_PER_DAY - 1),
    )


# ------------------------------------------------------------------------------------ over HTTP
@pytest.fixture(scope="module")
def served() -> Iterator[dict[bool, Simulator]]:
    with Simulator(now=NOW) as off, Simulator(now=NOW, signal=True) as on:
        yield {False: off, True: on}


def _klines(session: requests.Session, base: str, symbol: str, start: datetime, end: datetime) -> list[list]:
    rows: list[list] = []
    cursor = int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000) - 1
    while cursor <= end_ms:
        params = {"symbol": symbol, "interval": "5m", "startTime": cursor, "endTime": end_ms, "limit": 1500}
        page = session.get(base + "/fapi/v1/klines", params=params, timeout=WAIT_S)
        assert page.status_code == 200, page.text
        body = page.json()
        if not body:
            break
        rows.extend(body)
        cursor = int(body[-1][0]) + 300_000
    return rows


@pytest.fixture(scope="module")
def candles(served) -> dict[bool, dict[str, np.ndarray]]:
    """Per switch, per symbol: the served klines of the 30 closed days before NOW, as floats."""
    end = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
    start = end - timedelta(days=HTTP_DAYS)
    out: dict[bool, dict[str, np.ndarray]] = {}
    with requests.Session() as session:
        for on, sim in served.items():
            out[on] = {
                s: np.array(_klines(session, sim.url, s, start, end), dtype=object)[:, :11].astype(float)
                for s in HTTP_SYMBOLS
            }
    return out


def _cross_sectional_ic(predictor: np.ndarray, target: np.ndarray) -> float:
    """Spearman correlation across the symbols (rows) at each open time (column), averaged."""
    rx, ry = rankdata(predictor, axis=0), rankdata(target, axis=0)
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean(axis=0)
    return float(np.mean((rx * ry).sum(axis=0) / np.sqrt((rx * rx).sum(axis=0) * (ry * ry).sum(axis=0))))


def _flow_and_returns(klines: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """taker_buy_ratio_12 (taker-buy volume / volume over the last 12 bars), the last and the next
    12-bar log return, at every bar with both a full past and a full future hour."""
    flow, last, following = [], [], []
    for rows in klines.values():
        log_close = np.log(rows[:, 4])
        volume, taker = np.r_[0.0, np.cumsum(rows[:, 5])], np.r_[0.0, np.cumsum(rows[:, 9])]
        t = np.arange(HOUR, len(rows) - HOUR)
        flow.append((taker[t + 1] - taker[t + 1 - HOUR]) / (volume[t + 1] - volume[t + 1 - HOUR]))
        last.append(log_close[t] - log_close[t - HOUR])
        following.append(log_close[t + HOUR] - log_close[t])
    return np.array(flow), np.array(last), np.array(following)


def test_taker_flow_predicts_the_next_hour_only_with_the_signal_on(candles):
    ic = {on: _cross_sectional_ic(*_flow_and_returns(candles[on])[::2]) for on in (False, True)}

    assert SIGNAL_IC[0] < ic[True] < SIGNAL_IC[1]
    assert abs(ic[False]) < NOISE_IC


@pytest.mark.parametrize("on", [False, True], ids=["signal_off", "signal_on"])
def test_the_last_hours_return_predicts_nothing_either_way(candles, on):
    _, last, following = _flow_and_returns(candles[on])

    assert abs(_cross_sectional_ic(last, following)) < NOISE_IC


def test_the_switch_keeps_every_days_close_and_open_equal_to_previous_close(candles):
    off, on = candles[False]["SOLUSDT"], candles[True]["SOLUSDT"]
    day_closes = slice(BARS_PER_DAY - 1, None, BARS_PER_DAY)

    assert np.array_equal(off[:, 0], on[:, 0])  # the same open times
    assert np.array_equal(off[day_closes, 4], on[day_closes, 4])  # each day's return unchanged
    assert np.array_equal(on[1:, 1], on[:-1, 4])  # open = previous close, across days too
    assert np.mean(off[:, 4] != on[:, 4]) > 0.9  # intraday the paths differ
    assert not np.array_equal(off[:, 9], on[:, 9])  # and so do the taker-buy volumes


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sigint_as_in_a_terminal() -> None:
    # A suite started without job control hands its children SIGINT ignored; Ctrl-C in a terminal,
    # what this test stands for, always has the default action.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _line_with(child: subprocess.Popen[str], text: str, *, within_s: float) -> str:
    """The child's first output line holding `text`; fails (never hangs) if none comes in time."""
    assert child.stdout is not None
    seen: list[str] = []
    while True:
        ready, _, _ = select.select([child.stdout], [], [], within_s)
        assert ready, f"no line with {text!r} within {within_s} s; got {seen}"
        line = child.stdout.readline()
        assert line, f"the child exited before printing {text!r}; got {seen}"
        if text in line:
            return line
        seen.append(line)


def test_quant_assets_simulator_signal_serves_the_planted_market(served):
    port = _free_port()
    script = f"from quant_assets.cli import main; raise SystemExit(main(['simulator', '--port', '{port}', '--signal']))"
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_sigint_as_in_a_terminal,  # sets one signal before exec: no locks, no threads
    )
    day = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) - timedelta(days=2)  # closed long ago
    try:
        banner = _line_with(child, "planted signal ON", within_s=WAIT_S)
        _line_with(child, "simulator listening", within_s=WAIT_S)
        with requests.Session() as session:
            from_cli = _klines(session, f"http://127.0.0.1:{port}", "ETHUSDT", day, day + timedelta(days=1))
            expected = {
                on: _klines(session, sim.url, "ETHUSDT", day, day + timedelta(days=1))
                for on, sim in served.items()
            }
        child.send_signal(signal.SIGINT)
        code = child.wait(timeout=WAIT_S)
    finally:
        child.kill()
        child.wait()

    assert "planted signal ON" in banner
    assert from_cli == expected[True]
    assert from_cli != expected[False]
    assert code == 0


def test_the_session_signal_simulator_fixture_serves_the_planted_market(signal_simulator):
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
    reference = Market(seed=7, signal=True).candles("ETHUSDT", day, day + timedelta(hours=1))

    with requests.Session() as session:
        rows = _klines(session, signal_simulator.url, "ETHUSDT", day, day + timedelta(hours=1))

    assert signal_simulator.market.signal is True
    assert [r[9] for r in rows] == [f"{v:.2f}" for v in reference["taker_buy_volume"]]
