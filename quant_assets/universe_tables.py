"""The hand-kept tables behind the universe rules (:mod:`quant_assets.universe`): data, no logic.

Provenance: written by hand when the rules were (2026-11-27, commit 11adaff) from what the venues
publish. CoinGecko ids and tickers as ``/coins/markets`` lists the top coins by market cap, members of
the CoinGecko categories ``stablecoins``, ``wrapped-tokens``, ``bridged-tokens`` and
``liquid-staking-tokens``, and the base assets of Binance USD-M TRADING USDT perpetuals as
``/fapi/v1/exchangeInfo`` names them (1000/1000000/1M contract prefixes, renamed bases). Recorded real
CoinGecko payloads (the top 250 of 2024-11-17, the top 30 of 2025-03-04, replayed by the
``test_real_payload_*`` tests of ``test_universe.py`` when ``../shared/fixtures`` is present) check
them against real data.

Upkeep: the rules consult the data of the day first (CoinGecko's category lists); these tables back
them up when a call fails or CoinGecko files a coin under the wrong category, and keep a coin's
contract from an impostor that shares its ticker. Add a line when Binance lists a coin whose ticker is
shared, prefixed or renamed, or when a stablecoin, wrapped or staked token starts trading at volume;
``test_universe.py`` checks that the tables stay consistent with one another.
"""

from __future__ import annotations

# CoinGecko id -> the coin's base asset on Binance USD-M, without any 1000/1000000/1M prefix.
# Covers the real top coins by market cap that Binance lists (and renamed ones: the old id maps to the
# new base, BINANCE_BASE_ALIASES gives the old contract name). Keeping the ids here is what protects a
# coin's contract from impostors that share its ticker. Maintained by hand: add a line when Binance lists
# a coin whose ticker is shared, prefixed or renamed; other coins also map through their ticker.
BINANCE_BASE_BY_COINGECKO_ID: dict[str, str] = {
    # base coins and the largest layer-1s
    "bitcoin": "BTC",
    "ethereum": "ETH",
    "binancecoin": "BNB",
    "solana": "SOL",
    "ripple": "XRP",
    "cardano": "ADA",
    "tron": "TRX",
    "avalanche-2": "AVAX",
    "the-open-network": "TON",
    "sui": "SUI",
    "polkadot": "DOT",
    "near": "NEAR",
    "litecoin": "LTC",
    "bitcoin-cash": "BCH",
    "bitcoin-cash-sv": "BSV",
    "aptos": "APT",
    "stellar": "XLM",
    "internet-computer": "ICP",
    "kaspa": "KAS",
    "ethereum-classic": "ETC",
    "ethereum-pow-iou": "ETHW",
    "hedera-hashgraph": "HBAR",
    "hyperliquid": "HYPE",
    "bittensor": "TAO",
    "cosmos": "ATOM",
    "algorand": "ALGO",
    "vechain": "VET",
    "monero": "XMR",
    "filecoin": "FIL",
    "arweave": "AR",
    "tezos": "XTZ",
    "eos": "EOS",
    "neo": "NEO",
    "gas": "GAS",
    "iota": "IOTA",
    "zcash": "ZEC",
    "dash": "DASH",
    "kusama": "KSM",
    "flow": "FLOW",
    "elrond-erd-2": "EGLD",
    "mina-protocol": "MINA",
    "conflux-token": "CFX",
    "nervos-network": "CKB",
    "oasis-network": "ROSE",
    "kava": "KAVA",
    "astar": "ASTR",
    "celo": "CELO",
    "zilliqa": "ZIL",
    "harmony": "ONE",
    "qtum": "QTUM",
    "ontology": "ONT",
    "icon": "ICX",
    "waves": "WAVES",
    "ravencoin": "RVN",
    "horizen": "ZEN",
    "iotex": "IOTX",
    "moonbeam": "GLMR",
    "thorchain": "RUNE",
    "injective-protocol": "INJ",
    "sei-network": "SEI",
    "celestia": "TIA",
    "dymension": "DYM",
    "axelar": "AXL",
    "zetachain": "ZETA",
    "saga-2": "SAGA",
    "coredaoorg": "CORE",
    "kaia": "KAIA",
    "klay-token": "KAIA",  # Klaytn merged into Kaia; Binance renamed KLAYUSDT
    "fantom": "S",  # Fantom migrated to Sonic; Binance renamed FTMUSDT
    "sonic-3": "S",
    "berachain-bera": "BERA",
    "story-2": "IP",
    "movement": "MOVE",
    "mantra-dao": "OM",
    "ronin": "RON",
    "theta-token": "THETA",
    "theta-fuel": "TFUEL",
    "akash-network": "AKT",
    "helium": "HNT",
    "chiliz": "CHZ",
    "terra-luna": "LUNC",  # the old Terra chain; Binance: 1000LUNCUSDT
    "terra-luna-2": "LUNA2",
    "ecash": "XEC",  # Binance: 1000XECUSDT
    # layer-2s
    "arbitrum": "ARB",
    "optimism": "OP",
    "polygon-ecosystem-token": "POL",
    "matic-network": "POL",  # MATIC migrated to POL; Binance renamed MATICUSDT
    "mantle": "MNT",
    "immutable-x": "IMX",
    "starknet": "STRK",
    "zksync": "ZK",
    "blockstack": "STX",
    "manta-network": "MANTA",
    "metis-token": "METIS",
    "blast": "BLAST",
    "taiko": "TAIKO",
    "scroll": "SCR",
    "loopring": "LRC",
    "skale": "SKL",
    "lisk": "LSK",
    "merlin-chain": "MERL",
    "coti": "COTI",
    "cartesi": "CTSI",
    "omni-network": "OMNI",
    "beam-2": "BEAMX",  # CoinGecko ticker "beam"; Binance calls it BEAMX
    # other large coins Binance lists, kept so their contracts cannot go to an impostor
    "dogecoin": "DOGE",
    "shiba-inu": "SHIB",  # Binance: 1000SHIBUSDT
    "pepe": "PEPE",  # Binance: 1000PEPEUSDT
    "bonk": "BONK",  # Binance: 1000BONKUSDT
    "floki": "FLOKI",  # Binance: 1000FLOKIUSDT
    "mog-coin": "MOG",  # Binance: 1000000MOGUSDT
    "baby-doge-coin": "BABYDOGE",  # Binance: 1MBABYDOGEUSDT
    "sats-ordinals": "SATS",  # Binance: 1000SATSUSDT
    "simon-s-cat": "CAT",  # Binance: 1000CATUSDT
    "neiro-3": "NEIRO",
    "neiro-on-eth": "NEIROETH",
    "dogwifcoin": "WIF",
    "popcat": "POPCAT",
    "book-of-meme": "BOME",
    "cat-in-a-dogs-world": "MEW",
    "peanut-the-squirrel": "PNUT",
    "goatseus-maximus": "GOAT",
    "act-i-the-ai-prophecy": "ACT",
    "moo-deng": "MOODENG",
    "turbo": "TURBO",
    "memecoin-2": "MEME",
    "notcoin": "NOT",
    "dogs-2": "DOGS",
    "ponke": "PONKE",
    "fartcoin": "FARTCOIN",
    "ai16z": "AI16Z",
    "spx6900": "SPX",
    "official-trump": "TRUMP",
    "constitutiondao": "PEOPLE",
    "chainlink": "LINK",
    "uniswap": "UNI",
    "aave": "AAVE",
    "maker": "MKR",
    "lido-dao": "LDO",
    "ethena": "ENA",
    "ether-fi": "ETHFI",
    "eigenlayer": "EIGEN",
    "pendle": "PENDLE",
    "jupiter-exchange-solana": "JUP",
    "raydium": "RAYSOL",  # Binance relisted Raydium as RAYSOLUSDT
    "jito-governance-token": "JTO",
    "pyth-network": "PYTH",
    "wormhole": "W",
    "layerzero": "ZRO",
    "worldcoin-wld": "WLD",
    "fetch-ai": "FET",
    "render-token": "RENDER",  # Binance renamed RNDRUSDT
    "the-graph": "GRT",
    "ondo-finance": "ONDO",
    "quant-network": "QNT",
    "the-sandbox": "SAND",
    "decentraland": "MANA",
    "axie-infinity": "AXS",
    "apecoin": "APE",
    "gala": "GALA",
    "jasmycoin": "JASMY",
    "ordinals": "ORDI",
    "aioz-network": "AIOZ",
    "arkham": "ARKM",
    "grass": "GRASS",
    "superfarm": "SUPER",
    "ethereum-name-service": "ENS",
    "havven": "SNX",
    "pancakeswap-token": "CAKE",
    "safe": "SAFE",
    "virtual-protocol": "VIRTUAL",
    "blur": "BLUR",
    "compound-governance-token": "COMP",
    "curve-dao-token": "CRV",
    "stepn": "GMT",
    "degen-base": "DEGEN",
    "woo-network": "WOO",
    "trust-wallet-token": "TWT",
    "livepeer": "LPT",
    "1inch": "1INCH",
    "reserve-rights-token": "RSR",
    "drift-protocol": "DRIFT",
    "holotoken": "HOT",
    "golem": "GLM",
    "safepal": "SFP",
    "aevo-exchange": "AEVO",
    "0x": "ZRX",
    "dydx-chain": "DYDX",
    "dydx": "DYDX",  # the old ERC-20 (CoinGecko ticker "ethdydx"); same Binance contract
    "aerodrome-finance": "AERO",
    "based-brett": "BRETT",
}

# Former Binance base names, tried when the current base has no valid perpetual (an exchangeInfo
# snapshot taken before the rename). Keyed by the current base.
BINANCE_BASE_ALIASES: dict[str, tuple[str, ...]] = {
    "POL": ("MATIC",),
    "S": ("FTM",),
    "KAIA": ("KLAY",),
    "RENDER": ("RNDR",),
    "RAYSOL": ("RAY",),
}

# Maintained backup of the CoinGecko "stablecoins" category (fiat-pegged and yield-bearing dollars).
STABLECOIN_IDS: frozenset[str] = frozenset(
    {
        "tether",
        "usd-coin",
        "dai",
        "ethena-usde",
        "ethena-staked-usde",
        "first-digital-usd",
        "usds",
        "true-usd",
        "paypal-usd",
        "usdd",
        "frax",
        "binance-usd",
        "paxos-standard",
        "gemini-dollar",
        "liquity-usd",
        "crvusd",
        "usdb",
        "usual-usd",
        "ondo-us-dollar-yield",
        "hashnote-usyc",
        "mountain-protocol-usdm",
        "ripple-usd",
        "usd1-wlfi",
        "global-dollar",
        "falcon-finance",
        "resolv-usr",
        "agora-dollar",
        "dola-usd",
        "savings-dai",
        "susds",
        "euro-coin",
        "binance-peg-busd",
        "bridged-usdc-polygon-pos-bridge",
        "stasis-eurs",
        "tether-eurt",
    }
)
# Maintained backup of the CoinGecko "wrapped-tokens" and "bridged-tokens" categories; ids with a
# bridged/wrapped word or the binance-peg- prefix are caught by pattern (maintained_exclusion).
WRAPPED_IDS: frozenset[str] = frozenset(
    {
        "weth",
        "tbtc",
        "solv-btc",
        "solv-protocol-solvbtc-bbn",
        "pumpbtc",
        "wrapped-eeth",
    }
)
# Maintained backup of the CoinGecko "liquid-staking-tokens" category; ids with a staked/restaked
# word are caught by pattern.
LIQUID_STAKING_IDS: frozenset[str] = frozenset(
    {
        "staked-ether",
        "wrapped-steth",
        "rocket-pool-eth",
        "msol",
        "sweth",
        "stader-ethx",
        "frax-ether",
        "coinbase-wrapped-staked-eth",
        "super-oeth",
        "origin-ether",
        "wrapped-beacon-eth",
        "lido-staked-sol",
        "jito-staked-sol",
    }
)

# Binance perpetual bases that are not coins of the universe, for the fallback ranking (the CoinGecko
# path never maps to them). Stablecoins trade at volume the fallback must not mistake for interest.
FALLBACK_STABLECOIN_BASES: frozenset[str] = frozenset(
    {
        "USDC",
        "FDUSD",
        "TUSD",
        "USDP",
        "DAI",
        "BUSD",
        "USDE",
        "PYUSD",
        "USDS",
        "USDD",
        "FRAX",
        "RLUSD",
        "USD1",
        "XUSD",
        "BFUSD",
        "AEUR",
        "EUR",
        "EURI",
    }
)
# Binance's composite index perpetuals (BTC dominance, DeFi, ...): no coin behind them.
FALLBACK_INDEX_BASES: frozenset[str] = frozenset({"BTCDOM", "DEFI", "FOOTBALL", "BLUEBIRD"})
