"""Bybit v5 public REST client: linear perpetuals and their 5-minute klines.

``GET /v5/market/instruments-info?category=linear`` lists the contracts (``baseCoin`` tells the coin
and how many of it one unit quotes: ``1000PEPE``, ``SHIB1000``; ``launchTime`` the listing), and
``GET /v5/market/kline?category=linear&interval=5`` serves candles newest first, at most 1,000 a
request, in the ``retCode`` envelope. Rows are ``[start, open, high, low, close, volume, turnover]``
as strings; volume is in the contract's base unit, turnover in USDT. Bybit serves the still-forming
candle too: a candle is kept only once its 5 minutes are over by the client's clock.

Rate limit: 600 requests per 5 s per IP; above it Bybit answers HTTP 403 (no ``Retry-After``). The
client paces itself through its own shared budget (``requests_per_window`` per ``window_seconds``,
one budget per venue and base URL, shared by every process of the machine through `budget_dir`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.errors import SourceError, UnknownSymbolError
from quant_assets.sources.binance import ServedCandles
from quant_assets.sources.http import VenueClient, WeightBudget, shared_budget
from quant_assets.sources.venues import (
    FIVE_MINUTES_MS,
    Instrument,
    Page,
    RateLimitedSession,
    candle_frame,
    checked_name,
    coin_of,
    decimals,
    fetch_windows,
)

VENUE = "bybit"
KLINE_PATH = "/v5/market/kline"
INSTRUMENTS_PATH = "/v5/market/instruments-info"
MAX_KLINE_LIMIT = 1000
MAX_INSTRUMENTS_LIMIT = 1000
# retCode of a symbol Bybit does not know ("Not supported symbols" / "params error: symbol invalid").
UNKNOWN_SYMBOL_CODES = frozenset({10001})


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def result_of(payload: Any, *, endpoint: str, symbol: str | None = None) -> dict[str, Any]:
    """The ``result`` of a v5 envelope; a ``retCode`` other than 0 becomes a typed error.

    Raises:
        UnknownSymbolError: retCode 10001 on a request naming `symbol`.
        SourceError: any other non-zero retCode, or a payload of another shape.
    """
    if not isinstance(payload, dict) or "retCode" not in payload:
        raise SourceError(
            f"expected a retCode envelope, got {str(payload)[:200]}", venue=VENUE, endpoint=endpoint
        )
    code, message = payload.get("retCode"), payload.get("retMsg", "")
    if code != 0:
        if code in UNKNOWN_SYMBOL_CODES and symbol is not None:
            raise UnknownSymbolError(
                f"unknown symbol {symbol!r}: {message} (retCode {code})", venue=VENUE, endpoint=endpoint
            )
        raise SourceError(f"{message} (retCode {code})", venue=VENUE, endpoint=endpoint)
    result = payload.get("result")
    if not isinstance(result, dict):
        raise SourceError("envelope without a result object", venue=VENUE, endpoint=endpoint)
    return result


def parse_instrument(entry: dict[str, Any]) -> Instrument:
    """One ``instruments-info`` entry (linear) as an :class:`Instrument` per coin."""
    coin, unit = coin_of(str(entry["baseCoin"]))
    return Instrument(
        venue=VENUE,
        name=str(entry["symbol"]),
        coin=coin,
        price_unit=float(unit),
        volume_unit=float(unit),
        listed_ms=int(entry.get("launchTime") or 0),
        trading=entry.get("status") == "Trading"
        and entry.get("contractType") == "LinearPerpetual"
        and entry.get("quoteCoin") == "USDT",
    )


def parse_kline_rows(rows: list[list[Any]], *, instrument: Instrument, symbol: str, now_ms: int) -> Page:
    """Kline rows (newest first) as per-coin ``ohlcv`` rows; a candle still open is left out.

    Prices are divided and volumes multiplied by the instrument's unit (``SHIB1000USDT`` quotes
    1,000 SHIB); turnover is already USDT.
    """
    if not rows:
        return Page(_empty(instrument, symbol))
    numbers = decimals(rows, range(7), venue=VENUE, endpoint=KLINE_PATH)
    opens = numbers[:, 0].astype(np.int64)
    closed = opens + FIVE_MINUTES_MS <= now_ms
    still_open = tuple(int(t) for t in opens[~closed])
    numbers = numbers[closed]
    frame = candle_frame(
        exchange=VENUE,
        symbol=symbol,
        venue_symbol=instrument.name,
        open_ms=numbers[:, 0].astype(np.int64),
        prices=numbers[:, 1:5] / instrument.price_unit,
        volume=numbers[:, 5] * instrument.volume_unit,
        quote_volume=numbers[:, 6],
    )
    return Page(frame, still_open)


def _empty(instrument: Instrument, symbol: str) -> pd.DataFrame:
    return candle_frame(
        exchange=VENUE,
        symbol=symbol,
        venue_symbol=instrument.name,
        open_ms=np.empty(0, dtype=np.int64),
        prices=np.empty((0, 4)),
        volume=np.empty(0),
        quote_volume=np.empty(0),
    )


class BybitClient(VenueClient):
    """Bybit v5 public market data (linear perpetuals), paced by a shared request budget."""

    venue = VENUE
    max_limit = MAX_KLINE_LIMIT

    def __init__(
        self,
        base_url: str,
        *,
        requests_per_window: int | None = 300,
        window_seconds: float = 5.0,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_attempts: int = 6,
        clock: Callable[[], int] | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 20.0,
        forbidden_hold_seconds: float = 60.0,
        budget_dir: Path | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: e.g. ``https://api.bybit.com`` or a simulator's URL.
            requests_per_window: requests sent per window (Bybit allows 600 per 5 s per IP; half
                of it leaves room for other programs on the IP); ``None`` never paces.
            window_seconds: the budget's window.
            timeout: (connect, read) timeouts in seconds.
            max_attempts: attempts per request (first try included).
            clock: "now" in epoch ms (default the wall clock): decides which candles are closed.
            backoff_base / backoff_max: retry backoff of 5xx and broken answers (full jitter).
            forbidden_hold_seconds: how long every sharer of the budget waits after an HTTP 403.
            budget_dir: directory of the budget shared by every process naming it; ``None``: this
                process only.
        """
        self.budget: WeightBudget = shared_budget(
            VENUE, base_url, limit=requests_per_window, window_seconds=window_seconds, state_dir=budget_dir
        )
        self.session = RateLimitedSession(
            VENUE,
            base_url,
            rate_limit_statuses=frozenset({403, 429}),
            hold_seconds=forbidden_hold_seconds,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            budget=self.budget,
        )
        self._clock = clock or _wall_clock_ms

    def __repr__(self) -> str:
        return f"BybitClient({self.session.base_url!r}, budget={self.budget!r})"

    def now_ms(self) -> int:
        """The client's "now" in epoch ms, UTC."""
        return self._clock()

    def instruments(self) -> list[Instrument]:
        """Every linear contract Bybit lists (all pages), trading or not."""
        found: list[Instrument] = []
        cursor = ""
        for _ in range(100):  # a page holds up to 1,000: 100 pages is far beyond any real listing
            params: dict[str, object] = {"category": "linear", "limit": MAX_INSTRUMENTS_LIMIT}
            if cursor:
                params["cursor"] = cursor
            result = result_of(self.session.get_json(INSTRUMENTS_PATH, params), endpoint=INSTRUMENTS_PATH)
            found += [parse_instrument(entry) for entry in result.get("list") or []]
            cursor = str(result.get("nextPageCursor") or "")
            if not cursor:
                return found
        raise SourceError(
            "instruments-info kept paging past 100 pages", venue=VENUE, endpoint=INSTRUMENTS_PATH
        )

    def klines(
        self, name: str, *, start_ms: int, end_ms: int, limit: int = MAX_KLINE_LIMIT
    ) -> list[list[Any]]:
        """One ``GET /v5/market/kline`` (interval 5): raw rows with ``start_ms <= start <= end_ms``, newest first.

        Raises:
            InvalidSymbolError: `name` is not a plausible instrument name.
            ValueError: `limit` out of 1-1000.
            UnknownSymbolError: Bybit does not know `name`.
            SourceError: the request failed for good, or the payload has another shape.
        """
        name = checked_name(name)
        if not 1 <= limit <= MAX_KLINE_LIMIT:
            raise ValueError(f"Bybit kline limit must be in 1-{MAX_KLINE_LIMIT}, got {limit}")
        params = {
            "category": "linear",
            "symbol": name,
            "interval": "5",
            "start": start_ms,
            "end": end_ms,
            "limit": limit,
        }
        result = result_of(self.session.get_json(KLINE_PATH, params), endpoint=KLINE_PATH, symbol=name)
        rows = result.get("list")
        if not isinstance(rows, list):
            raise SourceError(f"kline result without a list for {name}", venue=VENUE, endpoint=KLINE_PATH)
        return rows

    def fetch_candles_served(
        self, instrument: Instrument, symbol: str, start_ms: int, end_ms: int, *, limit: int = MAX_KLINE_LIMIT
    ) -> ServedCandles:
        """Every closed candle of `instrument` with ``start_ms <= open_time < end_ms``, per coin, in time order.

        Args:
            instrument: the contract (from :meth:`instruments`).
            symbol: the universe's symbol of its coin, stored in the ``symbol`` column.
            start_ms / end_ms: epoch ms, UTC; `end_ms` exclusive.
            limit: bars per request (1-1000).

        Raises:
            IncompleteFetchError: a later window failed for good; it carries the earlier ones.
            SourceError: the first window failed for good.
        """
        now = self._clock()

        def page(first: int, last: int) -> Page:
            rows = self.klines(instrument.name, start_ms=first, end_ms=last, limit=limit)
            return parse_kline_rows(rows, instrument=instrument, symbol=symbol, now_ms=now)

        return fetch_windows(
            page,
            start_ms=start_ms,
            end_ms=end_ms,
            now_ms=now,
            window_bars=limit,
            listed_ms=instrument.listed_ms,
            empty=_empty(instrument, symbol),
        )
