"""The simulated market as Bybit and OKX see it: which coins they list, per-coin candles, faults.

Both venues trade the coins Binance lists (USDT perpetuals that are not delisted), except a
deterministic tenth of them (never BTC or ETH), so "the venue does not list this coin" happens. Their
candles follow Binance's series per coin, with a deterministic basis of at most 2 bp (well inside
the cross-venue check's 50 bp) and about half of Binance's volume. :class:`VenueFaults` plants a
divergence (a window of one coin's prices moved by some basis points) and, for OKX, candles served
unconfirmed (``confirm`` "0") for a number of requests or for good.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from quant_assets.simulator.catalog import ContractSpec, unit_hash
from quant_assets.simulator.market import Market

FIVE_MINUTES_MS = 300_000
MAX_BASIS_BP = 2.0
VOLUME_SHARE = 0.5
NOT_LISTED_SHARE = 0.1


@dataclass(frozen=True)
class VenueListing:
    """A coin a venue lists: its ticker (upper case), Binance contract and coins per Binance unit."""

    coingecko_id: str
    ticker: str
    binance: ContractSpec
    binance_unit: int


def listings(market: Market, venue: str) -> list[VenueListing]:
    """The coins `venue` lists, in the market's catalogue order."""
    found = []
    for coin in market.coins:
        spec = market.contracts.get(coin.binance_symbol or "")
        if spec is None or spec.contract_type != "PERPETUAL" or spec.delisted or coin.tracks is not None:
            continue
        if coin.ticker not in ("btc", "eth") and unit_hash(f"{venue}:{coin.coingecko_id}") < NOT_LISTED_SHARE:
            continue
        found.append(VenueListing(coin.coingecko_id, coin.ticker.upper(), spec, coin.contract_size))
    return found


def _epoch_ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class VenueFaults:
    """Faults of one venue: planted divergences and (OKX) unconfirmed candles. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._divergences: list[tuple[str, int, int, float]] = []
        self._unconfirmed: dict[tuple[str, int], int | None] = {}

    def diverge(self, symbol: str, start: datetime, end: datetime, *, bp: float) -> None:
        """Move the prices of the coin of Binance `symbol` by `bp` basis points on ``[start, end)``."""
        with self._lock:
            self._divergences.append((symbol, _epoch_ms(start), _epoch_ms(end), float(bp)))

    def unconfirmed(self, symbol: str, open_time: datetime, *, times: int | None = 1) -> None:
        """Serve the candle of `open_time` unconfirmed for the next `times` requests (None: always)."""
        with self._lock:
            self._unconfirmed[(symbol, _epoch_ms(open_time))] = times

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._divergences.clear()
            self._unconfirmed.clear()

    def factors(self, symbol: str, open_ms: np.ndarray) -> np.ndarray:
        """Price factor per candle from the divergences planted on `symbol`."""
        out = np.ones(len(open_ms))
        with self._lock:
            for planted, start, end, bp in self._divergences:
                if planted == symbol:
                    out[(open_ms >= start) & (open_ms < end)] *= 1.0 + bp / 10_000.0
        return out

    def take_unconfirmed(self, symbol: str, open_ms: np.ndarray) -> np.ndarray:
        """Which candles to serve unconfirmed now (each armed candle served counts one request)."""
        flags = np.zeros(len(open_ms), dtype=bool)
        with self._lock:
            for index, ms in enumerate(open_ms.tolist()):
                key = (symbol, int(ms))
                if key not in self._unconfirmed:
                    continue
                left = self._unconfirmed[key]
                flags[index] = True
                if left is not None:
                    if left <= 1:
                        del self._unconfirmed[key]
                    else:
                        self._unconfirmed[key] = left - 1
        return flags


class WindowLimiter:
    """Requests allowed per wall-clock window (``floor(time / window)``), as the venues count them."""

    def __init__(self, limit: int | None, window_seconds: float) -> None:
        self._lock = threading.Lock()
        self.configure(limit, window_seconds)
        self.refused = 0

    def configure(self, limit: int | None, window_seconds: float) -> None:
        """Change the rule; `limit` None lets everything through."""
        if (limit is not None and limit < 1) or window_seconds <= 0:
            raise ValueError(
                f"limit must be >= 1 or None and the window > 0 s, got {limit}, {window_seconds}"
            )
        with self._lock:
            self.limit, self.window_seconds = limit, window_seconds
            self._window, self._used = -1, 0

    def reset(self) -> None:
        """Forget the counts."""
        with self._lock:
            self._window, self._used, self.refused = -1, 0, 0

    def admit(self) -> bool:
        """Count one request; False when it is over the window's limit."""
        with self._lock:
            window = math.floor(time.time() / self.window_seconds)
            if window != self._window:
                self._window, self._used = window, 0
            if self.limit is not None and self._used >= self.limit:
                self.refused += 1
                return False
            self._used += 1
            return True


@dataclass(frozen=True)
class CoinCandles:
    """Per-coin candles of one venue: open times (ms), prices (n, 4) per coin, volume in coins, USDT."""

    open_ms: np.ndarray
    prices: np.ndarray
    volume: np.ndarray
    quote_volume: np.ndarray


def coin_candles(
    market: Market,
    listing: VenueListing,
    venue: str,
    faults: VenueFaults,
    *,
    start_ms: int,
    end_ms: int,
    limit: int,
    now_ms: int,
) -> CoinCandles:
    """The newest `limit` candles with ``start_ms <= open_time <= end_ms`` (the forming one included)."""
    raw = market.klines(listing.binance, interval="5m", end_ms=end_ms, limit=limit, now_ms=now_ms)
    keep = raw.open_time >= start_ms
    open_ms = raw.open_time[keep].astype(np.int64)
    prices = np.column_stack([raw.open[keep], raw.high[keep], raw.low[keep], raw.close[keep]])
    prices = prices / listing.binance_unit
    # The venue's own basis: a slow deterministic wave of at most MAX_BASIS_BP.
    phase = unit_hash(f"basis:{venue}:{listing.coingecko_id}") * 2 * math.pi
    basis = 1.0 + MAX_BASIS_BP / 10_000.0 * np.sin(open_ms / (47 * FIVE_MINUTES_MS) + phase)
    prices = prices * (basis * faults.factors(listing.binance.symbol, open_ms))[:, None]
    volume = raw.volume[keep] * listing.binance_unit * VOLUME_SHARE
    quote = volume * prices[:, 3]
    return CoinCandles(open_ms, prices, volume, quote)


def decimal_text(values: np.ndarray, places: int) -> list[str]:
    """Numbers as the venues send them: decimal strings, trailing zeros dropped."""
    out = []
    for value in values.tolist():
        text = f"{value:.{places}f}"
        out.append(text.rstrip("0").rstrip(".") if "." in text else text)
    return out


def price_places(price: float) -> int:
    """Decimals a venue quotes a price with (about six significant digits)."""
    return max(1, min(10, 5 - math.floor(math.log10(max(price, 1e-12)))))
