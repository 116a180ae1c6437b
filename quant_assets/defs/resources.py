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
from quant_assets.sources.coingecko import CoinGeckoClient
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake

DOMAIN_LOGGER = "quant_assets"  # the logger tree the domain code logs under
_ENV_VAR_TYPES = (dg.EnvVar, type(dg.EnvVar.int("QT_MAX_SYMBOLS")))  # resolved only when a run starts


def setting_field(env: str) -> Any:
    """A resource field bound to QT_* setting `env`: its default, its meaning, and its validator."""
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
        field = cls.model_fields.get(info.field_name or "")
        extra = field.json_schema_extra if field is not None else None
        env = extra.get("qt_setting") if isinstance(extra, dict) else None
        if not isinstance(env, str) or isinstance(value, _ENV_VAR_TYPES):
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

    def client(self) -> BinanceFuturesClient:
        return BinanceFuturesClient(self.base_url.rstrip("/"), weight_per_minute=self.weight_per_minute)


class CoinGeckoResource(QuantResource):
    """CoinGecko REST API v3."""

    base_url: str = setting_field("QT_COINGECKO_API_URL")
    api_key: str | None = setting_field("QT_COINGECKO_API_KEY")

    def client(self) -> CoinGeckoClient:
        return CoinGeckoClient(self.base_url.rstrip("/"), api_key=self.api_key or None)


class CollectionConfig(QuantResource):
    """What the pipeline collects: universe size and rule, and how much history."""

    max_symbols: int = setting_field("QT_MAX_SYMBOLS")
    universe: str = setting_field("QT_UNIVERSE")
    lookback_days: int = setting_field("QT_DATA_LOOKBACK_DAYS")


# Which resource field each setting configures (QT_HISTORY_START is read by defs/partitions.py).
_FIELDS: dict[str, tuple[str, str]] = {
    "QT_DATA_DIR": ("lake", "data_dir"),
    "QT_BINANCE_FAPI_URL": ("binance", "base_url"),
    "QT_BINANCE_WEIGHT_PER_MINUTE": ("binance", "weight_per_minute"),
    "QT_COINGECKO_API_URL": ("coingecko", "base_url"),
    "QT_COINGECKO_API_KEY": ("coingecko", "api_key"),
    "QT_MAX_SYMBOLS": ("collection", "max_symbols"),
    "QT_UNIVERSE": ("collection", "universe"),
    "QT_DATA_LOOKBACK_DAYS": ("collection", "lookback_days"),
}
_CLASSES: dict[str, type[QuantResource]] = {
    "lake": LakeResource,
    "binance": BinanceResource,
    "coingecko": CoinGeckoResource,
    "collection": CollectionConfig,
}


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
    fields: dict[str, dict[str, object]] = {key: {} for key in _CLASSES}
    for name, (key, field) in _FIELDS.items():
        if name in given:
            as_int = _CLASSES[key].model_fields[field].annotation is int
            fields[key][field] = dg.EnvVar.int(name) if as_int else dg.EnvVar(name)
        elif env is not None and (env.get(name) or "").strip():
            fields[key][field] = env[name]
    return {key: cls(**fields[key]) for key, cls in _CLASSES.items()}


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
