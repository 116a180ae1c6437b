"""What the Bybit and OKX clients share: instruments, coin matching, candle frames and paging.

Every venue's candles are stored in the ``ohlcv`` table's columns, per coin: the stored ``symbol`` is
the universe's (Binance) symbol of the coin, the venue's own instrument name goes to
``venue_symbol``, prices are USDT per ONE coin and volumes are in coins, whatever unit the venue
quotes (Bybit's ``1000PEPEUSDT`` / ``SHIB1000USDT`` quote 1,000 coins; an OKX contract holds
``ctVal`` coins). Columns a venue does not serve (trade count, taker-buy volumes) are NULL, never 0.

A venue's instrument and a universe row are matched by the coin they trade: the base asset without
its contract multiplier (:func:`coin_of`: ``1000PEPE`` -> ``PEPE`` x 1000, ``SHIB1000`` -> ``SHIB``
x 1000, OKX ``ctValCcy``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.errors import InvalidSymbolError, SourceError
from quant_assets.sources.binance import IncompleteFetchError, ServedCandles
from quant_assets.sources.http import VenueSession, _RetryableFailure
from quant_assets.sources.payloads import drop_exact_repeats
from quant_assets.store.schemas import OHLCV_COLUMNS

FIVE_MINUTES_MS = 300_000
_MULTIPLIER = r"(1000000|100000|10000|1000|100)"
_PREFIXED = re.compile(_MULTIPLIER + r"([A-Z][A-Z0-9]*)")
_SUFFIXED = re.compile(r"([A-Z][A-Z0-9]*?)" + _MULTIPLIER)


def coin_of(base: str) -> tuple[str, int]:
    """The coin a base asset trades and how many coins one quoted unit holds.

    ``"1000PEPE"`` -> ``("PEPE", 1000)`` (Binance, Bybit), ``"SHIB1000"`` -> ``("SHIB", 1000)``
    (Bybit), ``"BTC"`` -> ``("BTC", 1)``; ``"1INCH"`` stays ``("1INCH", 1)``.
    """
    text = base.strip().upper()
    for pattern, coin_group, multiplier_group in ((_PREFIXED, 2, 1), (_SUFFIXED, 1, 2)):
        match = pattern.fullmatch(text)
        if match:
            return match.group(coin_group), int(match.group(multiplier_group))
    return text, 1


def universe_coin(symbol: str, base_asset: str | None = None) -> tuple[str, int]:
    """The coin of a universe (Binance USDT perpetual) symbol: from its base asset, else the symbol."""
    base = base_asset or (symbol[: -len("USDT")] if symbol.endswith("USDT") else symbol)
    return coin_of(base)


@dataclass(frozen=True)
class Instrument:
    """One USDT-margined perpetual of a venue, reduced to what collecting its candles needs.

    Attributes:
        venue: ``bybit`` or ``okx``.
        name: the venue's instrument name (``BTCUSDT``, ``SHIB1000USDT``, ``BTC-USDT-SWAP``).
        coin: the coin it trades, upper case (``BTC``, ``SHIB``).
        price_unit: coins per quoted price (Bybit ``1000PEPEUSDT``: 1000; OKX: 1, priced per coin).
        volume_unit: coins per unit of the candles' volume (Bybit: as ``price_unit``; OKX: ``ctVal``).
        listed_ms: listing time, epoch ms UTC (no candle opens before it); 0 when unknown.
        trading: the venue lists it as trading now.
    """

    venue: str
    name: str
    coin: str
    price_unit: float
    volume_unit: float
    listed_ms: int
    trading: bool


def match_instruments(
    universe: Iterable[tuple[str, str | None]], instruments: Iterable[Instrument]
) -> dict[str, Instrument]:
    """Universe symbol -> the venue's instrument of the same coin, for the symbols the venue lists.

    Args:
        universe: (Binance symbol, base asset or None) of each universe row.
        instruments: the venue's instruments; only trading ones are matched. Of two trading
            instruments of one coin, the one quoting the fewest coins per unit wins.
    """
    by_coin: dict[str, Instrument] = {}
    for instrument in sorted(instruments, key=lambda i: (i.price_unit, i.name)):
        if instrument.trading:
            by_coin.setdefault(instrument.coin, instrument)
    matched = {}
    for symbol, base in universe:
        coin, _ = universe_coin(symbol, base)
        if coin in by_coin:
            matched[symbol] = by_coin[coin]
    return matched


def candle_frame(
    *,
    exchange: str,
    symbol: str,
    venue_symbol: str,
    open_ms: np.ndarray,
    prices: np.ndarray,
    volume: np.ndarray,
    quote_volume: np.ndarray,
) -> pd.DataFrame:
    """Rows of the ``ohlcv`` table from a venue's candles, already per coin; sorted by open time.

    Args:
        prices: (n, 4) open, high, low, close in USDT per coin.
        volume: coins traded; quote_volume: USDT traded.
    """
    n = len(open_ms)
    frame = pd.DataFrame(
        {
            "exchange": pd.Series([exchange] * n, dtype="str"),
            "symbol": pd.Series([symbol] * n, dtype="str"),
            "open_time": np.asarray(open_ms, dtype=np.int64).astype("datetime64[ms]"),
            "open": prices[:, 0] if n else np.empty(0),
            "high": prices[:, 1] if n else np.empty(0),
            "low": prices[:, 2] if n else np.empty(0),
            "close": prices[:, 3] if n else np.empty(0),
            "volume": np.asarray(volume, dtype=np.float64),
            "quote_volume": np.asarray(quote_volume, dtype=np.float64),
            # Not served by the venue: NULL, never 0 (a 0 would read as "no trades").
            "trades": pd.array([None] * n, dtype="Int64"),
            "taker_buy_volume": np.full(n, np.nan),
            "taker_buy_quote_volume": np.full(n, np.nan),
            "venue_symbol": pd.Series([venue_symbol] * n, dtype="str"),
        },
        columns=list(OHLCV_COLUMNS),
    )
    return frame.sort_values("open_time", kind="stable").reset_index(drop=True)


def decimals(rows: list[list[Any]], columns: Iterable[int], *, venue: str, endpoint: str) -> np.ndarray:
    """The decimal-string fields `columns` of `rows` as a float matrix; refuses a malformed row."""
    picked = list(columns)
    try:
        matrix = np.array([[float(row[i]) for i in picked] for row in rows], dtype=np.float64)
    except (TypeError, ValueError, IndexError) as exc:
        raise SourceError(
            f"malformed candle row ({exc}): {str(rows)[:300]}", venue=venue, endpoint=endpoint
        ) from exc
    matrix = matrix.reshape(len(rows), len(picked))
    if not np.isfinite(matrix).all():
        raise SourceError(
            f"non-finite number in a candle row: {str(rows)[:300]}", venue=venue, endpoint=endpoint
        )
    return matrix


@dataclass(frozen=True)
class Page:
    """One answer of a candles endpoint: closed candles (per coin) and open times left out as open."""

    candles: pd.DataFrame
    still_open_ms: tuple[int, ...] = ()


def fetch_windows(
    fetch_page: Callable[[int, int], Page],
    *,
    start_ms: int,
    end_ms: int,
    now_ms: int,
    window_bars: int,
    listed_ms: int,
    empty: pd.DataFrame,
) -> ServedCandles:
    """Every closed candle with ``start_ms <= open_time < end_ms``, one window of bars per request.

    Bybit and OKX answer newest first and stop at `limit` rows; asking for consecutive windows of
    exactly `window_bars` bars, oldest first, makes each answer complete on its own, so a gap is a
    gap (never the end of the data) and a failure after some windows keeps those (see
    :class:`~quant_assets.sources.binance.IncompleteFetchError`). Windows before the listing are not
    asked for.

    Args:
        fetch_page: ``(first_open_ms, last_open_ms)`` (both inclusive) -> the parsed page.
        now_ms: the client's clock; candles not closed by it are never asked for.
        empty: the frame to return when nothing was served (the venue's columns).
    """
    last_open = min(end_ms - 1, now_ms - FIVE_MINUTES_MS)
    cursor = max(start_ms, -(-listed_ms // FIVE_MINUTES_MS) * FIVE_MINUTES_MS)
    pages: list[pd.DataFrame] = []
    still_open: list[int] = []
    while cursor <= last_open:
        window_last = min(cursor + (window_bars - 1) * FIVE_MINUTES_MS, last_open)
        try:
            page = fetch_page(cursor, window_last)
        except SourceError as exc:
            if not pages and not still_open:
                raise
            served = _served(pages, still_open, start_ms, end_ms, empty)
            raise IncompleteFetchError(served, complete_before_ms=cursor, cause=exc) from exc
        still_open += page.still_open_ms
        if not page.candles.empty:
            pages.append(page.candles)
        cursor = window_last + FIVE_MINUTES_MS
    return _served(pages, still_open, start_ms, end_ms, empty)


def _served(
    pages: list[pd.DataFrame], still_open: list[int], start_ms: int, end_ms: int, empty: pd.DataFrame
) -> ServedCandles:
    if not pages:
        return ServedCandles(empty, tuple(still_open))
    frame = pd.concat(pages, ignore_index=True).sort_values("open_time", kind="stable")
    frame, repeated = drop_exact_repeats(frame.reset_index(drop=True))
    opens = frame["open_time"].to_numpy().astype("datetime64[ms]").astype(np.int64)
    inside = (opens >= start_ms) & (opens < end_ms)
    return ServedCandles(
        frame.loc[inside].reset_index(drop=True),
        still_open_ms=tuple(still_open),
        repeated_ms=repeated,
        outside_ms=tuple(int(t) for t in opens[~inside]),
    )


class RateLimitedSession(VenueSession):
    """A :class:`VenueSession` for a venue that says "too many requests" its own way.

    Bybit answers HTTP 403 when an IP goes over 600 requests in 5 s and OKX HTTP 429 (code 50011),
    both without ``Retry-After``. Either is treated like Binance's 429: every sharer of the budget
    holds for `hold_seconds`, then the request is retried.
    """

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        rate_limit_statuses: frozenset[int],
        hold_seconds: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(venue, base_url, **kwargs)
        self.rate_limit_statuses = rate_limit_statuses
        self.hold_seconds = hold_seconds

    def _interpret(self, response: Any, path: str, params: Mapping[str, object] | None) -> Any:
        if response.status_code in self.rate_limit_statuses:
            text = response.text.strip().replace("\n", " ")[:200]
            # 429 inside: the session's hold-and-retry path for rate limits.
            raise _RetryableFailure(
                f"HTTP {response.status_code} (rate limit): {text}", status=429, wait=self.hold_seconds
            )
        return super()._interpret(response, path, params)


def checked_name(name: str) -> str:
    """A venue instrument name safe to put in a URL (letters, digits and ``-``)."""
    if not re.fullmatch(r"[A-Z0-9][A-Z0-9-]{1,40}", name):
        raise InvalidSymbolError(f"refusing instrument name {name!r}: expected e.g. BTCUSDT or BTC-USDT-SWAP")
    return name


__all__ = [
    "FIVE_MINUTES_MS",
    "Instrument",
    "Page",
    "RateLimitedSession",
    "candle_frame",
    "checked_name",
    "coin_of",
    "decimals",
    "fetch_windows",
    "match_instruments",
    "universe_coin",
]
