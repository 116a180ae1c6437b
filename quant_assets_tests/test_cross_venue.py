"""The cross-venue comparison on frames: per-coin closes, the median rule, minutes named HH:MM."""

from __future__ import annotations

import pandas as pd
import pytest

from quant_assets.cross_venue import check_cross_venue

TIMES = pd.date_range("2026-11-23 10:00", periods=4, freq="5min")


def candles(closes: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"open_time": TIMES[: len(closes)], "close": closes})


def test_a_venue_beyond_the_limit_is_named_with_its_minutes() -> None:
    outcome = check_cross_venue(
        {
            "binance": candles([100.0, 100.0, 100.0, 100.0]),
            "bybit": candles([100.0, 101.0, 100.0, 100.6]),  # 100 bp, then 60 bp off the median
            "okx": candles([100.01, 100.0, 100.0, 100.0]),
        },
        symbol="BTCUSDT",
        max_bp=50,
    )

    assert not outcome.passed
    assert outcome.severity == "ERROR"
    assert outcome.metadata["divergent"] == {"bybit": {"BTCUSDT": ["10:05", "10:15"]}}
    assert outcome.metadata["candles_compared"] == 4
    assert outcome.metadata["worst_bp"] == pytest.approx(100.0)
    assert "bybit BTCUSDT at 10:05, 10:15" in outcome.description


def test_venues_within_the_limit_pass() -> None:
    outcome = check_cross_venue(
        {"binance": candles([100.0, 100.0]), "bybit": candles([100.2, 99.8]), "okx": candles([100.0, 100.1])},
        symbol="BTCUSDT",
        max_bp=50,
    )

    assert outcome.passed
    assert outcome.metadata["divergent"] == {}


def test_binance_closes_are_compared_per_coin() -> None:
    # 1000PEPEUSDT on Binance quotes 1,000 PEPE; Bybit and OKX rows are stored per coin.
    outcome = check_cross_venue(
        {"binance": candles([0.0062]), "bybit": candles([0.0000062]), "okx": candles([0.0000062])},
        symbol="1000PEPEUSDT",
        max_bp=50,
    )

    assert outcome.passed
    assert outcome.metadata["worst_bp"] == pytest.approx(0.0, abs=1e-6)


def test_a_candle_only_one_venue_served_is_not_compared() -> None:
    outcome = check_cross_venue(
        {"binance": candles([100.0, 100.0, 100.0]), "bybit": candles([150.0])[0:0]},
        symbol="BTCUSDT",
        max_bp=50,
    )

    assert outcome.passed
    assert outcome.metadata["candles_compared"] == 0
    assert outcome.metadata["venues"] == ["binance"]
