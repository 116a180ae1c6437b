"""CoinGecko REST client (``/api/v3``): ping and ``coins/markets``, ranked by 24h volume.

An API key is optional. It travels as a header (``x-cg-pro-api-key`` for ``pro-api.coingecko.com``,
``x-cg-demo-api-key`` elsewhere), never in the URL, so it cannot reach a log line, an error message
or a ``repr``. CoinGecko sends no used-weight header: the client relies on its 429 ``Retry-After``,
which holds every CoinGecko request of the process through the shared budget, and may pace itself
with ``calls_per_minute``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from quant_assets.sources.http import VenueClient, VenueSession, WeightBudget, shared_budget
from quant_assets.sources.payloads import MarketCoin, parse_coins_markets

VENUE = "coingecko"
PRO_HOST = "pro-api.coingecko.com"
PRO_KEY_HEADER = "x-cg-pro-api-key"
DEMO_KEY_HEADER = "x-cg-demo-api-key"
MAX_PER_PAGE = 250  # CoinGecko's largest coins/markets page

PING_PATH = "/ping"
COINS_MARKETS_PATH = "/coins/markets"


def api_key_header(base_url: str) -> str:
    """Name of the header that carries the key for this base URL (pro or demo plan)."""
    return PRO_KEY_HEADER if urlsplit(base_url).hostname == PRO_HOST else DEMO_KEY_HEADER


class CoinGeckoClient(VenueClient):
    """CoinGecko public/demo/pro REST API."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_attempts: int = 4,
        calls_per_minute: int | None = None,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        budget_dir: Path | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: e.g. ``https://api.coingecko.com/api/v3`` or a simulator's ``coingecko_url``.
            api_key: optional key, sent as a header only.
            timeout: (connect, read) timeouts in seconds.
            max_attempts: attempts per request (first try included).
            calls_per_minute: pace to at most this many calls a minute (process-wide per base URL);
                ``None`` leaves pacing to the venue's 429s.
            backoff_base: first retry backoff ceiling in seconds (doubles per attempt, full jitter).
            backoff_max: cap of the backoff ceiling in seconds.
            budget_dir: directory of the budget's state file, shared by every process on the machine
                that names it (Retry-After holds, request slots); ``None``: this process only.
        """
        headers = {api_key_header(base_url): api_key} if api_key else None
        self.budget: WeightBudget = shared_budget(
            VENUE, base_url, limit=calls_per_minute, state_dir=budget_dir
        )
        self.session = VenueSession(
            VENUE,
            base_url,
            timeout=timeout,
            max_attempts=max_attempts,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            budget=self.budget,
            headers=headers,
        )

    def __repr__(self) -> str:
        return f"CoinGeckoClient({self.session.base_url!r})"

    def ping(self) -> None:
        """Check the API answers. Raises :class:`~quant_assets.errors.SourceError` if not."""
        self.session.get_json(PING_PATH)

    def coins_markets(
        self,
        *,
        category: str | None = None,
        vs_currency: str = "usd",
        order: str = "volume_desc",
        per_page: int = MAX_PER_PAGE,
        page: int = 1,
        ids: list[str] | None = None,
    ) -> list[MarketCoin]:
        """One page of ``GET /coins/markets``.

        Args:
            category: CoinGecko category id (e.g. ``layer-1``); ``None`` for all coins.
            vs_currency: currency of prices and volumes.
            order: CoinGecko sort order, e.g. ``volume_desc`` or ``market_cap_desc``.
            per_page: 1-250 coins.
            page: 1-based page number.
            ids: only these CoinGecko ids (CoinGecko's ``ids`` parameter, comma-separated).

        Raises:
            ValueError: `per_page` out of 1-250 or `page` below 1.
            SourceError: the request failed for good (the venue's message included).
        """
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"per_page must be in 1-{MAX_PER_PAGE}, got {per_page}")
        if page < 1:
            raise ValueError(f"page must be >= 1, got {page}")
        params: dict[str, object] = {
            "vs_currency": vs_currency,
            "order": order,
            "per_page": per_page,
            "page": page,
        }
        if category is not None:
            params["category"] = category
        if ids:
            params["ids"] = ",".join(ids)
        return parse_coins_markets(self.session.get_json(COINS_MARKETS_PATH, params))

    def top_by_volume(self, *, category: str | None, limit: int) -> list[MarketCoin]:
        """The `limit` coins with the largest 24h volume (fewer if the venue has fewer).

        Pages through ``coins/markets`` ordered by ``volume_desc`` until `limit` coins arrived or a
        page comes back short. A coin seen on an earlier page is not repeated (pages can shift while
        volumes move between requests).

        Raises:
            ValueError: `limit` below 0.
            SourceError: a request failed for good.
        """
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        per_page = min(MAX_PER_PAGE, max(limit, 1))
        coins: list[MarketCoin] = []
        seen: set[str] = set()
        page = 1
        while len(coins) < limit:
            batch = self.coins_markets(category=category, per_page=per_page, page=page)
            for coin in batch:
                if coin.id not in seen:
                    seen.add(coin.id)
                    coins.append(coin)
            if len(batch) < per_page:
                break
            page += 1
        return coins[:limit]
