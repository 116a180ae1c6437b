"""Dagster resources: configuration from QT_* variables, and factories for the plain domain objects.

A resource only builds a plain object (a client, the lake); the domain code never sees Dagster.
A variable that is set reaches the resource as ``EnvVar`` (the UI shows its name); one that is unset
takes the documented default, so nothing fails later because a variable was missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
from pydantic import Field

from quant_assets.settings import DEFAULTS
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.coingecko import CoinGeckoClient
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake


class LakeResource(dg.ConfigurableResource):
    """The Parquet lake and its DuckDB catalog under ``data_dir``."""

    data_dir: str = Field(default="./data", description="env QT_DATA_DIR: lake and catalog root")

    def lake(self) -> Lake:
        return Lake(Path(self.data_dir))

    def catalog(self) -> Catalog:
        return Catalog(self.lake())


class BinanceResource(dg.ConfigurableResource):
    """Binance USD-M futures REST API (or anything that speaks it, such as the simulator)."""

    base_url: str = Field(default="https://fapi.binance.com", description="env QT_BINANCE_FAPI_URL")
    weight_per_minute: int = Field(
        default=2400, description="env QT_BINANCE_WEIGHT_PER_MINUTE: request weight spent per minute"
    )

    def client(self) -> BinanceFuturesClient:
        return BinanceFuturesClient(self.base_url.rstrip("/"), weight_per_minute=self.weight_per_minute)


class CoinGeckoResource(dg.ConfigurableResource):
    """CoinGecko REST API v3."""

    base_url: str = Field(default="https://api.coingecko.com/api/v3", description="env QT_COINGECKO_API_URL")
    api_key: str | None = Field(default=None, description="env QT_COINGECKO_API_KEY (never logged)")

    def client(self) -> CoinGeckoClient:
        return CoinGeckoClient(self.base_url.rstrip("/"), api_key=self.api_key or None)


class CollectionConfig(dg.ConfigurableResource):
    """What the pipeline collects: universe size and rule, and how much history."""

    max_symbols: int = Field(default=100, description="env QT_MAX_SYMBOLS: universe size")
    universe: str = Field(default="l1l2-top", description="env QT_UNIVERSE: universe rule")
    lookback_days: int = Field(
        default=90, description="env QT_DATA_LOOKBACK_DAYS: history kept and backfilled per symbol"
    )
    universe_refresh_hours: int = Field(
        default=24, description="env QT_UNIVERSE_REFRESH_HOURS: how often the universe is refreshed"
    )


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of :data:`quant_assets.definitions.defs`.

    With `env` None, each variable set in the process environment becomes ``EnvVar(name)`` (resolved
    when a run starts; the UI shows its name), and each unset one its default. With an explicit
    `env` mapping (tests, tools), values are taken from it literally.
    """

    def _value(name: str, *, as_int: bool = False) -> object:
        if env is None and os.environ.get(name):
            return dg.EnvVar.int(name) if as_int else dg.EnvVar(name)
        raw = (env or {}).get(name) or DEFAULTS[name]
        return int(raw) if as_int and raw is not None else raw

    return {
        "lake": LakeResource(data_dir=_value("QT_DATA_DIR")),
        "binance": BinanceResource(
            base_url=_value("QT_BINANCE_FAPI_URL"),
            weight_per_minute=_value("QT_BINANCE_WEIGHT_PER_MINUTE", as_int=True),
        ),
        "coingecko": CoinGeckoResource(
            base_url=_value("QT_COINGECKO_API_URL"), api_key=_value("QT_COINGECKO_API_KEY")
        ),
        "collection": CollectionConfig(
            max_symbols=_value("QT_MAX_SYMBOLS", as_int=True),
            universe=_value("QT_UNIVERSE"),
            lookback_days=_value("QT_DATA_LOOKBACK_DAYS", as_int=True),
            universe_refresh_hours=_value("QT_UNIVERSE_REFRESH_HOURS", as_int=True),
        ),
    }
