"""Every QT_* setting: its name, default, meaning and validation, in one place.

Domain modules never read ``os.environ``; they receive values. Two readers use this module:

* the Dagster resources (``defs/resources.py``) take each variable that is set as ``dg.EnvVar``,
  resolved when a run (or a sensor tick) starts, and their pydantic validators call :func:`check`,
  so a bad value fails the run at start with a message naming the variable;
* the ``quant-assets`` CLI and plain-Python callers call :meth:`Settings.from_env`, which calls the
  same :func:`check` for every setting.

``QT_HISTORY_START`` is the exception: partitions are built when the definitions are loaded, so it is
read once then, by :func:`history_start` (``defs/partitions.py``).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from quant_assets.errors import ConfigError

_T = TypeVar("_T")

UNIVERSE_RULES = ("l1l2-top",)  # the rules quant_assets.universe implements


def positive_int(name: str, raw: object) -> int:
    """`raw` (text or int) as an integer >= 1; raises :class:`ConfigError` naming `name`."""
    problem = ConfigError(f"{name}={str(raw)!r}: expected a positive integer")  # as the variable reads
    if isinstance(raw, bool):
        raise problem
    try:
        value = int(raw) if isinstance(raw, int) else int(str(raw).strip())
    except ValueError:
        raise problem from None
    if value <= 0:
        raise problem
    return value


def http_url(name: str, raw: object) -> str:
    """`raw` as an http(s) base URL without its trailing ``/``."""
    text = str(raw).strip() if raw is not None else ""
    if not text.startswith(("http://", "https://")) or len(text.rstrip("/")) <= len("https://"):
        raise ConfigError(f"{name}={raw!r}: expected an http(s) URL, e.g. https://fapi.binance.com")
    return text.rstrip("/")


def universe_rule(name: str, raw: object) -> str:
    """`raw` if it names a universe rule :mod:`quant_assets.universe` implements."""
    if raw not in UNIVERSE_RULES:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(UNIVERSE_RULES)}")
    return str(raw)


def directory(name: str, raw: object) -> str:
    """`raw` as a directory path (relative paths are relative to the process's working directory)."""
    text = str(raw).strip() if raw is not None else ""
    if not text or "\x00" in text:
        raise ConfigError(f"{name}={raw!r}: expected a directory path, e.g. ./data")
    return text


def model_profile(name: str, raw: object) -> str:
    """`raw` as a model profile: ``full`` (the benchmarked configs) or ``small`` (tests and demos)."""
    text = str(raw).strip().lower()
    if text not in ("full", "small"):
        raise ConfigError(f"{name}={str(raw)!r}: expected full or small")
    return text


def optional_text(name: str, raw: object) -> str | None:
    """`raw` as text, or None when empty (an optional secret such as an API key)."""
    del name  # every text is acceptable; kept for the validators' common signature
    text = str(raw).strip() if raw is not None else ""
    return text or None


def optional_http_url(name: str, raw: object) -> str | None:
    """`raw` as an http(s) URL (checked as :func:`http_url`), or None when empty: the feature is off."""
    text = str(raw).strip() if raw is not None else ""
    return http_url(name, text) if text else None


def iso_date(name: str, raw: object) -> dt.date:
    """`raw` as a calendar day written YYYY-MM-DD (a UTC day)."""
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw
    text = str(raw).strip() if raw is not None else ""
    try:
        if len(text) != len("2026-01-01"):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{name}={raw!r}: expected a date written YYYY-MM-DD, e.g. 2026-01-01") from None


EXECUTORS = ("in_process", "multiprocess", "celery")  # the values of QT_EXECUTOR
CELERY_URL_SCHEMES = ("redis://", "rediss://", "amqp://", "pyamqp://", "sqs://")


def executor_name(name: str, raw: object) -> str:
    """`raw` if it names one of :data:`EXECUTORS`."""
    text = str(raw).strip()
    if text not in EXECUTORS:
        raise ConfigError(f"{name}={raw!r}: expected one of {', '.join(EXECUTORS)}")
    return text


def celery_url(name: str, raw: object) -> str:
    """`raw` as a Celery broker or backend URL, e.g. redis://host:6379/0."""
    text = str(raw).strip() if raw is not None else ""
    if not text.startswith(CELERY_URL_SCHEMES) or len(text) <= len("redis://"):
        raise ConfigError(f"{name}={raw!r}: expected a Celery URL, e.g. redis://127.0.0.1:6379/0")
    return text


def executor_choice(env: Mapping[str, str] | None = None) -> str:
    """``QT_EXECUTOR`` from `env` (default ``os.environ``): how runs execute their steps."""
    env = os.environ if env is None else env
    return _as(str, check("QT_EXECUTOR", env.get("QT_EXECUTOR")))


VENUES = ("binance", "bybit", "okx")  # venues whose candles the ohlcv asset can collect


def venue_list(name: str, raw: object) -> str:
    """`raw` as comma-separated venues of :data:`VENUES`, binance first (the universe's venue)."""
    given = [part.strip().lower() for part in str(raw).split(",") if part.strip()]
    unknown = [v for v in given if v not in VENUES]
    if unknown or "binance" not in given:
        raise ConfigError(
            f"{name}={raw!r}: expected venues among {', '.join(VENUES)}, comma-separated, binance "
            "included (the universe's symbols and the features come from it), e.g. binance,bybit,okx"
        )
    return ",".join(v for v in VENUES if v in given)


@dataclass(frozen=True)
class Setting:
    """One environment variable: name, default (as text), what it means and how it is checked."""

    env: str
    default: str | None
    meaning: str
    parse: Callable[[str, object], object]

    def value(self, raw: object) -> object:
        """The checked value of `raw`; None or empty text means the default."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            raw = self.default
        return None if raw is None else self.parse(self.env, raw)


SETTINGS: tuple[Setting, ...] = (
    Setting("QT_DATA_DIR", "./data", "lake and catalog root", directory),
    Setting("QT_MAX_SYMBOLS", "100", "universe size", positive_int),
    Setting(
        "QT_UNIVERSE", "l1l2-top", "universe rule: base + Layer-1 + Layer-2 by 24h volume", universe_rule
    ),
    Setting("QT_DATA_LOOKBACK_DAYS", "90", "history kept and backfilled per symbol", positive_int),
    Setting(
        "QT_HISTORY_START",
        "2026-01-01",
        "first partition day (UTC) of every partitioned asset; read when the definitions load",
        iso_date,
    ),
    Setting("QT_BINANCE_FAPI_URL", "https://fapi.binance.com", "Binance USD-M futures REST base", http_url),
    Setting(
        "QT_BINANCE_WEIGHT_PER_MINUTE", "2400", "request weight the client spends per minute", positive_int
    ),
    Setting(
        "QT_BINANCE_ARCHIVE_URL",
        None,
        "Binance data archive base (https://data.binance.vision); set, a backfill over more than one day "
        "takes every day the archive holds from its verified daily zips (no API weight) and the rest from REST",
        optional_http_url,
    ),
    Setting("QT_COINGECKO_API_URL", "https://api.coingecko.com/api/v3", "CoinGecko REST base", http_url),
    Setting("QT_COINGECKO_API_KEY", None, "optional key, sent as a header, never logged", optional_text),
    Setting(
        "QT_VENUES",
        "binance",
        "venues whose candles ohlcv collects, comma-separated (binance,bybit,okx); binance is always in",
        venue_list,
    ),
    Setting("QT_BYBIT_API_URL", "https://api.bybit.com", "Bybit v5 REST base", http_url),
    Setting("QT_OKX_API_URL", "https://www.okx.com", "OKX v5 REST base", http_url),
    Setting(
        "QT_CROSS_VENUE_MAX_BP",
        "50",
        "ohlcv cross_venue_close fails when a venue's close is further than this (basis points) from the venues' median",
        positive_int,
    ),
    Setting(
        "QT_MODEL_TRAIN_DAYS",
        "60",
        "days of features a model asset trains on (split by time into train, validation and test)",
        positive_int,
    ),
    Setting(
        "QT_MODEL_PROFILE",
        "full",
        "model configs of a training run that does not name them (sensors, the UI): full or small",
        model_profile,
    ),
    Setting(
        "QT_SENSOR_INTERVAL_SECONDS",
        None,
        "when set, every sensor is evaluated at most this often; unset, each sensor's own (60-300 s)",
        positive_int,
    ),
    Setting(
        "QT_RETRAIN_EVERY_DAYS",
        "7",
        "retrain_sensor retrains a model once this many feature_table days newer than its training have landed",
        positive_int,
    ),
    Setting(
        "QT_EXECUTOR",
        "in_process",
        "how a run executes its steps: in_process, multiprocess or celery; read when the definitions load",
        executor_name,
    ),
    Setting(
        "QT_CELERY_BROKER",
        "redis://127.0.0.1:6379/0",
        "Celery broker URL (QT_EXECUTOR=celery); the workers read the same variable",
        celery_url,
    ),
    Setting(
        "QT_CELERY_BACKEND",
        "redis://127.0.0.1:6379/1",
        "Celery result backend URL (QT_EXECUTOR=celery); the workers read the same variable",
        celery_url,
    ),
)
SETTING_BY_NAME: dict[str, Setting] = {s.env: s for s in SETTINGS}
DEFAULTS: dict[str, str | None] = {s.env: s.default for s in SETTINGS}


def check(name: str, raw: object) -> object:
    """The checked value of setting `name` given `raw`; None or empty text gives its default.

    Raises:
        ConfigError: `raw` is not a valid value; the message names the variable and what was expected.
        KeyError: `name` is not a QT_* setting of :data:`SETTINGS`.
    """
    return SETTING_BY_NAME[name].value(raw)


def default(name: str) -> object:
    """The checked default of setting `name` (None for an optional setting without one)."""
    return check(name, None)


def configured(env: Mapping[str, str] | None = None) -> frozenset[str]:
    """The names of the settings given a non-empty value in `env` (default ``os.environ``)."""
    env = os.environ if env is None else env
    return frozenset(s.env for s in SETTINGS if (env.get(s.env) or "").strip())


def history_start(env: Mapping[str, str] | None = None) -> dt.date:
    """``QT_HISTORY_START`` from `env` (default ``os.environ``): the first partition day."""
    env = os.environ if env is None else env
    return _as(dt.date, check("QT_HISTORY_START", env.get("QT_HISTORY_START")))


def sensor_interval(own_seconds: int, env: Mapping[str, str] | None = None) -> int:
    """A sensor's minimum interval: `QT_SENSOR_INTERVAL_SECONDS` when set, else the sensor's own."""
    raw = check(
        "QT_SENSOR_INTERVAL_SECONDS", (os.environ if env is None else env).get("QT_SENSOR_INTERVAL_SECONDS")
    )
    return own_seconds if raw is None else _as(int, raw)


def default_model_profile(env: Mapping[str, str] | None = None) -> str:
    """The model profile of a training run whose config does not name one (`QT_MODEL_PROFILE`)."""
    return _as(str, check("QT_MODEL_PROFILE", (os.environ if env is None else env).get("QT_MODEL_PROFILE")))


def lookback_start(lookback_days: object, today: dt.date | None = None) -> dt.date:
    """The first day of a lookback of `lookback_days` complete UTC days ending yesterday.

    `lookback_days` is checked as ``QT_DATA_LOOKBACK_DAYS`` (text or int); `today` defaults to the
    UTC date of the wall clock. ``make dev`` and ``quant-assets demo`` set ``QT_HISTORY_START`` to it.
    """
    today = today or dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=positive_int("QT_DATA_LOOKBACK_DAYS", lookback_days))


@dataclass(frozen=True)
class Settings:
    """The effective configuration, parsed and checked; build it with :meth:`from_env`."""

    data_dir: Path
    max_symbols: int
    universe: str
    lookback_days: int
    history_start: dt.date
    binance_fapi_url: str
    binance_weight_per_minute: int
    coingecko_api_url: str
    coingecko_api_key: str | None = field(repr=False)  # a secret: never in a repr or a log
    model_train_days: int = 60
    venues: str = "binance"
    bybit_api_url: str = "https://api.bybit.com"
    okx_api_url: str = "https://www.okx.com"
    cross_venue_max_bp: int = 50

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read and check every QT_* variable of `env` (default ``os.environ``); unset ones take defaults.

        Raises:
            ConfigError: the first invalid variable, named, with what was expected.
        """
        env = os.environ if env is None else env
        values = {s.env: s.value(env.get(s.env)) for s in SETTINGS}
        return cls(
            data_dir=Path(str(values["QT_DATA_DIR"])),
            max_symbols=_as(int, values["QT_MAX_SYMBOLS"]),
            universe=_as(str, values["QT_UNIVERSE"]),
            lookback_days=_as(int, values["QT_DATA_LOOKBACK_DAYS"]),
            history_start=_as(dt.date, values["QT_HISTORY_START"]),
            binance_fapi_url=_as(str, values["QT_BINANCE_FAPI_URL"]),
            binance_weight_per_minute=_as(int, values["QT_BINANCE_WEIGHT_PER_MINUTE"]),
            coingecko_api_url=_as(str, values["QT_COINGECKO_API_URL"]),
            coingecko_api_key=_optional(str, values["QT_COINGECKO_API_KEY"]),
            model_train_days=_as(int, values["QT_MODEL_TRAIN_DAYS"]),
            venues=_as(str, values["QT_VENUES"]),
            bybit_api_url=_as(str, values["QT_BYBIT_API_URL"]),
            okx_api_url=_as(str, values["QT_OKX_API_URL"]),
            cross_venue_max_bp=_as(int, values["QT_CROSS_VENUE_MAX_BP"]),
        )


def _as(kind: type[_T], value: object) -> _T:
    assert isinstance(value, kind), (kind, value)  # each Setting's parser returns its kind
    return value


def _optional(kind: type[_T], value: object) -> _T | None:
    return None if value is None else _as(kind, value)
