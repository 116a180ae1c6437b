"""Build one day of the ``features`` table, and apart one day of the ``labels`` table, from the lake.

A feature day (d):

* covers the symbols of the ``coin_universe`` snapshot of d, plus the cross-section's reference
  symbol (BTCUSDT) when the snapshot lacks it: the universe as it stood that day, not whatever has
  candles. A universe symbol without candles that day is named (``without_candles``). Before the
  first snapshot there is no universe of the day: the earliest later snapshot is used and the day
  says it is not point in time;
* leaves out every symbol-day that failed ``candles_valid`` (:meth:`Lake.invalid_ohlcv`): on d the
  symbol gets no rows (``left_out`` says which and why), in the warm-up its candles of that day are
  dropped like a gap (``warmup_dropped``);
* reads its warm-up (``feature_schema().warmup_bars`` earlier bars of each symbol) from the store;
* stores the feature schema hash it was built with twice: in the file's metadata and in a
  ``feature_schema_hash`` column on every row. The ``features`` view shows only the rows of the
  registry's current hash; ``features_all`` every stored day with its hash (store/catalog.py).
  :func:`stale_feature_days` lists the stored days of another hash, which the sensor and
  ``quant-assets features --rebuild-stale`` rebuild.

A label day (d) needs the candles of d and of d + 1 (the 48-bar horizon crosses midnight): it is
NULL where the next day's candles are not stored yet, and is rebuilt when they land.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from quant_assets.coin_market import with_market
from quant_assets.features import (
    FEATURES,
    compute_features,
    compute_labels,
    feature_catalog,
    feature_schema,
    unexplained_nans,
)
from quant_assets.features.point_in_time import DayUniverse, day_universe
from quant_assets.quality import CheckOutcome
from quant_assets.store import schemas
from quant_assets.store.lake import Lake, WriteResult

BARS_PER_DAY = 288
LABEL_HORIZON_DAYS = 1  # the longest label (48 bars) needs at most the next day
SCHEMA_HASH_KEY = schemas.FEATURE_SCHEMA_HASH  # file metadata key and column name


@dataclass(frozen=True)
class FeatureDay:
    """One day's features and what was checked and left out."""

    day: dt.date
    features: pd.DataFrame  # symbol, open_time, feature_schema_hash, then one column per feature
    checks: list[CheckOutcome]
    universe: DayUniverse
    schema_hash: str
    warmup_days: int
    without_candles: list[str] = field(default_factory=list)  # universe symbols with no candles on day
    left_out: dict[str, str] = field(default_factory=dict)  # symbol -> why its day failed candles_valid
    warmup_dropped: dict[str, list[str]] = field(default_factory=dict)  # symbol -> invalid warm-up days

    @property
    def symbols(self) -> int:
        return int(self.features["symbol"].nunique())


@dataclass(frozen=True)
class LabelDay:
    """One day's labels and what they could not use."""

    day: dt.date
    labels: pd.DataFrame
    next_day_candles: int  # candles of day + 1 the forward horizons read (0: the future is unknown)
    left_out: dict[str, str] = field(default_factory=dict)  # symbol -> why its day failed candles_valid
    next_day_left_out: dict[str, str] = field(default_factory=dict)  # same, for day + 1


def warmup_days() -> int:
    """Whole days of candles to read before a day so every symbol has its warm-up bars."""
    return math.ceil(feature_schema().warmup_bars / BARS_PER_DAY)


class DayReader:
    """Each stored day of candles, and its invalid symbols, read once for the days of one run.

    The days of a range share their warm-up (day d reads d - 3 .. d, day d + 1 reads d - 2 .. d + 1),
    so a run reads every day file once instead of up to four times. Days are asked for in ascending
    order; a day before the first one asked last is forgotten. The candles returned are exactly what
    :meth:`Lake.read_ohlcv` returns for the same span and symbols (rows, order and types), so a day
    built in a range is the same bytes as the day built alone.
    """

    def __init__(self, lake: Lake, *, exchange: str = "binance") -> None:
        self.lake = lake
        self.exchange = exchange
        self._candles: dict[dt.date, pd.DataFrame] = {}
        self._invalid: dict[dt.date, dict[str, str]] = {}

    def invalid(self, day: dt.date) -> dict[str, str]:
        """Symbol -> why its candles of `day` failed ``candles_valid`` (:meth:`Lake.invalid_ohlcv`)."""
        if day not in self._invalid:
            self._invalid[day] = self.lake.invalid_ohlcv(day, exchange=self.exchange)
        return self._invalid[day]

    def candles(self, first: dt.date, last: dt.date, symbols: list[str] | None) -> pd.DataFrame:
        """Candles of days [first, last] (UTC) of `symbols` (None: all), sorted by symbol, open_time."""
        for day in [d for d in self._candles if d < first]:
            del self._candles[day]
        frames = []
        for day in _days(first, last):
            if day not in self._candles:
                start = dt.datetime.combine(day, dt.time())
                self._candles[day] = self.lake.read_ohlcv(
                    symbols=None, start=start, end=start + dt.timedelta(days=1), exchange=self.exchange
                )
            frames.append(self._candles[day])
        candles = pd.concat(frames, ignore_index=True)
        if symbols is not None:
            candles = candles[candles["symbol"].isin(symbols)]
        return candles.sort_values(["symbol", "open_time"], kind="stable").reset_index(drop=True)


def _invalid(reader: DayReader, days: list[dt.date]) -> dict[tuple[str, dt.date], str]:
    """The symbol-days of `days` that failed ``candles_valid``, with why.

    Their candles are already absent from what the reader returns (the day files leave them out,
    :meth:`Lake.compact_ohlcv`); this names them for the metadata.
    """
    return {(symbol, day): why for day in days for symbol, why in reader.invalid(day).items()}


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def build_feature_day(lake: Lake, day: dt.date, *, reader: DayReader | None = None) -> FeatureDay:
    """Features of the day's universe on `day` (UTC); see the module docstring.

    Pass one `reader` to the calls of one run (days ascending). Raises :class:`StoreError` when no
    universe snapshot is stored, ``ValueError`` when :func:`compute_features` refuses the candles.
    """
    reader = reader or DayReader(lake)
    schema = feature_schema()
    universe = day_universe(lake, day)
    start_of_day = dt.datetime.combine(day, dt.time())
    warm = warmup_days()
    window = _days(day - dt.timedelta(days=warm), day)
    candles, invalid = reader.candles(window[0], day, universe.symbols), _invalid(reader, window)
    left_out = {s: why for (s, d), why in invalid.items() if d == day and s in universe.symbols}
    warmup_dropped: dict[str, list[str]] = {}
    for s, d in sorted(invalid):
        if d < day and s in universe.symbols:
            warmup_dropped.setdefault(s, []).append(d.isoformat())

    day_symbols = set(candles.loc[candles["open_time"] >= start_of_day, "symbol"].unique())
    candles = candles[candles["symbol"].isin(day_symbols)].reset_index(drop=True)
    # CoinGecko market data of the day before each candle (coin_market d - 1): mcap_rank, turnover.
    candles = with_market(lake, candles)
    computed = compute_features(candles)
    in_day = (candles["open_time"] >= start_of_day).to_numpy()
    features = computed.loc[in_day, ["symbol", "open_time", *schema.names]].reset_index(drop=True)
    features.insert(2, SCHEMA_HASH_KEY, schema.hash)
    bars_before = candles.groupby("symbol").cumcount().to_numpy()[in_day]
    return FeatureDay(
        day=day,
        features=features,
        checks=check_features(features, bars_before, unexplained_nans(candles, computed, in_day)),
        universe=universe,
        schema_hash=schema.hash,
        warmup_days=warm,
        without_candles=[s for s in universe.symbols if s not in day_symbols and s not in left_out],
        left_out=left_out,
        warmup_dropped=warmup_dropped,
    )


def build_label_day(lake: Lake, day: dt.date, *, reader: DayReader | None = None) -> LabelDay:
    """Labels of every symbol with valid candles on `day`, from that day and the next (when stored).

    Pass one `reader` to the calls of one run (days ascending).
    """
    reader = reader or DayReader(lake)
    start_of_day = dt.datetime.combine(day, dt.time())
    end_of_day = start_of_day + dt.timedelta(days=1)
    next_day = day + dt.timedelta(days=LABEL_HORIZON_DAYS)
    candles, invalid = reader.candles(day, next_day, None), _invalid(reader, [day, next_day])
    day_symbols = candles.loc[candles["open_time"] < end_of_day, "symbol"].unique()
    candles = candles[candles["symbol"].isin(day_symbols)].reset_index(drop=True)
    labels = compute_labels(candles)
    rows = (labels["open_time"] >= start_of_day) & (labels["open_time"] < end_of_day)
    return LabelDay(
        day=day,
        labels=labels.loc[rows, schemas.LABELS.names].reset_index(drop=True),
        next_day_candles=int((candles["open_time"] >= end_of_day).sum()),
        left_out={s: why for (s, d), why in invalid.items() if d == day},
        next_day_left_out={s: why for (s, d), why in invalid.items() if d == next_day},
    )


def check_features(
    features: pd.DataFrame, bars_before: np.ndarray, unexplained: dict[str, int]
) -> list[CheckOutcome]:
    """Every value after its feature's lookback is a number unless a documented condition explains it.

    `unexplained` is :func:`~quant_assets.features.unexplained_nans` of the day's rows: NaN after a
    feature's lookback where its ``nan_when`` condition does not hold on the candles. `bars_before[i]`
    is how many earlier candles row i's symbol had; the NaN after the lookback that a condition
    does explain are counted in the metadata (``explained_nan``) and pass. An infinity fails
    anywhere: no condition documents one. (Infinity has its own rule nowhere: no served candle, even
    at 1e300 volumes or 1e-6/1e6 alternating prices, gave one, so a check of its own could not be
    shown failing.)
    """
    explained: dict[str, int] = {}
    infinite: dict[str, int] = {}
    for feature in FEATURES:
        values = features[feature.name].to_numpy(dtype=float)
        after_lookback = int(np.isnan(values[bars_before >= feature.lookback]).sum())
        if after_lookback - unexplained.get(feature.name, 0) > 0:
            explained[feature.name] = after_lookback - unexplained.get(feature.name, 0)
        infs = int(np.isinf(values).sum())
        if infs:
            infinite[feature.name] = infs
    return [
        CheckOutcome(
            "no_nan_after_warmup",
            not unexplained and not infinite,
            "ERROR",
            "no feature is NaN after its lookback unless its documented nan_when condition holds; never +/-inf",
            {
                "features_with_nan": dict(unexplained),
                "features_with_inf": infinite,
                "explained_nan": explained,
                "rows": len(features),
            },
        ),
    ]


def write_feature_day(lake: Lake, built: FeatureDay) -> tuple[WriteResult, WriteResult]:
    """Store the features (hash in a column and in the file's metadata) and this schema's catalog."""
    names = [c for c in built.features.columns if c not in ("symbol", "open_time", SCHEMA_HASH_KEY)]
    features = lake.write(
        "features",
        built.features,
        schema=schemas.features_schema(names),
        metadata={SCHEMA_HASH_KEY: built.schema_hash},
        date=built.day,
    )
    catalog = lake.write(
        "feature_catalog",
        feature_catalog().assign(**{SCHEMA_HASH_KEY: built.schema_hash}),
        schema_hash=built.schema_hash,
    )
    return features, catalog


def write_label_day(lake: Lake, built: LabelDay) -> WriteResult:
    """Store one day of labels."""
    return lake.write("labels", built.labels, date=built.day)


def stored_feature_hashes(lake: Lake) -> dict[dt.date, str | None]:
    """{day: the schema hash its stored features file was built with (None: none recorded)}."""
    hashes: dict[dt.date, str | None] = {}
    for path in lake.files("features"):
        raw = pq.read_schema(path).metadata or {}
        stored = raw.get(SCHEMA_HASH_KEY.encode())
        hashes[dt.date.fromisoformat(path.stem.removeprefix("date="))] = stored.decode() if stored else None
    return hashes


def stale_feature_days(lake: Lake, current_hash: str | None = None) -> dict[dt.date, str | None]:
    """Stored feature days built under another schema than `current_hash` (default: the registry's)."""
    current = current_hash or feature_schema().hash
    return {day: h for day, h in stored_feature_hashes(lake).items() if h != current}
