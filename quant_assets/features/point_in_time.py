"""Which candles a cross-section is computed from, the same for training rows and live inference.

Cross-sectional features rank a symbol among the others of its day, so the rows the
``feature_table`` asset stores for training and the row :func:`~quant_assets.features.latest_features`
serves agree only when both compute from the same set of candles. That set is decided here, once:

* the symbols of the day's ``coin_universe`` snapshot (the latest one on or before the day; before
  the first snapshot, the earliest one, which is then not point in time), plus the reference symbol
  of beta and correlation features;
* without the candles of any symbol-day that failed ``candles_valid``: those stay in their own
  partition files and never enter the day files that :meth:`Lake.read_ohlcv` reads
  (:meth:`Lake.compact_ohlcv`), so on the day itself the symbol gets no row, and in the warm-up its
  candles of that day are a gap.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from quant_assets.errors import StoreError
from quant_assets.features.candles import REFERENCE_SYMBOL
from quant_assets.store.lake import Lake


@dataclass(frozen=True)
class DayUniverse:
    """The symbols a day's cross-section covers and the snapshot they come from."""

    symbols: list[str]  # the snapshot's symbols in rank order, then the reference if it was absent
    snapshot_date: dt.date
    point_in_time: bool  # False: no snapshot on or before the day; a later one was used


def day_universe(lake: Lake, day: dt.date) -> DayUniverse:
    """The ``coin_universe`` snapshot in force on `day` (or, before the first one, the earliest).

    Raises :class:`StoreError` when no snapshot has been stored at all.
    """
    dates = sorted(dt.date.fromisoformat(p.stem.removeprefix("date=")) for p in lake.files("coin_universe"))
    if not dates:
        raise StoreError(f"no coin_universe snapshot is stored: materialize coin_universe for {day} first")
    earlier = [d for d in dates if d <= day]
    snapshot_date = earlier[-1] if earlier else dates[0]
    symbols = lake.read("coin_universe", date=snapshot_date)["symbol"].tolist()
    if REFERENCE_SYMBOL not in symbols:
        symbols.append(REFERENCE_SYMBOL)
    return DayUniverse(symbols=symbols, snapshot_date=snapshot_date, point_in_time=bool(earlier))
