"""Input windows of the sequence models: the last ``input_size`` bars of a few feature channels.

N-HiTS and PatchTST read, for the bar of each (symbol, open_time) row, a window of that symbol's
previous rows of a few feature columns, oldest first and ending at the row itself. Training and
inference both cut their windows with :func:`window_rows` here, so "trained on one window, served
another" cannot happen; this module's code is part of the feature schema hash (``schema.py``), so
changing a channel or the window rule gives feature days and models a new hash.

Windows are made of feature rows only (nothing else is read), so a model serving day d needs the
feature rows of d and ``input_size`` rows of context before it. A *bar* is a row of the symbol, as
in the feature library: a gap in the data is not filled, and a window reaches across it. Where a
symbol has fewer than ``input_size`` earlier rows, the missing positions are the padding row, which
holds no value (NaN): a window never takes a row of another symbol, nor a later row (a window ending
at bar t reads bars <= t only; tested).

The row numbers of a whole batch are one broadcast sum, so a training step gathers its random
windows with one tensor index instead of cutting each window in a Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Feature columns a window holds, the forecast channel first: the 1-bar log return, whose next 12
# values add up to the label fwd_ret_12; the 48-bar volume z-score; the bar's taker-buy share.
SEQUENCE_CHANNELS: tuple[str, ...] = ("ret_1", "volz_48", "taker_buy_ratio")
TARGET_CHANNEL = "ret_1"
INPUT_SIZE = 96  # bars: 8 hours of 5-minute bars


@dataclass(frozen=True)
class SequenceTable:
    """The channels of every row of a feature frame, ready to be cut into windows.

    Attributes:
        values: float32 ``(rows + 1, channels)``: the frame's channel columns in row order (NaN where
            the feature is NaN), then one padding row of NaN at index ``rows``.
        position: int64 ``(rows,)``: the row's index among its symbol's rows (0 for its first row).
        channels: the channel (feature) names, in column order of `values`.
    """

    values: np.ndarray
    position: np.ndarray
    channels: tuple[str, ...]

    @property
    def rows(self) -> int:
        """Rows of the frame (the padding row not counted)."""
        return int(self.position.shape[0])


def sequence_table(frame: pd.DataFrame, channels: Sequence[str] = SEQUENCE_CHANNELS) -> SequenceTable:
    """The `channels` of `frame` and each row's position within its symbol.

    Args:
        frame: feature rows sorted by (symbol, open_time): ``symbol``, ``open_time`` and the
            `channels` columns (e.g. a model ``Panel``'s frame).
        channels: feature columns to read, in order.

    Raises:
        KeyError: a channel, ``symbol`` or ``open_time`` is missing from `frame`.
        ValueError: no channel is asked for, or the rows are not sorted by (symbol, open_time) with
            one row per (symbol, open_time).
    """
    names = tuple(channels)
    if not names:
        raise ValueError("at least one channel is needed")
    missing = [c for c in ("symbol", "open_time", *names) if c not in frame.columns]
    if missing:
        raise KeyError(f"the feature frame lacks the columns {missing}")
    codes, _ = pd.factorize(frame["symbol"].astype(str), sort=False)
    times = frame["open_time"].to_numpy(dtype="datetime64[ms]").view(np.int64)
    starts_symbol = np.r_[True, codes[1:] != codes[:-1]] if len(codes) else np.zeros(0, dtype=bool)
    if len(codes) and (np.diff(codes) < 0).any():
        raise ValueError("the feature frame's rows must be sorted by symbol: a symbol's rows are split")
    if (np.diff(times)[~starts_symbol[1:]] <= 0).any():
        raise ValueError(
            "the feature frame's rows must be sorted by open_time within each symbol, one row per "
            "(symbol, open_time)"
        )
    first_row = np.flatnonzero(starts_symbol)
    position = np.arange(len(codes), dtype=np.int64) - first_row[np.cumsum(starts_symbol) - 1]
    values = np.full((len(codes) + 1, len(names)), np.nan, dtype=np.float32)
    for j, name in enumerate(names):
        values[:-1, j] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return SequenceTable(values=values, position=position, channels=names)


def window_rows(position: np.ndarray, rows: np.ndarray, input_size: int = INPUT_SIZE) -> np.ndarray:
    """Row numbers of the window ending at each of `rows`: int64 ``(len(rows), input_size)``.

    Column ``input_size - 1`` is the row itself, column ``input_size - 1 - k`` the symbol's row k
    bars earlier; positions before the symbol's first row are the padding row ``len(position)``.

    Args:
        position: :attr:`SequenceTable.position`.
        rows: row numbers (into the frame) of the bars whose windows are wanted.
        input_size: bars per window.

    Raises:
        ValueError: `input_size` < 1, or a row number is outside the frame.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be >= 1, got {input_size}")
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= position.shape[0]):
        raise ValueError(f"row numbers must lie in 0 .. {position.shape[0] - 1}")
    offsets = np.arange(1 - input_size, 1, dtype=np.int64)
    inside = offsets[None, :] >= -position[rows][:, None]
    return np.where(inside, rows[:, None] + offsets[None, :], position.shape[0])


def input_windows(table: SequenceTable, rows: np.ndarray, input_size: int = INPUT_SIZE) -> np.ndarray:
    """The windows ending at `rows`: float32 ``(len(rows), input_size, channels)``, oldest bar first,
    NaN where the symbol has no earlier row (see :func:`window_rows`)."""
    return table.values[window_rows(table.position, rows, input_size)]
