"""The venues' payloads, parsed once at the edge into frozen dataclasses and frames.

Nothing outside ``quant_assets.sources`` sees a raw venue payload: the universe rules and the store
work on these types only. Field names follow the venues' own documentation. Kline rows become the
``ohlcv`` table's frame (:func:`parse_kline_page`), keeping every candle as served except exact
repeats and the still-open candle, which are counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from quant_assets.errors import SourceError
from quant_assets.store.schemas import OHLCV_COLUMNS


@dataclass(frozen=True)
class PerpContract:
    """One entry of Binance ``GET /fapi/v1/exchangeInfo`` ``symbols`` (only what we use).

    ``symbol`` is the raw text the venue sent: it is NOT validated here, the universe rules do that.
    """

    symbol: str
    pair: str
    contract_type: str  # "PERPETUAL", "CURRENT_QUARTER", ...
    status: str  # "TRADING", "SETTLING", "PENDING_TRADING", ...
    base_asset: str  # e.g. "BTC", "1000PEPE"
    quote_asset: str  # e.g. "USDT", "USDC"
    onboard_date_ms: int | None


@dataclass(frozen=True)
class ExchangeInfo:
    """Parsed ``GET /fapi/v1/exchangeInfo``."""

    server_time_ms: int
    contracts: tuple[PerpContract, ...]


@dataclass(frozen=True)
class Ticker24h:
    """One entry of Binance ``GET /fapi/v1/ticker/24hr`` (the all-symbols array form)."""

    symbol: str
    last_price: float
    volume: float  # base asset
    quote_volume: float  # USDT
    count: int  # trades


@dataclass(frozen=True)
class MarketCoin:
    """One entry of CoinGecko ``GET /coins/markets``; prices in the requested ``vs_currency``."""

    id: str  # CoinGecko id, unique: "bitcoin", "binance-peg-dogecoin"
    symbol: str  # ticker as CoinGecko writes it, lower case, NOT unique: "doge"
    name: str
    current_price: float | None
    market_cap: float | None
    market_cap_rank: int | None
    total_volume: float | None  # 24h volume
    last_updated: str | None
    circulating_supply: float | None = None


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def parse_exchange_info(payload: dict[str, Any]) -> ExchangeInfo:
    """Parse an exchangeInfo payload; raises ``KeyError``/``TypeError`` on a payload of another shape."""
    contracts = tuple(
        PerpContract(
            symbol=str(s["symbol"]),
            pair=str(s.get("pair", "")),
            contract_type=str(s.get("contractType", "")),
            status=str(s.get("status", "")),
            base_asset=str(s.get("baseAsset", "")),
            quote_asset=str(s.get("quoteAsset", "")),
            onboard_date_ms=int(s["onboardDate"]) if s.get("onboardDate") is not None else None,
        )
        for s in payload["symbols"]
    )
    return ExchangeInfo(server_time_ms=int(payload.get("serverTime", 0)), contracts=contracts)


def parse_ticker_24hr(payload: list[dict[str, Any]]) -> list[Ticker24h]:
    """Parse the all-symbols form of ticker/24hr (decimal strings become floats)."""
    return [
        Ticker24h(
            symbol=str(t["symbol"]),
            last_price=float(t["lastPrice"]),
            volume=float(t["volume"]),
            quote_volume=float(t["quoteVolume"]),
            count=int(t.get("count", 0)),
        )
        for t in payload
    ]


def parse_coins_markets(payload: list[dict[str, Any]]) -> list[MarketCoin]:
    """Parse a coins/markets page."""
    return [
        MarketCoin(
            id=str(c["id"]),
            symbol=str(c["symbol"]),
            name=str(c.get("name", "")),
            current_price=_float(c.get("current_price")),
            market_cap=_float(c.get("market_cap")),
            market_cap_rank=(int(c["market_cap_rank"]) if c.get("market_cap_rank") is not None else None),
            total_volume=_float(c.get("total_volume")),
            last_updated=c.get("last_updated"),
            circulating_supply=_float(c.get("circulating_supply")),
        )
        for c in payload
    ]


# ------------------------------------------------------------------------------------------ klines
# Binance ``GET /fapi/v1/klines``: one row per candle, fields in the venue's order (a 12th field,
# "ignore", is not used). Parsed here into the ``ohlcv`` table's columns; nothing else sees a row.

KLINES_ENDPOINT = "/fapi/v1/klines"
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


@dataclass(frozen=True)
class KlinePage:
    """One klines answer parsed: the closed candles as served, and what was left out.

    Attributes:
        candles: closed candles, columns :data:`~quant_assets.store.schemas.OHLCV_COLUMNS`, sorted
            by ``open_time`` (stable: two rows of one open time keep the order they were served in).
            An exact repeat of a row is kept once; rows of one open time with differing values are
            ALL kept, for the checks to report.
        still_open_ms: open times (epoch ms) of rows left out because the candle had not closed.
        repeated_ms: open times (epoch ms) of rows left out as exact repeats of a kept row.
    """

    candles: pd.DataFrame
    still_open_ms: tuple[int, ...] = ()
    repeated_ms: tuple[int, ...] = ()


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
                endpoint=KLINES_ENDPOINT,
            ) from exc
    return (
        np.array(integers, dtype=np.int64).reshape(len(rows), len(_INTEGER_FIELDS)),
        np.array(decimals, dtype=np.float64).reshape(len(rows), len(_DECIMAL_FIELDS)),
    )


def drop_exact_repeats(candles: pd.DataFrame) -> tuple[pd.DataFrame, tuple[int, ...]]:
    """`candles` without rows that repeat an earlier row in every column, and their open times (ms).

    Rows of one open time whose values differ are all kept: which one is right is not ours to say.
    """
    if not pd.Index(candles["open_time"]).has_duplicates:  # the common case, cheap to rule out
        return candles, ()
    repeated = candles.duplicated(keep="first").to_numpy()
    if not repeated.any():
        return candles, ()
    dropped = candles.loc[repeated, "open_time"].to_numpy().astype("datetime64[ms]").astype(np.int64)
    return candles.loc[~repeated].reset_index(drop=True), tuple(int(t) for t in dropped)


def parse_kline_page(
    rows: list[list[Any]], *, symbol: str, now_ms: int, exchange: str = "binance"
) -> KlinePage:
    """Turn ``/fapi/v1/klines`` rows into ``ohlcv`` rows, saying what was left out and why.

    Args:
        rows: the venue's rows (open time and close time as epoch ms, decimals as strings).
        symbol: symbol the rows belong to (written into the ``symbol`` column as given).
        now_ms: "now" in epoch ms, UTC. A candle is kept only when its close time is before it.
        exchange: value of the ``exchange`` column.

    Returns:
        See :class:`KlinePage`: ``open_time`` as ``datetime64[ms]`` (naive UTC), prices and volumes
        float64, ``trades`` int64.

    Raises:
        MalformedKlineError: a row has fewer than 11 fields or a field is not a finite number; the
            error names the row's index and shows the row.
    """
    columns = _vector_columns(rows)
    if columns is None:  # a payload of another shape: find and name the first bad row
        columns = _row_by_row_columns(rows, symbol=symbol, exchange=exchange)
    integers, decimals = columns
    # The last row may still be forming: keep a candle only once its close time has passed, so an
    # early request never stores an open candle and a late one never drops a closed one.
    closed = integers[:, 1] < now_ms
    still_open = tuple(int(t) for t in integers[~closed, 0])
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
            "venue_symbol": pd.Series([symbol] * n, dtype="str"),  # Binance names it as the universe
        },
        columns=list(OHLCV_COLUMNS),
    )
    frame = frame.sort_values("open_time", kind="stable").reset_index(drop=True)
    frame, repeated = drop_exact_repeats(frame)
    return KlinePage(frame, still_open, repeated)


def parse_klines(
    rows: list[list[Any]], *, symbol: str, now_ms: int, exchange: str = "binance"
) -> pd.DataFrame:
    """The closed candles of `rows` as :func:`parse_kline_page` returns them (``.candles``)."""
    return parse_kline_page(rows, symbol=symbol, now_ms=now_ms, exchange=exchange).candles
