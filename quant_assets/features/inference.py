"""Live inference: the features of each symbol's last closed candle, from the same ``compute_features``.

Models and any trading service call :func:`latest_features` and nothing else, so what they see at
serving time is what the ``feature_table`` asset computed for training, column for column.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pandas as pd

from quant_assets.features.candles import FIVE_MINUTES_MS, REFERENCE_SYMBOL
from quant_assets.features.compute import compute_features
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
    """The last `warmup_bars` candles of each symbol with open_time < `end` (fewer if history is short)."""
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


def latest_features(symbols: Sequence[str], as_of: datetime, *, lake: Lake | None = None) -> pd.DataFrame:
    """The features of each symbol's last candle closed by `as_of`, computed from the warm-up window.

    A candle is closed when ``open_time + 5 min <= as_of``. For each symbol (and BTCUSDT, the
    reference of beta/correlation features, which is always read) this reads from the lake only its
    last ``feature_schema().warmup_bars`` closed candles, calls :func:`compute_features` on them
    together, and keeps each requested symbol's last row. By the parity property, that row equals
    what ``compute_features`` gives for the same candle from the full history.

    Cross-sectional features rank a symbol among every symbol of the stored universe, so the read
    covers, besides those requested and BTCUSDT, every symbol with candles in the day before
    `as_of`: the same cross-section the ``feature_table`` asset ranked against, whatever subset is
    asked for here.

    Args:
        symbols: e.g. ``["BTCUSDT", "ETHUSDT"]``; each is validated; repeats are ignored.
        as_of: the moment of inference, naive UTC or tz-aware.
        lake: where to read candles; default the lake under ``QT_DATA_DIR``.

    Returns:
        One row per requested symbol that has a closed candle in the warm-up window (in the order
        asked): ``symbol``, ``open_time`` of that candle (its age tells how fresh it is), then every
        feature in registry order. ``attrs["feature_schema_hash"]`` holds the schema hash,
        ``attrs["as_of"]`` the UTC moment, ``attrs["missing_symbols"]`` the symbols without any
        closed candle in the window (no row for them).

    Raises:
        InvalidSymbolError: a symbol is not a valid symbol.
    """
    schema = feature_schema()
    asked = list(dict.fromkeys(checked_symbol(s) for s in symbols))
    lake = lake if lake is not None else Lake(Settings.from_env().data_dir)
    as_of_utc = _utc(as_of)
    # Closed: open_time <= as_of - 5 min; read_ohlcv's end bound is exclusive (ms resolution).
    end = as_of_utc - FIVE_MINUTES + timedelta(milliseconds=1)
    recent = lake.read_ohlcv(symbols=None, start=end - GAP_SLACK, end=end)["symbol"].unique().tolist()
    read = list(dict.fromkeys([*asked, REFERENCE_SYMBOL, *recent]))
    candles = _read_warmup(lake, read, end, schema.warmup_bars)
    names = schema.names
    if candles.empty:
        result = pd.DataFrame(columns=["symbol", "open_time", *names])
    else:
        features = compute_features(candles)
        last = features.groupby("symbol", sort=False).tail(1).set_index("symbol", drop=False)
        present = [s for s in asked if s in last.index]
        result = last.loc[present].reset_index(drop=True)
    result.attrs["feature_schema_hash"] = schema.hash
    result.attrs["as_of"] = as_of_utc
    result.attrs["missing_symbols"] = [s for s in asked if s not in set(result["symbol"])]
    return result
