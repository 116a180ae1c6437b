"""The simulated world's coins and contracts: who exists, how CoinGecko files them, what Binance lists.

The catalogue is code, not data, so every simulator with the same ``n_symbols`` and reference day has
the same coins. It holds

* real Layer-1 / Layer-2 coins with their real CoinGecko ids, tickers and Binance perpetuals (some
  with the mappings a universe rule must get right: ``polygon-ecosystem-token`` -> ``POLUSDT``,
  ``ecash`` (``xec``) -> ``1000XECUSDT``, ``terra-luna`` (``lunc``) -> ``1000LUNCUSDT``,
  ``terra-luna-2`` (``luna``) -> ``LUNA2USDT``, ``beam-2`` (``beam``) -> ``BEAMXUSDT``), then
  synthetic filler chains until there are ``n_symbols`` Layer-1/Layer-2 USDT perpetuals;
* traps: ticker collisions (``doge`` x3, ``op`` x2, ``weth`` x2) with an impostor filed under
  ``layer-1``/``layer-2`` at a high volume, stablecoins (one of them filed under ``layer-1`` and
  listed on Binance as ``FDUSDUSDT``), wrapped, bridged and liquid-staking tokens, meme coins quoted
  per 1000 units (``1000PEPEUSDT``...), a delisted perpetual (``FTMUSDT``, status ``SETTLING``);
* coins that CoinGecko knows and Binance does not list, and the reverse (Binance-only contracts:
  quarterly deliveries, ``BTCUSDC``, stablecoin perpetuals).

Prices and volumes here are anchors: the market (:mod:`quant_assets.simulator.market`) moves around
them, mean-reverting, so a price stays within a plausible band for years.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

LAYER_1 = "layer-1"
LAYER_2 = "layer-2"
STABLECOINS = "stablecoins"
WRAPPED = "wrapped-tokens"
BRIDGED = "bridged-tokens"
LIQUID_STAKING = "liquid-staking-tokens"
MEME = "meme-token"

# CoinGecko category id -> display name, as ``GET /coins/categories/list`` spells them.
CATEGORIES: dict[str, str] = {
    LAYER_1: "Layer 1 (L1)",
    LAYER_2: "Layer 2 (L2)",
    STABLECOINS: "Stablecoins",
    WRAPPED: "Wrapped-Tokens",
    BRIDGED: "Bridged-Tokens",
    LIQUID_STAKING: "Liquid Staking Tokens",
    MEME: "Meme",
}

MIN_N_SYMBOLS = 2
MAX_N_SYMBOLS = 400


@dataclass(frozen=True)
class SimCoin:
    """One coin as CoinGecko lists it, and the Binance USDT perpetual that trades it (if any).

    Attributes:
        coingecko_id: unique CoinGecko id, e.g. ``"avalanche-2"``.
        ticker: CoinGecko ``symbol``, lower case and NOT unique, e.g. ``"avax"``.
        name: display name.
        categories: CoinGecko category ids the coin is filed under (a coin may be in several).
        binance_symbol: the USDT-margined contract that trades the coin (``None``: not listed).
        binance_base: that contract's ``baseAsset`` (``"1000PEPE"`` for a per-1000 contract).
        contract_size: coin units per quoted price: 1, or 1000 for ``1000...`` contracts.
        price_usd: anchor price of ONE coin in USD (the market mean-reverts to it).
        volume_usd: anchor 24h volume in USD: Binance quote volume when listed, else CoinGecko's.
        market_cap_usd: anchor market cap in USD.
        annual_vol: annualised volatility of log returns (0.5 = 50 %).
        beta: sensitivity to the BTC factor (BTC itself is the factor).
        onboard_days_ago: days before the reference day at which Binance listed the contract
            (00:00 UTC); ``None`` when it was listed before the history epoch.
        tracks: CoinGecko id whose price this coin follows (wrapped, bridged, staked tokens).
        peg: price ratio to the tracked coin.
        max_supply: CoinGecko ``max_supply`` (``None``: uncapped).
        delisted: the Binance contract stopped trading (``exchangeInfo`` status ``SETTLING``).
    """

    coingecko_id: str
    ticker: str
    name: str
    categories: tuple[str, ...]
    binance_symbol: str | None
    binance_base: str | None
    contract_size: int
    price_usd: float
    volume_usd: float
    market_cap_usd: float
    annual_vol: float
    beta: float
    onboard_days_ago: int | None = None
    tracks: str | None = None
    peg: float = 1.0
    max_supply: float | None = None
    delisted: bool = False

    @property
    def is_layer_1_or_2(self) -> bool:
        """Filed under ``layer-1`` or ``layer-2``."""
        return LAYER_1 in self.categories or LAYER_2 in self.categories


def stable_id(text: str) -> int:
    """A 32-bit id of `text` that is the same in every process (unlike ``hash``)."""
    return zlib.crc32(text.encode("utf-8"))


def unit_hash(text: str) -> float:
    """A number in [0, 1) fixed by `text`: per-coin constants that look random but never change."""
    return (stable_id(text) % 1_000_003) / 1_000_003


def _vol_for(market_cap_usd: float) -> float:
    # Smaller coins swing more: 50 %/year for a 1.8 T coin, about 110 % for a 50 M one.
    return min(1.4, max(0.5, 0.55 + 0.12 * math.log10(1.8e12 / max(market_cap_usd, 1e6))))


def _beta_for(coingecko_id: str) -> float:
    return round(0.6 + 0.8 * unit_hash("beta:" + coingecko_id), 3)


_C = {"L1": (LAYER_1,), "L2": (LAYER_2,), "L1M": (LAYER_1, MEME)}

# (coingecko id, ticker, name, categories, Binance USDT perpetual, price USD, Binance 24h quote
# volume in millions of USD, market cap in billions of USD). Rough late-2025 magnitudes.
_REAL_CHAINS: tuple[tuple[str, str, str, str, str, float, float, float], ...] = (
    ("bitcoin", "btc", "Bitcoin", "L1", "BTCUSDT", 90000.0, 12000, 1780),
    ("ethereum", "eth", "Ethereum", "L1", "ETHUSDT", 3000.0, 8000, 360),
    ("solana", "sol", "Solana", "L1", "SOLUSDT", 140.0, 3000, 75),
    ("ripple", "xrp", "XRP", "L1", "XRPUSDT", 2.1, 1800, 125),
    ("binancecoin", "bnb", "BNB", "L1", "BNBUSDT", 880.0, 700, 125),
    ("dogecoin", "doge", "Dogecoin", "L1M", "DOGEUSDT", 0.15, 1500, 22),
    ("cardano", "ada", "Cardano", "L1", "ADAUSDT", 0.45, 500, 16),
    ("sui", "sui", "Sui", "L1", "SUIUSDT", 1.6, 900, 5.8),
    ("hyperliquid", "hype", "Hyperliquid", "L1", "HYPEUSDT", 35.0, 600, 12),
    ("zcash", "zec", "Zcash", "L1", "ZECUSDT", 400.0, 500, 6.5),
    ("avalanche-2", "avax", "Avalanche", "L1", "AVAXUSDT", 14.0, 400, 6),
    ("litecoin", "ltc", "Litecoin", "L1", "LTCUSDT", 85.0, 400, 6.5),
    ("near", "near", "NEAR Protocol", "L1", "NEARUSDT", 1.9, 300, 2.4),
    ("bitcoin-cash", "bch", "Bitcoin Cash", "L1", "BCHUSDT", 520.0, 300, 10),
    ("tron", "trx", "TRON", "L1", "TRXUSDT", 0.28, 250, 26),
    ("polkadot", "dot", "Polkadot", "L1", "DOTUSDT", 2.4, 250, 3.6),
    ("hedera-hashgraph", "hbar", "Hedera", "L1", "HBARUSDT", 0.14, 250, 6),
    ("aptos", "apt", "Aptos", "L1", "APTUSDT", 2.2, 200, 1.6),
    ("stellar", "xlm", "Stellar", "L1", "XLMUSDT", 0.25, 200, 8),
    ("arbitrum", "arb", "Arbitrum", "L2", "ARBUSDT", 0.3, 200, 1.5),
    ("the-open-network", "ton", "Toncoin", "L1", "TONUSDT", 1.6, 150, 4),
    ("internet-computer", "icp", "Internet Computer", "L1", "ICPUSDT", 4.2, 150, 2.3),
    ("ethereum-classic", "etc", "Ethereum Classic", "L1", "ETCUSDT", 13.0, 150, 2),
    ("cosmos", "atom", "Cosmos Hub", "L1", "ATOMUSDT", 2.6, 120, 1.2),
    ("sei-network", "sei", "Sei", "L1", "SEIUSDT", 0.15, 120, 0.9),
    ("injective-protocol", "inj", "Injective", "L1", "INJUSDT", 6.0, 120, 0.6),
    ("optimism", "op", "Optimism", "L2", "OPUSDT", 0.45, 120, 0.8),
    ("celestia", "tia", "Celestia", "L1", "TIAUSDT", 0.6, 100, 0.5),
    ("algorand", "algo", "Algorand", "L1", "ALGOUSDT", 0.14, 80, 1.2),
    ("kaspa", "kas", "Kaspa", "L1", "KASUSDT", 0.05, 60, 1.3),
    ("eos", "eos", "EOS", "L1", "EOSUSDT", 0.4, 60, 0.6),
    ("mantle", "mnt", "Mantle", "L2", "MNTUSDT", 1.1, 60, 3.6),
    ("starknet", "strk", "Starknet", "L2", "STRKUSDT", 0.13, 60, 0.5),
    ("polygon-ecosystem-token", "pol", "POL (ex-MATIC)", "L2", "POLUSDT", 0.15, 60, 1.5),
    ("berachain-bera", "bera", "Berachain", "L1", "BERAUSDT", 1.2, 60, 0.15),
    ("dash", "dash", "Dash", "L1", "DASHUSDT", 45.0, 60, 0.55),
    ("linea", "linea", "Linea", "L2", "LINEAUSDT", 0.01, 60, 0.2),
    ("vechain", "vet", "VeChain", "L1", "VETUSDT", 0.015, 50, 1.3),
    ("zksync", "zk", "ZKsync", "L2", "ZKUSDT", 0.05, 50, 0.35),
    ("tezos", "xtz", "Tezos", "L1", "XTZUSDT", 0.55, 40, 0.55),
    ("neo", "neo", "NEO", "L1", "NEOUSDT", 4.5, 40, 0.3),
    ("conflux-token", "cfx", "Conflux", "L1", "CFXUSDT", 0.08, 40, 0.4),
    ("sonic-3", "s", "Sonic", "L1", "SUSDT", 0.18, 40, 0.5),
    ("stacks", "stx", "Stacks", "L2", "STXUSDT", 0.4, 40, 0.7),
    ("iota", "iota", "IOTA", "L1", "IOTAUSDT", 0.12, 30, 0.45),
    ("immutable-x", "imx", "Immutable", "L2", "IMXUSDT", 0.4, 30, 0.75),
    ("movement", "move", "Movement", "L2", "MOVEUSDT", 0.08, 30, 0.2),
    ("elrond-erd-2", "egld", "MultiversX", "L1", "EGLDUSDT", 8.0, 25, 0.22),
    ("flow", "flow", "Flow", "L1", "FLOWUSDT", 0.25, 20, 0.4),
    ("zilliqa", "zil", "Zilliqa", "L1", "ZILUSDT", 0.008, 20, 0.16),
    ("theta-token", "theta", "Theta Network", "L1", "THETAUSDT", 0.45, 20, 0.45),
    ("terra-luna", "lunc", "Terra Luna Classic", "L1", "1000LUNCUSDT", 0.00004, 20, 0.25),
    ("kava", "kava", "Kava", "L1", "KAVAUSDT", 0.15, 15, 0.16),
    ("iotex", "iotx", "IoTeX", "L1", "IOTXUSDT", 0.015, 15, 0.14),
    ("kusama", "ksm", "Kusama", "L1", "KSMUSDT", 9.0, 15, 0.15),
    ("terra-luna-2", "luna", "Terra", "L1", "LUNA2USDT", 0.1, 15, 0.07),
    ("manta-network", "manta", "Manta Network", "L2", "MANTAUSDT", 0.12, 15, 0.05),
    ("celo", "celo", "Celo", "L2", "CELOUSDT", 0.2, 15, 0.12),
    ("merlin-chain", "merl", "Merlin Chain", "L2", "MERLUSDT", 0.1, 15, 0.1),
    ("qtum", "qtum", "Qtum", "L1", "QTUMUSDT", 1.8, 12, 0.19),
    ("mina-protocol", "mina", "Mina Protocol", "L1", "MINAUSDT", 0.15, 12, 0.18),
    ("oasis-network", "rose", "Oasis", "L1", "ROSEUSDT", 0.02, 12, 0.14),
    ("scroll", "scr", "Scroll", "L2", "SCRUSDT", 0.15, 12, 0.03),
    ("harmony", "one", "Harmony", "L1", "ONEUSDT", 0.007, 10, 0.1),
    ("ontology", "ont", "Ontology", "L1", "ONTUSDT", 0.07, 10, 0.1),
    ("ravencoin", "rvn", "Ravencoin", "L1", "RVNUSDT", 0.009, 10, 0.13),
    ("beam-2", "beam", "Beam", "L1", "BEAMXUSDT", 0.004, 10, 0.2),
    ("loopring", "lrc", "Loopring", "L2", "LRCUSDT", 0.06, 10, 0.08),
    ("metis-token", "metis", "Metis", "L2", "METISUSDT", 10.0, 10, 0.07),
    ("blast", "blast", "Blast", "L2", "BLASTUSDT", 0.002, 10, 0.07),
    ("taiko", "taiko", "Taiko", "L2", "TAIKOUSDT", 0.3, 10, 0.04),
    ("skale", "skl", "SKALE", "L2", "SKLUSDT", 0.02, 10, 0.12),
    ("ecash", "xec", "eCash", "L1", "1000XECUSDT", 0.000012, 8, 0.24),
    ("icon", "icx", "ICON", "L1", "ICXUSDT", 0.07, 8, 0.07),
)

# Days before the reference day on which Binance listed these real contracts (mid-history listings).
_REAL_ONBOARD_DAYS_AGO = {"linea": 19, "movement": 44}

# Synthetic filler chains: names built from these parts, so ids and tickers look plausible and are
# unique. Five of them were listed within the last 60 days.
_FILLER_HEADS = (
    "Aur",
    "Bel",
    "Cor",
    "Dra",
    "Ely",
    "Fen",
    "Gal",
    "Hel",
    "Ira",
    "Jov",
    "Kel",
    "Lum",
    "Myr",
    "Nox",
    "Ory",
    "Pyx",
    "Qua",
    "Rho",
    "Syl",
    "Tor",
    "Umb",
    "Vex",
    "Wyn",
    "Xan",
    "Yor",
    "Zep",
)
_FILLER_TAILS = ("ion", "ora", "is", "ex", "um", "eth", "ar", "on", "ix", "yn")
_FILLER_KINDS = ("Chain", "Network", "Protocol", "Ledger")
_FILLER_ONBOARD_DAYS_AGO = (7, 23, 36, 51, 58)


def _chain(
    cg_id: str,
    ticker: str,
    name: str,
    cats: tuple[str, ...],
    symbol: str,
    price: float,
    vol_m: float,
    mcap_b: float,
    onboard_days_ago: int | None = None,
) -> SimCoin:
    size = 1000 if symbol.startswith("1000") else 1
    base = symbol.removesuffix("USDT")
    return SimCoin(
        coingecko_id=cg_id,
        ticker=ticker,
        name=name,
        categories=cats,
        binance_symbol=symbol,
        binance_base=base,
        contract_size=size,
        price_usd=price,
        volume_usd=vol_m * 1e6,
        market_cap_usd=mcap_b * 1e9,
        annual_vol=_vol_for(mcap_b * 1e9) * (1.25 if MEME in cats else 1.0),
        beta=1.0 if cg_id == "bitcoin" else _beta_for(cg_id),
        onboard_days_ago=onboard_days_ago,
        max_supply=21e6 if cg_id == "bitcoin" else None,
    )


def _fillers(count: int, taken_tickers: set[str]) -> list[SimCoin]:
    coins: list[SimCoin] = []
    i = 0
    while len(coins) < count:
        head = _FILLER_HEADS[i % len(_FILLER_HEADS)]
        tail = _FILLER_TAILS[(i * 7 + i // len(_FILLER_HEADS)) % len(_FILLER_TAILS)]
        kind = _FILLER_KINDS[i % len(_FILLER_KINDS)]
        stem = head + tail
        i += 1
        ticker = stem[:4].lower()
        if ticker in taken_tickers:
            ticker = (stem[:3] + stem[-1]).lower()
        if ticker in taken_tickers:
            continue
        taken_tickers.add(ticker)
        n = len(coins)
        mid_history = n < len(_FILLER_ONBOARD_DAYS_AGO)
        # Volumes spread log-uniformly over 3-90 M USD/day; the recent listings trade 35-70 M so that
        # they sit inside a 100-symbol universe and backfills must cope with their short history.
        u = unit_hash("filler:" + stem)
        vol_m = 35 + 35 * u if mid_history else 3 * 30 ** ((n * 0.618 + u) % 1.0)
        price = 10 ** (-2.5 + 4.0 * unit_hash("price:" + stem))
        mcap_b = vol_m * (8 + 20 * u) / 1000
        cg_id = f"{stem.lower()}-{kind.lower()}"
        coins.append(
            _chain(
                cg_id,
                ticker,
                f"{stem} {kind}",
                (LAYER_2,) if n % 3 == 2 else (LAYER_1,),
                ticker.upper() + "USDT",
                round(price, 6 - math.floor(math.log10(price))),
                round(vol_m, 2),
                round(mcap_b, 3),
                _FILLER_ONBOARD_DAYS_AGO[n] if mid_history else None,
            )
        )
    return coins


def _listed_extra(
    cg_id: str,
    ticker: str,
    name: str,
    cats: tuple[str, ...],
    symbol: str,
    price: float,
    vol_m: float,
    mcap_b: float,
) -> SimCoin:
    return _chain(cg_id, ticker, name, cats, symbol, price, vol_m, mcap_b)


def _unlisted(
    cg_id: str,
    ticker: str,
    name: str,
    cats: tuple[str, ...],
    price: float,
    vol_m: float,
    mcap_b: float,
    *,
    tracks: str | None = None,
    peg: float = 1.0,
    binance_symbol: str | None = None,
    delisted: bool = False,
) -> SimCoin:
    stable = STABLECOINS in cats
    return SimCoin(
        coingecko_id=cg_id,
        ticker=ticker,
        name=name,
        categories=cats,
        binance_symbol=binance_symbol,
        binance_base=binance_symbol.removesuffix("USDT") if binance_symbol else None,
        contract_size=1,
        price_usd=price,
        volume_usd=vol_m * 1e6,
        market_cap_usd=mcap_b * 1e9,
        annual_vol=0.004 if stable else _vol_for(mcap_b * 1e9),
        beta=0.0 if stable else _beta_for(cg_id),
        tracks=tracks,
        peg=peg,
        delisted=delisted,
    )


def _others() -> list[SimCoin]:
    """Non-chain Binance perpetuals and the traps (all present whatever ``n_symbols`` is)."""
    return [
        # Other sectors: liquid USDT perpetuals that a Layer-1/Layer-2 universe must leave out.
        _listed_extra("chainlink", "link", "Chainlink", (), "LINKUSDT", 13.0, 300, 8.5),
        _listed_extra("uniswap", "uni", "Uniswap", (), "UNIUSDT", 6.0, 150, 3.6),
        _listed_extra("aave", "aave", "Aave", (), "AAVEUSDT", 180.0, 200, 2.7),
        _listed_extra("ethena", "ena", "Ethena", (), "ENAUSDT", 0.3, 300, 2.1),
        _listed_extra("render-token", "render", "Render", (), "RENDERUSDT", 2.0, 80, 1.0),
        _listed_extra("worldcoin-wld", "wld", "Worldcoin", (), "WLDUSDT", 0.6, 150, 1.3),
        # Meme coins, quoted per 1000 coins on Binance.
        _listed_extra("pepe", "pepe", "Pepe", (MEME,), "1000PEPEUSDT", 0.000006, 600, 2.5),
        _listed_extra("shiba-inu", "shib", "Shiba Inu", (MEME,), "1000SHIBUSDT", 0.000009, 150, 5.3),
        _listed_extra("bonk", "bonk", "Bonk", (MEME,), "1000BONKUSDT", 0.000012, 150, 1.0),
        _listed_extra("floki", "floki", "FLOKI", (MEME,), "1000FLOKIUSDT", 0.00006, 60, 0.6),
        # Delisted on Binance (status SETTLING), still a Layer-1 on CoinGecko.
        _unlisted(
            "fantom", "ftm", "Fantom", (LAYER_1,), 0.5, 100, 1.4, binance_symbol="FTMUSDT", delisted=True
        ),
        # Stablecoins. first-digital-usd is also filed under layer-1 and has a Binance perpetual.
        _unlisted("tether", "usdt", "Tether", (STABLECOINS,), 1.0, 90000, 180),
        _unlisted("usd-coin", "usdc", "USDC", (STABLECOINS,), 1.0, 10000, 75, binance_symbol="USDCUSDT"),
        _unlisted("ethena-usde", "usde", "Ethena USDe", (STABLECOINS,), 1.0, 300, 6),
        _unlisted(
            "first-digital-usd",
            "fdusd",
            "First Digital USD",
            (STABLECOINS, LAYER_1),
            1.0,
            5000,
            1.5,
            binance_symbol="FDUSDUSDT",
        ),
        _unlisted("dai", "dai", "Dai", (STABLECOINS,), 1.0, 200, 5),
        # Wrapped, bridged and liquid-staking tokens follow the coin they wrap.
        _unlisted("wrapped-bitcoin", "wbtc", "Wrapped Bitcoin", (WRAPPED,), 90000, 300, 12, tracks="bitcoin"),
        _unlisted("weth", "weth", "WETH", (WRAPPED,), 3000, 400, 8, tracks="ethereum"),
        _unlisted(
            "binance-peg-weth",
            "weth",
            "Binance-Peg WETH",
            (WRAPPED, BRIDGED),
            3000,
            60,
            0.4,
            tracks="ethereum",
        ),
        _unlisted(
            "bridged-usdc-polygon-pos-bridge",
            "usdc.e",
            "Bridged USDC (Polygon PoS Bridge)",
            (BRIDGED, STABLECOINS),
            1.0,
            40,
            0.3,
        ),
        _unlisted(
            "staked-ether", "steth", "Lido Staked Ether", (LIQUID_STAKING,), 3000, 100, 30, tracks="ethereum"
        ),
        _unlisted(
            "wrapped-steth",
            "wsteth",
            "Wrapped stETH",
            (LIQUID_STAKING, WRAPPED),
            3630,
            50,
            11,
            tracks="ethereum",
            peg=1.21,
        ),
        # Ticker collisions. binance-peg-dogecoin is filed under layer-1 with a high volume, so a rule
        # that maps by ticker alone picks DOGEUSDT for it; optio-network is a second Layer-2 "op"
        # trading more than optimism itself.
        _unlisted(
            "binance-peg-dogecoin",
            "doge",
            "Binance-Peg Dogecoin",
            (BRIDGED, LAYER_1),
            0.15,
            900,
            0.5,
            tracks="dogecoin",
        ),
        _unlisted(
            "department-of-government-efficiency",
            "doge",
            "Department Of Government Efficiency",
            (MEME,),
            0.12,
            30,
            0.05,
        ),
        _unlisted("optio-network", "op", "Optio Network", (LAYER_2,), 0.8, 700, 0.9),
    ]


def build_catalogue(n_symbols: int = 120) -> tuple[SimCoin, ...]:
    """Every coin of the simulated world, in a fixed order.

    Args:
        n_symbols: how many Layer-1/Layer-2 coins with a TRADING Binance USDT perpetual the world
            has: the real ones first (in the order of ``_REAL_CHAINS``, roughly by size), then
            synthetic fillers. The other coins (other sectors, memes, stablecoins, traps) are always
            there.

    Raises:
        ValueError: `n_symbols` outside [2, 400].
    """
    if not MIN_N_SYMBOLS <= n_symbols <= MAX_N_SYMBOLS:
        raise ValueError(f"n_symbols must be in [{MIN_N_SYMBOLS}, {MAX_N_SYMBOLS}], got {n_symbols}")
    chains = [
        _chain(cg, tk, nm, _C[cats], sym, p, v, m, _REAL_ONBOARD_DAYS_AGO.get(cg))
        for cg, tk, nm, cats, sym, p, v, m in _REAL_CHAINS[:n_symbols]
    ]
    others = _others()
    taken = {c.ticker for c in chains} | {c.ticker for c in others}
    chains += _fillers(n_symbols - len(chains), taken)
    return tuple(chains + others)


@dataclass(frozen=True)
class ContractSpec:
    """One Binance USD-M contract as ``exchangeInfo`` describes it, and the price series behind it.

    Attributes:
        symbol: e.g. ``"BTCUSDT"``, ``"1000PEPEUSDT"``, ``"BTCUSDT_261225"``.
        pair: underlying pair, e.g. ``"BTCUSDT"``.
        contract_type: ``"PERPETUAL"``, ``"CURRENT_QUARTER"``, ``"NEXT_QUARTER"``.
        base_asset / quote_asset: e.g. ``"1000PEPE"`` / ``"USDT"``.
        series: key of the market price series the contract trades on.
        onboard_ms: listing time, epoch milliseconds UTC; no candle opens before it.
        delivery_ms: delivery time, epoch ms UTC (perpetuals: Binance's far-future 2100-12-25).
        delisted: ``True`` for a contract that stopped trading (``status`` ``SETTLING``).
        price_decimals / qty_decimals: decimals of prices and quantities in payloads.
        sub_type: ``underlyingSubType`` tags, e.g. ``("Layer-1",)``.
    """

    symbol: str
    pair: str
    contract_type: str
    base_asset: str
    quote_asset: str
    series: str
    onboard_ms: int
    delivery_ms: int
    delisted: bool
    price_decimals: int
    qty_decimals: int
    sub_type: tuple[str, ...]


PERPETUAL_DELIVERY_MS = 4_133_404_800_000  # 2100-12-25 08:00 UTC, what Binance sends for perpetuals


def price_decimals_for(price: float) -> int:
    """Decimals Binance quotes a contract of this price with (BTC 1, ETH 2, DOGE 6, 1000PEPE 7)."""
    return max(1, min(8, 5 - math.floor(math.log10(price))))


def qty_decimals_for(price: float) -> int:
    """Decimals of the contract's quantities (BTC 3, ETH 2, SOL 1, DOGE 0)."""
    return max(0, min(3, math.floor(math.log10(price)) - 1))
