"""The venues' payloads, parsed once at the edge into frozen dataclasses and frames.

Nothing outside ``quant_assets.sources`` sees a raw venue payload: the universe rules and the store
work on these types only. Field names follow the venues' own documentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PerpContract:
    """One entry of Binance ``GET /fapi/v1/exchangeInfo`` ``symbols`` (only what we use).

    ``symbol`` is the raw text the venue sent: it is NOT validated here, the universe rules do that.
    """

    symbol: str
    pair: str
    contract_type: str  # "PERPETUAL", "CURRENT_QUARTER", ...
    status: str  # "TRADING", "SETTLING", "PENDING_TRADING", ...
    base_asset: str  # e.g. "BTC", "1000PEPE"
    quote_asset: str  # e.g. "USDT", "USDC"
    onboard_date_ms: int | None


@dataclass(frozen=True)
class ExchangeInfo:
    """Parsed ``GET /fapi/v1/exchangeInfo``."""

    server_time_ms: int
    contracts: tuple[PerpContract, ...]


@dataclass(frozen=True)
class Ticker24h:
    """One entry of Binance ``GET /fapi/v1/ticker/24hr`` (the all-symbols array form)."""

    symbol: str
    last_price: float
    volume: float  # base asset
    quote_volume: float  # USDT
    count: int  # trades


@dataclass(frozen=True)
class MarketCoin:
    """One entry of CoinGecko ``GET /coins/markets``; prices in the requested ``vs_currency``."""

    id: str  # CoinGecko id, unique: "bitcoin", "binance-peg-dogecoin"
    symbol: str  # ticker as CoinGecko writes it, lower case, NOT unique: "doge"
    name: str
    current_price: float | None
    market_cap: float | None
    market_cap_rank: int | None
    total_volume: float | None  # 24h volume
    last_updated: str | None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_exchange_info(payload: dict[str, Any]) -> ExchangeInfo:
    """Parse an exchangeInfo payload; raises ``KeyError``/``TypeError`` on a payload of another shape."""
    contracts = tuple(
        PerpContract(
            symbol=str(s["symbol"]),
            pair=str(s.get("pair", "")),
            contract_type=str(s.get("contractType", "")),
            status=str(s.get("status", "")),
            base_asset=str(s.get("baseAsset", "")),
            quote_asset=str(s.get("quoteAsset", "")),
            onboard_date_ms=int(s["onboardDate"]) if s.get("onboardDate") is not None else None,
        )
        for s in payload["symbols"]
    )
    return ExchangeInfo(server_time_ms=int(payload.get("serverTime", 0)), contracts=contracts)


def parse_ticker_24hr(payload: list[dict[str, Any]]) -> list[Ticker24h]:
    """Parse the all-symbols form of ticker/24hr (decimal strings become floats)."""
    return [
        Ticker24h(
            symbol=str(t["symbol"]),
            last_price=float(t["lastPrice"]),
            volume=float(t["volume"]),
            quote_volume=float(t["quoteVolume"]),
            count=int(t.get("count", 0)),
        )
        for t in payload
    ]


def parse_coins_markets(payload: list[dict[str, Any]]) -> list[MarketCoin]:
    """Parse a coins/markets page."""
    return [
        MarketCoin(
            id=str(c["id"]),
            symbol=str(c["symbol"]),
            name=str(c.get("name", "")),
            current_price=_float(c.get("current_price")),
            market_cap=_float(c.get("market_cap")),
            market_cap_rank=(int(c["market_cap_rank"]) if c.get("market_cap_rank") is not None else None),
            total_volume=_float(c.get("total_volume")),
            last_updated=c.get("last_updated"),
        )
        for c in payload
    ]
