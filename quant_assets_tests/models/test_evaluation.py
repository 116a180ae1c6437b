"""The time split and its embargoes, the metrics on hand-made numbers, the bootstrap, the promotion rule."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from quant_assets.models.base import HORIZON_BARS, TARGET, TimeRange
from quant_assets.models.evaluation import (
    BAR,
    baseline_predictions,
    block_bootstrap_lower,
    decide_promotion,
    directional_accuracy,
    ic_by_timestamp,
    score,
    split_by_time,
)
from quant_assets_tests.models.panels import SIGMA, START, synthetic_panel

WINDOW = TimeRange(START, START + timedelta(days=20))


def _label_windows(panel_frame: pd.DataFrame, part: TimeRange) -> tuple[np.datetime64, np.datetime64]:
    """First open time and last label end (open time + 12 bars) of the panel rows in `part`."""
    times = panel_frame.loc[part.mask(panel_frame["open_time"]), "open_time"]
    return times.min(), times.max() + HORIZON_BARS * BAR


def test_no_label_window_of_a_part_reaches_the_next_part() -> None:
    panel = synthetic_panel(symbols=3, days=20)
    split = split_by_time(WINDOW)

    train_first, train_label_end = _label_windows(panel.frame, split.train)
    valid_first, valid_label_end = _label_windows(panel.frame, split.valid)
    test_first, test_label_end = _label_windows(panel.frame, split.test)

    assert train_first == START
    # Each label window (t, t + 12 bars] ends before the next part's first open time.
    assert train_label_end < valid_first
    assert valid_label_end < test_first
    assert train_label_end < test_first
    # The test's labels are realized inside the window: nothing of the day after was used.
    assert test_label_end < WINDOW.end
    # The embargo is exactly 12 bars, and the parts keep 70/15/15 of the window's time.
    assert valid_first - split.train.end == HORIZON_BARS * BAR
    assert split.valid.start == START + timedelta(days=14)
    assert split.test.start == START + timedelta(days=17)


def test_the_split_refuses_an_embargo_shorter_than_the_label_horizon() -> None:
    with pytest.raises(ValueError, match="shorter than the label horizon"):
        split_by_time(WINDOW, embargo_bars=HORIZON_BARS - 1)


def test_the_split_refuses_a_window_too_short_for_its_embargoes() -> None:
    with pytest.raises(ValueError, match=r"the valid part .* would hold 9 bars"):
        split_by_time(TimeRange(START, START + 60 * BAR))


def test_metrics_on_hand_made_numbers() -> None:
    t0, t1 = np.datetime64("2026-03-01T00:00"), np.datetime64("2026-03-01T00:05")
    times = np.array([t0, t0, t0, t1, t1, t1])
    prediction = np.array([1.0, 2.0, 3.0, 0.0, -1.0, 2.0])
    realized = np.array([1.0, 3.0, 2.0, 1.0, -2.0, 0.0])

    scores = score(times, prediction, realized)

    # errors: 0, -1, 1, -1, 1, 2
    assert scores["rmse"] == pytest.approx(np.sqrt(8 / 6))
    assert scores["mae"] == pytest.approx(6 / 6)
    # t0: ranks (1,2,3) vs (1,3,2): rho = 1 - 6*2/(3*8) = 0.5; t1: ranks (2,1,3) vs (3,1,2): 0.5
    assert scores["ic"] == pytest.approx(0.5)
    # label 0 at the last row is left out; the 0 prediction scores one half: (1+1+1+0.5+1) / 5
    assert scores["directional_accuracy"] == pytest.approx(4.5 / 5)


def test_ic_of_a_constant_prediction_is_zero_and_thin_timestamps_are_left_out() -> None:
    t0, t1 = np.datetime64("2026-03-01T00:00"), np.datetime64("2026-03-01T00:05")
    times = np.array([t0, t0, t0, t1, t1])
    ic = ic_by_timestamp(times, np.zeros(5), np.array([1.0, 2.0, 3.0, 1.0, 2.0]))

    assert ic.to_dict() == {t0: 0.0}  # t1 has two symbols only


def test_directional_accuracy_counts_signs() -> None:
    assert directional_accuracy(np.array([1.0, -1.0, 1.0, -1.0]), np.array([2.0, -3.0, -1.0, 5.0])) == 0.5


def test_the_block_bootstrap_is_reproducible_and_depends_on_its_seed() -> None:
    values = np.random.default_rng(3).standard_normal(2000) + 0.05

    first = block_bootstrap_lower(values, block=288, resamples=1000, seed=7)
    again = block_bootstrap_lower(values, block=288, resamples=1000, seed=7)
    other = block_bootstrap_lower(values, block=288, resamples=1000, seed=8)

    assert first == again
    assert first != other
    assert first < values.mean()  # a lower bound
    assert block_bootstrap_lower(np.full(100, 0.25), block=10) == pytest.approx(0.25)


def test_longer_blocks_widen_the_bound_of_a_dependent_series() -> None:
    # A persistent (autocorrelated) series: short blocks understate the uncertainty of its mean.
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(3000)
    series = np.convolve(noise, np.ones(100) / 10, mode="same")
    short = series.mean() - block_bootstrap_lower(series, block=1)
    long = series.mean() - block_bootstrap_lower(series, block=288)
    assert long > 2 * short


def _judge(panel_frame: pd.DataFrame, prediction: np.ndarray):
    rows = panel_frame.reset_index(drop=True)
    return decide_promotion(
        rows["open_time"].to_numpy(), prediction, rows[TARGET].to_numpy(), baseline_predictions(rows)
    )


def test_a_planted_predictor_is_promoted() -> None:
    panel = synthetic_panel(symbols=10, days=4, signal=1.0, seed=5)
    frame = panel.frame
    truth = SIGMA * frame["x_signal"].to_numpy()  # the planted part of the next bar's return

    verdict = _judge(frame, truth)

    assert verdict.promoted, verdict.reason
    assert verdict.metrics["bootstrap"]["ic_diff_lower_zero"] > 0
    assert verdict.metrics["bootstrap"]["ic_diff_lower_last"] > 0
    assert verdict.metrics["rmse"] <= verdict.metrics["baseline_zero"]["rmse"]


def test_noise_is_not_promoted_and_the_reason_says_why() -> None:
    panel = synthetic_panel(symbols=10, days=4, signal=1.0, seed=5)
    noise = SIGMA * np.random.default_rng(9).standard_normal(len(panel.frame))

    verdict = _judge(panel.frame, noise)

    assert not verdict.promoted
    assert "lower bound of the difference" in verdict.reason
    assert "is not > 0" in verdict.reason


def test_a_good_ranking_with_a_worse_rmse_than_zero_is_not_promoted() -> None:
    panel = synthetic_panel(symbols=10, days=4, signal=1.0, seed=5)
    overconfident = 50 * SIGMA * panel.frame["x_signal"].to_numpy()  # right order, far too large

    verdict = _judge(panel.frame, overconfident)

    assert not verdict.promoted
    assert verdict.metrics["bootstrap"]["ic_diff_lower_zero"] > 0  # the IC conditions hold
    assert verdict.reason.startswith("rmse ")
    assert "(worse)" in verdict.reason
    assert f"{verdict.metrics['rmse']:.6g}" in verdict.reason


def test_metrics_carry_the_registry_keys() -> None:
    panel = synthetic_panel(symbols=5, days=2, signal=1.0)
    verdict = _judge(panel.frame, SIGMA * panel.frame["x_signal"].to_numpy())
    four = {"rmse", "mae", "directional_accuracy", "ic"}
    assert four <= set(verdict.metrics)
    assert set(verdict.metrics["baseline_zero"]) == four
    assert set(verdict.metrics["baseline_last"]) == four
    assert set(verdict.metrics["bootstrap"]) == {
        "ic_diff_lower_zero",
        "ic_diff_lower_last",
        "block_bars",
        "resamples",
    }
    assert verdict.metrics["bootstrap"]["block_bars"] >= 3 * HORIZON_BARS


def test_the_last_return_baseline_is_the_12_bar_return_feature() -> None:
    frame = pd.DataFrame({"ret_12": [0.01, np.nan, -0.02]})
    baselines = baseline_predictions(frame)
    assert baselines["baseline_last"].tolist() == [0.01, 0.0, -0.02]
    assert baselines["baseline_zero"].tolist() == [0.0, 0.0, 0.0]


def test_a_time_range_is_half_open_and_naive() -> None:
    r = TimeRange(datetime(2026, 3, 1), datetime(2026, 3, 2))
    times = np.array(["2026-02-28T23:55", "2026-03-01T00:00", "2026-03-02T00:00"], dtype="datetime64[ms]")
    assert r.mask(times).tolist() == [False, True, False]
    with pytest.raises(ValueError, match="before its end"):
        TimeRange(datetime(2026, 3, 2), datetime(2026, 3, 1))
