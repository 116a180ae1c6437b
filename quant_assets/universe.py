"""The universe rules: which Binance USD-M perpetuals ``coin_universe`` holds on a UTC day.

Pure domain code: the ``coin_universe`` asset fetches the payloads (CoinGecko ``/coins/markets`` per
category, Binance ``exchangeInfo`` and ``ticker/24hr``), then calls :func:`select_universe`, or
:func:`select_fallback_universe` when CoinGecko cannot be reached after retries. No HTTP, no Dagster.

The rule (``QT_UNIVERSE=l1l2-top``):

1. Candidates are BTC and ETH (:data:`BASE_COIN_IDS`) plus every coin of the CoinGecko categories in
   :data:`LAYER_CATEGORIES`. The markets payload has no category field, so the asset makes one call
   per category and the rows are joined here on the CoinGecko id.
2. Stablecoins, wrapped, bridged and liquid-staking tokens are excluded. The data decides first (the
   ids of the CoinGecko categories in :data:`EXCLUDED_CATEGORIES`, passed as ``excluded_ids``);
   maintained lists back it up when those calls fail or CoinGecko miscategorises a coin
   (:data:`STABLECOIN_IDS`, :data:`WRAPPED_IDS`, :data:`LIQUID_STAKING_IDS` and the id patterns of
   :func:`maintained_exclusion`). No price band around $1: real coins (``core``, ``wemix``) trade there.
3. A coin maps to a perpetual by its CoinGecko id, never by its ticker alone (tickers collide:
   ``doge`` is dogecoin, binance-peg-dogecoin and department-of-government-efficiency). See
   :func:`perp_symbol_for`.
4. Only valid perpetuals count (:func:`valid_perpetuals`): contract type ``PERPETUAL``, status
   ``TRADING``, quote asset ``USDT`` and a name that passes :func:`quant_assets.symbols.is_valid_symbol`.
5. One row per symbol (two coins on one contract: the higher 24h volume keeps it), ranked by CoinGecko
   ``total_volume`` (USD) descending, cut to the top ``max_symbols``.

The hand-kept tables the rules consult (id -> Binance base, former bases, the maintained exclusion
lists, the fallback's non-coin bases) live in :mod:`quant_assets.universe_tables`, with their provenance.

Nothing here raises on a bad payload entry: a name that fails validation is skipped with a warning and
listed in :attr:`UniverseResult.rejected_symbols`; every coin or contract left out is listed with its
reason in :attr:`UniverseResult.excluded`, so the run's metadata says why the universe looks as it does.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from quant_assets.sources.payloads import ExchangeInfo, MarketCoin, PerpContract, Ticker24h
from quant_assets.store.schemas import COIN_UNIVERSE
from quant_assets.symbols import is_valid_symbol
from quant_assets.universe_tables import (
    BINANCE_BASE_ALIASES,
    BINANCE_BASE_BY_COINGECKO_ID,
    FALLBACK_INDEX_BASES,
    FALLBACK_STABLECOIN_BASES,
    LIQUID_STAKING_IDS,
    STABLECOIN_IDS,
    WRAPPED_IDS,
)

logger = logging.getLogger(__name__)

LAYER_CATEGORIES: tuple[str, ...] = ("layer-1", "layer-2")
EXCLUDED_CATEGORIES: tuple[str, ...] = (
    "stablecoins",
    "wrapped-tokens",
    "bridged-tokens",
    "liquid-staking-tokens",
)
BASE_COIN_IDS: tuple[str, ...] = ("bitcoin", "ethereum")

SOURCE_COINGECKO = "coingecko"
SOURCE_BINANCE_FALLBACK = "binance_fallback"
# The categories value of a base coin (BTC/ETH) that no layer category listed that day.
BASE_CATEGORY = "base"
QUOTE_ASSET = "USDT"
# Binance quotes low-priced coins per 1,000 or 1,000,000 units (1000PEPEUSDT, 1000000MOGUSDT,
# 1MBABYDOGEUSDT). Tried in this order after the plain name; the first valid perpetual wins.
CONTRACT_PREFIXES: tuple[str, ...] = ("", "1000", "1000000", "1M")

# Why a category id excludes a coin, as the reason text says it.
_CATEGORY_KIND: dict[str, str] = {
    "stablecoins": "stablecoin",
    "wrapped-tokens": "wrapped",
    "bridged-tokens": "bridged",
    "liquid-staking-tokens": "liquid staking",
}

# (id prefix, kind) and (id word, kind): CoinGecko names bridged, wrapped and staked receipts this way
# ("binance-peg-dogecoin", "l2-standard-bridged-weth-base", "coinbase-wrapped-btc", "lombard-staked-btc").
_EXCLUDED_ID_PREFIXES: tuple[tuple[str, str], ...] = (
    ("binance-peg-", "bridged"),
    ("bridged-", "bridged"),
    ("wrapped-", "wrapped"),
)
_EXCLUDED_ID_WORDS: dict[str, str] = {
    "bridged": "bridged",
    "wrapped": "wrapped",
    "staked": "liquid staking",
    "restaked": "liquid staking",
}

# A base asset from exchangeInfo becomes a table value; a one-letter base ("S", "W") is real.
_BASE_ASSET = re.compile(r"[A-Z0-9]{1,30}")


@dataclass(frozen=True)
class UniverseResult:
    """One universe snapshot and the account of what was left out.

    Attributes:
        frame: One row per symbol, columns exactly ``COIN_UNIVERSE.names``, ordered by rank (1 = highest
            24h volume). ``pyarrow.Table.from_pandas(frame, schema=COIN_UNIVERSE, preserve_index=False)``
            converts it; missing values (e.g. ``coingecko_id`` of the fallback) are NA. ``base_asset``
            is the contract's base on Binance, prefix included (``1000PEPE``); ``fetched_at`` is naive UTC.
        source: ``"coingecko"`` or ``"binance_fallback"``.
        rejected_symbols: Raw names refused by symbol validation, in payload order, each once.
        excluded: CoinGecko id (fallback: symbol) -> why it is not in the universe.
    """

    frame: pd.DataFrame
    source: str
    rejected_symbols: tuple[str, ...] = ()
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def symbols(self) -> list[str]:
        """The universe's symbols in rank order."""
        return [str(s) for s in self.frame["symbol"]]


@dataclass(frozen=True)
class _Row:
    symbol: str
    base_asset: str
    coingecko_id: str | None
    categories: str | None
    volume_24h_usd: float | None
    market_cap_usd: float | None


def valid_perpetuals(exchange_info: ExchangeInfo) -> tuple[dict[str, PerpContract], list[str]]:
    """The contracts a universe may hold, and the raw names refused by validation.

    A valid perpetual has contract type ``PERPETUAL``, status ``TRADING``, quote asset ``USDT``, a symbol
    that passes :func:`~quant_assets.symbols.is_valid_symbol` and a base asset of 1-30 ``A-Z0-9``.
    Delivery contracts (``BTCUSDT_261225``), USDC-quoted and settling contracts are dropped by those
    rules silently (they are normal). Only names that fail validation on an otherwise valid perpetual
    are rejected: each is logged as a warning and returned. A symbol listed twice keeps its first entry.

    Returns:
        ``({symbol: contract}, rejected raw names in payload order)``. Never raises on payload content.
    """
    perps: dict[str, PerpContract] = {}
    rejected: list[str] = []
    for contract in exchange_info.contracts:
        if (
            contract.contract_type != "PERPETUAL"
            or contract.status != "TRADING"
            or contract.quote_asset != QUOTE_ASSET
        ):
            continue
        if not is_valid_symbol(contract.symbol) or not _BASE_ASSET.fullmatch(contract.base_asset):
            _reject(rejected, contract.symbol, "exchangeInfo")
            continue
        perps.setdefault(contract.symbol, contract)
    return perps, rejected


def maintained_exclusion(coingecko_id: str) -> str | None:
    """Why the maintained lists exclude `coingecko_id` (e.g. ``"stablecoin: maintained list"``), or None.

    The lists back up the CoinGecko exclusion categories: exact ids (:data:`STABLECOIN_IDS`,
    :data:`WRAPPED_IDS`, :data:`LIQUID_STAKING_IDS`), the prefixes ``binance-peg-``, ``bridged-`` and
    ``wrapped-``, and the id words ``bridged``, ``wrapped``, ``staked``, ``restaked``. The base coins
    are never excluded.
    """
    if coingecko_id in BASE_COIN_IDS:
        return None
    for kind, ids in (
        ("stablecoin", STABLECOIN_IDS),
        ("wrapped", WRAPPED_IDS),
        ("liquid staking", LIQUID_STAKING_IDS),
    ):
        if coingecko_id in ids:
            return f"{kind}: maintained list"
    for prefix, kind in _EXCLUDED_ID_PREFIXES:
        if coingecko_id.startswith(prefix):
            return f"{kind}: maintained id prefix '{prefix}*'"
    for word in coingecko_id.split("-"):
        if word in _EXCLUDED_ID_WORDS:
            return f"{_EXCLUDED_ID_WORDS[word]}: maintained id word '{word}'"
    return None


def perp_symbol_for(
    coingecko_id: str,
    ticker: str,
    perps_by_symbol: Mapping[str, PerpContract],
    *,
    ambiguous_tickers: set[str] | frozenset[str] = frozenset(),
) -> str | None:
    """The Binance perpetual of a CoinGecko coin, or None.

    An id in :data:`BINANCE_BASE_BY_COINGECKO_ID` maps through its base (then the base's former names
    in :data:`BINANCE_BASE_ALIASES`) and never through its ticker. Any other id falls back to its ticker,
    but only when no other coin of the payload shares it (`ambiguous_tickers`, compared
    case-insensitively) and no id of the table owns that base: ``department-of-government-efficiency``
    (ticker ``doge``) never takes DOGEUSDT. For a base B the candidates are ``BUSDT``, ``1000BUSDT``,
    ``1000000BUSDT`` and ``1MBUSDT``; the first one in `perps_by_symbol` wins.

    Args:
        coingecko_id: CoinGecko id, e.g. ``"pepe"``.
        ticker: CoinGecko ticker as sent, e.g. ``"pepe"`` (any case).
        perps_by_symbol: Valid perpetuals by symbol, from :func:`valid_perpetuals`.
        ambiguous_tickers: Tickers shared by more than one coin of the payload.

    Returns:
        A symbol of `perps_by_symbol` (so already validated), or None. Never raises.
    """
    return _resolve(coingecko_id, ticker, perps_by_symbol, ambiguous_tickers)[0]


def select_universe(
    *,
    base_coins: list[MarketCoin],
    category_coins: Mapping[str, list[MarketCoin]],
    excluded_ids: Mapping[str, set[str]] | None,
    exchange_info: ExchangeInfo,
    max_symbols: int,
    snapshot_date: dt.date,
    fetched_at: dt.datetime,
) -> UniverseResult:
    """The universe from CoinGecko markets: base + layer categories, mapped to perpetuals, top N by volume.

    Coins are joined on their CoinGecko id; a coin seen in several lists keeps the first row seen
    (`base_coins`, then the categories in :data:`LAYER_CATEGORIES` order, then any other key sorted),
    since the lists are fetched within seconds of each other. ``categories`` is the comma-separated ids
    of the categories that listed the coin, in that order, or ``"base"`` for BTC/ETH when none did.
    Exclusions (reason per id in ``excluded``): ``excluded_ids`` first (CoinGecko's own categories),
    then :func:`maintained_exclusion`; BTC and ETH are never excluded. A coin without a valid perpetual,
    with an ambiguous ticker, or whose ticker cannot form a valid symbol is left out with that reason;
    two coins on one symbol keep the higher volume. Ranking is by ``total_volume`` (USD, 24h)
    descending, ties by symbol; a coin without volume ranks last.

    Args:
        base_coins: Markets rows of :data:`BASE_COIN_IDS` (fetched with ``ids=``).
        category_coins: Markets rows per category id, e.g. ``{"layer-1": [...], "layer-2": [...]}``.
        excluded_ids: Ids per exclusion category (:data:`EXCLUDED_CATEGORIES`), or None when those
            calls failed (then only the maintained lists apply).
        exchange_info: Parsed Binance ``exchangeInfo``.
        max_symbols: Universe size (``QT_MAX_SYMBOLS``), at least 1.
        snapshot_date: The UTC day the snapshot belongs to.
        fetched_at: When the payloads were fetched; naive means UTC, aware is converted to UTC.

    Returns:
        The snapshot with ``source = "coingecko"``.

    Raises:
        ValueError: `max_symbols` is below 1.
    """
    _check_max_symbols(max_symbols)
    perps, rejected = valid_perpetuals(exchange_info)
    coins, categories_by_id = _join_on_id(base_coins, category_coins)
    excluded: dict[str, str] = {}

    ticker_owners: dict[str, set[str]] = {}
    for coin in coins:
        ticker_owners.setdefault(coin.symbol.casefold(), set()).add(coin.id)
    ambiguous = {ticker for ticker, ids in ticker_owners.items() if len(ids) > 1}

    category_exclusions = _category_exclusions(excluded_ids)
    rows: list[_Row] = []
    for coin in coins:
        reason = None if coin.id in BASE_COIN_IDS else category_exclusions.get(coin.id)
        reason = reason or maintained_exclusion(coin.id)
        if reason is not None:
            excluded[coin.id] = reason
            continue
        symbol, why_not = _resolve(coin.id, coin.symbol, perps, ambiguous)
        if symbol is None:
            if why_not.startswith("invalid symbol"):
                _reject(rejected, coin.symbol, f"the ticker of CoinGecko coin {coin.id!r}")
            excluded[coin.id] = why_not
            continue
        rows.append(
            _Row(
                symbol=symbol,
                base_asset=perps[symbol].base_asset,
                coingecko_id=coin.id,
                categories=",".join(categories_by_id[coin.id]) or BASE_CATEGORY,
                volume_24h_usd=coin.total_volume,
                market_cap_usd=coin.market_cap,
            )
        )

    kept = _rank_and_cut(rows, max_symbols, excluded, key=lambda row: row.coingecko_id or row.symbol)
    return UniverseResult(
        frame=_frame(kept, snapshot_date, fetched_at, SOURCE_COINGECKO),
        source=SOURCE_COINGECKO,
        rejected_symbols=tuple(rejected),
        excluded=excluded,
    )


def select_fallback_universe(
    *,
    tickers: list[Ticker24h],
    exchange_info: ExchangeInfo,
    max_symbols: int,
    snapshot_date: dt.date,
    fetched_at: dt.datetime,
) -> UniverseResult:
    """The universe when CoinGecko is unreachable: Binance's valid perpetuals by 24h quote volume.

    Same contract rules as :func:`valid_perpetuals`; bases in :data:`FALLBACK_STABLECOIN_BASES` and
    :data:`FALLBACK_INDEX_BASES` are excluded. Ranked by ``quote_volume`` (USDT, taken as USD)
    descending, ties by symbol, cut to the top `max_symbols`. ``coingecko_id``, ``categories`` and
    ``market_cap_usd`` are NA. A valid perpetual without a ticker is excluded ("no 24h ticker"); a
    ticker name that fails validation is rejected unless exchangeInfo lists it as a non-perpetual
    contract (a delivery contract such as ``BTCUSDT_261225`` is normal, not suspicious).

    Args:
        tickers: Parsed Binance ``ticker/24hr`` (all symbols); a symbol listed twice keeps its first row.
        exchange_info: Parsed Binance ``exchangeInfo``.
        max_symbols: Universe size (``QT_MAX_SYMBOLS``), at least 1.
        snapshot_date: The UTC day the snapshot belongs to.
        fetched_at: When the payloads were fetched; naive means UTC, aware is converted to UTC.

    Returns:
        The snapshot with ``source = "binance_fallback"``; ``excluded`` is keyed by symbol.

    Raises:
        ValueError: `max_symbols` is below 1.
    """
    _check_max_symbols(max_symbols)
    perps, rejected = valid_perpetuals(exchange_info)
    listed = {contract.symbol for contract in exchange_info.contracts}
    excluded: dict[str, str] = {}

    volume_by_symbol: dict[str, float] = {}
    for ticker in tickers:
        if ticker.symbol in perps:
            volume_by_symbol.setdefault(ticker.symbol, ticker.quote_volume)
        elif not is_valid_symbol(ticker.symbol) and ticker.symbol not in listed:
            _reject(rejected, ticker.symbol, "ticker/24hr")

    rows: list[_Row] = []
    for symbol, contract in perps.items():
        if contract.base_asset in FALLBACK_STABLECOIN_BASES:
            excluded[symbol] = "stablecoin base: maintained list"
        elif contract.base_asset in FALLBACK_INDEX_BASES:
            excluded[symbol] = "index contract: maintained list"
        elif symbol not in volume_by_symbol:
            excluded[symbol] = "no 24h ticker"
        else:
            rows.append(
                _Row(
                    symbol=symbol,
                    base_asset=contract.base_asset,
                    coingecko_id=None,
                    categories=None,
                    volume_24h_usd=volume_by_symbol[symbol],
                    market_cap_usd=None,
                )
            )

    kept = _rank_and_cut(rows, max_symbols, excluded, key=lambda row: row.symbol)
    return UniverseResult(
        frame=_frame(kept, snapshot_date, fetched_at, SOURCE_BINANCE_FALLBACK),
        source=SOURCE_BINANCE_FALLBACK,
        rejected_symbols=tuple(rejected),
        excluded=excluded,
    )


def universe_changes(previous: Iterable[str], current: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(added, removed)`` symbols from the `previous` snapshot to the `current` one, each sorted."""
    before, after = set(previous), set(current)
    return sorted(after - before), sorted(before - after)


def _check_max_symbols(max_symbols: int) -> None:
    if max_symbols < 1:
        raise ValueError(f"max_symbols={max_symbols!r}: expected at least 1 (QT_MAX_SYMBOLS)")


def _reject(rejected: list[str], raw: str, where: str) -> None:
    if raw not in rejected:
        logger.warning("skipping symbol %r from %s: expected 2-30 characters of A-Z and 0-9", raw, where)
        rejected.append(raw)


def _ticker_symbol(ticker: str) -> str:
    return f"{ticker.upper()}{QUOTE_ASSET}"


def _join_on_id(
    base_coins: list[MarketCoin], category_coins: Mapping[str, list[MarketCoin]]
) -> tuple[list[MarketCoin], dict[str, list[str]]]:
    """Distinct coins in first-seen order, and the category ids that listed each."""
    order = [c for c in LAYER_CATEGORIES if c in category_coins]
    order += sorted(c for c in category_coins if c not in LAYER_CATEGORIES)
    coins: dict[str, MarketCoin] = {}
    categories: dict[str, list[str]] = {}
    for coin in base_coins:
        coins.setdefault(coin.id, coin)
        categories.setdefault(coin.id, [])
    for category in order:
        for coin in category_coins[category]:
            coins.setdefault(coin.id, coin)
            listed_in = categories.setdefault(coin.id, [])
            if category not in listed_in:
                listed_in.append(category)
    return list(coins.values()), categories


def _category_exclusions(excluded_ids: Mapping[str, set[str]] | None) -> dict[str, str]:
    """id -> reason from CoinGecko's exclusion categories (first category in a fixed order wins)."""
    if not excluded_ids:
        return {}
    order = [c for c in EXCLUDED_CATEGORIES if c in excluded_ids]
    order += sorted(c for c in excluded_ids if c not in EXCLUDED_CATEGORIES)
    reasons: dict[str, str] = {}
    for category in order:
        kind = _CATEGORY_KIND.get(category, "excluded")
        for coin_id in excluded_ids[category]:
            reasons.setdefault(coin_id, f"{kind}: CoinGecko category {category}")
    return reasons


def _owner_by_base() -> dict[str, str]:
    """Base (and former base) -> the first table id that maps to it."""
    owners: dict[str, str] = {}
    for coin_id, base in BINANCE_BASE_BY_COINGECKO_ID.items():
        for name in (base, *BINANCE_BASE_ALIASES.get(base, ())):
            owners.setdefault(name, coin_id)
    return owners


_OWNER_BY_BASE = _owner_by_base()


def _resolve(
    coingecko_id: str,
    ticker: str,
    perps: Mapping[str, PerpContract],
    ambiguous_tickers: set[str] | frozenset[str],
) -> tuple[str | None, str]:
    """``(symbol, "")`` or ``(None, why not)``; see :func:`perp_symbol_for`."""
    base = BINANCE_BASE_BY_COINGECKO_ID.get(coingecko_id)
    if base is not None:
        bases = (base, *BINANCE_BASE_ALIASES.get(base, ()))
        symbol = _first_perp(bases, perps)
        return (symbol, "") if symbol else (None, f"no perpetual: no valid contract for {'/'.join(bases)}")

    if ticker.casefold() in {t.casefold() for t in ambiguous_tickers}:
        return None, f"ambiguous ticker {ticker!r}: shared by other coins and id not in the mapping table"
    base = ticker.upper()
    owner = _OWNER_BY_BASE.get(base)
    if owner is not None:
        return None, f"ticker {ticker!r} belongs to {owner}"
    if not is_valid_symbol(_ticker_symbol(ticker)):
        return None, f"invalid symbol from ticker {ticker!r}"
    symbol = _first_perp((base,), perps)
    return (symbol, "") if symbol else (None, f"no perpetual: no valid contract for ticker {ticker!r}")


def _first_perp(bases: Iterable[str], perps: Mapping[str, PerpContract]) -> str | None:
    for base in bases:
        for prefix in CONTRACT_PREFIXES:
            symbol = f"{prefix}{base}{QUOTE_ASSET}"
            if symbol in perps:
                return symbol
    return None


def _rank_and_cut(
    rows: list[_Row], max_symbols: int, excluded: dict[str, str], *, key: Callable[[_Row], str]
) -> list[_Row]:
    """Sort by volume (desc; None last; ties by symbol), one row per symbol, top `max_symbols`."""

    def order(row: _Row) -> tuple[float, str]:
        volume = row.volume_24h_usd
        return (-volume if volume is not None and not math.isnan(volume) else math.inf, row.symbol)

    kept: list[_Row] = []
    owner_of: dict[str, str] = {}
    for row in sorted(rows, key=order):
        if row.symbol in owner_of:
            excluded[key(row)] = f"duplicate: {row.symbol} kept for {owner_of[row.symbol]} (higher volume)"
            continue
        owner_of[row.symbol] = key(row)
        if len(kept) < max_symbols:
            kept.append(row)
        else:
            excluded[key(row)] = f"outside the top {max_symbols} by 24h volume"
    return kept


def _frame(rows: list[_Row], snapshot_date: dt.date, fetched_at: dt.datetime, source: str) -> pd.DataFrame:
    """The COIN_UNIVERSE frame of ranked `rows`, dtypes matching the Arrow schema."""
    if fetched_at.tzinfo is not None:
        fetched_at = fetched_at.astimezone(dt.UTC).replace(tzinfo=None)
    n = len(rows)
    frame = pd.DataFrame(
        {
            "snapshot_date": pd.Series([snapshot_date] * n, dtype="object"),
            "rank": pd.Series(range(1, n + 1), dtype="int32"),
            "symbol": pd.Series([r.symbol for r in rows], dtype="str"),
            "base_asset": pd.Series([r.base_asset for r in rows], dtype="str"),
            "coingecko_id": pd.Series([r.coingecko_id for r in rows], dtype="str"),
            "categories": pd.Series([r.categories for r in rows], dtype="str"),
            "volume_24h_usd": pd.Series([r.volume_24h_usd for r in rows], dtype="float64"),
            "market_cap_usd": pd.Series([r.market_cap_usd for r in rows], dtype="float64"),
            "source": pd.Series([source] * n, dtype="str"),
            "fetched_at": pd.Series([pd.Timestamp(fetched_at)] * n, dtype="datetime64[ms]"),
        }
    )
    return frame[list(COIN_UNIVERSE.names)]
