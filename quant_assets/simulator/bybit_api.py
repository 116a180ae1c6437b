"""Bybit v5 public market data (linear perpetuals), as the simulator serves it.

Endpoints, following Bybit's payloads (recorded shapes: nautilus_trader's
``http_get_klines_linear.json`` and ``http_get_instruments_linear.json``):

* ``GET /v5/market/instruments-info?category=linear[&limit=&cursor=]``: ``symbol``,
  ``contractType`` ``LinearPerpetual``, ``status`` ``Trading``, ``baseCoin`` (``1000PEPE`` or, for
  XEC, ``XEC1000``: the shape of Bybit's ``SHIB1000USDT``), ``launchTime`` and ``nextPageCursor``;
* ``GET /v5/market/kline?category=linear&symbol=&interval=5&start=&end=&limit=``: at most ``limit``
  (default 200, up to 1,000) candles with ``start <= start time <= end``, the newest ones, NEWEST
  FIRST, the still-forming candle included, ``[start, open, high, low, close, volume, turnover]``
  as strings; prices and volume in the contract's unit (1,000 coins for ``1000PEPEUSDT``).

Every answer is the ``retCode`` envelope (HTTP 200; an unknown symbol is ``retCode`` 10001). Over
the rate limit (600 requests per 5 s by default, :meth:`BybitApi.set_rate_limit`) the answer is
HTTP 403, as Bybit's, with no ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from quant_assets.simulator.faults import Faults
from quant_assets.simulator.market import Market
from quant_assets.simulator.venue_market import (
    VenueFaults,
    VenueListing,
    WindowLimiter,
    coin_candles,
    decimal_text,
    listings,
    price_places,
)
from quant_assets.simulator.wire import Reply, html_error, json_reply

PREFIX = "/v5/"
KLINE_PATH = "/v5/market/kline"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
VENUE = "bybit"
SUFFIX_NAMED = frozenset({"XEC"})  # per-1000 contracts named like Bybit's SHIB1000USDT
DEFAULT_LIMIT, MAX_LIMIT = 200, 1000


def bybit_name(listing: VenueListing) -> tuple[str, str]:
    """(symbol, baseCoin) of a listing: ``BTCUSDT``/``BTC``, ``1000PEPEUSDT``/``1000PEPE``, ``XEC1000USDT``."""
    if listing.binance_unit == 1:
        base = listing.ticker
    elif listing.ticker in SUFFIX_NAMED:
        base = f"{listing.ticker}{listing.binance_unit}"
    else:
        base = f"{listing.binance_unit}{listing.ticker}"
    return f"{base}USDT", base


def _envelope(result: Any, now_ms: int, *, code: int = 0, message: str = "OK") -> Reply:
    return json_reply(
        200, {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": now_ms}
    )


class BybitApi:
    """Answers ``/v5/market/...`` from a :class:`Market`; faults in :attr:`faults`."""

    venue = VENUE

    def __init__(self, market: Market, shared_faults: Faults) -> None:
        self.market = market
        self.shared_faults = shared_faults  # fail_next / timeouts by path, as for Binance
        self.faults = VenueFaults()
        self.limiter = WindowLimiter(600, 5.0)
        self._by_name: dict[str, VenueListing] | None = None

    def set_rate_limit(self, limit: int | None, *, window_seconds: float = 5.0) -> None:
        """Requests allowed per window (Bybit: 600 per 5 s); None for no limit."""
        self.limiter.configure(limit, window_seconds)

    def reset(self) -> None:
        """Clear the venue's faults and request counts (the default rate limit comes back)."""
        self.faults.clear()
        self.limiter.configure(600, 5.0)

    def listed(self) -> dict[str, VenueListing]:
        """Bybit symbol -> listing."""
        if self._by_name is None:
            self._by_name = {bybit_name(listing)[0]: listing for listing in listings(self.market, VENUE)}
        return self._by_name

    def reply(self, path: str, query: Mapping[str, str]) -> tuple[Reply, bool]:
        """The reply, and whether the endpoint itself answered (for stalls and truncations)."""
        failure = self.shared_faults.take_failure(path)
        if failure is not None:
            return html_error(failure.status), False
        if not self.limiter.admit():
            return html_error(403), False
        now_ms = self.market.now_ms()
        if path == KLINE_PATH:
            return self._kline(query, now_ms), True
        if path == INSTRUMENTS_PATH:
            return self._instruments(query, now_ms), True
        return json_reply(404, {"retCode": 404, "retMsg": f"unknown path {path}"}), True

    def _instruments(self, query: Mapping[str, str], now_ms: int) -> Reply:
        if query.get("category") != "linear":
            return _envelope({}, now_ms, code=10001, message="params error: category only support linear")
        try:
            limit = min(int(query.get("limit") or 500), 1000)
            offset = int(query.get("cursor") or 0)
        except ValueError:
            return _envelope({}, now_ms, code=10001, message="params error: limit or cursor")
        entries = [self._instrument(listing) for listing in self.listed().values()]
        page = entries[offset : offset + limit]
        cursor = str(offset + limit) if offset + limit < len(entries) else ""
        return _envelope({"category": "linear", "list": page, "nextPageCursor": cursor}, now_ms)

    def _instrument(self, listing: VenueListing) -> dict[str, Any]:
        symbol, base = bybit_name(listing)
        return {
            "symbol": symbol,
            "contractType": "LinearPerpetual",
            "status": "Trading",
            "baseCoin": base,
            "quoteCoin": "USDT",
            "launchTime": str(listing.binance.onboard_ms),
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": str(listing.binance.price_decimals),
            "settleCoin": "USDT",
            "fundingInterval": 480,
            "unifiedMarginTrade": True,
        }

    def _kline(self, query: Mapping[str, str], now_ms: int) -> Reply:
        name = query.get("symbol", "")
        listing = self.listed().get(name)
        if query.get("category") != "linear" or query.get("interval") != "5":
            return _envelope({}, now_ms, code=10001, message="params error: category linear, interval 5 only")
        if listing is None:
            return _envelope({}, now_ms, code=10001, message="Not supported symbols")
        try:
            limit = int(query.get("limit") or DEFAULT_LIMIT)
            start = int(query.get("start") or 0)
            end = int(query.get("end") or now_ms)
        except ValueError:
            return _envelope({}, now_ms, code=10001, message="params error: start, end or limit")
        if not 1 <= limit <= MAX_LIMIT or start > end:
            return _envelope({}, now_ms, code=10001, message="params error: limit or time range")
        candles = coin_candles(
            self.market, listing, VENUE, self.faults, start_ms=start, end_ms=end, limit=limit, now_ms=now_ms
        )
        unit = listing.binance_unit
        prices = candles.prices * unit  # quoted per contract unit, as Bybit quotes 1000PEPEUSDT
        places = price_places(float(prices[:, 3].mean())) if len(prices) else 2
        columns = [
            [str(t) for t in candles.open_ms.tolist()],
            *(decimal_text(prices[:, i], places) for i in range(4)),
            decimal_text(candles.volume / unit, 3),
            decimal_text(candles.quote_volume, 4),
        ]
        rows = [list(row) for row in zip(*columns, strict=True)][::-1]  # newest first
        result = {"category": "linear", "symbol": name, "list": rows}
        return _envelope(result, now_ms)


__all__ = ["INSTRUMENTS_PATH", "KLINE_PATH", "PREFIX", "BybitApi", "bybit_name", "np"]
