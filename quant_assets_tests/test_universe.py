"""The universe rules on hand-made payloads and on real recorded CoinGecko and Binance payloads."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from quant_assets import universe_tables as tables
from quant_assets.sources.payloads import (
    ExchangeInfo,
    MarketCoin,
    PerpContract,
    Ticker24h,
    parse_coins_markets,
    parse_exchange_info,
    parse_ticker_24hr,
)
from quant_assets.store.schemas import COIN_UNIVERSE
from quant_assets.symbols import is_valid_symbol
from quant_assets.universe import (
    BASE_COIN_IDS,
    CONTRACT_PREFIXES,
    QUOTE_ASSET,
    UniverseResult,
    maintained_exclusion,
    perp_symbol_for,
    select_fallback_universe,
    select_universe,
    universe_changes,
    valid_perpetuals,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"
MARKETS_CSV = REAL / "coingecko" / "coins_markets_2024-11-17_top250_usd.csv"
MARKETS_TOP30_JSON = REAL / "coingecko" / "coins_markets_2025-03-04_top30.json"
EXCHANGE_INFO_JSON = REAL / "nautilus" / "binance" / "http_futures_market_exchange_info.json"
TICKER_JSON = REAL / "nautilus" / "binance" / "http_futures_market_ticker_24hr.json"

DAY = dt.date(2026, 11, 23)
FETCHED_AT = dt.datetime(2026, 11, 23, 0, 5, 17)  # naive UTC

# The 14 USD stablecoins of the 2024-11-17 top-250 payload (fixtures README), plus busd.
FIXTURE_STABLECOINS = (
    "tether",
    "usd-coin",
    "usds",
    "dai",
    "ethena-usde",
    "first-digital-usd",
    "usdd",
    "frax",
    "paypal-usd",
    "true-usd",
    "bridged-usdc-polygon-pos-bridge",
    "usdb",
    "binance-peg-busd",
    "usual-usd",
)

# Binance USD-M perpetual bases of November 2024 that the top-250 payload needs (derived from the real
# exchangeInfo entry of BTCUSDT; only the names change). 1000/1000000/1M prefixes as Binance lists them.
_NOV_2024_PERP_BASES = """
BTC ETH SOL BNB XRP DOGE ADA TRX 1000SHIB AVAX TON SUI 1000PEPE LINK BCH DOT NEAR LTC APT XLM UNI ICP KAS
ETC WIF 1000BONK TAO FET HBAR POL OM STX ARB RENDER XMR FIL 1000FLOKI INJ AAVE MNT VET ATOM IMX TIA SEI
OP FTM POPCAT GRT RUNE JUP ENA ALGO PYTH PNUT WLD THETA ONDO GOAT BSV MKR BEAMX AR QNT GALA JASMY LDO
1000000MOG FLOW STRK EOS CORE DYDX 1000XEC NEO AXS PENDLE AIOZ SAND EGLD XTZ ORDI KAIA APE MINA NOT MANA
BOME CFX W ZEC TURBO CHZ GRASS ARKM ACT SUPER 1000LUNC ENS MOODENG CKB IOTA ROSE SNX CAKE SAFE ZK RON
1000SATS BLUR KAVA ASTR COMP GMT EIGEN TFUEL MEME WOO ZRO CRV TWT IOTX LPT 1INCH 1MBABYDOGE RSR PONKE
1000CAT JTO DRIFT ZETA HOT ZIL CELO GLM DYM DASH KSM ETHFI PEOPLE SFP DOGS GAS AEVO ZRX NEIRO USDC
"""
NOV_2024_PERP_BASES = _NOV_2024_PERP_BASES.split()
# Tickers that would take a contract if the exclusion rules let them through: the derived exchangeInfo
# lists them too, so a missing exclusion shows up as a row instead of as "no perpetual".
TRAP_PERP_BASES = ("USDT", "USDS", "DAI", "USDE", "FDUSD", "WBTC", "WETH", "STETH", "WSTETH", "MSOL", "BUSD")


# ---------------------------------------------------------------------------------------------------
# helpers: payload dataclasses by hand


def coin(coin_id: str, ticker: str, volume: float | None, market_cap: float | None = None) -> MarketCoin:
    return MarketCoin(
        id=coin_id,
        symbol=ticker,
        name=coin_id,
        current_price=1.0,
        market_cap=market_cap,
        market_cap_rank=None,
        total_volume=volume,
        last_updated="2026-11-23T00:04:00.000Z",
    )


def perp(
    symbol: str,
    base: str | None = None,
    *,
    contract_type: str = "PERPETUAL",
    status: str = "TRADING",
    quote: str = "USDT",
) -> PerpContract:
    return PerpContract(
        symbol=symbol,
        pair=symbol,
        contract_type=contract_type,
        status=status,
        base_asset=base if base is not None else symbol.removesuffix(quote),
        quote_asset=quote,
        onboard_date_ms=1569398400000,
    )


def info(*contracts: PerpContract | str) -> ExchangeInfo:
    return ExchangeInfo(
        server_time_ms=1795392000000,
        contracts=tuple(perp(c) if isinstance(c, str) else c for c in contracts),
    )


def select(
    *coins: MarketCoin,
    exchange: ExchangeInfo,
    layer2: tuple[MarketCoin, ...] = (),
    base: tuple[MarketCoin, ...] = (),
    excluded_ids: dict[str, set[str]] | None = None,
    max_symbols: int = 100,
    fetched_at: dt.datetime = FETCHED_AT,
) -> UniverseResult:
    return select_universe(
        base_coins=list(base),
        category_coins={"layer-1": list(coins), "layer-2": list(layer2)},
        excluded_ids=excluded_ids,
        exchange_info=exchange,
        max_symbols=max_symbols,
        snapshot_date=DAY,
        fetched_at=fetched_at,
    )


def ids_by_symbol(result: UniverseResult) -> dict[str, str]:
    return dict(zip(result.frame["symbol"], result.frame["coingecko_id"], strict=True))


def ticker(symbol: str, quote_volume: float) -> Ticker24h:
    return Ticker24h(symbol=symbol, last_price=1.0, volume=quote_volume, quote_volume=quote_volume, count=10)


# ---------------------------------------------------------------------------------------------------
# helpers: real recorded payloads


def _require_real(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"../shared/fixtures/real is absent (fresh clone): {path.name} not found")


@pytest.fixture(scope="module")
def real_markets() -> list[MarketCoin]:
    """The real top-250 coins/markets payload (CSV dump) back in its JSON shape, then parsed."""
    _require_real(MARKETS_CSV)
    frame = pd.read_csv(MARKETS_CSV)
    payload = [
        {
            key: (None if isinstance(value, float) and math.isnan(value) else value)
            for key, value in row.items()
        }
        for row in frame.to_dict("records")
    ]
    return parse_coins_markets(payload)


@pytest.fixture(scope="module")
def real_exchange_info_payload() -> dict[str, Any]:
    _require_real(EXCHANGE_INFO_JSON)
    return json.loads(EXCHANGE_INFO_JSON.read_text())


@pytest.fixture(scope="module")
def binance_nov_2024(real_exchange_info_payload: dict[str, Any]) -> ExchangeInfo:
    """Real exchangeInfo with its symbols list widened to the Binance perpetuals of November 2024.

    Every added entry is the real BTCUSDT entry with symbol, pair and baseAsset replaced. The real
    BTCUSDT_220325 quarterly stays; traps are added: a settling MATICUSDT, a USDC-quoted BTCUSDC and
    hostile names on otherwise valid perpetuals.
    """
    payload = copy.deepcopy(real_exchange_info_payload)
    template = payload["symbols"][0]

    def entry(base: str, **changes: str) -> dict[str, Any]:
        return {**template, "symbol": f"{base}USDT", "pair": f"{base}USDT", "baseAsset": base, **changes}

    quarterly = [s for s in payload["symbols"] if s["contractType"] != "PERPETUAL"]
    payload["symbols"] = [
        *(entry(base) for base in NOV_2024_PERP_BASES),
        *(entry(base) for base in TRAP_PERP_BASES),
        entry("MATIC", status="SETTLING"),
        entry("BTC", symbol="BTCUSDC", pair="BTCUSDC", quoteAsset="USDC", marginAsset="USDC"),
        entry("BAD", symbol="BAD|SYM"),
        entry("X", symbol="../x"),
        *quarterly,
    ]
    return parse_exchange_info(payload)


@pytest.fixture(scope="module")
def real_universe(real_markets: list[MarketCoin], binance_nov_2024: ExchangeInfo) -> UniverseResult:
    """Every real coin offered as a layer-1 candidate, so every trap of the payload meets the rules."""
    return select_universe(
        base_coins=[c for c in real_markets if c.id in BASE_COIN_IDS],
        category_coins={"layer-1": real_markets},
        excluded_ids=None,
        exchange_info=binance_nov_2024,
        max_symbols=500,
        snapshot_date=dt.date(2024, 11, 17),
        fetched_at=dt.datetime(2024, 11, 17, 16, 10),
    )


# ---------------------------------------------------------------------------------------------------
# exchangeInfo rules


def test_real_exchange_info_yields_its_two_perpetuals_and_drops_the_quarterly(
    real_exchange_info_payload: dict[str, Any],
) -> None:
    perps, rejected = valid_perpetuals(parse_exchange_info(real_exchange_info_payload))

    assert sorted(perps) == ["BTCUSDT", "ETHUSDT"]
    assert rejected == []  # BTCUSDT_220325 is a delivery contract: dropped, not suspicious


@pytest.mark.parametrize(
    "contract",
    [
        perp("BTCUSDT_261225", "BTC", contract_type="CURRENT_QUARTER"),
        perp("BTCUSDC", "BTC", quote="USDC"),
        perp("LUNAUSDT", status="SETTLING"),
        perp("NEWUSDT", status="PENDING_TRADING"),
        perp("OLDUSDT", status="BREAK"),
    ],
    ids=["quarterly", "usdc-quoted", "settling", "pending", "break"],
)
def test_exchange_info_rules_drop_non_tradable_contracts_silently(contract: PerpContract) -> None:
    perps, rejected = valid_perpetuals(info("ETHUSDT", contract))

    assert list(perps) == ["ETHUSDT"]
    assert rejected == []


HOSTILE_NAMES = ("BAD|SYM", "../x", "BTC'USDT", 'X"YUSDT', "btcusdt", "A" * 31 + "USDT", "")


def test_hostile_exchange_info_names_are_skipped_listed_and_warned(caplog: pytest.LogCaptureFixture) -> None:
    contracts = [perp(name, "BAD") for name in HOSTILE_NAMES]

    with caplog.at_level(logging.WARNING, logger="quant_assets.universe"):
        perps, rejected = valid_perpetuals(info("BTCUSDT", *contracts))

    assert list(perps) == ["BTCUSDT"]
    assert rejected == list(HOSTILE_NAMES)
    for name in HOSTILE_NAMES:
        assert any(repr(name) in message for message in caplog.messages), name


def test_hostile_base_asset_rejects_the_contract() -> None:
    perps, rejected = valid_perpetuals(info("BTCUSDT", perp("EVILUSDT", "EVIL'; DROP")))

    assert list(perps) == ["BTCUSDT"]
    assert rejected == ["EVILUSDT"]


def test_hostile_names_reach_the_universe_result_and_never_crash_it() -> None:
    exchange = info("BTCUSDT", perp("BAD|SYM", "BAD"), perp("../x", "X"))
    hostile_coins = [coin("pipe-coin", "bad|sym", 9e9), coin("dots-coin", "../x", 8e9), coin("q", "x'y", 7e9)]

    result = select(coin("bitcoin", "btc", 1e9), *hostile_coins, exchange=exchange)

    assert result.symbols == ["BTCUSDT"]
    assert result.rejected_symbols == ("BAD|SYM", "../x", "bad|sym", "x'y")
    assert result.excluded["pipe-coin"] == "invalid symbol from ticker 'bad|sym'"
    assert result.excluded["q"] == 'invalid symbol from ticker "x\'y"'


# ---------------------------------------------------------------------------------------------------
# exclusions

EXCLUSION_EXCHANGE = info("BTCUSDT", "NDOLUSDT", "USDTUSDT", "WBTCUSDT", "STETHUSDT", "DOGEUSDT", "WETHUSDT")


@pytest.mark.parametrize(
    ("category", "expected_reason"),
    [
        ("stablecoins", "stablecoin: CoinGecko category stablecoins"),
        ("wrapped-tokens", "wrapped: CoinGecko category wrapped-tokens"),
        ("bridged-tokens", "bridged: CoinGecko category bridged-tokens"),
        ("liquid-staking-tokens", "liquid staking: CoinGecko category liquid-staking-tokens"),
    ],
)
def test_excluded_by_coingecko_category(category: str, expected_reason: str) -> None:
    # "new-dollar" is in no maintained list and NDOLUSDT exists: only the category can keep it out.
    coins = (coin("bitcoin", "btc", 2e9), coin("new-dollar", "ndol", 5e9))

    kept = select(*coins, exchange=EXCLUSION_EXCHANGE, excluded_ids=None)
    result = select(*coins, exchange=EXCLUSION_EXCHANGE, excluded_ids={category: {"new-dollar"}})

    assert kept.symbols == ["NDOLUSDT", "BTCUSDT"]
    assert result.symbols == ["BTCUSDT"]
    assert result.excluded == {"new-dollar": expected_reason}


@pytest.mark.parametrize(
    ("coingecko_id", "ticker", "expected_reason"),
    [
        ("tether", "usdt", "stablecoin: maintained list"),
        ("wrapped-bitcoin", "wbtc", "wrapped: maintained id prefix 'wrapped-*'"),
        ("weth", "weth", "wrapped: maintained list"),
        ("coinbase-wrapped-btc", "wbtc", "wrapped: maintained id word 'wrapped'"),
        ("binance-peg-dogecoin", "doge", "bridged: maintained id prefix 'binance-peg-*'"),
        ("l2-standard-bridged-weth-base", "weth", "bridged: maintained id word 'bridged'"),
        ("staked-ether", "steth", "liquid staking: maintained list"),
        ("lombard-staked-btc", "wbtc", "liquid staking: maintained id word 'staked'"),
        ("renzo-restaked-eth", "steth", "liquid staking: maintained id word 'restaked'"),
    ],
)
def test_excluded_by_maintained_list_when_categories_are_unavailable(
    coingecko_id: str, ticker: str, expected_reason: str
) -> None:
    # Each ticker has a perpetual in the exchange, and the coin outranks bitcoin by volume.
    result = select(coin("bitcoin", "btc", 1e9), coin(coingecko_id, ticker, 5e9), exchange=EXCLUSION_EXCHANGE)

    assert result.symbols == ["BTCUSDT"]
    assert result.excluded == {coingecko_id: expected_reason}


def test_category_reason_wins_over_the_maintained_list() -> None:
    result = select(
        coin("tether", "usdt", 9e9), exchange=EXCLUSION_EXCHANGE, excluded_ids={"stablecoins": {"tether"}}
    )

    assert result.excluded == {"tether": "stablecoin: CoinGecko category stablecoins"}


def test_base_coins_are_never_excluded_even_if_a_category_lists_them() -> None:
    result = select(
        exchange=info("BTCUSDT", "ETHUSDT"),
        base=(coin("bitcoin", "btc", 2e9), coin("ethereum", "eth", 1e9)),
        excluded_ids={"wrapped-tokens": {"bitcoin"}, "liquid-staking-tokens": {"ethereum"}},
    )

    assert result.symbols == ["BTCUSDT", "ETHUSDT"]
    assert result.excluded == {}


# ---------------------------------------------------------------------------------------------------
# mapping by CoinGecko id

MAPPING_EXCHANGE = info(
    "BTCUSDT",
    "DOGEUSDT",
    "OPUSDT",
    "1000PEPEUSDT",
    "1000SHIBUSDT",
    "1000LUNCUSDT",
    "LUNA2USDT",
    "1000XECUSDT",
    "1000000MOGUSDT",
    "1MBABYDOGEUSDT",
    "1000SATSUSDT",
    "POLUSDT",
    "BEAMXUSDT",
    "RENDERUSDT",
    "SUSDT",
    "BNCUSDT",
)


@pytest.mark.parametrize(
    ("coingecko_id", "ticker", "expected"),
    [
        ("bitcoin", "btc", "BTCUSDT"),
        ("dogecoin", "doge", "DOGEUSDT"),
        ("optimism", "op", "OPUSDT"),
        ("pepe", "pepe", "1000PEPEUSDT"),
        ("shiba-inu", "shib", "1000SHIBUSDT"),
        ("terra-luna", "lunc", "1000LUNCUSDT"),
        ("terra-luna-2", "luna", "LUNA2USDT"),
        ("ecash", "xec", "1000XECUSDT"),
        ("mog-coin", "mog", "1000000MOGUSDT"),
        ("baby-doge-coin", "babydoge", "1MBABYDOGEUSDT"),
        ("sats-ordinals", "sats", "1000SATSUSDT"),
        ("polygon-ecosystem-token", "pol", "POLUSDT"),
        ("matic-network", "matic", "POLUSDT"),  # renamed: the old id maps to the new contract
        ("beam-2", "beam", "BEAMXUSDT"),  # Binance's name differs from the CoinGecko ticker
        ("render-token", "render", "RENDERUSDT"),
        ("fantom", "ftm", "SUSDT"),
        ("brand-new-chain", "bnc", "BNCUSDT"),  # not in the table, unique ticker: mapped by ticker
        ("tether", "usdt", None),  # no USDT-quoted perpetual
        ("binance-peg-dogecoin", "doge", None),  # DOGE belongs to dogecoin in the table
        ("department-of-government-efficiency", "doge", None),
        ("op-impostor", "op", None),
    ],
)
def test_maps_coingecko_id_to_perpetual(coingecko_id: str, ticker: str, expected: str | None) -> None:
    perps, _ = valid_perpetuals(MAPPING_EXCHANGE)

    assert perp_symbol_for(coingecko_id, ticker, perps) == expected


def test_an_ambiguous_unknown_ticker_is_not_mapped_but_a_table_id_is() -> None:
    perps, _ = valid_perpetuals(MAPPING_EXCHANGE)

    assert perp_symbol_for("brand-new-chain", "BNC", perps, ambiguous_tickers={"bnc"}) is None
    assert perp_symbol_for("dogecoin", "doge", perps, ambiguous_tickers={"doge"}) == "DOGEUSDT"


@pytest.mark.parametrize(
    ("exchange", "expected"),
    [
        (info("MATICUSDT"), "MATICUSDT"),  # exchangeInfo from before the rename: the former name
        (info("POLUSDT", "MATICUSDT"), "POLUSDT"),  # both listed: the current name wins
        (info(perp("MATICUSDT", status="SETTLING")), None),  # the old contract is settling
    ],
)
def test_renamed_base_falls_back_to_its_former_contract(exchange: ExchangeInfo, expected: str | None) -> None:
    perps, _ = valid_perpetuals(exchange)

    assert perp_symbol_for("polygon-ecosystem-token", "pol", perps) == expected


def test_the_real_dogecoin_gets_dogeusdt_against_two_louder_impostors() -> None:
    result = select(
        coin("department-of-government-efficiency", "doge", 9e9),
        coin("binance-peg-dogecoin", "doge", 8e9),
        coin("dogecoin", "doge", 1e9),
        exchange=MAPPING_EXCHANGE,
    )

    assert ids_by_symbol(result) == {"DOGEUSDT": "dogecoin"}
    assert result.excluded["binance-peg-dogecoin"] == "bridged: maintained id prefix 'binance-peg-*'"
    assert result.excluded["department-of-government-efficiency"].startswith("ambiguous ticker 'doge'")


def test_an_impostor_alone_still_cannot_take_the_table_coins_contract() -> None:
    result = select(coin("department-of-government-efficiency", "doge", 9e9), exchange=MAPPING_EXCHANGE)

    assert result.symbols == []
    assert result.excluded == {"department-of-government-efficiency": "ticker 'doge' belongs to dogecoin"}


def test_optimism_gets_opusdt_when_another_coin_shares_its_ticker() -> None:
    result = select(coin("op-impostor", "op", 5e9), coin("optimism", "op", 1e9), exchange=MAPPING_EXCHANGE)

    assert ids_by_symbol(result) == {"OPUSDT": "optimism"}
    assert result.excluded["op-impostor"].startswith("ambiguous ticker 'op'")


def test_an_unknown_coin_maps_by_its_ticker_only_while_the_ticker_is_unique() -> None:
    unique = select(coin("brand-new-chain", "bnc", 1e9), exchange=MAPPING_EXCHANGE)
    shared = select(
        coin("brand-new-chain", "bnc", 1e9), coin("bnc-copy", "bnc", 2e9), exchange=MAPPING_EXCHANGE
    )

    assert ids_by_symbol(unique) == {"BNCUSDT": "brand-new-chain"}
    assert shared.symbols == []
    assert set(shared.excluded) == {"brand-new-chain", "bnc-copy"}


# ---------------------------------------------------------------------------------------------------
# rows, ranks, categories, frame


def test_one_row_per_symbol_keeps_the_higher_volume_coin() -> None:
    result = select(
        coin("matic-network", "matic", 2e7),
        coin("polygon-ecosystem-token", "pol", 4e8),
        exchange=MAPPING_EXCHANGE,
    )

    assert ids_by_symbol(result) == {"POLUSDT": "polygon-ecosystem-token"}
    assert result.excluded == {
        "matic-network": "duplicate: POLUSDT kept for polygon-ecosystem-token (higher volume)"
    }


def test_top_n_cut_ranks_by_volume_descending() -> None:
    coins = [
        coin("dogecoin", "doge", 3e9),
        coin("bitcoin", "btc", 9e9),
        coin("pepe", "pepe", 5e9),
        coin("optimism", "op", 1e9),
        coin("beam-2", "beam", 2e9),
    ]

    result = select(*coins, exchange=MAPPING_EXCHANGE, max_symbols=3)

    assert result.symbols == ["BTCUSDT", "1000PEPEUSDT", "DOGEUSDT"]
    assert list(result.frame["rank"]) == [1, 2, 3]
    assert list(result.frame["volume_24h_usd"]) == [9e9, 5e9, 3e9]
    assert result.excluded == {
        "beam-2": "outside the top 3 by 24h volume",
        "optimism": "outside the top 3 by 24h volume",
    }


def test_equal_volumes_rank_by_symbol_and_missing_volume_ranks_last() -> None:
    result = select(
        coin("optimism", "op", None),
        coin("dogecoin", "doge", 1e9),
        coin("bitcoin", "btc", 1e9),
        exchange=MAPPING_EXCHANGE,
    )

    assert result.symbols == ["BTCUSDT", "DOGEUSDT", "OPUSDT"]
    assert math.isnan(result.frame["volume_24h_usd"].iloc[2])


def test_max_symbols_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_symbols=0"):
        select(coin("bitcoin", "btc", 1e9), exchange=MAPPING_EXCHANGE, max_symbols=0)


def test_coins_are_joined_on_id_and_categories_list_where_each_was_found() -> None:
    btc, eth = coin("bitcoin", "btc", 9e9, 1.8e12), coin("ethereum", "eth", 5e9, 3.7e11)
    result = select(
        btc,
        coin("optimism", "op", 1e9),
        exchange=info("BTCUSDT", "ETHUSDT", "OPUSDT"),
        layer2=(coin("optimism", "op", 1e9),),
        base=(btc, eth),
    )

    frame = result.frame.set_index("symbol")
    assert list(frame.index) == ["BTCUSDT", "ETHUSDT", "OPUSDT"]
    assert frame.loc["BTCUSDT", "categories"] == "layer-1"
    assert frame.loc["ETHUSDT", "categories"] == "base"  # a base coin no layer category listed
    assert frame.loc["OPUSDT", "categories"] == "layer-1,layer-2"
    assert frame.loc["ETHUSDT", "market_cap_usd"] == 3.7e11


def test_frame_matches_the_coin_universe_schema_with_naive_utc_fetched_at() -> None:
    fetched_at = dt.datetime(2026, 11, 23, 2, 5, 17, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    result = select(coin("pepe", "pepe", 5e9, 8e9), exchange=MAPPING_EXCHANGE, fetched_at=fetched_at)
    table = pa.Table.from_pandas(result.frame, schema=COIN_UNIVERSE, preserve_index=False)

    assert result.frame.columns.tolist() == COIN_UNIVERSE.names
    assert table.to_pylist() == [
        {
            "snapshot_date": DAY,
            "rank": 1,
            "symbol": "1000PEPEUSDT",
            "base_asset": "1000PEPE",
            "coingecko_id": "pepe",
            "categories": "layer-1",
            "volume_24h_usd": 5e9,
            "market_cap_usd": 8e9,
            "source": "coingecko",
            "fetched_at": dt.datetime(2026, 11, 23, 0, 5, 17),
        }
    ]


def test_an_empty_universe_still_has_the_schema() -> None:
    result = select(coin("tether", "usdt", 9e10), exchange=MAPPING_EXCHANGE)

    table = pa.Table.from_pandas(result.frame, schema=COIN_UNIVERSE, preserve_index=False)

    assert result.symbols == []
    assert table.num_rows == 0
    assert table.schema.names == COIN_UNIVERSE.names


# ---------------------------------------------------------------------------------------------------
# fallback: Binance 24h quote volume

FALLBACK_EXCHANGE = info(
    "BTCUSDT",
    "ETHUSDT",
    "SOLUSDT",
    "1000PEPEUSDT",
    "USDCUSDT",
    "FDUSDUSDT",
    "BTCDOMUSDT",
    "NOTICKERUSDT",
    perp("BTCUSDT_261225", "BTC", contract_type="CURRENT_QUARTER"),
    perp("XRPUSDT", status="SETTLING"),
    perp("BAD|SYM", "BAD"),
)
FALLBACK_TICKERS = [
    ticker("ETHUSDT", 2e10),
    ticker("USDCUSDT", 9e10),
    ticker("FDUSDUSDT", 8e10),
    ticker("BTCDOMUSDT", 7e10),
    ticker("SOLUSDT", 1e9),
    ticker("BTCUSDT", 3e10),
    ticker("1000PEPEUSDT", 4e9),
    ticker("XRPUSDT", 6e10),
    ticker("BTCUSDT_261225", 5e10),
    ticker("../x", 5e10),
]


def fallback(max_symbols: int = 100) -> UniverseResult:
    return select_fallback_universe(
        tickers=FALLBACK_TICKERS,
        exchange_info=FALLBACK_EXCHANGE,
        max_symbols=max_symbols,
        snapshot_date=DAY,
        fetched_at=FETCHED_AT,
    )


def test_fallback_ranks_valid_perpetuals_by_quote_volume_without_stablecoins() -> None:
    result = fallback()

    assert result.source == "binance_fallback"
    assert result.symbols == ["BTCUSDT", "ETHUSDT", "1000PEPEUSDT", "SOLUSDT"]
    assert list(result.frame["volume_24h_usd"]) == [3e10, 2e10, 4e9, 1e9]
    assert set(result.frame["source"]) == {"binance_fallback"}
    assert result.frame["coingecko_id"].isna().all()
    assert result.frame["categories"].isna().all()
    assert result.frame["market_cap_usd"].isna().all()
    assert result.excluded == {
        "USDCUSDT": "stablecoin base: maintained list",
        "FDUSDUSDT": "stablecoin base: maintained list",
        "BTCDOMUSDT": "index contract: maintained list",
        "NOTICKERUSDT": "no 24h ticker",
    }


def test_fallback_lists_hostile_names_but_not_delivery_contracts() -> None:
    assert fallback().rejected_symbols == ("BAD|SYM", "../x")


def test_fallback_cuts_to_the_top_n() -> None:
    result = fallback(max_symbols=2)

    assert result.symbols == ["BTCUSDT", "ETHUSDT"]
    assert result.excluded["1000PEPEUSDT"] == "outside the top 2 by 24h volume"
    pa.Table.from_pandas(result.frame, schema=COIN_UNIVERSE, preserve_index=False)  # converts cleanly


def test_fallback_on_real_exchange_info_and_ticker_payloads(
    real_exchange_info_payload: dict[str, Any],
) -> None:
    _require_real(TICKER_JSON)
    template = json.loads(TICKER_JSON.read_text())  # the single-symbol form; the all-symbol form is a list
    tickers = parse_ticker_24hr(
        [
            {**template, "symbol": "ETHUSDT", "quoteVolume": "250.5"},
            template,  # BTCUSDT, quoteVolume "15.30000000"
            {**template, "symbol": "BTCUSDT_220325", "quoteVolume": "999"},
        ]
    )

    result = select_fallback_universe(
        tickers=tickers,
        exchange_info=parse_exchange_info(real_exchange_info_payload),
        max_symbols=100,
        snapshot_date=DAY,
        fetched_at=FETCHED_AT,
    )

    assert result.symbols == ["ETHUSDT", "BTCUSDT"]
    assert list(result.frame["volume_24h_usd"]) == [250.5, 15.3]
    assert result.rejected_symbols == ()


# ---------------------------------------------------------------------------------------------------
# changes between snapshots


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (["BTCUSDT", "ETHUSDT"], ["ETHUSDT", "BTCUSDT"], ([], [])),
        (["BTCUSDT"], ["SOLUSDT", "BTCUSDT", "1000PEPEUSDT"], (["1000PEPEUSDT", "SOLUSDT"], [])),
        (["XRPUSDT", "BTCUSDT", "ADAUSDT"], ["BTCUSDT"], ([], ["ADAUSDT", "XRPUSDT"])),
        ([], ["ETHUSDT", "BTCUSDT"], (["BTCUSDT", "ETHUSDT"], [])),
        (["MATICUSDT", "BTCUSDT"], ["POLUSDT", "BTCUSDT"], (["POLUSDT"], ["MATICUSDT"])),
    ],
)
def test_universe_changes(
    previous: list[str], current: list[str], expected: tuple[list[str], list[str]]
) -> None:
    assert universe_changes(previous, current) == expected


# ---------------------------------------------------------------------------------------------------
# the real top-250 CoinGecko payload (2024-11-17) against November 2024 perpetuals


def test_real_payload_maps_collisions_and_prefixes_by_id(real_universe: UniverseResult) -> None:
    by_symbol = ids_by_symbol(real_universe)

    assert {symbol: by_symbol.get(symbol) for symbol in EXPECTED_REAL_MAPPINGS} == EXPECTED_REAL_MAPPINGS


EXPECTED_REAL_MAPPINGS = {
    "BTCUSDT": "bitcoin",
    "ETHUSDT": "ethereum",
    "DOGEUSDT": "dogecoin",
    "1000PEPEUSDT": "pepe",
    "1000SHIBUSDT": "shiba-inu",
    "1000LUNCUSDT": "terra-luna",
    "1000XECUSDT": "ecash",
    "1000BONKUSDT": "bonk",
    "1000FLOKIUSDT": "floki",
    "1000SATSUSDT": "sats-ordinals",
    "1000CATUSDT": "simon-s-cat",
    "1000000MOGUSDT": "mog-coin",
    "1MBABYDOGEUSDT": "baby-doge-coin",
    "POLUSDT": "polygon-ecosystem-token",
    "BEAMXUSDT": "beam-2",
    "RENDERUSDT": "render-token",
    "NEIROUSDT": "neiro-3",
    "OPUSDT": "optimism",
    "COREUSDT": "coredaoorg",  # trades at $0.97: a price band would have dropped it
}


def test_real_payload_excludes_every_stablecoin_by_the_maintained_list_alone(
    real_universe: UniverseResult,
) -> None:
    reasons = {coin_id: real_universe.excluded.get(coin_id) for coin_id in FIXTURE_STABLECOINS}

    assert reasons == dict.fromkeys(FIXTURE_STABLECOINS, "stablecoin: maintained list")


def test_real_payload_excludes_every_wrapped_bridged_and_staked_coin(
    real_markets: list[MarketCoin], real_universe: UniverseResult
) -> None:
    receipts = {
        c.id for c in real_markets if c.symbol in {"weth", "wbtc", "steth", "wsteth", "reth", "weeth"}
    }
    receipts |= {"lombard-staked-btc", "cbbtc", "coinbase-wrapped-btc", "msol", "jupiter-staked-sol"} & {
        c.id for c in real_markets
    }

    reasons = {coin_id: real_universe.excluded.get(coin_id, "KEPT").split(":")[0] for coin_id in receipts}

    assert len(receipts) == 17
    assert set(reasons.values()) <= {"wrapped", "bridged", "liquid staking"}, reasons


def test_real_payload_keeps_a_near_dollar_coin_and_drops_doge_impostors(
    real_universe: UniverseResult,
) -> None:
    assert real_universe.excluded["wemix-token"] == "no perpetual: no valid contract for ticker 'wemix'"
    assert real_universe.excluded["binance-peg-dogecoin"].startswith("bridged")
    assert real_universe.excluded["department-of-government-efficiency"].startswith("ambiguous ticker 'doge'")
    assert real_universe.excluded["matic-network"].startswith("duplicate: POLUSDT")


def test_real_payload_universe_is_unique_ranked_and_clean(real_universe: UniverseResult) -> None:
    frame = real_universe.frame

    assert frame["symbol"].is_unique
    assert list(frame["rank"]) == list(range(1, len(frame) + 1))
    assert frame["volume_24h_usd"].is_monotonic_decreasing
    assert frame.loc[0, "symbol"] == "BTCUSDT"
    assert not set(frame["coingecko_id"]) & set(FIXTURE_STABLECOINS)
    assert not {"USDCUSDT", "USDTUSDT", "WBTCUSDT", "WETHUSDT", "STETHUSDT"} & set(frame["symbol"])
    assert real_universe.rejected_symbols == ("BAD|SYM", "../x")
    assert len(frame) == 146


def test_real_payload_top_n_is_the_head_of_the_full_ranking(
    real_markets: list[MarketCoin], binance_nov_2024: ExchangeInfo, real_universe: UniverseResult
) -> None:
    top = select_universe(
        base_coins=[],
        category_coins={"layer-1": real_markets},
        excluded_ids={"stablecoins": set(FIXTURE_STABLECOINS)},
        exchange_info=binance_nov_2024,
        max_symbols=100,
        snapshot_date=dt.date(2024, 11, 17),
        fetched_at=dt.datetime(2024, 11, 17, 16, 10),
    )

    assert top.symbols == real_universe.symbols[:100]
    assert top.excluded["tether"] == "stablecoin: CoinGecko category stablecoins"


def test_real_payload_against_real_exchange_info_is_btc_then_eth(
    real_markets: list[MarketCoin], real_exchange_info_payload: dict[str, Any]
) -> None:
    result = select_universe(
        base_coins=[c for c in real_markets if c.id in BASE_COIN_IDS],
        category_coins={"layer-1": real_markets},
        excluded_ids=None,
        exchange_info=parse_exchange_info(real_exchange_info_payload),
        max_symbols=100,
        snapshot_date=dt.date(2024, 11, 17),
        fetched_at=dt.datetime(2024, 11, 17, 16, 10),
    )

    assert result.symbols == ["BTCUSDT", "ETHUSDT"]
    assert list(result.frame["volume_24h_usd"]) == [47781833544.0, 26237976328.0]


def test_real_top30_json_payload_keeps_no_stable_wrapped_or_staked_coin(
    binance_nov_2024: ExchangeInfo,
) -> None:
    _require_real(MARKETS_TOP30_JSON)
    coins = parse_coins_markets(json.loads(MARKETS_TOP30_JSON.read_text()))

    result = select_universe(
        base_coins=[c for c in coins if c.id in BASE_COIN_IDS],
        category_coins={"layer-1": coins},
        excluded_ids=None,
        exchange_info=binance_nov_2024,
        max_symbols=100,
        snapshot_date=dt.date(2025, 3, 4),
        fetched_at=dt.datetime(2025, 3, 4, 14, 50),
    )

    assert {k: v.split(":")[0] for k, v in result.excluded.items() if not v.startswith("no perpetual")} == {
        "tether": "stablecoin",
        "usd-coin": "stablecoin",
        "usds": "stablecoin",
        "ethena-usde": "stablecoin",
        "staked-ether": "liquid staking",
        "wrapped-steth": "liquid staking",
        "wrapped-bitcoin": "wrapped",
        "weth": "wrapped",
    }
    assert result.symbols[:3] == ["BTCUSDT", "ETHUSDT", "XRPUSDT"]


# ------------------------------------------------------------------ the hand-kept tables agree
def test_every_mapped_base_and_former_base_makes_valid_contract_names() -> None:
    bases = set(tables.BINANCE_BASE_BY_COINGECKO_ID.values())
    bases |= {name for names in tables.BINANCE_BASE_ALIASES.values() for name in names}
    invalid = sorted(
        f"{prefix}{base}{QUOTE_ASSET}"
        for base in bases
        for prefix in CONTRACT_PREFIXES
        if not is_valid_symbol(f"{prefix}{base}{QUOTE_ASSET}")
    )
    assert invalid == []


def test_aliases_are_former_names_of_mapped_bases_and_no_current_base() -> None:
    current = set(tables.BINANCE_BASE_BY_COINGECKO_ID.values())
    assert set(tables.BINANCE_BASE_ALIASES) <= current
    assert {name for names in tables.BINANCE_BASE_ALIASES.values() for name in names}.isdisjoint(current)


def test_no_mapped_coin_is_also_excluded_by_a_maintained_list_or_pattern() -> None:
    excluded = {i: r for i in tables.BINANCE_BASE_BY_COINGECKO_ID if (r := maintained_exclusion(i))}
    assert excluded == {}
    fallback_only = tables.FALLBACK_STABLECOIN_BASES | tables.FALLBACK_INDEX_BASES
    assert fallback_only.isdisjoint(tables.BINANCE_BASE_BY_COINGECKO_ID.values())


def test_the_exclusion_lists_do_not_overlap_and_hold_coingecko_ids() -> None:
    lists = [tables.STABLECOIN_IDS, tables.WRAPPED_IDS, tables.LIQUID_STAKING_IDS]
    assert sum(map(len, lists)) == len(frozenset().union(*lists))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", coin_id) for coin_id in frozenset().union(*lists))
