"""Binance USD-M futures REST client: exchange info, 24h tickers and 5-minute klines.

Every request goes through the process-wide weight budget of the base URL (2,400 weight per minute by
default, Binance's ``REQUEST_WEIGHT`` limit for an IP), synced from ``X-MBX-USED-WEIGHT-1M``. The
kline rows are parsed once, in :mod:`quant_assets.sources.payloads`, into the ``ohlcv`` table's
columns; nothing outside ``quant_assets.sources`` sees a raw row. Candles are returned as served:
what the client leaves out (exact repeats, the still-open candle, candles outside the range asked
for) is counted in :class:`ServedCandles`, never silently dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.errors import QuantAssetsError, SourceError
from quant_assets.sources.http import VenueClient, VenueSession, WeightBudget, shared_budget
from quant_assets.sources.payloads import (
    ExchangeInfo,
    MalformedKlineError,
    Ticker24h,
    drop_exact_repeats,
    parse_exchange_info,
    parse_kline_page,
    parse_klines,
    parse_ticker_24hr,
)
from quant_assets.symbols import checked_symbol

__all__ = [  # the kline parsing lives in payloads; these names stay importable from here
    "BinanceFuturesClient",
    "IncompleteFetchError",
    "MalformedKlineError",
    "ServedCandles",
    "kline_weight",
    "parse_klines",
]

VENUE = "binance"
FIVE_MINUTES_MS = 300_000
MAX_KLINES_PER_REQUEST = 1500  # Binance refuses a larger `limit`
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"

PING_PATH = "/fapi/v1/ping"
TIME_PATH = "/fapi/v1/time"
EXCHANGE_INFO_PATH = "/fapi/v1/exchangeInfo"
TICKER_24HR_PATH = "/fapi/v1/ticker/24hr"
KLINES_PATH = "/fapi/v1/klines"

EXCHANGE_INFO_WEIGHT = 1
TICKER_24HR_ALL_WEIGHT = 40  # the all-symbols form (no `symbol` parameter)


@dataclass(frozen=True)
class ServedCandles:
    """The closed candles of a range as served, and the open times (epoch ms) of rows left out.

    Attributes:
        candles: as :func:`~quant_assets.sources.payloads.parse_kline_page` gives them, every page
            together, sorted by ``open_time``; rows of one open time with differing values all kept.
        still_open_ms: rows not closed yet by the client's clock.
        repeated_ms: exact repeats of a kept row (e.g. a candle served again on the next page).
        outside_ms: rows whose open time is outside ``[start_ms, end_ms)``.
    """

    candles: pd.DataFrame
    still_open_ms: tuple[int, ...] = ()
    repeated_ms: tuple[int, ...] = ()
    outside_ms: tuple[int, ...] = ()


class IncompleteFetchError(SourceError):
    """A page of a range failed for good after earlier pages were served.

    Attributes:
        served: what the pages before the failure gave.
        complete_before_ms: every candle with an open time before this (epoch ms) was fetched; the
            failed request asked for candles from here on.
    """

    def __init__(self, served: ServedCandles, *, complete_before_ms: int, cause: SourceError) -> None:
        self.venue, self.endpoint, self.status = cause.venue, cause.endpoint, cause.status
        self.served = served
        self.complete_before_ms = complete_before_ms
        since = pd.Timestamp(complete_before_ms, unit="ms")
        QuantAssetsError.__init__(self, f"candles from {since:%Y-%m-%d %H:%M} UTC on: {cause}")


def kline_weight(limit: int) -> int:
    """Request weight of ``GET /fapi/v1/klines`` with this `limit` (Binance's table).

    [1, 100) -> 1, [100, 500) -> 2, [500, 1000] -> 5, above 1000 -> 10.

    Raises:
        ValueError: `limit` below 1.
    """
    if limit < 1:
        raise ValueError(f"klines limit must be >= 1, got {limit}")
    if limit < 100:
        return 1
    if limit < 500:
        return 2
    if limit <= 1000:
        return 5
    return 10


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BinanceFuturesClient(VenueClient):
    """Binance USD-M futures public REST API (``/fapi/v1``), paced by a shared weight budget."""

    def __init__(
        self,
        base_url: str,
        *,
        weight_per_minute: int | None = 2400,
        window_seconds: float = 60.0,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_attempts: int = 6,
        clock: Callable[[], int] | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 20.0,
        budget_dir: Path | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: e.g. ``https://fapi.binance.com`` or a simulator's URL.
            weight_per_minute: weight allowed per window (Binance: 2,400 per minute); ``None`` counts
                but never paces. Shared with every client of the process on the same `base_url`.
            window_seconds: the budget's window, seconds (60 for Binance; tests use shorter ones).
            timeout: (connect, read) timeouts in seconds.
            max_attempts: attempts per request (first try included).
            clock: returns "now" in epoch ms (default: wall time); decides which candles are closed
                and which days have ended.
            backoff_base: first retry backoff ceiling in seconds (doubles per attempt, full jitter).
            backoff_max: cap of the backoff ceiling in seconds.
            budget_dir: directory of the budget's state file, shared by every process on the machine
                that names it (weight, Retry-After holds, request slots); ``None``: this process only.
        """
        self.budget: WeightBudget = shared_budget(
            VENUE, base_url, limit=weight_per_minute, window_seconds=window_seconds, state_dir=budget_dir
        )
        self.session = VenueSession(
            VENUE,
            base_url,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            budget=self.budget,
            used_weight_header=USED_WEIGHT_HEADER,
        )
        self._clock = clock or _wall_clock_ms

    def __repr__(self) -> str:
        return f"BinanceFuturesClient({self.session.base_url!r}, budget={self.budget!r})"

    def now_ms(self) -> int:
        """The client's "now" in epoch ms, UTC."""
        return self._clock()

    def ping(self) -> None:
        """Check the venue answers. Raises :class:`~quant_assets.errors.SourceError` if not."""
        self.session.get_json(PING_PATH, weight=1)

    def server_time_ms(self) -> int:
        """The venue's clock, epoch ms."""
        payload = self.session.get_json(TIME_PATH, weight=1)
        return int(payload["serverTime"])

    def exchange_info(self) -> ExchangeInfo:
        """Contracts the venue lists (all statuses and contract types; the universe filters)."""
        payload = self.session.get_json(EXCHANGE_INFO_PATH, weight=EXCHANGE_INFO_WEIGHT)
        return parse_exchange_info(payload)

    def ticker_24hr(self) -> list[Ticker24h]:
        """24-hour statistics of every symbol (weight 40)."""
        payload = self.session.get_json(TICKER_24HR_PATH, weight=TICKER_24HR_ALL_WEIGHT)
        return parse_ticker_24hr(payload)

    def klines(
        self,
        symbol: str,
        *,
        interval: str = "5m",
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 499,
    ) -> list[list[Any]]:
        """One ``GET /fapi/v1/klines`` request; the venue's raw rows (the forming candle included).

        Args:
            symbol: e.g. ``BTCUSDT``; validated before it goes into the URL.
            interval: Binance interval, e.g. ``5m``.
            start_ms: first open time wanted, epoch ms, inclusive.
            end_ms: last open time wanted, epoch ms, inclusive (the venue's convention).
            limit: at most this many rows (1-1500); decides the weight (499 is cheapest per row).

        Raises:
            InvalidSymbolError: `symbol` is not a valid symbol.
            ValueError: `limit` out of 1-1500.
            UnknownSymbolError: the venue does not know `symbol`.
            SourceError: the request failed for good, or the payload is not an array.
        """
        symbol = checked_symbol(symbol)
        if not 1 <= limit <= MAX_KLINES_PER_REQUEST:
            raise ValueError(f"klines limit must be in 1-{MAX_KLINES_PER_REQUEST}, got {limit}")
        params: dict[str, object] = {"symbol": symbol, "interval": interval, "limit": limit}
        if start_ms is not None:
            params["startTime"] = start_ms
        if end_ms is not None:
            params["endTime"] = end_ms
        payload = self.session.get_json(KLINES_PATH, params, weight=kline_weight(limit))
        if not isinstance(payload, list):
            raise SourceError(
                f"expected a JSON array of klines for {symbol}, got {type(payload).__name__}",
                venue=VENUE,
                endpoint=KLINES_PATH,
            )
        return payload

    def fetch_candles(self, symbol: str, start_ms: int, end_ms: int, *, limit: int = 499) -> pd.DataFrame:
        """The closed candles of :meth:`fetch_candles_served` (``.candles``); same arguments."""
        return self.fetch_candles_served(symbol, start_ms, end_ms, limit=limit).candles

    def fetch_candles_served(
        self, symbol: str, start_ms: int, end_ms: int, *, limit: int = 499
    ) -> ServedCandles:
        """Every closed 5-minute candle of `symbol` with ``start_ms <= open_time < end_ms``, as served.

        Pages forward with ``startTime``/``endTime`` and `limit` rows per request. Binance answers a
        page with the first candles at or after ``startTime``, so a symbol listed mid-range simply
        starts later, a gap in the data stays a gap (never filled), and a page shorter than `limit`
        (or empty) means nothing more is there up to ``endTime``: that ends the fetch. Nothing is
        repaired: rows of one open time with differing values are all kept; exact repeats, the
        still-open candle and rows outside the range are left out and counted.

        Args:
            symbol: e.g. ``BTCUSDT``.
            start_ms: epoch ms, UTC, inclusive.
            end_ms: epoch ms, UTC, exclusive. Candles not closed by the client's clock are left out.
            limit: rows per request (1-1500).

        Returns:
            See :class:`ServedCandles` (its frame possibly empty).

        Raises:
            InvalidSymbolError: `symbol` is not a valid symbol.
            ValueError: `end_ms` before `start_ms`, or `limit` out of range.
            UnknownSymbolError: the venue does not know `symbol` (on the first page).
            IncompleteFetchError: a later page failed for good; it carries what came before.
            SourceError: the first request failed for good, or the venue did not move forward.
        """
        symbol = checked_symbol(symbol)
        if end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
        now = self._clock()
        # Inclusive bound on open time: inside the range and closed by `now` (open + 5 min <= now).
        last_open = min(end_ms - 1, now - FIVE_MINUTES_MS)
        pages: list[pd.DataFrame] = []
        still_open: list[int] = []
        repeated: list[int] = []
        cursor = start_ms
        while cursor <= last_open:
            try:
                rows = self.klines(symbol, start_ms=cursor, end_ms=last_open, limit=limit)
            except SourceError as exc:
                if cursor == start_ms:
                    raise
                served = self._served(symbol, pages, still_open, repeated, start_ms, end_ms, now)
                raise IncompleteFetchError(served, complete_before_ms=cursor, cause=exc) from exc
            if not rows:
                break
            page = parse_kline_page(rows, symbol=symbol, now_ms=now)
            still_open += page.still_open_ms
            repeated += page.repeated_ms
            if page.candles.empty:
                break
            pages.append(page.candles)
            newest = int(page.candles["open_time"].iloc[-1].value // 1_000_000)  # ns -> ms
            if len(rows) < limit:
                break
            if newest < cursor:
                raise SourceError(
                    f"{symbol} page starting at {cursor} ended at {newest}: the venue ignored startTime",
                    venue=VENUE,
                    endpoint=KLINES_PATH,
                )
            cursor = newest + FIVE_MINUTES_MS
        return self._served(symbol, pages, still_open, repeated, start_ms, end_ms, now)

    @staticmethod
    def _served(
        symbol: str,
        pages: list[pd.DataFrame],
        still_open: list[int],
        repeated: list[int],
        start_ms: int,
        end_ms: int,
        now: int,
    ) -> ServedCandles:
        """Pages joined: exact repeats across pages and rows outside ``[start_ms, end_ms)`` counted."""
        if not pages:
            empty = parse_klines([], symbol=symbol, now_ms=now)
            return ServedCandles(empty, tuple(still_open), tuple(repeated))
        frame = pd.concat(pages, ignore_index=True).sort_values("open_time", kind="stable")
        frame, across_pages = drop_exact_repeats(frame.reset_index(drop=True))
        opens = frame["open_time"].to_numpy().astype("datetime64[ms]").astype(np.int64)
        inside = (opens >= start_ms) & (opens < end_ms)
        return ServedCandles(
            frame.loc[inside].reset_index(drop=True),
            still_open_ms=tuple(still_open),
            repeated_ms=(*repeated, *across_pages),
            outside_ms=tuple(int(t) for t in opens[~inside]),
        )
