"""Binance USD-M futures public endpoints (``/fapi/v1/...``) over the simulated market.

Payloads follow the real ones field for field and in the same order (see the recorded
``exchangeInfo``, ``klines`` and ``ticker/24hr`` samples): integers for times, ids and counts,
decimal strings for prices and quantities, with each contract's price and quantity precision.
Errors are Binance's: HTTP 400 with ``{"code": -1121, "msg": "Invalid symbol."}`` and friends.
Rate limiting, faults and HTTP live in :mod:`quant_assets.simulator.server`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from quant_assets.simulator.catalog import ContractSpec, unit_hash
from quant_assets.simulator.faults import Faults
from quant_assets.simulator.market import EPOCH_MS, INTERVALS_MS, Candles, Market
from quant_assets.simulator.wire import Reply, json_reply

PING_PATH = "/fapi/v1/ping"
TIME_PATH = "/fapi/v1/time"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
TICKER_24HR_PATH = "/fapi/v1/ticker/24hr"
KLINES_PATH = "/fapi/v1/klines"

DEFAULT_KLINES_LIMIT = 500
MAX_KLINES_LIMIT = 1500
TICKER_ALL_WEIGHT = 40  # ticker/24hr without a symbol
UNLIMITED_WEIGHT = 1_000_000  # what exchangeInfo reports as REQUEST_WEIGHT when no limit is set

TRADING, SETTLING, PENDING_TRADING = "TRADING", "SETTLING", "PENDING_TRADING"


def klines_weight(limit: int) -> int:
    """Binance's weight of ``GET /fapi/v1/klines`` by `limit`: [1,100) 1, [100,500) 2, [500,1000] 5,
    above 10."""
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def request_weight(path: str, query: Mapping[str, str]) -> int:
    """The request weight Binance charges for `path` with `query` (1 for anything not listed)."""
    if path == KLINES_PATH:
        try:
            limit = int(query.get("limit", DEFAULT_KLINES_LIMIT))
        except ValueError:
            limit = DEFAULT_KLINES_LIMIT
        return klines_weight(limit)
    if path == TICKER_24HR_PATH and not query.get("symbol"):
        return TICKER_ALL_WEIGHT
    return 1


def binance_error(status: int, code: int, msg: str) -> Reply:
    """A Binance error body, e.g. ``{"code":-1121,"msg":"Invalid symbol."}``."""
    return json_reply(status, {"code": code, "msg": msg})


def too_many_requests(limit: int | None) -> Reply:
    """Binance's 429 body (`limit` ``None``: quote Binance's default 2400)."""
    return binance_error(
        429,
        -1003,
        f"Too many requests; current limit of IP(127.0.0.1) is {limit or 2400} requests per "
        "minute. Please use the websocket for live updates to avoid polling the API.",
    )


def banned(until_ms: int) -> Reply:
    """Binance's 418 body."""
    return binance_error(
        418,
        -1003,
        f"Way too much request weight used; IP banned until {until_ms}. "
        "Please use the websocket for live updates to avoid bans.",
    )


class _ParamError(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _int_param(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise _ParamError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(raw)


def _mandatory(query: Mapping[str, str], name: str) -> str:
    value = query.get(name)
    if not value:
        raise _ParamError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _decimal(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}"


class BinanceApi:
    """Answers ``/fapi/v1`` requests from a :class:`Market`, with the :class:`Faults` that change the
    listing (delistings, gaps, odd symbols)."""

    def __init__(self, market: Market, faults: Faults) -> None:
        self.market = market
        self.faults = faults

    # ------------------------------------------------------------------------------ listing
    def contracts(self) -> list[ContractSpec]:
        """Every listed contract: built-in ones, then symbols added by faults."""
        listed = list(self.market.contracts.values())
        known = set(self.market.contracts)
        for raw, base in self.faults.added_symbols().items():
            if raw not in known:
                listed.append(self.market.adhoc_contract(raw, base))
        return listed

    def status(self, spec: ContractSpec, now_ms: int) -> str:
        """``TRADING``, ``SETTLING`` (delisted) or ``PENDING_TRADING`` (not listed yet) at `now_ms`."""
        if spec.delisted or self.faults.is_delisted(spec.symbol):
            return SETTLING
        return PENDING_TRADING if spec.onboard_ms > now_ms else TRADING

    def resolve(self, symbol: str) -> ContractSpec | None:
        """The contract `symbol` names (built-in, or added by a fault), or ``None``."""
        spec = self.market.contract(symbol)
        if spec is not None:
            return spec
        added = self.faults.added_symbols()
        return self.market.adhoc_contract(symbol, added[symbol]) if symbol in added else None

    # ----------------------------------------------------------------------------- dispatch
    def handle(
        self, path: str, query: Mapping[str, str], *, weight_limit: int | None, window_seconds: float
    ) -> Reply | None:
        """The reply to ``GET path?query``; ``None`` for a path this API does not serve."""
        now_ms = self.market.now_ms()
        try:
            if path == KLINES_PATH:
                return self._klines(query, now_ms)
            if path == TICKER_24HR_PATH:
                return self._ticker(query, now_ms)
            if path == EXCHANGE_INFO_PATH:
                return json_reply(200, self.exchange_info(now_ms, weight_limit, window_seconds))
            if path == PING_PATH:
                return json_reply(200, {})
            if path == TIME_PATH:
                return json_reply(200, {"serverTime": now_ms})
        except _ParamError as error:
            return binance_error(400, error.code, error.msg)
        return None

    # -------------------------------------------------------------------------------- klines
    def _klines(self, query: Mapping[str, str], now_ms: int) -> Reply:
        symbol = _mandatory(query, "symbol")
        interval = _mandatory(query, "interval")
        limit = _int_param(query, "limit")
        start_ms = _int_param(query, "startTime")
        end_ms = _int_param(query, "endTime")
        if interval not in INTERVALS_MS:
            return binance_error(400, -1120, "Invalid interval.")
        if limit is None:
            limit = DEFAULT_KLINES_LIMIT
        if not 1 <= limit <= MAX_KLINES_LIMIT:
            return binance_error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        if start_ms is not None and end_ms is not None and start_ms > end_ms:
            return binance_error(400, -1023, "Start time is greater than end time.")
        spec = self.resolve(symbol)
        if spec is None or self.status(spec, now_ms) == SETTLING:
            return binance_error(400, -1121, "Invalid symbol.")
        candles = self.market.klines(
            spec,
            interval=interval,
            start_ms=start_ms,
            end_ms=end_ms,
            limit=limit,
            gaps=self.faults.gaps_for(symbol),
            now_ms=now_ms,
        )
        body = klines_body(candles, spec.price_decimals, spec.qty_decimals)
        bad = self.faults.bad_candles_for(symbol)
        if bad:
            body = spoil_klines(body, bad, spec.price_decimals)
        return Reply(200, body)

    # -------------------------------------------------------------------------------- ticker
    def _ticker(self, query: Mapping[str, str], now_ms: int) -> Reply:
        symbol = query.get("symbol")
        if symbol:
            spec = self.resolve(symbol)
            if spec is None or self.status(spec, now_ms) != TRADING:
                return binance_error(400, -1121, "Invalid symbol.")
            return json_reply(200, self.ticker_entry(spec, now_ms))
        entries = [
            self.ticker_entry(spec, now_ms)
            for spec in self.contracts()
            if self.status(spec, now_ms) == TRADING
        ]
        return json_reply(200, entries)

    def ticker_entry(self, spec: ContractSpec, now_ms: int) -> dict[str, Any]:
        """One ``ticker/24hr`` object: the last 288 five-minute bars up to `now_ms`."""
        window = self.market.window_24h(spec.series, onboard_ms=spec.onboard_ms, now_ms=now_ms)
        series = self.market.series_spec(spec.series)
        p, q = spec.price_decimals, spec.qty_decimals
        change = window.last - window.open
        percent = 100.0 * change / window.open if window.open else 0.0
        average = window.quote_volume / window.volume if window.volume else window.last
        lot = 10.0**-q
        last_qty = lot * (1 + math.floor(unit_hash(f"qty:{spec.symbol}:{now_ms // 60_000}") * 50))
        # Trade ids grow with time at the series' anchor rate, so they only ever increase.
        per_ms = series.daily_volume_usd / series.trade_size_usd / 86_400_000
        last_id = (
            int(1e8 * unit_hash("ids:" + spec.symbol)) + int((now_ms - EPOCH_MS) * per_ms) + window.trades
        )
        first_id = last_id - window.trades + 1
        return {
            "symbol": spec.symbol,
            "priceChange": _decimal(change, p),
            "priceChangePercent": f"{percent:.3f}",
            "weightedAvgPrice": _decimal(average, p),
            "lastPrice": _decimal(window.last, p),
            "lastQty": _decimal(last_qty, q),
            "openPrice": _decimal(window.open, p),
            "highPrice": _decimal(window.high, p),
            "lowPrice": _decimal(window.low, p),
            "volume": _decimal(window.volume, q),
            "quoteVolume": f"{window.quote_volume:.2f}",
            "openTime": window.open_time_ms,
            "closeTime": window.close_time_ms,
            "firstId": first_id,
            "lastId": last_id,
            "count": window.trades,
        }

    # ------------------------------------------------------------------------- exchangeInfo
    def exchange_info(self, now_ms: int, weight_limit: int | None, window_seconds: float) -> dict[str, Any]:
        """The ``exchangeInfo`` document at `now_ms`, with the simulator's request-weight limit."""
        if window_seconds % 60 == 0:
            interval, interval_num = "MINUTE", int(window_seconds // 60)
        else:
            interval, interval_num = "SECOND", max(1, round(window_seconds))
        return {
            "timezone": "UTC",
            "serverTime": now_ms,
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": interval,
                    "intervalNum": interval_num,
                    "limit": weight_limit if weight_limit is not None else UNLIMITED_WEIGHT,
                },
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
            ],
            "exchangeFilters": [],
            "assets": [
                {"asset": asset, "marginAvailable": True, "autoAssetExchange": auto}
                for asset, auto in (
                    ("USDT", "-10000"),
                    ("BTC", "-0.10000000"),
                    ("BNB", "-0.00100000"),
                    ("ETH", "-5.00000000"),
                    ("USDC", "-10000"),
                    ("FDUSD", "-10000"),
                )
            ],
            "symbols": [self.symbol_entry(spec, now_ms) for spec in self.contracts()],
        }

    def symbol_entry(self, spec: ContractSpec, now_ms: int) -> dict[str, Any]:
        """One ``exchangeInfo`` ``symbols`` entry, keys in the venue's order."""
        p, q = spec.price_decimals, spec.qty_decimals
        anchor = self.market.series_spec(spec.series).anchor_price
        tick = _decimal(10.0**-p, p)
        step = _decimal(10.0**-q, q) if q else "1"
        max_qty = _decimal(max(10.0, 2e6 / anchor), q)
        perpetual = spec.contract_type == "PERPETUAL"
        return {
            "symbol": spec.symbol,
            "pair": spec.pair,
            "contractType": spec.contract_type,
            "deliveryDate": spec.delivery_ms,
            "onboardDate": spec.onboard_ms,
            "status": self.status(spec, now_ms),
            "maintMarginPercent": "2.5000",
            "requiredMarginPercent": "5.0000",
            "baseAsset": spec.base_asset,
            "quoteAsset": spec.quote_asset,
            "marginAsset": spec.quote_asset,
            "pricePrecision": p,
            "quantityPrecision": q,
            "baseAssetPrecision": 8,
            "quotePrecision": 8,
            "underlyingType": "COIN",
            "underlyingSubType": list(spec.sub_type),
            "settlePlan": 0,
            "triggerProtect": "0.0500",
            "liquidationFee": "0.012500" if perpetual else "0.010000",
            "marketTakeBound": "0.10" if perpetual else "0.05",
            "filters": [
                {
                    "minPrice": _decimal(max(10.0**-p, anchor * 1e-3), p),
                    "maxPrice": _decimal(anchor * 20, p),
                    "filterType": "PRICE_FILTER",
                    "tickSize": tick,
                },
                {"stepSize": step, "filterType": "LOT_SIZE", "maxQty": max_qty, "minQty": step},
                {"stepSize": step, "filterType": "MARKET_LOT_SIZE", "maxQty": max_qty, "minQty": step},
                {"limit": 200, "filterType": "MAX_NUM_ORDERS"},
                {"limit": 10, "filterType": "MAX_NUM_ALGO_ORDERS"},
                {"notional": "5", "filterType": "MIN_NOTIONAL"},
                {
                    "multiplierDown": "0.9500",
                    "multiplierUp": "1.0500",
                    "multiplierDecimal": "4",
                    "filterType": "PERCENT_PRICE",
                },
            ],
            "orderTypes": [
                "LIMIT",
                "MARKET",
                "STOP",
                "STOP_MARKET",
                "TAKE_PROFIT",
                "TAKE_PROFIT_MARKET",
                "TRAILING_STOP_MARKET",
            ],
            "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
        }


def klines_body(candles: Candles, price_decimals: int, qty_decimals: int) -> bytes:
    """The JSON array of kline rows, built with one ``%`` format per row (the hot path: a 499-row
    page is formatted in about a millisecond).

    Row: ``[open_time, "open", "high", "low", "close", "volume", close_time, "quote_volume", trades,
    "taker_buy_base_volume", "taker_buy_quote_volume", "0"]``.
    """
    if len(candles) == 0:
        return b"[]"
    p, q = f"%.{price_decimals}f", f"%.{qty_decimals}f"
    row = f'[%d,"{p}","{p}","{p}","{p}","{q}",%d,"%.4f",%d,"{q}","%.4f","0"]'
    columns = zip(
        candles.open_time.tolist(),
        candles.open.tolist(),
        candles.high.tolist(),
        candles.low.tolist(),
        candles.close.tolist(),
        candles.volume.tolist(),
        candles.close_time.tolist(),
        candles.quote_volume.tolist(),
        candles.trades.tolist(),
        candles.taker_buy_volume.tolist(),
        candles.taker_buy_quote_volume.tolist(),
        strict=True,
    )
    return ("[" + ",".join([row % values for values in columns]) + "]").encode("ascii")


def spoil_klines(body: bytes, bad: Mapping[int, str], price_decimals: int) -> bytes:
    """`body` (a klines array) with the rows whose open time is in `bad` spoiled as
    :data:`~quant_assets.simulator.faults.BAD_CANDLE_KINDS` describes. Only armed by a test."""
    rows: list[list[Any]] = []
    for row in json.loads(body):
        kind = bad.get(row[0])
        if kind in ("duplicate", "repeat"):
            rows.append(row)
            row = list(row)
            if kind == "duplicate":
                close = float(row[4]) * 1.001
                row[4] = _decimal(close, price_decimals)
                row[2] = _decimal(max(float(row[2]), close), price_decimals)
        elif kind == "off_grid":
            row[0] += 60_000
        elif kind == "inconsistent":
            row[2], row[3] = row[3], row[2]
        elif kind == "negative_volume":
            row[5] = "-" + row[5]
        rows.append(row)
    return json.dumps(rows, separators=(",", ":")).encode("ascii")
