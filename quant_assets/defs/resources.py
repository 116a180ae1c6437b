"""Dagster resources: configuration from QT_* variables, and factories for the plain domain objects.

A resource only builds a plain object (a client, the lake); the domain code never sees Dagster.

Configuration: each field bound to a QT_* setting is checked by that setting's validator in
:mod:`quant_assets.settings` (a pydantic validator), whatever the value came from: a variable that is
set reaches the resource as ``dg.EnvVar`` (the UI shows its name; the value is resolved and checked
when a run or a sensor tick starts, so a bad value fails it with a message naming the variable), an
unset one takes the documented default, and the Launchpad or a test may give a value of its own.

Logs: while a run uses any of these resources, what the domain code logs under the ``quant_assets``
logger tree (retries, Retry-After holds, budget waits, a busy catalog, collection warnings), from any
thread, is forwarded to the run's event log, whatever the instance's ``dagster.yaml`` says.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from quant_assets import settings
from quant_assets.log_forwarding import RunLogForwarder
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.binance_archive import BinanceArchiveClient
from quant_assets.sources.budget import budget_dir_of
from quant_assets.sources.bybit import BybitClient
from quant_assets.sources.coingecko import CoinGeckoClient
from quant_assets.sources.okx import OkxClient
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake

DOMAIN_LOGGER = "quant_assets"  # the logger tree the domain code logs under
_ENV_VAR_TYPES = (dg.EnvVar, type(dg.EnvVar.int("QT_MAX_SYMBOLS")))  # resolved only when a run starts


def setting_field(env: str) -> Any:
    """A resource field bound to QT_* setting `env`: its default, its meaning, and its validator.

    A new setting: add it to ``quant_assets.settings.SETTINGS`` (name, default, meaning, validator)
    and declare the field with this; :func:`build_resources` then gives it ``EnvVar(env)`` when set.
    """
    setting = settings.SETTING_BY_NAME[env]
    return Field(
        default=settings.default(env),
        description=f"env {env}: {setting.meaning}",
        json_schema_extra={"qt_setting": env},
    )


class QuantResource(dg.ConfigurableResource):
    """Base of this project's resources: QT_* fields checked by settings.py; run logs forwarded."""

    @field_validator("*", mode="before")
    @classmethod
    def _check_setting(cls, value: Any, info: ValidationInfo) -> Any:
        env = bound_setting(cls, info.field_name or "")
        if env is None or isinstance(value, _ENV_VAR_TYPES):
            return value  # not a setting, or an EnvVar checked once the run resolves it
        return settings.check(env, value)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """Start of a run: refuse any invalid QT_* variable, then forward the domain's logs."""
        _start_run(context)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        _end_run(context)


class LakeResource(QuantResource):
    """The Parquet lake and its DuckDB catalog under ``data_dir``."""

    data_dir: str = setting_field("QT_DATA_DIR")

    def lake(self) -> Lake:
        return Lake(Path(self.data_dir))

    def catalog(self) -> Catalog:
        return Catalog(self.lake())


class BinanceResource(QuantResource):
    """Binance USD-M futures REST API (or anything that speaks it, such as the simulator)."""

    base_url: str = setting_field("QT_BINANCE_FAPI_URL")
    weight_per_minute: int = setting_field("QT_BINANCE_WEIGHT_PER_MINUTE")
    # The weight budget and Retry-After holds live in <data_dir>/.budget, shared by every process.
    data_dir: str = setting_field("QT_DATA_DIR")

    def client(self) -> BinanceFuturesClient:
        return BinanceFuturesClient(
            self.base_url.rstrip("/"),
            weight_per_minute=self.weight_per_minute,
            budget_dir=budget_dir_of(Path(self.data_dir)),
        )

    # Binance's data archive (data.binance.vision layout); unset: every day comes from REST.
    archive_url: str | None = setting_field("QT_BINANCE_ARCHIVE_URL")

    def archive_client(self) -> BinanceArchiveClient | None:
        return BinanceArchiveClient(self.archive_url) if self.archive_url else None


class CoinGeckoResource(QuantResource):
    """CoinGecko REST API v3."""

    base_url: str = setting_field("QT_COINGECKO_API_URL")
    api_key: str | None = setting_field("QT_COINGECKO_API_KEY")
    data_dir: str = setting_field("QT_DATA_DIR")  # Retry-After holds shared in <data_dir>/.budget

    def client(self) -> CoinGeckoClient:
        return CoinGeckoClient(
            self.base_url.rstrip("/"),
            api_key=self.api_key or None,
            budget_dir=budget_dir_of(Path(self.data_dir)),
        )


class VenuesResource(QuantResource):
    """The venues whose candles ohlcv collects (Binance always; Bybit and OKX when enabled)."""

    venues: str = setting_field("QT_VENUES")
    bybit_url: str = setting_field("QT_BYBIT_API_URL")
    okx_url: str = setting_field("QT_OKX_API_URL")
    cross_venue_max_bp: int = setting_field("QT_CROSS_VENUE_MAX_BP")
    # Each venue's request budget and holds live in <data_dir>/.budget, shared by every process.
    data_dir: str = setting_field("QT_DATA_DIR")

    def enabled(self) -> tuple[str, ...]:
        """The enabled venues, binance first."""
        return tuple(self.venues.split(","))

    def bybit_client(self) -> BybitClient:
        return BybitClient(self.bybit_url.rstrip("/"), budget_dir=budget_dir_of(Path(self.data_dir)))

    # How often a closed OKX candle served unconfirmed is asked for again, and the first pause (s).
    okx_confirm_attempts: int = Field(
        default=5, description="requests of an OKX window with an unconfirmed closed candle"
    )
    okx_confirm_wait_seconds: float = Field(
        default=1.0, description="first pause before asking OKX again (doubles)"
    )

    def okx_client(self) -> OkxClient:
        return OkxClient(
            self.okx_url.rstrip("/"),
            confirm_attempts=self.okx_confirm_attempts,
            confirm_wait_seconds=self.okx_confirm_wait_seconds,
            budget_dir=budget_dir_of(Path(self.data_dir)),
        )


class CollectionConfig(QuantResource):
    """What the pipeline collects: universe size and rule, and how much history."""

    max_symbols: int = setting_field("QT_MAX_SYMBOLS")
    universe: str = setting_field("QT_UNIVERSE")
    lookback_days: int = setting_field("QT_DATA_LOOKBACK_DAYS")


# The resources of the definitions, by key. QT_HISTORY_START is no field: defs/partitions.py reads it.
_CLASSES: dict[str, type[QuantResource]] = {
    "lake": LakeResource,
    "binance": BinanceResource,
    "coingecko": CoinGeckoResource,
    "venues": VenuesResource,
    "collection": CollectionConfig,
}


def bound_setting(cls: type[QuantResource], field: str) -> str | None:
    """The QT_* setting that field `field` of `cls` is bound to (see :func:`setting_field`), if any."""
    info = cls.model_fields.get(field)
    extra = info.json_schema_extra if info is not None else None
    env = extra.get("qt_setting") if isinstance(extra, dict) else None
    return env if isinstance(env, str) else None


def build_resources(env: Mapping[str, str] | None = None) -> dict[str, dg.ConfigurableResource]:
    """The resources of :data:`quant_assets.definitions.defs`.

    With `env` None, each QT_* variable set in the process environment becomes ``dg.EnvVar(name)``
    (only its presence is looked at here; its value is resolved and checked when a run starts, and
    the UI shows the variable's name), and each unset one its default. With an explicit `env` mapping
    (tests, tools), values are taken from it and checked now.

    Raises:
        pydantic.ValidationError: a value of `env` is invalid; the message names the variable.
    """
    given = settings.configured() if env is None else frozenset()
    resources: dict[str, dg.ConfigurableResource] = {}
    for key, cls in _CLASSES.items():
        values: dict[str, object] = {}
        for field, info in cls.model_fields.items():
            name = bound_setting(cls, field)
            if name is None:
                continue
            if name in given:
                values[field] = dg.EnvVar.int(name) if info.annotation is int else dg.EnvVar(name)
            elif env is not None and (env.get(name) or "").strip():
                values[field] = env[name]
        resources[key] = cls(**values)
    return resources


# ---------------------------------------------------------------------------------------- run logs
# Every resource of a run calls setup/teardown; one forwarder per run, attached by the first and
# detached by the last.
_FORWARDERS: dict[str, tuple[RunLogForwarder | None, int]] = {}
_FORWARDERS_LOCK = threading.Lock()


def _start_run(context: dg.InitResourceContext) -> None:
    run, log = context.run, context.log
    if run is None or log is None:  # a sensor tick or a bare build_resources(): no run log
        return
    run_id = run.run_id
    with _FORWARDERS_LOCK:
        forwarder, users = _FORWARDERS.get(run_id, (None, 0))
        if users == 0:
            # Every QT_* variable of the process, used by this run's resources or not, is checked as
            # the CLI checks them: a bad one fails the run at start, named, whatever the selection.
            settings.Settings.from_env()
            managed = tuple(context.instance.managed_python_loggers) if context.instance else ()
            # The run's own log manager, without the "resource:<name>" tag of this init context.
            target = log.with_tags(resource_name=None, resource_fn_name=None)  # type: ignore[arg-type]
            forwarder = RunLogForwarder(target, skip_loggers=managed)
            forwarder.attach(logging.getLogger(DOMAIN_LOGGER))
        _FORWARDERS[run_id] = (forwarder, users + 1)


def _end_run(context: dg.InitResourceContext) -> None:
    if context.run is None:
        return
    run_id = context.run.run_id
    with _FORWARDERS_LOCK:
        forwarder, users = _FORWARDERS.get(run_id, (None, 0))
        if users <= 1:
            _FORWARDERS.pop(run_id, None)
            if forwarder is not None:
                forwarder.detach()
        else:
            _FORWARDERS[run_id] = (forwarder, users - 1)
