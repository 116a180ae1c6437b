"""Every QT_* setting: its name, default and meaning in one place.

Domain modules never read ``os.environ``; they receive values. The Dagster resources read these
names through ``EnvVar`` and fall back to the same defaults, so the web UI shows the effective config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from quant_assets.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One environment variable: name, default (as text) and what it means."""

    env: str
    default: str | None
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting("QT_DATA_DIR", "./data", "lake and catalog root"),
    Setting("QT_MAX_SYMBOLS", "100", "universe size"),
    Setting("QT_UNIVERSE", "l1l2-top", "universe rule: base + Layer-1 + Layer-2 by 24h volume"),
    Setting("QT_UNIVERSE_REFRESH_HOURS", "24", "how often the universe is refreshed"),
    Setting("QT_DATA_LOOKBACK_DAYS", "90", "history kept and backfilled per symbol"),
    Setting("QT_BINANCE_FAPI_URL", "https://fapi.binance.com", "Binance USD-M futures REST base"),
    Setting("QT_BINANCE_WEIGHT_PER_MINUTE", "2400", "request weight the client spends per minute"),
    Setting("QT_COINGECKO_API_URL", "https://api.coingecko.com/api/v3", "CoinGecko REST base"),
    Setting("QT_COINGECKO_API_KEY", None, "optional key, sent as a header, never logged"),
    Setting("QT_BYBIT_API_URL", "https://api.bybit.com", "Bybit v5 REST base"),
    Setting("QT_OKX_API_URL", "https://www.okx.com", "OKX v5 REST base"),
    Setting("QT_BINANCE_ARCHIVE_URL", "https://data.binance.vision", "Binance public archive"),
    Setting("QT_VENUES", "binance", "venues collected, comma-separated (binance,bybit,okx)"),
)
DEFAULTS: dict[str, str | None] = {s.env: s.default for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The effective configuration, parsed and checked."""

    data_dir: Path = Path("./data")
    max_symbols: int = 100
    universe: str = "l1l2-top"
    universe_refresh_hours: int = 24
    lookback_days: int = 90
    binance_fapi_url: str = "https://fapi.binance.com"
    binance_weight_per_minute: int = 2400
    coingecko_api_url: str = "https://api.coingecko.com/api/v3"
    coingecko_api_key: str | None = field(default=None, repr=False)
    bybit_api_url: str = "https://api.bybit.com"
    okx_api_url: str = "https://www.okx.com"
    binance_archive_url: str = "https://data.binance.vision"
    venues: tuple[str, ...] = ("binance",)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every QT_* variable from `env` (default ``os.environ``); unset ones take defaults."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else DEFAULTS[name]

        return cls(
            data_dir=Path(get("QT_DATA_DIR") or "./data"),
            max_symbols=_positive_int("QT_MAX_SYMBOLS", get("QT_MAX_SYMBOLS")),
            universe=_one_of("QT_UNIVERSE", get("QT_UNIVERSE"), UNIVERSE_RULES),
            universe_refresh_hours=_positive_int(
                "QT_UNIVERSE_REFRESH_HOURS", get("QT_UNIVERSE_REFRESH_HOURS")
            ),
            lookback_days=_positive_int("QT_DATA_LOOKBACK_DAYS", get("QT_DATA_LOOKBACK_DAYS")),
            binance_fapi_url=_url("QT_BINANCE_FAPI_URL", get("QT_BINANCE_FAPI_URL")),
            binance_weight_per_minute=_positive_int(
                "QT_BINANCE_WEIGHT_PER_MINUTE", get("QT_BINANCE_WEIGHT_PER_MINUTE")
            ),
            coingecko_api_url=_url("QT_COINGECKO_API_URL", get("QT_COINGECKO_API_URL")),
            coingecko_api_key=get("QT_COINGECKO_API_KEY"),
            bybit_api_url=_url("QT_BYBIT_API_URL", get("QT_BYBIT_API_URL")),
            okx_api_url=_url("QT_OKX_API_URL", get("QT_OKX_API_URL")),
            binance_archive_url=_url("QT_BINANCE_ARCHIVE_URL", get("QT_BINANCE_ARCHIVE_URL")),
            venues=tuple(
                _one_of("QT_VENUES", v.strip(), COLLECTED_VENUES)
                for v in (get("QT_VENUES") or "binance").split(",")
                if v
            ),
        )


UNIVERSE_RULES = ("l1l2-top",)  # the rules quant_assets.universe implements
COLLECTED_VENUES = ("binance",)  # venues with a collector today (Bybit and OKX: not yet)


def _one_of(name: str, raw: str | None, allowed: tuple[str, ...]) -> str:
    if raw not in allowed:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(allowed)}")
    return raw


def _positive_int(name: str, raw: str | None) -> int:
    try:
        value = int(raw or "")
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a positive integer") from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r}: expected a positive integer")
    return value


def _url(name: str, raw: str | None) -> str:
    if not raw or not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name}={raw!r}: expected an http(s) URL")
    return raw.rstrip("/")
