"""Faults a test switches on: failed, stalled and truncated responses, gaps, bad candles, delistings,
odd symbols.

Every method is thread-safe; the server consumes the one-shot faults (``fail_next``,
``timeout_next``, ``truncate_next``) as requests arrive, in the order they were armed. Paths are
matched exactly against the request path without its query, e.g. ``"/fapi/v1/klines"`` or
``"/api/v3/coins/markets"``. :meth:`Faults.clear` switches everything off.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Failure:
    """One armed failure: the status to answer, its ``Retry-After`` (seconds) and body, if given."""

    status: int
    retry_after: float | None
    body: str | None


def _epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # naive datetimes are read as UTC
    return int(value.timestamp() * 1000)


# What :meth:`Faults.bad_candle` can do to one served kline row (the row's open time identifies it).
BAD_CANDLE_KINDS = {
    "duplicate": "followed by a second row of the same open time whose close and high differ",
    "repeat": "followed by an exact copy of itself",
    "off_grid": "its open time moved one minute later, off the 5-minute grid",
    "inconsistent": "its high below its low (the two swapped)",
    "negative_volume": "its volume negative",
}


def _check_path(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(f"fault path must be a request path such as '/fapi/v1/klines', got {path!r}")
    return path


def _check_times(times: int) -> int:
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    return times


class Faults:
    """The switchboard of injected faults of one simulator."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[Failure | None]] = {}  # None: serve that request
        self._timeouts: dict[str, deque[float]] = {}
        self._truncations: dict[str, int] = {}
        self._gaps: dict[str, list[tuple[int, int]]] = {}
        self._bad_candles: dict[str, dict[int, str]] = {}
        self._delisted: set[str] = set()
        self._added: dict[str, str | None] = {}
        self._coingecko_status: int | None = None

    # ------------------------------------------------------------------------------ arming
    def fail_next(
        self,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float | None = None,
        body: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next `times` requests to `path` with HTTP `status` instead of serving them.

        Args:
            path: request path, e.g. ``"/fapi/v1/klines"``.
            status: HTTP status, e.g. 429, 418, 500, 502, 503.
            times: how many requests in a row fail.
            retry_after: seconds sent as ``Retry-After`` (fractions allowed; none when ``None``). On
                a Binance path a client that comes back sooner than that is banned (418), as after
                a real 429.
            body: the response body; default a venue-like error (JSON for 4xx, an HTML error page
                for 5xx, as a CDN in front of the venue sends).
            after: serve this many requests to `path` normally first (e.g. fail a range's second
                page); counted after any failures armed before.

        Raises:
            ValueError: a path not starting with ``/``, a status outside 100-599, `times` < 1 or
                `after` < 0.
        """
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status}")
        if after < 0:
            raise ValueError(f"after must be >= 0, got {after}")
        failure = Failure(status, retry_after, body)
        with self._lock:
            queue = self._failures.setdefault(_check_path(path), deque())
            queue.extend([None] * after + [failure] * _check_times(times))

    def timeout_next(self, path: str, *, seconds: float, times: int = 1) -> None:
        """Stall the next `times` requests to `path` for `seconds` before answering them normally.

        Raises:
            ValueError: a bad path, negative `seconds`, or `times` < 1.
        """
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds}")
        with self._lock:
            queue = self._timeouts.setdefault(_check_path(path), deque())
            queue.extend([float(seconds)] * _check_times(times))

    def truncate_next(self, path: str, *, times: int = 1) -> None:
        """Send the next `times` responses to `path` with the full ``Content-Length`` but only the
        first half of the body, then close the connection.

        Raises:
            ValueError: a bad path or `times` < 1.
        """
        with self._lock:
            key = _check_path(path)
            self._truncations[key] = self._truncations.get(key, 0) + _check_times(times)

    def gap(self, symbol: str, start: datetime, end: datetime) -> None:
        """Make candles of `symbol` whose open time is in ``[start, end)`` (UTC) never exist.

        Raises:
            ValueError: `end` not after `start`.
        """
        start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
        if end_ms <= start_ms:
            raise ValueError(f"gap end {end.isoformat()} must be after its start {start.isoformat()}")
        with self._lock:
            self._gaps.setdefault(symbol, []).append((start_ms, end_ms))

    def bad_candle(self, symbol: str, open_time: datetime, kind: str = "duplicate") -> None:
        """Serve the candle of `symbol` opening at `open_time` (UTC) wrongly, on every klines page
        that holds it, until :meth:`clear`. `kind` is one of :data:`BAD_CANDLE_KINDS`; the default,
        ``"duplicate"``, serves the candle twice with differing values on the same page.

        Raises:
            ValueError: an unknown `kind`.
        """
        if kind not in BAD_CANDLE_KINDS:
            raise ValueError(f"kind must be one of {sorted(BAD_CANDLE_KINDS)}, got {kind!r}")
        with self._lock:
            self._bad_candles.setdefault(symbol, {})[_epoch_ms(open_time)] = kind

    def sparse_candles(self, symbol: str, start: datetime, end: datetime) -> None:
        """Serve only every other 5-minute candle of `symbol` whose open time is in ``[start, end)``
        (UTC), the first one kept: a thin market as a venue that skips candles without trades
        serves it. Binance USD-M serves every candle, so this is bad data; it is made of gaps
        (:meth:`clear` removes it) and leaves no two consecutive candles, so no 5-minute return.

        Raises:
            ValueError: `end` not after `start`.
        """
        start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
        if end_ms <= start_ms:
            raise ValueError(f"sparse end {end.isoformat()} must be after its start {start.isoformat()}")
        step = 300_000  # one 5-minute candle
        skipped = [(t, min(t + step, end_ms)) for t in range(start_ms + step, end_ms, 2 * step)]
        with self._lock:
            self._gaps.setdefault(symbol, []).extend(skipped)

    def delist(self, symbol: str) -> None:
        """Delist `symbol`: ``exchangeInfo`` shows it ``SETTLING``, klines answer 400 -1121 (invalid
        symbol), the all-symbols ticker omits it."""
        with self._lock:
            self._delisted.add(symbol)

    def add_symbol(self, raw: str, *, base_asset: str | None = None) -> None:
        """List an odd or hostile symbol text (``"BAD|SYM"``, ``"../../etc"``, ``"btcusdt"``...) as a
        TRADING USDT perpetual in ``exchangeInfo`` and the ticker, so only validation can stop it.

        Args:
            raw: the symbol text, sent as is.
            base_asset: its ``baseAsset`` (default `raw` without a trailing ``USDT``).
        """
        with self._lock:
            self._added[raw] = base_asset

    def coingecko_down(self, status: int = 503) -> None:
        """Answer every ``/api/v3`` request with HTTP `status` until :meth:`clear`.

        Raises:
            ValueError: a status outside 100-599.
        """
        if not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status}")
        with self._lock:
            self._coingecko_status = status

    def clear(self) -> None:
        """Switch every fault off (armed one-shots, gaps, bad candles, delistings, added symbols,
        CoinGecko down)."""
        with self._lock:
            self._failures.clear()
            self._timeouts.clear()
            self._truncations.clear()
            self._gaps.clear()
            self._bad_candles.clear()
            self._delisted.clear()
            self._added.clear()
            self._coingecko_status = None

    # ----------------------------------------------------------------------- the server's side
    def take_failure(self, path: str) -> Failure | None:
        """Consume the next armed entry for `path`: its failure, or ``None`` (serve it normally)."""
        with self._lock:
            queue = self._failures.get(path)
            return queue.popleft() if queue else None

    def take_timeout(self, path: str) -> float | None:
        """Consume and return the next armed stall (seconds) for `path`, if any."""
        with self._lock:
            queue = self._timeouts.get(path)
            return queue.popleft() if queue else None

    def take_truncation(self, path: str) -> bool:
        """Consume one armed truncation for `path`; ``True`` if there was one."""
        with self._lock:
            left = self._truncations.get(path, 0)
            if left <= 0:
                return False
            self._truncations[path] = left - 1
            return True

    def gaps_for(self, symbol: str) -> tuple[tuple[int, int], ...]:
        """Gaps of `symbol` as ``(start_ms, end_ms)`` pairs, epoch milliseconds UTC, end exclusive."""
        with self._lock:
            return tuple(self._gaps.get(symbol, ()))

    def bad_candles_for(self, symbol: str) -> dict[int, str]:
        """Bad candles of `symbol`: open time (epoch ms, UTC) -> kind (a copy; empty when none)."""
        with self._lock:
            return dict(self._bad_candles.get(symbol, {}))

    def is_delisted(self, symbol: str) -> bool:
        """Whether :meth:`delist` was called for `symbol`."""
        with self._lock:
            return symbol in self._delisted

    def added_symbols(self) -> dict[str, str | None]:
        """Symbols listed by :meth:`add_symbol`, raw text -> base asset override (a copy)."""
        with self._lock:
            return dict(self._added)

    def coingecko_status(self) -> int | None:
        """The status every CoinGecko request gets while CoinGecko is down, else ``None``."""
        with self._lock:
            return self._coingecko_status
