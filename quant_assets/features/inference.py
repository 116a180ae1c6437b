"""Live inference: the features of each symbol's last closed candle, from the same ``compute_features``.

Models and any trading service call :func:`latest_features` and nothing else, so what they see at
serving time is what the ``feature_table`` asset computed for training, column for column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from quant_assets.features.candles import FIVE_MINUTES_MS
from quant_assets.features.compute import compute_features
from quant_assets.features.point_in_time import day_universe
from quant_assets.features.schema import feature_schema
from quant_assets.settings import Settings
from quant_assets.store.lake import Lake
from quant_assets.symbols import checked_symbol

FIVE_MINUTES = timedelta(milliseconds=FIVE_MINUTES_MS)
# First read: the warm-up's wall time plus this much for gaps. A symbol still short of its warm-up
# bars is read further back, doubling the span, up to MAX_READ_FACTOR times the warm-up.
GAP_SLACK = timedelta(days=1)
MAX_READ_FACTOR = 4


def _utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is taken to be UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _read_warmup(lake: Lake, symbols: list[str], end: datetime, warmup_bars: int) -> pd.DataFrame:
    """The last `warmup_bars` valid candles of each symbol with open_time < `end` (fewer if history is short).

    Symbol-days that failed ``candles_valid`` are not in the day files the lake reads
    (:meth:`Lake.compact_ohlcv`), so they count as gaps, as in the ``feature_table`` asset.
    """
    span = feature_schema().warmup + GAP_SLACK
    limit = end - span * MAX_READ_FACTOR
    frames: list[pd.DataFrame] = []
    wanted, upper, start = symbols, end, end - span
    while wanted:
        frame = lake.read_ohlcv(symbols=wanted, start=start, end=upper)
        frames.append(frame)
        counts = pd.concat(frames)["symbol"].value_counts()
        # Read further back only for symbols short of bars that had candles in this slice:
        # an empty slice means the symbol's history (or a very long gap) ends here.
        got = set(frame["symbol"].unique())
        wanted = [s for s in wanted if s in got and counts.get(s, 0) < warmup_bars]
        if start <= limit:
            break
        upper, start = start, max(start - (end - start), limit)
    candles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if candles.empty:
        return candles
    candles = candles.sort_values(["symbol", "open_time"], kind="stable", ignore_index=True)
    return candles.groupby("symbol", sort=False).tail(warmup_bars).reset_index(drop=True)


def latest_features(
    symbols: Sequence[str], as_of: datetime, *, lake: Lake | None = None, bars: int = 1
) -> pd.DataFrame:
    """The features of each symbol's last candle closed by `as_of`, computed from the warm-up window.

    A candle is closed when ``open_time + 5 min <= as_of``. This reads from the lake only the last
    ``feature_schema().warmup_bars`` closed candles of each symbol it needs, calls
    :func:`compute_features` on them together, and keeps each requested symbol's last row. By the
    parity property, that row equals what ``compute_features`` gives for the same candle from the full
    history.

    Cross-sectional features rank a symbol among the others, so the candles are chosen exactly as the
    ``feature_table`` asset chooses them for the day of the last closed candle
    (:mod:`quant_assets.features.point_in_time`): the symbols of that day's ``coin_universe`` and
    BTCUSDT, without the symbol-days that failed ``candles_valid``. A universe symbol's row is then
    the row training stored, whatever subset is asked for. A symbol asked for outside the universe is
    ranked among the universe and itself (training stored no row for it); one whose candles of the
    day failed ``candles_valid`` gets no row, as in training.

    Args:
        symbols: e.g. ``["BTCUSDT", "ETHUSDT"]``; each is validated; repeats are ignored.
        as_of: the moment of inference, naive UTC or tz-aware.
        lake: where to read candles; default the lake under ``QT_DATA_DIR``.
        bars: rows per symbol: its last `bars` closed candles (a sequence model's input window),
            each computed from its own full warm-up, oldest first. The cross-section of every row is
            the one of the last closed candle's day.

    Returns:
        One row (`bars` rows, fewer if history is short) per requested symbol that has a closed
        candle in the warm-up window (in the order asked): ``symbol``, ``open_time`` of that candle
        (its age tells how fresh it is), then every feature in registry order. ``attrs["feature_schema_hash"]`` holds the schema hash,
        ``attrs["as_of"]`` the UTC moment, ``attrs["universe_snapshot"]`` the snapshot day used,
        ``attrs["missing_symbols"]`` the symbols without a row.

    Raises:
        InvalidSymbolError: a symbol is not a valid symbol.
        StoreError: no ``coin_universe`` snapshot is stored (the cross-section is undefined).
        ValueError: `bars` < 1.
    """
    if bars < 1:
        raise ValueError(f"bars must be >= 1, got {bars}")
    schema = feature_schema()
    asked = list(dict.fromkeys(checked_symbol(s) for s in symbols))
    lake = lake if lake is not None else Lake(Settings.from_env().data_dir)
    as_of_utc = _utc(as_of)
    # Closed: open_time <= as_of - 5 min; read_ohlcv's end bound is exclusive (ms resolution).
    end = as_of_utc - FIVE_MINUTES + timedelta(milliseconds=1)
    last_day = (as_of_utc - FIVE_MINUTES).date()
    universe = day_universe(lake, last_day)
    outside = [s for s in asked if s not in universe.symbols]
    candles = _read_warmup(lake, [*universe.symbols, *outside], end, schema.warmup_bars + bars - 1)
    names = schema.names
    rows: list[pd.DataFrame] = []
    if not candles.empty:
        in_universe = candles[candles["symbol"].isin(universe.symbols)].reset_index(drop=True)
        rows.append(_last_rows(in_universe, [s for s in asked if s not in outside], bars))
        for symbol in outside:  # ranked among the universe and itself alone
            within = candles[candles["symbol"].isin([*universe.symbols, symbol])]
            rows.append(_last_rows(within, [symbol], bars))
    rows = [r for r in rows if not r.empty]
    found = pd.concat(rows) if rows else pd.DataFrame(columns=["symbol", "open_time", *names])
    served = set(found["symbol"])  # once: a comprehension's condition is evaluated per symbol
    present = [s for s in asked if s in served]
    result = found.set_index("symbol", drop=False).loc[present].reset_index(drop=True)
    result.attrs["feature_schema_hash"] = schema.hash
    result.attrs["as_of"] = as_of_utc
    result.attrs["universe_snapshot"] = universe.snapshot_date
    result.attrs["missing_symbols"] = [s for s in asked if s not in present]
    return result


def _last_rows(candles: pd.DataFrame, wanted: list[str], bars: int = 1) -> pd.DataFrame:
    """The features of the last `bars` candles of each symbol of `wanted`, from all of `candles` together."""
    if candles.empty or not wanted:
        return candles.iloc[0:0]
    features = compute_features(candles.reset_index(drop=True))
    last = features.groupby("symbol", sort=False).tail(bars)
    return last[last["symbol"].isin(wanted)]
