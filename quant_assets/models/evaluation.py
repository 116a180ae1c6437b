"""Honest evaluation: a time split with embargoes, metrics, two naive baselines, promotion past noise.

* :func:`split_by_time` cuts a window into train / validation / test (70/15/15 of its time by
  default) and leaves :data:`~quant_assets.models.base.HORIZON_BARS` bars out before each boundary
  and at the end, so the label window of every row (``fwd_ret_12`` reads the close 12 bars later)
  ends before the next part's first open time: no test label overlaps a training or validation one.
* :func:`score` gives rmse, mae, directional accuracy and IC (Spearman rank correlation across the
  symbols of each open time, averaged over open times) of a prediction against realized labels.
* Two baselines are scored on the same rows: ``baseline_zero`` (predicts no move) and
  ``baseline_last`` (predicts the last 12 bars' move again: the feature :data:`LAST_RETURN_FEATURE`).
* :func:`decide_promotion`: a moving-block bootstrap over open times of the per-timestamp IC
  difference (model minus baseline; blocks of whole timestamps, 288 bars = one day by default, far
  longer than the 12-bar overlap of neighbouring labels) gives a one-sided 95 % lower bound of the mean
  difference against each baseline; the model is promoted only when both bounds are above zero and
  its rmse is no worse than the zero baseline's.

Conventions: the IC of one open time needs :data:`MIN_SYMBOLS_FOR_IC` symbols with a prediction and
a label; a constant prediction (the zero baseline) ranks nothing and has IC 0 at every open time.
Directional accuracy counts rows whose label is not exactly 0; a prediction of exactly 0 calls no
direction and scores one half.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd

from quant_assets.models.base import HORIZON_BARS, TimeRange

BAR = timedelta(minutes=5)
BARS_PER_DAY = 288
LAST_RETURN_FEATURE = "ret_12"  # log return over the last 12 bars: the "last return" baseline
MIN_SYMBOLS_FOR_IC = 3
BLOCK_BARS = BARS_PER_DAY  # bootstrap block: one day of open times
RESAMPLES = 1000
BOOTSTRAP_SEED = 20261129
CONFIDENCE = 0.95  # one-sided


@dataclass(frozen=True)
class Split:
    """Train, validation and test ranges of one window, each ending an embargo before the next."""

    train: TimeRange
    valid: TimeRange
    test: TimeRange
    embargo_bars: int

    def as_dict(self) -> dict[str, str]:
        """ISO bounds of each part, for metadata."""
        return {
            f"{part}_{bound}": getattr(getattr(self, part), bound).isoformat()
            for part in ("train", "valid", "test")
            for bound in ("start", "end")
        }


def split_by_time(
    window: TimeRange,
    *,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    embargo_bars: int = HORIZON_BARS,
) -> Split:
    """Cut `window` into train, validation and test by time, on the 5-minute grid.

    The boundaries fall at the given fractions of the window's bars; each part then drops its last
    `embargo_bars` bars (the test part too, so every label it uses is realized inside `window`). A
    row at open time t has the label window (t, t + 12 bars]: with `embargo_bars` >= 12 it ends
    before the next part starts.

    Raises:
        ValueError: `embargo_bars` is shorter than the label horizon, the fractions do not sum to 1,
            or a part would be empty once its embargo is dropped.
    """
    if embargo_bars < HORIZON_BARS:
        raise ValueError(f"embargo of {embargo_bars} bars is shorter than the label horizon ({HORIZON_BARS})")
    if abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    bars = int((window.end - window.start) / BAR)
    first_cut = round(bars * fractions[0])
    second_cut = round(bars * (fractions[0] + fractions[1]))
    cuts = [0, first_cut, second_cut, bars]
    parts: list[TimeRange] = []
    for name, (lo, hi) in zip(("train", "valid", "test"), itertools.pairwise(cuts), strict=True):
        if hi - embargo_bars <= lo:
            raise ValueError(
                f"the {name} part of {window.start}..{window.end} would hold {hi - lo} bars, no more than "
                f"its {embargo_bars}-bar embargo: use a longer window"
            )
        parts.append(TimeRange(window.start + lo * BAR, window.start + (hi - embargo_bars) * BAR))
    return Split(train=parts[0], valid=parts[1], test=parts[2], embargo_bars=embargo_bars)


def ic_by_timestamp(
    open_time: pd.Series | np.ndarray, prediction: np.ndarray, realized: np.ndarray
) -> pd.Series:
    """Spearman correlation across symbols at each open time, indexed by open time (sorted).

    Rows with a non-finite prediction or label are left out; an open time with fewer than
    :data:`MIN_SYMBOLS_FOR_IC` rows left gets no entry; a constant prediction or label at an open
    time gives 0 (it ranks nothing).
    """
    frame = pd.DataFrame(
        {"t": np.asarray(open_time), "p": np.asarray(prediction, float), "y": np.asarray(realized, float)}
    )
    frame = frame[np.isfinite(frame["p"]) & np.isfinite(frame["y"])]
    groups = frame.groupby("t", sort=True)
    count = groups["p"].transform("size")
    frame = frame[count >= MIN_SYMBOLS_FOR_IC]
    if frame.empty:
        return pd.Series(dtype=np.float64, index=pd.Index([], name="t"))
    groups = frame.groupby("t", sort=True)
    rp = groups["p"].rank(method="average")
    ry = groups["y"].rank(method="average")
    ranks = pd.DataFrame({"t": frame["t"], "rp": rp, "ry": ry})
    ranks["rp"] -= ranks.groupby("t")["rp"].transform("mean")
    ranks["ry"] -= ranks.groupby("t")["ry"].transform("mean")
    ranks["xy"] = ranks["rp"] * ranks["ry"]
    ranks["xx"] = ranks["rp"] ** 2
    ranks["yy"] = ranks["ry"] ** 2
    sums = ranks.groupby("t", sort=True)[["xy", "xx", "yy"]].sum()
    denominator = np.sqrt(sums["xx"] * sums["yy"])
    with np.errstate(invalid="ignore", divide="ignore"):
        ic = np.where(denominator > 0, sums["xy"] / denominator, 0.0)
    return pd.Series(ic, index=sums.index, dtype=np.float64)


def directional_accuracy(prediction: np.ndarray, realized: np.ndarray) -> float:
    """Share of rows (label not 0) whose prediction has the label's sign; a 0 prediction scores 1/2."""
    p, y = np.asarray(prediction, float), np.asarray(realized, float)
    keep = np.isfinite(p) & np.isfinite(y) & (y != 0)
    if not keep.any():
        return float("nan")
    p, y = p[keep], y[keep]
    hits = np.where(p == 0, 0.5, (np.sign(p) == np.sign(y)).astype(float))
    return float(hits.mean())


def score(
    open_time: pd.Series | np.ndarray, prediction: np.ndarray, realized: np.ndarray
) -> dict[str, float]:
    """rmse, mae, directional_accuracy and ic of `prediction` against `realized` (finite rows only)."""
    p, y = np.asarray(prediction, float), np.asarray(realized, float)
    keep = np.isfinite(p) & np.isfinite(y)
    error = p[keep] - y[keep]
    ics = ic_by_timestamp(np.asarray(open_time)[keep], p[keep], y[keep])
    return {
        "rmse": float(np.sqrt(np.mean(error**2))) if error.size else float("nan"),
        "mae": float(np.mean(np.abs(error))) if error.size else float("nan"),
        "directional_accuracy": directional_accuracy(p[keep], y[keep]),
        "ic": float(ics.mean()) if len(ics) else float("nan"),
    }


def baseline_predictions(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The two naive predictions of `rows` (panel rows): zero, and :data:`LAST_RETURN_FEATURE` again.

    Where the last return is not known (a symbol's first bars) the last baseline predicts 0.
    """
    last = rows[LAST_RETURN_FEATURE].to_numpy(dtype=float)
    return {"baseline_zero": np.zeros(len(rows)), "baseline_last": np.nan_to_num(last, nan=0.0)}


def block_bootstrap_lower(
    values: np.ndarray,
    *,
    block: int = BLOCK_BARS,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    confidence: float = CONFIDENCE,
) -> float:
    """One-sided lower bound of the mean of `values` (a series in time order), moving-block bootstrap.

    Each resample concatenates blocks of `block` consecutive values starting at uniformly drawn
    positions until it is as long as `values`, and takes its mean; the bound is the
    ``1 - confidence`` quantile of those means. The same arguments always give the same bound.

    Raises:
        ValueError: fewer than two values, or `block` < 1.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n < 2 or block < 1:
        raise ValueError(f"a block bootstrap needs at least 2 values and a block >= 1, got {n} and {block}")
    block = min(block, n)
    blocks = -(-n // block)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n - block + 1, size=(resamples, blocks))
    prefix = np.concatenate([[0.0], np.cumsum(x)])
    full = prefix[starts[:, :-1] + block] - prefix[starts[:, :-1]]
    tail = n - (blocks - 1) * block  # the last block is cut to fill exactly n values
    last = prefix[starts[:, -1] + tail] - prefix[starts[:, -1]]
    means = (full.sum(axis=1) + last) / n
    return float(np.quantile(means, 1.0 - confidence))


def block_bars_for(timestamps: int, default: int = BLOCK_BARS) -> int:
    """Block length for a test of `timestamps` open times: `default`, shortened for short tests so at
    least 5 blocks fit, never below 3 label horizons."""
    return max(3 * HORIZON_BARS, min(default, timestamps // 5))


@dataclass(frozen=True)
class Verdict:
    """Whether a model is promoted, why, and the figures it was judged on."""

    promoted: bool
    reason: str  # the failed conditions with their numbers, or (promoted) every condition met
    metrics: dict[str, object]  # the registry's metrics JSON


def decide_promotion(
    open_time: pd.Series | np.ndarray,
    prediction: np.ndarray,
    realized: np.ndarray,
    baselines: dict[str, np.ndarray],
    *,
    block: int | None = None,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Verdict:
    """Score a model and both baselines on the same rows and apply the promotion rule.

    Promoted iff, against each of ``baseline_zero`` and ``baseline_last``, the one-sided 95 % lower
    bound of the mean per-timestamp IC difference (block bootstrap, :func:`block_bootstrap_lower`) is
    above 0, and the model's rmse is no larger than ``baseline_zero``'s. The reason names every
    failed condition with its numbers.

    Returns:
        A :class:`Verdict` whose metrics hold rmse, mae, directional_accuracy, ic, rows, timestamps,
        baseline_zero and baseline_last (the same four figures) and bootstrap
        (ic_diff_lower_zero, ic_diff_lower_last, block_bars, resamples).
    """
    times = np.asarray(open_time)
    p, y = np.asarray(prediction, float), np.asarray(realized, float)
    keep = np.isfinite(y) & np.isfinite(p)
    times, p, y = times[keep], p[keep], y[keep]
    model = score(times, p, y)
    model_ic = ic_by_timestamp(times, p, y)
    block_bars = block if block is not None else block_bars_for(len(model_ic))
    scores: dict[str, dict[str, float]] = {}
    lowers: dict[str, float] = {}
    failed: list[str] = []
    passed: list[str] = []
    for name in ("baseline_zero", "baseline_last"):
        base = np.asarray(baselines[name], float)[keep]
        scores[name] = score(times, base, y)
        base_ic = ic_by_timestamp(times, base, y).reindex(model_ic.index).fillna(0.0)
        diff = (model_ic - base_ic).to_numpy()
        lower = (
            block_bootstrap_lower(diff, block=block_bars, resamples=resamples, seed=seed)
            if len(diff) >= 2
            else float("nan")
        )
        lowers[name] = lower
        text = (
            f"IC {model['ic']:.4f} vs {name} {scores[name]['ic']:.4f}: one-sided 95% lower bound of "
            f"the difference {lower:.4f}"
        )
        (passed if lower > 0 else failed).append(text + (" > 0" if lower > 0 else " is not > 0"))
    rmse_text = f"rmse {model['rmse']:.6g} vs baseline_zero {scores['baseline_zero']['rmse']:.6g}"
    if model["rmse"] <= scores["baseline_zero"]["rmse"]:
        passed.append(rmse_text + " (no worse)")
    else:
        failed.append(rmse_text + " (worse)")
    metrics: dict[str, object] = {
        **model,
        "rows": int(keep.sum()),
        "timestamps": len(model_ic),
        **scores,
        "bootstrap": {
            "ic_diff_lower_zero": lowers["baseline_zero"],
            "ic_diff_lower_last": lowers["baseline_last"],
            "block_bars": block_bars,
            "resamples": resamples,
        },
    }
    if failed:
        return Verdict(False, "; ".join(failed), metrics)
    return Verdict(True, "; ".join(passed), metrics)
