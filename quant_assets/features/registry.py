"""The one list of features: each declared once, with its name, group, lookback and computation.

The order of :data:`FEATURES` is the column order of every feature table; :func:`feature_schema`
fingerprints it, so a model trained on one set of features can never be fed another
(:func:`check_schema`). Labels are not here (``labels.py``): nothing forward-looking can become an
input by accident.
"""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, partial
from typing import Any, Literal

import numpy as np
import pandas as pd
import talib

from quant_assets.errors import SchemaMismatchError
from quant_assets.features import (
    calendar,
    candles,
    cross_section,
    kbar,
    returns,
    rolling,
    talib_features,
    volatility,
    volume,
)
from quant_assets.features.candles import FIVE_MINUTES_MS

# Bump when the meaning of a feature changes in a way its source cannot show (e.g. a new TA-Lib
# default). Source changes of compute functions and their helpers change the hash by themselves.
FEATURE_LIBRARY_VERSION = "1"

Scope = Literal["symbol", "cross_section"]


@dataclass(frozen=True)
class Feature:
    """One feature column.

    Attributes:
        name: column name, ``<family>_<window in bars>`` (``ret_12``, ``rsi_14``).
        group: family shown in the ``feature_catalog`` view.
        lookback: bars before the first defined value: at a symbol's bar index ``lookback`` (0-based,
            gaps not counted) the value is first defined, before it NaN.
        compute: for scope ``symbol``, ``Candles -> array`` over one symbol's bars; for scope
            ``cross_section``, ``CrossSection -> array`` over all rows.
        description: what it measures, its unit or range, and why it is scale-free.
        settle: extra bars a recursive indicator needs before its seed stops mattering at 1e-9
            (0 for finite windows).
        scope: ``symbol`` (the symbol's own bars, plus BTCUSDT's) or ``cross_section`` (all symbols
            at the same open time; computed after every ``symbol`` feature, which it may read).
        nan_when: when the value is NaN even after the lookback, on valid candles (no volume, no
            BTCUSDT...); empty when it is then always a number. Documentation, not hashed.
    """

    name: str
    group: str
    lookback: int
    compute: Callable[[Any], np.ndarray]
    description: str
    settle: int = 0
    scope: Scope = "symbol"
    nan_when: str = ""

    @property
    def warmup_bars(self) -> int:
        """Trailing bars per symbol (current bar included) that reproduce this feature's batch value."""
        return self.lookback + self.settle + 1


RETURN_HORIZONS = (1, 3, 6, 12, 24, 48, 96, 288)  # bars: 5 min .. 1 day
VOL_WINDOWS = (12, 48, 288)
ROLLING_WINDOWS = (12, 48)


def _returns() -> list[Feature]:
    return [
        Feature(
            f"ret_{k}",
            "returns",
            k,
            partial(returns.log_return, bars=k),
            f"log return ln(close_t / close_(t-{k} bars)), {k * 5} min without gaps; unitless",
        )
        for k in RETURN_HORIZONS
    ]


def _volatility() -> list[Feature]:
    features = [
        Feature(
            f"rvol_{w}",
            "volatility",
            w,
            partial(volatility.realized_vol, window=w),
            f"root mean square of the last {w} 1-bar log returns; per-bar volatility, unitless",
        )
        for w in VOL_WINDOWS
    ]
    features += [
        Feature(
            f"parkinson_{w}",
            "volatility",
            w - 1,
            partial(volatility.parkinson_vol, window=w),
            f"Parkinson volatility from ln(high/low) over {w} bars; per-bar, unitless",
        )
        for w in VOL_WINDOWS
    ]
    features.append(
        Feature(
            "rvol_ratio_12_288",
            "volatility",
            288,
            partial(volatility.vol_ratio, short=12, long=288),
            "rvol_12 / rvol_288: recent versus daily volatility; ratio",
            nan_when="the close did not move in 288 bars",
        )
    )
    return features


def _kbar() -> list[Feature]:
    shapes = [
        ("kmid", kbar.kmid, "(close - open) / open"),
        ("klen", kbar.klen, "(high - low) / open"),
        ("kmid2", kbar.kmid2, "(close - open) / (high - low), -1..1, 0 for a zero range"),
        ("kup", kbar.kup, "(high - max(open, close)) / open"),
        ("kup2", kbar.kup2, "upper shadow / (high - low), 0..1, 0 for a zero range"),
        ("klow", kbar.klow, "(min(open, close) - low) / open"),
        ("klow2", kbar.klow2, "lower shadow / (high - low), 0..1, 0 for a zero range"),
        ("ksft", kbar.ksft, "(2 close - high - low) / open"),
        ("ksft2", kbar.ksft2, "(2 close - high - low) / (high - low), -1..1, 0 for a zero range"),
        ("open0", kbar.open_to_close, "open / close"),
        ("high0", kbar.high_to_close, "high / close"),
        ("low0", kbar.low_to_close, "low / close"),
        ("vwap0", kbar.vwap_to_close, "(quote_volume / volume) / close"),
    ]
    return [
        Feature(
            name,
            "kbar",
            0,
            fn,
            f"Alpha158 {name.upper()}: {text}; price ratio, unitless",
            nan_when="the bar has no volume" if name == "vwap0" else "",
        )
        for name, fn, text in shapes
    ]


def _rolling() -> list[Feature]:
    features: list[Feature] = []
    for w in ROLLING_WINDOWS:
        features += [
            Feature(
                f"ma_{w}",
                "rolling",
                w - 1,
                partial(rolling.mean_to_close, window=w),
                f"mean close of {w} bars / close (Alpha158 MA); ratio",
            ),
            Feature(
                f"max_{w}",
                "rolling",
                w - 1,
                partial(rolling.max_to_close, window=w),
                f"highest high of {w} bars / close (Alpha158 MAX); ratio >= 1",
            ),
            Feature(
                f"min_{w}",
                "rolling",
                w - 1,
                partial(rolling.min_to_close, window=w),
                f"lowest low of {w} bars / close (Alpha158 MIN); ratio <= 1",
            ),
            Feature(
                f"rsv_{w}",
                "rolling",
                w - 1,
                partial(rolling.range_position, window=w),
                f"(close - lowest low) / (highest high - lowest low) over {w} bars (Alpha158 RSV); 0..1",
            ),
            Feature(
                f"cntp_{w}",
                "rolling",
                w,
                partial(rolling.up_fraction, window=w),
                f"fraction of the last {w} bars closing up (Alpha158 CNTP); 0..1",
            ),
            Feature(
                f"sump_{w}",
                "rolling",
                w,
                partial(rolling.up_move_share, window=w),
                f"up log returns / absolute log returns over {w} bars (Alpha158 SUMP); 0..1",
            ),
            Feature(
                f"slope_{w}",
                "rolling",
                w - 1,
                partial(rolling.slope_to_close, window=w),
                f"least-squares slope of close over {w} bars / close (Alpha158 BETA); per bar",
            ),
        ]
    features.append(
        Feature(
            "cord_48",
            "rolling",
            48,
            partial(rolling.return_volume_corr, window=48),
            "correlation of 1-bar log returns and log volume changes over 48 bars (Alpha158 CORD); -1..1",
            nan_when="returns or volumes are constant over the 48 bars",
        )
    )
    for name, fn, text in [
        ("ma_288", rolling.mean_to_close, "mean close of 288 bars / close; ratio"),
        ("max_288", rolling.max_to_close, "highest high of 288 bars / close; ratio >= 1"),
        ("min_288", rolling.min_to_close, "lowest low of 288 bars / close; ratio <= 1"),
        ("rsv_288", rolling.range_position, "close's position in the 288-bar low-high range; 0..1"),
    ]:
        features.append(Feature(name, "rolling", 287, partial(fn, window=288), text))
    return features


def _talib() -> list[Feature]:
    t = talib_features
    return [
        Feature("rsi_14", "talib", 14, t.rsi, "TA-Lib RSI(14); 0..100", settle=t.RSI_SETTLE),
        Feature(
            "natr_14",
            "talib",
            14,
            t.natr,
            "TA-Lib NATR(14): ATR in % of close; percent",
            settle=t.NATR_SETTLE,
        ),
        Feature("adx_14", "talib", 27, t.adx, "TA-Lib ADX(14): trend strength; 0..100", settle=t.ADX_SETTLE),
        Feature("cci_20", "talib", 19, t.cci, "TA-Lib CCI(20); unitless, mostly -300..300"),
        Feature("mfi_14", "talib", 14, t.mfi, "TA-Lib MFI(14): volume-weighted RSI; 0..100"),
        Feature("willr_14", "talib", 13, t.willr, "TA-Lib WILLR(14): close in the 14-bar range; -100..0"),
        Feature(
            "macd_norm", "talib", 33, t.macd_line, "TA-Lib MACD(12,26,9) line / close", settle=t.MACD_SETTLE
        ),
        Feature(
            "macd_signal_norm",
            "talib",
            33,
            t.macd_signal,
            "TA-Lib MACD(12,26,9) signal / close",
            settle=t.MACD_SETTLE,
        ),
        Feature(
            "macd_hist_norm",
            "talib",
            33,
            t.macd_hist,
            "TA-Lib MACD(12,26,9) histogram / close",
            settle=t.MACD_SETTLE,
        ),
        Feature("bb_pctb_20", "talib", 19, t.bollinger_pctb, "Bollinger %B, TA-Lib BBANDS(20, 2); ~0..1"),
        Feature(
            "bb_width_20", "talib", 19, t.bollinger_width, "Bollinger (upper - lower) / middle, BBANDS(20, 2)"
        ),
        Feature("stoch_k_14", "talib", 17, t.stoch_k, "TA-Lib STOCH(14, 3, 3) slow %K; 0..100"),
        Feature("stoch_d_14", "talib", 17, t.stoch_d, "TA-Lib STOCH(14, 3, 3) slow %D; 0..100"),
        Feature("roc_12", "talib", 12, t.roc, "TA-Lib ROC(12): % change of close over 12 bars; percent"),
        Feature(
            "obv_slope_12",
            "talib",
            12,
            partial(t.obv_slope, window=12),
            "change of TA-Lib OBV over 12 bars / volume of those bars; -1..1",
        ),
        Feature(
            "kama_dist_30",
            "talib",
            30,
            t.kama_distance,
            "close / TA-Lib KAMA(30) - 1; fraction of price",
            settle=t.KAMA_SETTLE,
        ),
        Feature(
            "tema_dist_30",
            "talib",
            87,
            t.tema_distance,
            "close / TA-Lib TEMA(30) - 1; fraction of price",
            settle=t.TEMA_SETTLE,
        ),
    ]


def _volume() -> list[Feature]:
    return [
        Feature(
            "volz_48",
            "volume",
            47,
            partial(volume.volume_z, window=48),
            "z-score of log(1 + volume) over 48 bars; std units",
        ),
        Feature(
            "volz_288",
            "volume",
            287,
            partial(volume.volume_z, window=288),
            "z-score of log(1 + volume) over 288 bars; std units",
        ),
        Feature(
            "qvolz_288",
            "volume",
            287,
            partial(volume.quote_volume_z, window=288),
            "z-score of log(1 + quote volume) over 288 bars; std units",
        ),
        Feature(
            "tradesz_288",
            "volume",
            287,
            partial(volume.trades_z, window=288),
            "z-score of log(1 + trade count) over 288 bars; std units",
        ),
        Feature(
            "vol_ratio_12_288",
            "volume",
            287,
            partial(volume.volume_ratio, short=12, long=288),
            "mean volume of 12 bars / mean volume of 288 bars; ratio",
            nan_when="nothing traded in 288 bars",
        ),
        Feature(
            "taker_buy_ratio",
            "volume",
            0,
            volume.taker_buy_ratio,
            "taker-buy volume / volume of the bar; 0..1",
            nan_when="the bar has no volume",
        ),
        Feature(
            "taker_buy_ratio_12",
            "volume",
            11,
            partial(volume.taker_buy_ratio_sum, window=12),
            "taker-buy volume / volume over 12 bars; 0..1",
            nan_when="nothing traded in 12 bars",
        ),
    ]


def _calendar() -> list[Feature]:
    return [
        Feature("tod_sin", "calendar", 0, calendar.time_of_day_sin, "sin of UTC time of day; -1..1"),
        Feature("tod_cos", "calendar", 0, calendar.time_of_day_cos, "cos of UTC time of day; -1..1"),
        Feature("dow_sin", "calendar", 0, calendar.day_of_week_sin, "sin of UTC weekday (Mon = 0); -1..1"),
        Feature("dow_cos", "calendar", 0, calendar.day_of_week_cos, "cos of UTC weekday (Mon = 0); -1..1"),
        Feature(
            "bars_since_prev",
            "gaps",
            1,
            calendar.bars_since_prev,
            "(open_time - previous open_time) / 5 min: 1, or more after missing candles; bars",
        ),
    ]


def _cross_section() -> list[Feature]:
    xs = cross_section
    ranks = [
        Feature(
            f"xs_rank_{name}",
            "cross_section",
            lookback,
            partial(xs.rank, feature=name),
            f"percentile rank of {name} among the symbols at this open time; 0..1",
            scope="cross_section",
        )
        for name, lookback in (("ret_1", 1), ("ret_12", 12), ("ret_288", 288), ("volz_288", 287))
    ]
    return [
        *ranks,
        Feature(
            "xs_rank_qvol",
            "cross_section",
            0,
            xs.rank_quote_volume,
            "percentile rank of the bar's quote volume (USDT) among the symbols at this open time; 0..1",
            scope="cross_section",
        ),
        Feature(
            "xs_dev_ret_12",
            "cross_section",
            12,
            partial(xs.demeaned, feature="ret_12"),
            "ret_12 minus its mean over the symbols at this open time; unitless",
            scope="cross_section",
        ),
        Feature(
            "beta_btc_288",
            "cross_section",
            288,
            partial(xs.beta_to_reference, window=288),
            "OLS beta of 5-min log returns on BTCUSDT's over the last 288 five-minute slots (24 h)",
            nan_when="BTCUSDT is not in the input, fewer than 144 of the slots have both candles, or "
            "BTCUSDT did not move",
        ),
        Feature(
            "corr_btc_288",
            "cross_section",
            288,
            partial(xs.corr_to_reference, window=288),
            "correlation of 5-min log returns with BTCUSDT's over the last 288 five-minute slots; -1..1",
            nan_when="BTCUSDT is not in the input, fewer than 144 of the slots have both candles, or "
            "either symbol did not move",
        ),
        Feature(
            "ret_rel_btc_12",
            "cross_section",
            12,
            partial(xs.return_vs_reference, slots=12),
            "1-hour log return minus BTCUSDT's over the same hour; unitless",
            nan_when="BTCUSDT is not in the input, or either symbol has no candle at open_time or an "
            "hour before (12 bars after a gap)",
        ),
    ]


FEATURES: tuple[Feature, ...] = (
    *_returns(),
    *_volatility(),
    *_kbar(),
    *_rolling(),
    *_talib(),
    *_volume(),
    *_calendar(),
    *_cross_section(),
)


def _check_registry(features: Sequence[Feature]) -> None:
    names = [f.name for f in features]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"feature names declared twice: {duplicates}")
    symbol_names = {f.name for f in features if f.scope == "symbol"}
    for f in features:
        if f.scope == "cross_section" and isinstance(f.compute, partial):
            needed = f.compute.keywords.get("feature")
            if needed is not None and needed not in symbol_names:
                raise ValueError(f"{f.name} ranks {needed!r}, which is not a per-symbol feature")


_check_registry(FEATURES)


@dataclass(frozen=True)
class FeatureSchema:
    """The fingerprint of the feature library: what a model trained on it must be fed.

    Attributes:
        hash: sha256 hex of every feature's name, group, lookback, settle, scope and order, the
            source code of its computation (with the helpers it calls), the data model
            (``candles.py``), :data:`FEATURE_LIBRARY_VERSION` and the TA-Lib version. Stable across
            processes and machines with the same code.
        warmup_bars: trailing bars per symbol that :func:`compute_features` needs so that its last
            row equals the value computed from any longer history within 1e-9 relative.
    """

    _names: tuple[str, ...]
    hash: str
    warmup_bars: int

    @property
    def names(self) -> list[str]:
        """Feature column names in registry order (a new list each time)."""
        return list(self._names)

    @property
    def warmup(self) -> timedelta:
        """``warmup_bars`` five-minute bars as a duration (more wall time is needed across gaps)."""
        return timedelta(milliseconds=self.warmup_bars * FIVE_MINUTES_MS)


def _referenced_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _referenced_names(const)
    return names


def _source_closure(fn: Callable[..., Any], seen: dict[str, str]) -> None:
    """Add the source of `fn` and of every feature-package function it calls (by global name)."""
    key = f"{fn.__module__}.{fn.__qualname__}:{fn.__code__.co_firstlineno}"  # lambdas share a name
    if key in seen:
        return
    seen[key] = inspect.getsource(fn)
    for name in sorted(_referenced_names(fn.__code__)):
        value = fn.__globals__.get(name)
        if isinstance(value, types.FunctionType) and value.__module__.startswith("quant_assets.features"):
            _source_closure(value, seen)
        elif isinstance(value, int | float | str | tuple) and not isinstance(value, bool):
            seen[f"{fn.__module__}.{name}"] = repr(value)


def definition_source(compute: Callable[..., Any]) -> str:
    """The text that defines a compute function: its source, its helpers' and a partial's arguments."""
    bound = ""
    while isinstance(compute, partial):
        bound = f"args={compute.args!r} keywords={sorted(compute.keywords.items())!r}\n" + bound
        compute = compute.func
    seen: dict[str, str] = {}
    _source_closure(compute, seen)
    return bound + "\n".join(f"# {key}\n{seen[key]}" for key in sorted(seen))


def _talib_version() -> str:
    # __ta_version__ reads like b"0.6.4 (Jan  1 2025 00:00:00)": keep the version, not the build date.
    raw = talib.__ta_version__
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return text.split(" ", 1)[0]


def schema_hash(features: Sequence[Feature] = FEATURES) -> str:
    """sha256 hex fingerprint of `features` in order (see :class:`FeatureSchema`)."""
    digest = hashlib.sha256()
    digest.update(f"library={FEATURE_LIBRARY_VERSION}\ntalib={_talib_version()}\n".encode())
    digest.update(inspect.getsource(candles).encode())
    for f in features:
        header = f"\n{f.name}|{f.group}|{f.lookback}|{f.settle}|{f.scope}\n"
        digest.update(header.encode())
        digest.update(definition_source(f.compute).encode())
    return digest.hexdigest()


@cache
def feature_schema() -> FeatureSchema:
    """Names (registry order), hash and warm-up of :data:`FEATURES`."""
    return FeatureSchema(
        _names=tuple(f.name for f in FEATURES),
        hash=schema_hash(FEATURES),
        warmup_bars=max(f.warmup_bars for f in FEATURES),
    )


def feature_catalog() -> pd.DataFrame:
    """One row per feature, in order: ``name, group, description, lookback_bars`` (the catalog view)."""
    return pd.DataFrame(
        {
            "name": [f.name for f in FEATURES],
            "group": [f.group for f in FEATURES],
            "description": [f.description for f in FEATURES],
            "lookback_bars": np.array([f.lookback for f in FEATURES], dtype=np.int32),
        }
    )


def check_schema(expected: str | Sequence[str] | FeatureSchema) -> FeatureSchema:
    """Refuse to feed a model built on another feature schema; return the current schema if it matches.

    Args:
        expected: what the model was trained on: its schema hash, its ordered feature names, or a
            :class:`FeatureSchema`.

    Raises:
        SchemaMismatchError: the hash differs, or the names differ; the message names the missing,
            extra or reordered features.
    """
    current = feature_schema()
    if isinstance(expected, FeatureSchema):
        check_schema(expected.names)
        expected = expected.hash
    if isinstance(expected, str):
        if expected != current.hash:
            raise SchemaMismatchError(
                f"feature schema hash mismatch: the model expects {expected}, this library computes "
                f"{current.hash}; feature definitions changed since the model was built: retrain it"
            )
        return current
    wanted, have = list(expected), current.names
    if wanted == have:
        return current
    missing = [n for n in wanted if n not in have]
    extra = [n for n in have if n not in wanted]
    parts = [f"the model expects {len(wanted)} features, this library computes {len(have)}"]
    if missing:
        parts.append(f"missing from the library: {missing}")
    if extra:
        parts.append(f"not expected by the model: {extra}")
    if not missing and not extra and len(wanted) != len(have):
        repeated = sorted({n for n in wanted if wanted.count(n) > 1})
        parts.append(f"the model's list repeats {repeated}")
    elif not missing and not extra:
        position = next(i for i, (a, b) in enumerate(zip(wanted, have, strict=True)) if a != b)
        parts.append(
            f"same features in another order: position {position} is {wanted[position]!r} for the model "
            f"and {have[position]!r} here"
        )
    raise SchemaMismatchError("; ".join(parts))
