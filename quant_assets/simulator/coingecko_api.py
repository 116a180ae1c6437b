"""CoinGecko public endpoints (``/api/v3/...``) over the simulated market.

``coins/markets`` rows carry CoinGecko's 26 fields in its order and with its JSON types (integers for
market cap, FDV and volume; a price is an integer from 10,000 up, as CoinGecko prints BTC). Prices
and volumes come from the same paths as the Binance endpoints, so rankings by CoinGecko volume and
by Binance quote volume roughly agree. Only ``vs_currency=usd`` is served.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from quant_assets.simulator.catalog import CATEGORIES, STABLECOINS, SimCoin, unit_hash
from quant_assets.simulator.market import CoinQuote, Market
from quant_assets.simulator.wire import Reply, json_reply

API_PREFIX = "/api/v3"
PING_PATH = API_PREFIX + "/ping"
COINS_MARKETS_PATH = API_PREFIX + "/coins/markets"
COINS_LIST_PATH = API_PREFIX + "/coins/list"
CATEGORIES_LIST_PATH = API_PREFIX + "/coins/categories/list"

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 250
ORDERS = ("market_cap_desc", "market_cap_asc", "volume_desc", "volume_asc", "id_asc", "id_desc")

RATE_LIMITED_BODY = {
    "status": {
        "error_code": 429,
        "error_message": "You've exceeded the Rate Limit. Please visit https://www.coingecko.com/en/api/pricing "
        "to subscribe to our API plans for higher rate limits.",
    }
}


def _price(value: float) -> float | int:
    # CoinGecko prints 6 significant digits, and whole numbers from 10,000 up (BTC "79847").
    if value >= 10_000:
        return round(value)
    if value <= 0:
        return 0.0
    return round(value, 5 - math.floor(math.log10(value)))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _fixed_date(text: str, first_year: int, years: int) -> str:
    start = datetime(first_year, 1, 1, tzinfo=UTC)
    return _iso(start + timedelta(seconds=int(unit_hash(text) * years * 365 * 86400)))


class CoinGeckoApi:
    """Answers ``/api/v3`` requests from a :class:`Market`."""

    def __init__(self, market: Market) -> None:
        self.market = market

    def handle(self, path: str, query: Mapping[str, str]) -> Reply:
        """The reply to ``GET path?query`` (404 JSON for a path CoinGecko does not have)."""
        if path == COINS_MARKETS_PATH:
            return self._coins_markets(query)
        if path == PING_PATH:
            return json_reply(200, {"gecko_says": "(V3) To the Moon!"})
        if path == CATEGORIES_LIST_PATH:
            return json_reply(200, [{"category_id": cid, "name": name} for cid, name in CATEGORIES.items()])
        if path == COINS_LIST_PATH:
            return json_reply(
                200, [{"id": c.coingecko_id, "symbol": c.ticker, "name": c.name} for c in self._by_id()]
            )
        return json_reply(404, {"error": "Incorrect path. Please check https://www.coingecko.com/api/"})

    def _by_id(self) -> list[SimCoin]:
        return sorted(self.market.coins, key=lambda c: c.coingecko_id)

    def _coins_markets(self, query: Mapping[str, str]) -> Reply:
        vs_currency = query.get("vs_currency")
        if not vs_currency:
            return json_reply(400, {"error": "Missing parameter vs_currency"})
        if vs_currency.lower() != "usd":
            return json_reply(400, {"error": "invalid vs_currency"})
        order = query.get("order") or "market_cap_desc"
        if order not in ORDERS:
            return json_reply(400, {"error": "invalid order"})
        try:
            per_page = min(MAX_PER_PAGE, max(1, int(query.get("per_page") or DEFAULT_PER_PAGE)))
            page = max(1, int(query.get("page") or 1))
        except ValueError:
            return json_reply(400, {"error": "invalid per_page or page"})
        category = query.get("category")
        if category and category not in CATEGORIES:
            return json_reply(404, {"error": "category not found"})
        now_ms = self.market.now_ms()
        rows = self.markets(now_ms)
        if category:
            wanted = {c.coingecko_id for c in self.market.coins if category in c.categories}
            rows = [r for r in rows if r["id"] in wanted]
        if query.get("ids"):
            ids = {i.strip() for i in query["ids"].split(",") if i.strip()}
            rows = [r for r in rows if r["id"] in ids]
        key, descending = {
            "market_cap_desc": ("market_cap", True),
            "market_cap_asc": ("market_cap", False),
            "volume_desc": ("total_volume", True),
            "volume_asc": ("total_volume", False),
            "id_asc": ("id", False),
            "id_desc": ("id", True),
        }[order]
        rows.sort(key=lambda r: r["id"])  # ties resolve by id, whatever the order
        rows.sort(key=lambda r: r[key], reverse=descending)
        return json_reply(200, rows[(page - 1) * per_page : page * per_page])

    def markets(self, now_ms: int) -> list[dict[str, Any]]:
        """One ``coins/markets`` row per coin of the catalogue at `now_ms`, ranked by market cap."""
        quotes = [(coin, self.market.coin_quote(coin, now_ms=now_ms)) for coin in self.market.coins]
        caps = {coin.coingecko_id: self._circulating(coin) * quote.price for coin, quote in quotes}
        ranked = sorted(caps, key=lambda cid: (-caps[cid], cid))
        rank = {cid: i + 1 for i, cid in enumerate(ranked)}
        updated = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
        return [
            self._row(coin, quote, rank[coin.coingecko_id], updated, index)
            for index, (coin, quote) in enumerate(quotes)
        ]

    @staticmethod
    def _circulating(coin: SimCoin) -> float:
        return coin.market_cap_usd / coin.price_usd

    def _row(
        self, coin: SimCoin, quote: CoinQuote, rank: int, updated: datetime, index: int
    ) -> dict[str, Any]:
        cid = coin.coingecko_id
        circulating = self._circulating(coin)
        stable = STABLECOINS in coin.categories
        spread = 0.0 if stable else 0.3 * unit_hash("supply:" + cid)
        total_supply = coin.max_supply or circulating * (1.0 + spread)
        max_supply = coin.max_supply or (total_supply if unit_hash("max:" + cid) < 0.3 else None)
        price, open_ = quote.price, quote.open_24h
        market_cap = circulating * price
        cap_change = market_cap - circulating * open_
        # All-time extremes: a stablecoin's stay near its peg, others' lie well away from today.
        ath_factor = 1.0 + (0.3 if stable else 1.5) * unit_hash("ath:" + cid) + 0.02
        atl_factor = 0.6 + 0.35 * unit_hash("atl:" + cid) if stable else 0.005 + 0.1 * unit_hash("atl:" + cid)
        ath = max(coin.price_usd * ath_factor, quote.high_24h)
        atl = min(coin.price_usd * atl_factor, quote.low_24h)
        roi = (
            {"times": 38.8 * price / 3000, "currency": "btc", "percentage": 3880.0 * price / 3000}
            if cid == "ethereum"
            else None
        )
        return {
            "id": cid,
            "symbol": coin.ticker,
            "name": coin.name,
            "image": f"https://coin-images.coingecko.com/coins/images/{1000 + index}/large/{cid}.png?1696501400",
            "current_price": _price(price),
            "market_cap": round(market_cap),
            "market_cap_rank": rank,
            "fully_diluted_valuation": round(total_supply * price),
            "total_volume": round(quote.volume_usd),
            "high_24h": _price(quote.high_24h),
            "low_24h": _price(quote.low_24h),
            "price_change_24h": price - open_,
            "price_change_percentage_24h": round(100.0 * (price / open_ - 1.0), 5) if open_ else 0.0,
            "market_cap_change_24h": cap_change,
            "market_cap_change_percentage_24h": round(100.0 * cap_change / (market_cap - cap_change), 5)
            if market_cap != cap_change
            else 0.0,
            "circulating_supply": float(round(circulating, 4)),
            "total_supply": float(round(total_supply, 4)),
            "max_supply": None if max_supply is None else float(round(max_supply, 4)),
            "ath": _price(ath),
            "ath_change_percentage": round(100.0 * (price / ath - 1.0), 5),
            "ath_date": _fixed_date("ath-date:" + cid, 2021, 4),
            "atl": _price(atl),
            "atl_change_percentage": round(100.0 * (price / atl - 1.0), 5),
            "atl_date": _fixed_date("atl-date:" + cid, 2015, 7),
            "roi": roi,
            "last_updated": _iso(updated - timedelta(seconds=5 + int(30 * unit_hash("upd:" + cid)))),
        }
