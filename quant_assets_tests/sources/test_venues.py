"""Coins behind venue instruments, and the match of a venue's instruments to the universe."""

from __future__ import annotations

import pytest

from quant_assets.errors import InvalidSymbolError
from quant_assets.sources.venues import Instrument, checked_name, coin_of, match_instruments


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("BTC", ("BTC", 1)),
        ("1000PEPE", ("PEPE", 1000)),
        ("SHIB1000", ("SHIB", 1000)),
        ("1000000MOG", ("MOG", 1_000_000)),
        ("1INCH", ("1INCH", 1)),  # a digit in the name is no multiplier
        ("pepe", ("PEPE", 1)),
    ],
)
def test_coin_of_strips_the_contract_multiplier(base: str, expected: tuple[str, int]) -> None:
    assert coin_of(base) == expected


def instrument(name: str, coin: str, unit: float = 1.0, *, trading: bool = True) -> Instrument:
    return Instrument("bybit", name, coin, unit, unit, 0, trading)


def test_universe_symbols_are_matched_by_coin_and_only_to_trading_instruments() -> None:
    listed = [
        instrument("BTCUSDT", "BTC"),
        instrument("SHIB1000USDT", "SHIB", 1000.0),
        instrument("ETHUSDT", "ETH", trading=False),
    ]

    matched = match_instruments(
        [("BTCUSDT", "BTC"), ("1000SHIBUSDT", "1000SHIB"), ("ETHUSDT", None), ("SOLUSDT", None)], listed
    )

    assert {symbol: i.name for symbol, i in matched.items()} == {
        "BTCUSDT": "BTCUSDT",
        "1000SHIBUSDT": "SHIB1000USDT",
    }


@pytest.mark.parametrize("name", ["BTC/USDT", "../x", "btcusdt", ""])
def test_an_unsafe_instrument_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidSymbolError, match="refusing instrument name"):
        checked_name(name)
