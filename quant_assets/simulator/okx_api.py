"""OKX v5 public market data (USDT swaps), as the simulator serves it.

Endpoints, following OKX's payloads (recorded shapes: nautilus_trader's
``http_get_candlesticks_full.json`` and ``http_get_instruments_swap.json``):

* ``GET /api/v5/public/instruments?instType=SWAP``: ``instId`` (``BTC-USDT-SWAP``), ``ctType``
  ``linear``, ``ctVal`` (coins per contract: BTC 0.01, ETH 0.1, others a power of ten that makes a
  contract worth 1-10 USDT, e.g. 1,000,000 PEPE), ``ctValCcy``, ``settleCcy`` ``USDT``,
  ``listTime``, ``state`` ``live``;
* ``GET /api/v5/market/candles`` (the latest 1,440 bars, ``limit`` up to 300) and
  ``GET /api/v5/market/history-candles`` (any bar, ``limit`` up to 100), ``instId``, ``bar=5m``,
  ``after`` / ``before`` exclusive bounds on ``ts``: the newest ``limit`` candles inside, NEWEST
  FIRST, ``[ts, o, h, l, c, vol (contracts), volCcy (coins), volCcyQuote (USDT), confirm]`` as
  strings, prices per coin; the still-forming candle has ``confirm`` "0", and
  :meth:`VenueFaults.unconfirmed` serves a closed one so.

Every answer is the ``{"code", "msg", "data"}`` envelope (an unknown instrument: code 51001). Over
the rate limit (20 requests per 2 s by default, :meth:`OkxApi.set_rate_limit`) the answer is HTTP
429 with code 50011, as OKX's, with no ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from quant_assets.simulator.faults import Faults
from quant_assets.simulator.market import Market
from quant_assets.simulator.venue_market import (
    FIVE_MINUTES_MS,
    VenueFaults,
    VenueListing,
    WindowLimiter,
    coin_candles,
    decimal_text,
    listings,
    price_places,
)
from quant_assets.simulator.wire import Reply, html_error, json_reply

PREFIX = "/api/v5/"
CANDLES_PATH = "/api/v5/market/candles"
HISTORY_CANDLES_PATH = "/api/v5/market/history-candles"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
VENUE = "okx"
RECENT_BARS = 1440
FIXED_CT_VAL = {"BTC": 0.01, "ETH": 0.1}  # OKX's own values


def okx_inst_id(listing: VenueListing) -> str:
    """``BTC-USDT-SWAP``: OKX names swaps by coin, whatever Binance's unit."""
    return f"{listing.ticker}-USDT-SWAP"


def ct_val(listing: VenueListing, price_per_coin: float) -> float:
    """Coins per contract: OKX's for BTC and ETH, else a power of ten worth 1-10 USDT."""
    if listing.ticker in FIXED_CT_VAL:
        return FIXED_CT_VAL[listing.ticker]
    return float(10.0 ** (-math.floor(math.log10(max(price_per_coin, 1e-12)))))


def _envelope(data: list[Any], *, code: str = "0", message: str = "", status: int = 200) -> Reply:
    return json_reply(status, {"code": code, "msg": message, "data": data})


class OkxApi:
    """Answers ``/api/v5/...`` from a :class:`Market`; faults in :attr:`faults`."""

    venue = VENUE

    def __init__(self, market: Market, shared_faults: Faults) -> None:
        self.market = market
        self.shared_faults = shared_faults
        self.faults = VenueFaults()
        self.limiter = WindowLimiter(20, 2.0)
        self._by_id: dict[str, VenueListing] | None = None
        self._ct_vals: dict[str, float] = {}

    def set_rate_limit(self, limit: int | None, *, window_seconds: float = 2.0) -> None:
        """Requests allowed per window (OKX history-candles: 20 per 2 s); None for no limit."""
        self.limiter.configure(limit, window_seconds)

    def reset(self) -> None:
        """Clear the venue's faults and request counts (the default rate limit comes back)."""
        self.faults.clear()
        self.limiter.configure(20, 2.0)

    def listed(self) -> dict[str, VenueListing]:
        """instId -> listing."""
        if self._by_id is None:
            self._by_id = {okx_inst_id(listing): listing for listing in listings(self.market, VENUE)}
        return self._by_id

    def contract_value(self, inst_id: str) -> float:
        """``ctVal`` of `inst_id` (fixed for the simulator's life, from the series' anchor price)."""
        if inst_id not in self._ct_vals:
            listing = self.listed()[inst_id]
            anchor = self.market.series_spec(listing.binance.series).anchor_price / listing.binance_unit
            self._ct_vals[inst_id] = ct_val(listing, anchor)
        return self._ct_vals[inst_id]

    def reply(self, path: str, query: Mapping[str, str]) -> tuple[Reply, bool]:
        """The reply, and whether the endpoint itself answered (for stalls and truncations)."""
        failure = self.shared_faults.take_failure(path)
        if failure is not None:
            return html_error(failure.status), False
        if not self.limiter.admit():
            return _envelope([], code="50011", message="Too Many Requests", status=429), False
        now_ms = self.market.now_ms()
        if path in (CANDLES_PATH, HISTORY_CANDLES_PATH):
            return self._candles(path, query, now_ms), True
        if path == INSTRUMENTS_PATH:
            if query.get("instType") != "SWAP":
                return _envelope([], code="51000", message="Parameter instType error"), True
            return _envelope([self._instrument(i) for i in self.listed()]), True
        return json_reply(404, {"code": "404", "msg": f"unknown path {path}", "data": []}), True

    def _instrument(self, inst_id: str) -> dict[str, Any]:
        listing = self.listed()[inst_id]
        return {
            "instType": "SWAP",
            "instId": inst_id,
            "instFamily": f"{listing.ticker}-USDT",
            "uly": f"{listing.ticker}-USDT",
            "ctType": "linear",
            "ctVal": decimal_text_one(self.contract_value(inst_id)),
            "ctValCcy": listing.ticker,
            "ctMult": "1",
            "settleCcy": "USDT",
            "listTime": str(listing.binance.onboard_ms),
            "state": "live",
            "lotSz": "0.01",
            "minSz": "0.01",
            "tickSz": "0.0001",
        }

    def _candles(self, path: str, query: Mapping[str, str], now_ms: int) -> Reply:
        inst_id = query.get("instId", "")
        if query.get("bar", "1m") != "5m":
            return _envelope([], code="51000", message="Parameter bar error (the simulator serves 5m)")
        listing = self.listed().get(inst_id)
        if listing is None:
            return _envelope([], code="51001", message="Instrument ID does not exist")
        history = path == HISTORY_CANDLES_PATH
        top = 100 if history else 300
        try:
            limit = int(query.get("limit") or 100)
            after = int(query["after"]) if query.get("after") else None
            before = int(query["before"]) if query.get("before") else None
        except ValueError:
            return _envelope([], code="51000", message="Parameter after, before or limit error")
        if not 1 <= limit <= top:
            return _envelope([], code="51000", message="Parameter limit error")
        newest = now_ms if after is None else min(now_ms, after - 1)
        oldest = 0 if before is None else before + 1
        if not history:
            oldest = max(oldest, (now_ms // FIVE_MINUTES_MS - RECENT_BARS + 1) * FIVE_MINUTES_MS)
        if newest < oldest:
            return _envelope([])
        candles = coin_candles(
            self.market,
            listing,
            VENUE,
            self.faults,
            start_ms=oldest,
            end_ms=newest,
            limit=limit,
            now_ms=now_ms,
        )
        size = self.contract_value(inst_id)
        places = price_places(float(candles.prices[:, 3].mean())) if len(candles.open_ms) else 2
        forming = candles.open_ms + FIVE_MINUTES_MS > now_ms
        unconfirmed = self.faults.take_unconfirmed(listing.binance.symbol, candles.open_ms)
        columns = [
            [str(t) for t in candles.open_ms.tolist()],
            *(decimal_text(candles.prices[:, i], places) for i in range(4)),
            decimal_text(candles.volume / size, 2),
            decimal_text(candles.volume, 6),
            decimal_text(candles.quote_volume, 4),
            ["0" if f or u else "1" for f, u in zip(forming.tolist(), unconfirmed.tolist(), strict=True)],
        ]
        rows = [list(row) for row in zip(*columns, strict=True)][::-1]  # newest first
        return _envelope(rows)


def decimal_text_one(value: float) -> str:
    """One number as OKX writes ``ctVal``: ``0.01``, ``1000000``."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text or "0"
