"""Binance USD-M futures REST client: exchange info, 24h tickers and 5-minute klines.

Every request goes through the process-wide weight budget of the base URL (2,400 weight per minute by
default, Binance's ``REQUEST_WEIGHT`` limit for an IP), synced from ``X-MBX-USED-WEIGHT-1M``. The
kline rows are parsed once here (:func:`parse_klines`) into the ``ohlcv`` table's columns; nothing
outside ``quant_assets.sources`` sees a raw row.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.errors import SourceError
from quant_assets.sources.http import VenueClient, VenueSession, WeightBudget, shared_budget
from quant_assets.sources.payloads import ExchangeInfo, Ticker24h, parse_exchange_info, parse_ticker_24hr
from quant_assets.store.schemas import OHLCV_COLUMNS
from quant_assets.symbols import checked_symbol

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

# Fields of one /fapi/v1/klines row, in the venue's order (a 12th field, "ignore", is not used).
_OPEN_TIME, _OPEN, _HIGH, _LOW, _CLOSE, _VOLUME, _CLOSE_TIME = 0, 1, 2, 3, 4, 5, 6
_QUOTE_VOLUME, _TRADES, _TAKER_BUY_VOLUME, _TAKER_BUY_QUOTE_VOLUME = 7, 8, 9, 10
_MIN_KLINE_FIELDS = 11
_INTEGER_FIELDS = (_OPEN_TIME, _CLOSE_TIME, _TRADES)
# The decimal fields, in the order of the frame's float columns.
_DECIMAL_FIELDS = (
    _OPEN,
    _HIGH,
    _LOW,
    _CLOSE,
    _VOLUME,
    _QUOTE_VOLUME,
    _TAKER_BUY_VOLUME,
    _TAKER_BUY_QUOTE_VOLUME,
)


class MalformedKlineError(SourceError, ValueError):
    """A kline row does not have the venue's shape (too few fields, a non-number where one belongs)."""


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


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected an integer, got {value!r}")
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise ValueError(f"expected a 64-bit integer, got {value!r}")
    return number


def _decimal(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"expected a decimal string, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _vector_columns(rows: list[list[Any]]) -> tuple[np.ndarray, np.ndarray] | None:
    """(integers, decimals) of well-formed rows in a few numpy calls; None if any row is not."""
    if not all(isinstance(row, list | tuple) and len(row) >= _MIN_KLINE_FIELDS for row in rows):
        return None
    table = np.array([row[:_MIN_KLINE_FIELDS] for row in rows], dtype=object).reshape(
        len(rows), _MIN_KLINE_FIELDS
    )
    integer_cells, decimal_cells = table[:, _INTEGER_FIELDS], table[:, _DECIMAL_FIELDS]
    integer_types, decimal_types = (
        set(map(type, integer_cells.ravel())),
        set(map(type, decimal_cells.ravel())),
    )
    if not (integer_types <= {int} and decimal_types <= {str, float, int}):
        return None
    try:
        integers = integer_cells.astype(np.int64)
        decimals = decimal_cells.astype(np.float64)
    except (ValueError, OverflowError):
        return None
    if not np.isfinite(decimals).all():
        return None
    return integers, decimals


def _row_by_row_columns(
    rows: list[list[Any]], *, symbol: str, exchange: str
) -> tuple[np.ndarray, np.ndarray]:
    """(integers, decimals) checked one row at a time; raises MalformedKlineError at the first bad row."""
    integers: list[tuple[int, ...]] = []
    decimals: list[tuple[float, ...]] = []
    for index, row in enumerate(rows):
        try:
            if not isinstance(row, list | tuple) or len(row) < _MIN_KLINE_FIELDS:
                raise ValueError(f"expected a list of 12 fields, got {type(row).__name__} of {len(row)}")
            integers.append(tuple(_integer(row[i]) for i in _INTEGER_FIELDS))
            decimals.append(tuple(_decimal(row[i]) for i in _DECIMAL_FIELDS))
        except (TypeError, ValueError, OverflowError) as exc:
            raise MalformedKlineError(
                f"{symbol} kline row {index} is malformed ({exc}): {str(row)[:300]}",
                venue=exchange,
                endpoint=KLINES_PATH,
            ) from exc
    return (
        np.array(integers, dtype=np.int64).reshape(len(rows), len(_INTEGER_FIELDS)),
        np.array(decimals, dtype=np.float64).reshape(len(rows), len(_DECIMAL_FIELDS)),
    )


def parse_klines(rows: list[list[Any]], *, symbol: str, now_ms: int, exchange: str = VENUE) -> pd.DataFrame:
    """Turn ``/fapi/v1/klines`` rows into ``ohlcv`` rows: closed candles only, sorted, unique.

    Args:
        rows: the venue's rows (open time and close time as epoch ms, decimals as strings).
        symbol: symbol the rows belong to (written into the ``symbol`` column as given).
        now_ms: "now" in epoch ms, UTC. A candle is kept only when its close time is before it.
        exchange: value of the ``exchange`` column.

    Returns:
        A frame with exactly :data:`~quant_assets.store.schemas.OHLCV_COLUMNS`: ``open_time`` as
        ``datetime64[ms]`` (naive UTC), prices and volumes float64, ``trades`` int64; sorted by
        ``open_time``, a repeated ``open_time`` kept once (the last row sent wins).

    Raises:
        MalformedKlineError: a row has fewer than 11 fields or a field is not a number; the error
            names the row's index and shows the row.
    """
    columns = _vector_columns(rows)
    if columns is None:  # a payload of another shape: find and name the first bad row
        columns = _row_by_row_columns(rows, symbol=symbol, exchange=exchange)
    integers, decimals = columns
    # The last row may still be forming: keep a candle only once its close time has passed, so an
    # early request never stores an open candle and a late one never drops a closed one.
    closed = integers[:, 1] < now_ms
    integers, decimals = integers[closed], decimals[closed]
    n = len(integers)
    frame = pd.DataFrame(
        {
            "exchange": pd.Series([exchange] * n, dtype="str"),
            "symbol": pd.Series([symbol] * n, dtype="str"),
            "open_time": integers[:, 0].astype("datetime64[ms]"),
            "open": decimals[:, 0],
            "high": decimals[:, 1],
            "low": decimals[:, 2],
            "close": decimals[:, 3],
            "volume": decimals[:, 4],
            "quote_volume": decimals[:, 5],
            "trades": integers[:, 2],
            "taker_buy_volume": decimals[:, 6],
            "taker_buy_quote_volume": decimals[:, 7],
        },
        columns=list(OHLCV_COLUMNS),
    )
    frame = frame.sort_values("open_time", kind="stable")
    frame = frame.drop_duplicates(subset="open_time", keep="last")
    return frame.reset_index(drop=True)


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
        """
        self.budget: WeightBudget = shared_budget(
            VENUE, base_url, limit=weight_per_minute, window_seconds=window_seconds
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
        """Every closed 5-minute candle of `symbol` with ``start_ms <= open_time < end_ms``.

        Pages forward with ``startTime``/``endTime`` and `limit` rows per request. Binance answers a
        page with the first candles at or after ``startTime``, so a symbol listed mid-range simply
        starts later, a gap in the data stays a gap (never filled), and a page shorter than `limit`
        (or empty) means nothing more is there up to ``endTime``: that ends the fetch.

        Args:
            symbol: e.g. ``BTCUSDT``.
            start_ms: epoch ms, UTC, inclusive.
            end_ms: epoch ms, UTC, exclusive. Candles not closed by the client's clock are left out.
            limit: rows per request (1-1500).

        Returns:
            A frame as :func:`parse_klines` returns it (possibly empty).

        Raises:
            InvalidSymbolError: `symbol` is not a valid symbol.
            ValueError: `end_ms` before `start_ms`, or `limit` out of range.
            UnknownSymbolError: the venue does not know `symbol`.
            SourceError: a request failed for good, or the venue did not move forward.
        """
        symbol = checked_symbol(symbol)
        if end_ms < start_ms:
            raise ValueError(f"end_ms {end_ms} is before start_ms {start_ms}")
        now = self._clock()
        # Inclusive bound on open time: inside the range and closed by `now` (open + 5 min <= now).
        last_open = min(end_ms - 1, now - FIVE_MINUTES_MS)
        pages: list[pd.DataFrame] = []
        cursor = start_ms
        while cursor <= last_open:
            rows = self.klines(symbol, start_ms=cursor, end_ms=last_open, limit=limit)
            if not rows:
                break
            page = parse_klines(rows, symbol=symbol, now_ms=now)
            if page.empty:
                break
            pages.append(page)
            newest = int(page["open_time"].iloc[-1].value // 1_000_000)  # ns -> ms
            if len(rows) < limit:
                break
            if newest < cursor:
                raise SourceError(
                    f"{symbol} page starting at {cursor} ended at {newest}: the venue ignored startTime",
                    venue=VENUE,
                    endpoint=KLINES_PATH,
                )
            cursor = newest + FIVE_MINUTES_MS
        if not pages:
            return parse_klines([], symbol=symbol, now_ms=now)
        frame = pd.concat(pages, ignore_index=True)
        start, end = pd.Timestamp(start_ms, unit="ms"), pd.Timestamp(end_ms, unit="ms")
        frame = frame[(frame["open_time"] >= start) & (frame["open_time"] < end)]
        frame = frame.drop_duplicates(subset="open_time", keep="last").sort_values("open_time")
        return frame.reset_index(drop=True)
