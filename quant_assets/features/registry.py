"""The one list of features: each declared once, with its name, group, lookback and computation.

The order of :data:`FEATURES` is the column order of every feature table. The schema built from it
(names, hash, warm-up) is in ``schema.py``. Labels are not here (``labels.py``): nothing
forward-looking can become an input by accident.

NaN: before its lookback a feature is NaN; after it, only where its ``nan_when`` condition holds
(``nan_rules.py`` states each one as text and as a test on the candles, and
``nan_check.unexplained_nans`` finds the NaN none of them explains).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np

from quant_assets.features import (
    calendar,
    cross_section,
    kbar,
    market,
    returns,
    rolling,
    talib_features,
    volatility,
    volume,
)
from quant_assets.features import nan_rules as nan
from quant_assets.features.nan_rules import NanWhen

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
            BTCUSDT...), as text and as a per-bar test; ``None`` when it is then always a number.
            Documentation, not hashed.
    """

    name: str
    group: str
    lookback: int
    compute: Callable[[Any], np.ndarray]
    description: str
    settle: int = 0
    scope: Scope = "symbol"
    nan_when: NanWhen | None = None

    @property
    def warmup_bars(self) -> int:
        """Trailing bars per symbol (current bar included) that reproduce this feature's batch value."""
        return self.lookback + self.settle + 1


def _either(*tests: Callable[[Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
    """A condition that holds where any of `tests` does."""

    def holds(c: Any) -> np.ndarray:
        out = tests[0](c)
        for test in tests[1:]:
            out = out | test(c)
        return out

    return holds


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
            nan_when=NanWhen("the close did not move in 288 bars", nan.close_unchanged(288)),
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
            nan_when=NanWhen("the bar has no volume", nan.no_volume) if name == "vwap0" else None,
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
            nan_when=NanWhen(
                "returns or log volume changes are constant over the 48 bars",
                nan.returns_or_volumes_constant(48),
            ),
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
            "close / KAMA(30) - 1, KAMA as TA-Lib computes it from the last 864 bars alone (3 days; "
            "a fixed trailing window, so its memory is finite); fraction of price",
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
            nan_when=NanWhen("nothing traded in 288 bars", nan.nothing_traded(288)),
        ),
        Feature(
            "taker_buy_ratio",
            "volume",
            0,
            volume.taker_buy_ratio,
            "taker-buy volume / volume of the bar; 0..1",
            nan_when=NanWhen("the bar has no volume", nan.no_volume),
        ),
        Feature(
            "taker_buy_ratio_12",
            "volume",
            11,
            partial(volume.taker_buy_ratio_sum, window=12),
            "taker-buy volume / volume over 12 bars; 0..1",
            nan_when=NanWhen("nothing traded in 12 bars", nan.nothing_traded(12)),
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
            nan_when=NanWhen(
                "BTCUSDT is not in the input, fewer than 144 of the slots have a candle of both, or "
                "BTCUSDT did not move (its 5-min log returns paired with the symbol's are all 0)",
                _either(nan.few_shared_slots(288, 144), nan.no_paired_move(288, own=False)),
            ),
        ),
        Feature(
            "corr_btc_288",
            "cross_section",
            288,
            partial(xs.corr_to_reference, window=288),
            "correlation of 5-min log returns with BTCUSDT's over the last 288 five-minute slots; -1..1",
            nan_when=NanWhen(
                "BTCUSDT is not in the input, fewer than 144 of the slots have a candle of both, or "
                "either symbol did not move (its 5-min log returns paired with the other's are all 0)",
                _either(nan.few_shared_slots(288, 144), nan.no_paired_move(288, own=True)),
            ),
        ),
        Feature(
            "ret_rel_btc_12",
            "cross_section",
            12,
            partial(xs.return_vs_reference, slots=12),
            "1-hour log return minus BTCUSDT's over the same hour; unitless",
            nan_when=NanWhen(
                "BTCUSDT is not in the input, or either symbol has no candle at open_time or an hour "
                "before (12 bars after a gap)",
                nan.missing_an_hour_apart(12),
            ),
        ),
    ]


def _market() -> list[Feature]:
    """From ``coin_market`` of the day before the bar (CoinGecko), joined by ``feature_days``."""
    return [
        Feature(
            "mcap_rank",
            "market",
            0,
            market.market_cap_rank,
            "percentile rank of the coin's CoinGecko market cap (end of the previous UTC day) among "
            "the symbols at this open time; 0..1",
            scope="cross_section",
            nan_when=NanWhen(
                "the coin has no CoinGecko market cap of the previous day (no coin_market row, or NULL)",
                nan.no_market_cap,
            ),
        ),
        Feature(
            "turnover",
            "market",
            0,
            market.turnover,
            "CoinGecko 24h volume / market cap of the coin at the end of the previous UTC day; per day, "
            "unitless",
            nan_when=NanWhen(
                "the coin has no CoinGecko market cap and 24h volume of the previous day (no "
                "coin_market row, or NULL)",
                nan.no_market_data,
            ),
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
    *_market(),
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
