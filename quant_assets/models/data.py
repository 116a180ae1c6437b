"""The models' input: stored feature days of the current schema, the day's universe, joined to labels.

Training and serving read their :class:`~quant_assets.models.base.Panel` here and nowhere else:

* only feature days whose file carries the registry's CURRENT schema hash
  (``feature_schema().hash``); a day built under another hash is skipped and named
  (``stale_days``), so two definitions of a column never meet in one panel;
* only the symbols of each day's ``coin_universe`` snapshot (the one in force on the day, as the
  ``feature_table`` asset chose it): the reference symbol the cross-section adds when the snapshot
  lacks it (BTCUSDT) is dropped, as is any symbol the feature day holds outside the universe;
* joined to ``labels.fwd_ret_12`` on (symbol, open_time); NaN where the label is not stored or not
  known yet (the last hour of the newest day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quant_assets.features.point_in_time import day_universe
from quant_assets.features.schema import FeatureSchema, feature_schema
from quant_assets.models.base import TARGET, Panel, TimeRange
from quant_assets.store.lake import Lake
from quant_assets.store.schemas import FEATURE_SCHEMA_HASH


@dataclass(frozen=True)
class LoadedPanel:
    """A panel and what went into it."""

    panel: Panel
    days: list[dt.date]  # feature days read (current schema hash), ascending
    stale_days: dict[dt.date, str | None] = field(default_factory=dict)  # day -> its other hash
    missing_days: list[dt.date] = field(default_factory=list)  # no feature file stored
    outside_universe: dict[dt.date, list[str]] = field(default_factory=dict)  # symbols dropped per day
    unlabelled_rows: int = 0  # rows whose fwd_ret_12 is NaN

    def describe(self) -> str:
        """One line for logs and errors: days read, skipped and why, rows."""
        frame = self.panel.frame
        text = f"{len(self.days)} feature days, {len(frame)} rows, {frame['symbol'].nunique()} symbols"
        if self.stale_days:
            text += f"; skipped {len(self.stale_days)} days of another schema hash: {_days(self.stale_days)}"
        if self.missing_days:
            text += f"; {len(self.missing_days)} days without features: {_days(self.missing_days)}"
        return text


def _days(days: object) -> str:
    listed = sorted(days)  # type: ignore[call-overload]
    shown = ", ".join(d.isoformat() for d in listed[:5])
    return shown + (f" ... {listed[-1].isoformat()}" if len(listed) > 5 else "")


def universe_symbols(lake: Lake, day: dt.date) -> list[str]:
    """The symbols of the ``coin_universe`` snapshot in force on `day` (no reference symbol added).

    Raises :class:`~quant_assets.errors.StoreError` when no snapshot is stored.
    """
    snapshot = day_universe(lake, day).snapshot_date
    return lake.read("coin_universe", date=snapshot)["symbol"].tolist()


def load_panel(
    lake: Lake, start: dt.date, end: dt.date, *, schema: FeatureSchema | None = None
) -> LoadedPanel:
    """The panel of the feature days ``start <= day < end`` (UTC), see the module docstring.

    Args:
        lake: the store.
        start: first day, inclusive.
        end: day after the last, exclusive.
        schema: the schema whose days to read; default the registry's current one.

    Returns:
        A :class:`LoadedPanel`; its panel may be empty (no day of the schema stored).

    Raises:
        ValueError: `end` is not after `start`.
        StoreError: no ``coin_universe`` snapshot is stored.
    """
    if end <= start:
        raise ValueError(f"load_panel: end {end} must be after start {start}")
    schema = schema or feature_schema()
    names = schema.names
    frames: list[pd.DataFrame] = []
    days: list[dt.date] = []
    stale: dict[dt.date, str | None] = {}
    missing: list[dt.date] = []
    outside: dict[dt.date, list[str]] = {}
    day = start
    while day < end:
        path = lake.path("features", date=day)
        if not path.exists():
            missing.append(day)
            day += dt.timedelta(days=1)
            continue
        stored = (pq.read_schema(path).metadata or {}).get(FEATURE_SCHEMA_HASH.encode())
        stored_hash = stored.decode() if stored is not None else None
        if stored_hash != schema.hash:
            stale[day] = stored_hash
            day += dt.timedelta(days=1)
            continue
        table = pq.read_table(path, columns=["symbol", "open_time", *names])
        allowed = universe_symbols(lake, day)
        kept = pc.is_in(table.column("symbol"), value_set=pa.array(allowed, pa.string()))
        dropped = sorted(set(pc.unique(table.column("symbol")).to_pylist()) - set(allowed))
        if dropped:
            outside[day] = dropped
        frame = table.filter(kept).to_pandas()
        frame[TARGET] = _labels_for(lake, day, frame)
        frames.append(frame)
        days.append(day)
        day += dt.timedelta(days=1)
    if frames:
        frame = pd.concat(frames, ignore_index=True)
    else:
        frame = pd.DataFrame({"symbol": pd.Series(dtype=str), "open_time": pd.Series(dtype="datetime64[ms]")})
        for name in [*names, TARGET]:
            frame[name] = pd.Series(dtype=np.float64)
    frame = frame.sort_values(["symbol", "open_time"], kind="stable", ignore_index=True)
    frame[names] = frame[names].astype(np.float64)
    return LoadedPanel(
        panel=Panel(frame, schema),
        days=days,
        stale_days=stale,
        missing_days=missing,
        outside_universe=outside,
        unlabelled_rows=int(frame[TARGET].isna().sum()),
    )


def _labels_for(lake: Lake, day: dt.date, frame: pd.DataFrame) -> np.ndarray:
    """``fwd_ret_12`` of each row of `frame` (one feature day), NaN where no label is stored."""
    path = lake.path("labels", date=day)
    if not path.exists() or frame.empty:
        return np.full(len(frame), np.nan)
    labels = pq.read_table(path, columns=["symbol", "open_time", TARGET]).to_pandas()
    keys = pd.MultiIndex.from_frame(frame[["symbol", "open_time"]])
    found = labels.set_index(["symbol", "open_time"])[TARGET]
    return found.reindex(keys).to_numpy(dtype=np.float64)


def design_matrix(
    panel: Panel, rows: TimeRange, *, labelled_only: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix (float32, schema order), labels and row positions of the panel rows in `rows`.

    With `labelled_only`, rows whose :data:`TARGET` is NaN are left out (fitting); otherwise every
    row is kept (predicting). Positions index ``panel.frame`` in order.
    """
    keep = panel.mask(rows)
    if labelled_only:
        keep &= np.isfinite(panel.frame[TARGET].to_numpy(dtype=np.float64))
    positions = np.flatnonzero(keep)
    chosen = panel.frame.take(positions)
    features = chosen[list(panel.features)].to_numpy(dtype=np.float32)
    labels = chosen[TARGET].to_numpy(dtype=np.float64)
    return features, labels, positions
