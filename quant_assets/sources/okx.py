"""OKX v5 public REST client: USDT-margined swaps and their 5-minute candles.

``GET /api/v5/public/instruments?instType=SWAP`` lists the swaps (``ctVal`` coins of ``ctValCcy`` per
contract, ``listTime``, ``state``). Candles come newest first in the ``{"code": "0", "data": [...]}``
envelope as ``[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]`` strings: prices per coin, ``vol``
in contracts (converted here with ``ctVal``), ``volCcyQuote`` in USDT. ``/market/candles`` serves the
latest 1,440 bars (300 a request), ``/market/history-candles`` older ones (100 a request); ``after``
and ``before`` are exclusive bounds on ``ts``.

``confirm`` is "0" while a candle is still forming. A candle served unconfirmed although its five
minutes are over (OKX closes bars a moment late) is fetched again, up to `confirm_attempts` times;
still unconfirmed, the request fails with :class:`UnconfirmedCandleError`, so a provisional candle
is never stored.

Rate limit: 40 requests per 2 s on ``candles`` and 20 on ``history-candles`` per IP; above it OKX
answers HTTP 429 with code 50011 (no ``Retry-After``). The client paces at `requests_per_window`
per `window_seconds` through its shared budget.
"""

from __future__ import annotations

import logging
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
    decimals,
    fetch_windows,
)

logger = logging.getLogger(__name__)

VENUE = "okx"
CANDLES_PATH = "/api/v5/market/candles"
HISTORY_CANDLES_PATH = "/api/v5/market/history-candles"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
RECENT_BARS = 1440  # /market/candles serves this many latest bars
MAX_CANDLES_LIMIT = 300
MAX_HISTORY_LIMIT = 100
UNKNOWN_INSTRUMENT_CODES = frozenset({"51001"})  # "Instrument ID does not exist"


class UnconfirmedCandleError(SourceError):
    """OKX kept serving a candle of a completed period as unconfirmed (``confirm`` "0")."""


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def data_of(payload: Any, *, endpoint: str, inst_id: str | None = None) -> list[Any]:
    """The ``data`` of an OKX envelope; a ``code`` other than "0" becomes a typed error.

    Raises:
        UnknownSymbolError: code 51001 on a request naming `inst_id`.
        SourceError: any other code, or a payload of another shape.
    """
    if not isinstance(payload, dict) or "code" not in payload:
        raise SourceError(
            f"expected a code envelope, got {str(payload)[:200]}", venue=VENUE, endpoint=endpoint
        )
    code, message = str(payload.get("code")), payload.get("msg", "")
    if code != "0":
        if code in UNKNOWN_INSTRUMENT_CODES and inst_id is not None:
            raise UnknownSymbolError(
                f"unknown instrument {inst_id!r}: {message} (code {code})", venue=VENUE, endpoint=endpoint
            )
        raise SourceError(f"{message} (code {code})", venue=VENUE, endpoint=endpoint)
    data = payload.get("data")
    if not isinstance(data, list):
        raise SourceError("envelope without a data array", venue=VENUE, endpoint=endpoint)
    return data


def parse_instrument(entry: dict[str, Any]) -> Instrument:
    """One SWAP entry as an :class:`Instrument`: priced per coin, ``ctVal`` coins per contract."""
    return Instrument(
        venue=VENUE,
        name=str(entry["instId"]),
        coin=str(entry.get("ctValCcy", "")).upper(),
        price_unit=1.0,
        volume_unit=float(entry["ctVal"]),
        listed_ms=int(entry.get("listTime") or 0),
        trading=entry.get("state") == "live"
        and entry.get("ctType") == "linear"
        and entry.get("settleCcy") == "USDT",
    )


def parse_candle_rows(
    rows: list[list[Any]], *, instrument: Instrument, symbol: str, now_ms: int, endpoint: str
) -> tuple[Page, tuple[int, ...]]:
    """Candle rows (newest first) as per-coin ``ohlcv`` rows.

    Returns:
        The page of confirmed candles (a row still forming by the clock counted as still open), and
        the open times (epoch ms) of rows served unconfirmed although their period is over.
    """
    if not rows:
        return Page(_empty(instrument, symbol)), ()
    numbers = decimals(rows, range(8), venue=VENUE, endpoint=endpoint)
    confirmed = np.array([str(row[8]) == "1" if len(row) > 8 else False for row in rows])
    opens = numbers[:, 0].astype(np.int64)
    over = opens + FIVE_MINUTES_MS <= now_ms
    still_open = tuple(int(t) for t in opens[~over])
    late = tuple(int(t) for t in opens[over & ~confirmed])
    keep = over & confirmed
    numbers = numbers[keep]
    frame = candle_frame(
        exchange=VENUE,
        symbol=symbol,
        venue_symbol=instrument.name,
        open_ms=numbers[:, 0].astype(np.int64),
        prices=numbers[:, 1:5] / instrument.price_unit,
        volume=numbers[:, 5] * instrument.volume_unit,  # contracts x ctVal = coins
        quote_volume=numbers[:, 7],
    )
    return Page(frame, still_open), late


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


class OkxClient(VenueClient):
    """OKX v5 public market data (USDT swaps), paced by a shared request budget."""

    venue = VENUE
    max_limit = MAX_HISTORY_LIMIT

    def __init__(
        self,
        base_url: str,
        *,
        requests_per_window: int | None = 18,
        window_seconds: float = 2.0,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_attempts: int = 6,
        clock: Callable[[], int] | None = None,
        backoff_base: float = 0.25,
        backoff_max: float = 20.0,
        rate_limit_hold_seconds: float = 2.0,
        confirm_attempts: int = 5,
        confirm_wait_seconds: float = 1.0,
        budget_dir: Path | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: e.g. ``https://www.okx.com`` or a simulator's URL.
            requests_per_window: requests per window (OKX: 20 per 2 s on history-candles, the
                tighter of the two candle endpoints); ``None`` never paces.
            window_seconds: the budget's window.
            timeout: (connect, read) timeouts in seconds.
            max_attempts: attempts per request (first try included).
            clock: "now" in epoch ms (default the wall clock): decides which candles are closed.
            backoff_base / backoff_max: retry backoff of 5xx and broken answers (full jitter).
            rate_limit_hold_seconds: how long every sharer waits after a 429 (OKX's window is 2 s).
            confirm_attempts: requests of a window whose closed candle comes back unconfirmed.
            confirm_wait_seconds: pause before asking again (doubles each time).
            budget_dir: directory of the budget shared by every process naming it.

        Raises:
            ValueError: `confirm_attempts` below 1.
        """
        if confirm_attempts < 1:
            raise ValueError(f"confirm_attempts must be >= 1, got {confirm_attempts}")
        self.budget: WeightBudget = shared_budget(
            VENUE, base_url, limit=requests_per_window, window_seconds=window_seconds, state_dir=budget_dir
        )
        self.session = RateLimitedSession(
            VENUE,
            base_url,
            rate_limit_statuses=frozenset({429}),
            hold_seconds=rate_limit_hold_seconds,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            budget=self.budget,
        )
        self._clock = clock or _wall_clock_ms
        self.confirm_attempts = confirm_attempts
        self.confirm_wait_seconds = confirm_wait_seconds

    def __repr__(self) -> str:
        return f"OkxClient({self.session.base_url!r}, budget={self.budget!r})"

    def now_ms(self) -> int:
        """The client's "now" in epoch ms, UTC."""
        return self._clock()

    def instruments(self) -> list[Instrument]:
        """Every swap OKX lists (any state, any margin; :attr:`Instrument.trading` tells)."""
        payload = self.session.get_json(INSTRUMENTS_PATH, {"instType": "SWAP"})
        return [parse_instrument(entry) for entry in data_of(payload, endpoint=INSTRUMENTS_PATH)]

    def candles(
        self, inst_id: str, *, after_ms: int, before_ms: int, limit: int, history: bool
    ) -> list[list[Any]]:
        """One candles request (bar 5m): raw rows with ``before_ms < ts < after_ms``, newest first.

        Raises:
            InvalidSymbolError: `inst_id` is not a plausible instrument name.
            ValueError: `limit` out of the endpoint's range.
            UnknownSymbolError: OKX does not know `inst_id`.
            SourceError: the request failed for good, or the payload has another shape.
        """
        inst_id = checked_name(inst_id)
        path = HISTORY_CANDLES_PATH if history else CANDLES_PATH
        top = MAX_HISTORY_LIMIT if history else MAX_CANDLES_LIMIT
        if not 1 <= limit <= top:
            raise ValueError(f"OKX {path} limit must be in 1-{top}, got {limit}")
        params = {"instId": inst_id, "bar": "5m", "after": after_ms, "before": before_ms, "limit": limit}
        return data_of(self.session.get_json(path, params), endpoint=path, inst_id=inst_id)

    def fetch_candles_served(
        self, instrument: Instrument, symbol: str, start_ms: int, end_ms: int, *, limit: int | None = None
    ) -> ServedCandles:
        """Every closed, confirmed candle of `instrument` with ``start_ms <= open_time < end_ms``, per coin.

        Windows within the latest 1,440 bars use ``/market/candles`` (300 a request), older ones
        ``/market/history-candles``, 100 bars a request at most (`limit` may ask fewer).

        Raises:
            UnconfirmedCandleError: a closed candle stayed unconfirmed through every attempt (after
                earlier windows were served, as the cause of an ``IncompleteFetchError``).
            IncompleteFetchError: a later window failed for good; it carries the earlier ones.
            SourceError: the first window failed for good.
        """
        now = self._clock()
        recent_from = now - RECENT_BARS * FIVE_MINUTES_MS

        def page(first: int, last: int) -> Page:
            history = first < recent_from
            bars = (last - first) // FIVE_MINUTES_MS + 1
            path = HISTORY_CANDLES_PATH if history else CANDLES_PATH
            wait = self.confirm_wait_seconds
            for attempt in range(1, self.confirm_attempts + 1):
                rows = self.candles(
                    instrument.name, after_ms=last + 1, before_ms=first - 1, limit=bars, history=history
                )
                parsed, late = parse_candle_rows(
                    rows, instrument=instrument, symbol=symbol, now_ms=now, endpoint=path
                )
                if not late:
                    return parsed
                shown = ", ".join(f"{pd.Timestamp(t, unit='ms'):%Y-%m-%d %H:%M}" for t in late[:5])
                if attempt == self.confirm_attempts:
                    raise UnconfirmedCandleError(
                        f"{instrument.name}: candle(s) {shown} UTC still unconfirmed (confirm 0) after "
                        f"{attempt} requests although their 5 minutes are over; not stored",
                        venue=VENUE,
                        endpoint=path,
                    )
                logger.warning(
                    "okx %s: candle(s) %s UTC served unconfirmed; asking again in %.1f s",
                    instrument.name,
                    shown,
                    wait,
                )
                time.sleep(wait)
                wait *= 2
            raise AssertionError("unreachable: the loop returns or raises")

        # 100 bars a window, what either endpoint serves at most in one request.
        window = min(limit or MAX_HISTORY_LIMIT, MAX_HISTORY_LIMIT)
        return fetch_windows(
            page,
            start_ms=start_ms,
            end_ms=end_ms,
            now_ms=now,
            window_bars=window,
            listed_ms=instrument.listed_ms,
            empty=_empty(instrument, symbol),
        )
