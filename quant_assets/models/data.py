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
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quant_assets.errors import StoreError
from quant_assets.features.point_in_time import day_universe
from quant_assets.features.schema import FeatureSchema, feature_schema
from quant_assets.models.base import TARGET, Panel, TimeRange
from quant_assets.store.lake import Lake
from quant_assets.store.schemas import FEATURE_SCHEMA_HASH, TIMESTAMP


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
    typed = pa.schema(
        [("symbol", pa.string()), ("open_time", TIMESTAMP)]
        + [(name, pa.float64()) for name in [*names, TARGET]]
    )
    tables: list[pa.Table] = []
    days: list[dt.date] = []
    stale: dict[dt.date, str | None] = {}
    missing: list[dt.date] = []
    outside: dict[dt.date, list[str]] = {}
    for day in (start + dt.timedelta(days=i) for i in range((end - start).days)):
        path = lake.path("features", date=day)
        if not path.exists():
            missing.append(day)
            continue
        stored = (pq.read_schema(path).metadata or {}).get(FEATURE_SCHEMA_HASH.encode())
        stored_hash = stored.decode() if stored is not None else None
        if stored_hash != schema.hash:
            stale[day] = stored_hash
            continue
        table = pq.read_table(path, columns=["symbol", "open_time", *names])
        allowed = universe_symbols(lake, day)
        dropped = sorted(set(pc.unique(table.column("symbol")).to_pylist()) - set(allowed))
        if dropped:
            outside[day] = dropped
            table = table.filter(pc.is_in(table.column("symbol"), value_set=pa.array(allowed, pa.string())))
        tables.append(_with_labels(lake, day, table).select(typed.names).cast(typed))
        days.append(day)
    combined = pa.concat_tables(tables) if tables else typed.empty_table()
    combined = combined.sort_by([("symbol", "ascending"), ("open_time", "ascending")])
    frame = combined.to_pandas()
    return LoadedPanel(
        panel=Panel(frame, schema),
        days=days,
        stale_days=stale,
        missing_days=missing,
        outside_universe=outside,
        unlabelled_rows=int(frame[TARGET].isna().sum()),
    )


def _with_labels(lake: Lake, day: dt.date, features: pa.Table) -> pa.Table:
    """`features` (one day) with ``fwd_ret_12`` joined on (symbol, open_time); null where not stored.

    Raises:
        StoreError: the day's labels repeat a (symbol, open_time).
    """
    path = lake.path("labels", date=day)
    if not path.exists() or not features.num_rows:
        return features.append_column(TARGET, pa.nulls(features.num_rows, pa.float64()))
    labels = pq.read_table(path, columns=["symbol", "open_time", TARGET])
    joined = features.join(labels, keys=["symbol", "open_time"], join_type="left outer")
    if joined.num_rows != features.num_rows:
        raise StoreError(f"labels of {day} repeat a (symbol, open_time): {path}")
    return joined


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
