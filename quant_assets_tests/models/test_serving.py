"""Serving: the version in force predicts a day, predictions are scored, the live path, end to end.

Two kinds of lake: the models' synthetic lake (``panels.write_synthetic_lake``: real Parquet, the
library's feature names, a known planted signal) for version choice, refusal and hand-checked
scores; and lakes built from the exchange simulator over HTTP (candles -> features -> labels, as the
assets build them), signal on and off, for the whole chain and the live path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quant_assets.errors import StoreError
from quant_assets.feature_days import build_feature_day, build_label_day, write_feature_day, write_label_day
from quant_assets.features import feature_schema
from quant_assets.models.base import HORIZON_BARS, SchemaMismatch, TimeRange
from quant_assets.models.data import load_panel
from quant_assets.models.lightgbm_model import Config as LightGBMConfig
from quant_assets.models.nhits import Config as NHitsConfig
from quant_assets.models.registry import (
    ModelVersion,
    load_model,
    save_artifact,
    version_name,
    write_version,
)
from quant_assets.models.serving import (
    EVALUATION_COLUMNS,
    PREDICTION_COLUMNS,
    evaluate_day,
    latest_predictions,
    predict_day,
    write_evaluation,
    write_predictions,
)
from quant_assets.models.training import train
from quant_assets.models.xgboost_model import Config as XGBoostConfig
from quant_assets.models.xgboost_model import XGBoostModel
from quant_assets.ohlcv_collect import SymbolDay, collect_ohlcv
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.store import schemas
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets.store.schemas import FEATURE_SCHEMA_HASH
from quant_assets_tests.feature_helpers import write_universe
from quant_assets_tests.models.panels import synthetic_panel, write_synthetic_lake

FIRST = dt.date(2026, 3, 1)
DAYS = 10
NOW = dt.datetime(2026, 3, 12, 8, 0)


def _day(offset: int) -> dt.date:
    return FIRST + dt.timedelta(days=offset)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------- the synthetic lake
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, list[ModelVersion]]:
    """10 days of 6 universe symbols (+ one outside it), a strong planted signal, and two XGBoost
    versions: one trained through day 4, one through day 6."""
    lake = Lake(tmp_path_factory.mktemp("synthetic"))
    write_synthetic_lake(
        lake, first_day=FIRST, days=DAYS, symbols=6, signal=1.0, seed=3, extra_symbols=("ZZZUSDT",)
    )
    trained = [
        train(
            lake,
            "xgboost",
            end_day=_day(end),
            days=5,
            config=XGBoostConfig.small(),
            now=NOW + dt.timedelta(hours=end),
        ).version
        for end in (4, 6)
    ]
    return lake, trained


def test_a_day_is_predicted_only_by_the_latest_version_trained_before_it(synthetic):
    lake, (early, late) = synthetic

    before_any = predict_day(lake, _day(4))  # early's test rows end in day 4
    by_early = predict_day(lake, _day(6))
    by_late = predict_day(lake, _day(8))

    assert early.train_end < dt.datetime.combine(_day(5), dt.time()) <= late.train_end
    assert before_any.empty
    assert before_any.attrs["without_version"] == ["xgboost", "lightgbm", "nhits", "patchtst"]
    assert set(by_early["version"]) == {early.version}
    assert set(by_late["version"]) == {late.version}
    assert by_late.attrs["versions"] == {"xgboost": late.version}
    assert by_late.attrs["without_version"] == ["lightgbm", "nhits", "patchtst"]
    for predicted, version in ((by_early, early), (by_late, late)):
        assert (predicted["version"] == version.version).all()
        assert (pd.to_datetime(predicted["open_time"]) > version.train_end).all()


def test_predictions_cover_every_candle_of_the_days_universe_with_the_versions_verdict(synthetic):
    lake, (_, late) = synthetic
    day = _day(8)

    predicted = predict_day(lake, day)

    assert list(predicted.columns) == PREDICTION_COLUMNS
    assert sorted(predicted["symbol"].unique()) == [f"S{k:02d}USDT" for k in range(6)]  # not ZZZUSDT
    assert len(predicted) == 6 * 288
    assert predicted["open_time"].min() == pd.Timestamp(day)
    assert predicted["open_time"].max() == pd.Timestamp(day) + pd.Timedelta(hours=23, minutes=55)
    assert (predicted["horizon"] == HORIZON_BARS).all()
    assert (predicted["promoted"] == late.promoted).all()
    panel = load_panel(lake, day, day + dt.timedelta(days=1)).panel
    rows = TimeRange(dt.datetime.combine(day, dt.time()), dt.datetime.combine(_day(9), dt.time()))
    direct = load_model(lake, late).predict(panel, rows)
    assert np.array_equal(predicted["prediction"].to_numpy(), direct["prediction"].to_numpy())


def test_written_predictions_read_through_the_view_and_a_rerun_writes_the_same_bytes(synthetic):
    lake, (_, late) = synthetic
    day = _day(7)

    first = write_predictions(lake, day, predict_day(lake, day))
    digest = _sha(first.path)
    again = write_predictions(lake, day, predict_day(lake, day))

    assert _sha(again.path) == digest
    with Catalog(lake).connect() as con:
        rows = con.execute(
            "SELECT version, count(*), bool_and(promoted = ?) FROM predictions WHERE open_time::DATE = ? "
            "GROUP BY version",
            [late.promoted, day],
        ).fetchall()
    assert rows == [(late.version, 6 * 288, True)]


def test_predictions_of_a_day_without_stored_features_are_refused_and_nothing_is_written(synthetic):
    lake, _ = synthetic
    day = _day(DAYS + 3)

    with pytest.raises(StoreError, match=f"cannot predict {day}: its feature day is not stored"):
        predict_day(lake, day)
    assert not lake.path("predictions", date=day).exists()


def _register_other_schema_version(lake: Lake, train_end: dt.datetime) -> ModelVersion:
    """An XGBoost version fitted on another feature set (ret_12, x_signal, noise_0..2: the old
    system's "trained on one set, served another"), registered with data ending at `train_end`."""
    panel = synthetic_panel(symbols=4, days=3, signal=1.0, seed=5)
    frame = panel.frame
    times = frame["open_time"]
    model = XGBoostModel(XGBoostConfig.small(), seed=0)
    train_rows = TimeRange(times.min().to_pydatetime(), (times.min() + pd.Timedelta(days=2)).to_pydatetime())
    valid_rows = TimeRange(train_rows.end + dt.timedelta(hours=1), times.max().to_pydatetime())
    model.fit(panel, train_rows, valid_rows)
    trained_at = NOW + dt.timedelta(days=5)
    name = version_name("xgboost", trained_at)
    version = ModelVersion(
        model="xgboost",
        version=name,
        trained_at=trained_at,
        train_start=dt.datetime.combine(FIRST, dt.time()),
        train_end=train_end,
        feature_schema_hash=model.schema_hash,
        features=model.features,
        metrics={},
        artifact_path=save_artifact(lake, model, name),
        promoted=True,
    )
    write_version(lake, version)
    return version


def test_a_version_fitted_on_another_feature_set_is_refused_naming_the_features(tmp_path):
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=6, symbols=4, signal=1.0, seed=3)
    day = _day(5)
    stale = _register_other_schema_version(lake, dt.datetime.combine(_day(4), dt.time()))

    with pytest.raises(SchemaMismatch) as refused:
        predict_day(lake, day)

    message = str(refused.value)
    assert stale.version in message
    assert "missing from the panel: ['x_signal', 'noise_0', 'noise_1', 'noise_2']" in message
    assert "extra in the panel: ['ret_1', 'ret_3'" in message
    assert stale.feature_schema_hash in message
    assert feature_schema().hash in message
    assert not lake.path("predictions", date=day).exists()


def test_a_refused_version_leaves_the_other_models_predicting(tmp_path):
    lake = Lake(tmp_path)
    write_synthetic_lake(lake, first_day=FIRST, days=6, symbols=4, signal=1.0, seed=3)
    good = train(lake, "lightgbm", end_day=_day(3), days=4, config=LightGBMConfig.small(), now=NOW).version
    stale = _register_other_schema_version(lake, dt.datetime.combine(_day(4), dt.time()))

    predicted = predict_day(lake, _day(5))

    assert set(predicted["model"]) == {"lightgbm"}
    assert set(predicted["version"]) == {good.version}
    assert list(predicted.attrs["refused"]) == ["xgboost"]
    assert predicted.attrs["refused"]["xgboost"].startswith(stale.version + ": feature schema mismatch")


# ------------------------------------------------------------------------- evaluation by hand
T = [dt.datetime(2026, 4, 2, 10, 0) + dt.timedelta(minutes=5 * k) for k in range(3)]
EVAL_DAY = dt.date(2026, 4, 2)


def _hand_lake(root: Path) -> Lake:
    """Three symbols at three open times. Labels (fwd_ret_12), the stored ret_12 feature and the
    predictions of xgboost version V1; C's label at T[1] is not known yet. A lightgbm version
    predicted only that row."""
    lake = Lake(root)
    symbols, times = ["AAAUSDT", "BBBUSDT", "CCCUSDT"] * 3, [t for t in T for _ in range(3)]
    label = [-0.01, 0.01, 0.02, 0.02, 0.01, math.nan, 0.02, 0.03, 0.01]
    ret_12 = [0.005, -0.005, 0.0, math.nan, 0.01, 0.0, -0.01, 0.0, 0.02]
    predicted = [0.01, 0.02, 0.03, 0.03, -0.01, 0.00, 0.01, 0.02, 0.03]
    lake.write(
        "labels",
        pd.DataFrame(
            {
                "symbol": symbols,
                "open_time": times,
                "fwd_ret_1": np.nan,
                "fwd_ret_12": label,
                "fwd_ret_48": np.nan,
            }
        ),
        date=EVAL_DAY,
    )
    lake.write(
        "features",
        pd.DataFrame({"symbol": symbols, "open_time": times, FEATURE_SCHEMA_HASH: "h", "ret_12": ret_12}),
        schema=schemas.features_schema(["ret_12"]),
        date=EVAL_DAY,
    )
    rows = pd.DataFrame(
        {
            "model": "xgboost",
            "version": "xgboost-20260401T000000.000000Z",
            "symbol": symbols,
            "open_time": times,
            "horizon": 12,
            "prediction": predicted,
            "promoted": True,
        }
    )
    unknown = rows.iloc[[5]].assign(
        model="lightgbm", version="lightgbm-20260401T000000.000000Z", promoted=False
    )
    write_predictions(lake, EVAL_DAY, pd.concat([rows, unknown], ignore_index=True))
    return lake


def test_evaluation_rows_are_the_hand_checked_numbers(tmp_path):
    lake = _hand_lake(tmp_path)

    evaluation = evaluate_day(lake, EVAL_DAY)

    assert list(evaluation.columns) == EVALUATION_COLUMNS
    lightgbm, xgboost = evaluation.to_dict("records")
    # 8 rows with a known label. IC: T[0] ranks agree (1.0); T[1] has 2 symbols left (< 3, no IC);
    # T[2] predictions rank (1, 2, 3) against labels (2, 3, 1): -0.5. Mean 0.25. Directions: 6 of 8.
    # Errors 0.02 0.01 0.01 | 0.01 -0.02 | -0.01 -0.01 0.02: rmse sqrt(17e-4 / 8), mae 0.11 / 8.
    expected = {
        "model": "xgboost",
        "version": "xgboost-20260401T000000.000000Z",
        "day": EVAL_DAY,
        "promoted": True,
        "rows": 8,
        "ic": 0.25,
        "directional_accuracy": 0.75,
        "rmse": math.sqrt(17e-4 / 8),
        "mae": 0.11 / 8,
        # Zero: ranks nothing (IC 0), calls no direction (1/2), errors are the labels.
        "baseline_zero_ic": 0.0,
        "baseline_zero_directional_accuracy": 0.5,
        "baseline_zero_rmse": math.sqrt(25e-4 / 8),
        "baseline_zero_mae": 0.13 / 8,
        # Last return (unknown -> 0): IC -0.5 at T[0] and T[2]; directions 0 0 1/2 | 1/2 1 | 0 1/2 1;
        # errors 0.015 -0.015 -0.02 | -0.02 0 | -0.03 -0.03 0.01.
        "baseline_last_ic": -0.5,
        "baseline_last_directional_accuracy": 3.5 / 8,
        "baseline_last_rmse": math.sqrt(31.5e-4 / 8),
        "baseline_last_mae": 0.14 / 8,
    }
    assert xgboost == pytest.approx(expected, abs=1e-12)
    assert lightgbm["rows"] == 0  # its one prediction's label is not known yet
    assert lightgbm["promoted"] is False
    assert all(math.isnan(lightgbm[c]) for c in EVALUATION_COLUMNS[5:])


def test_evaluation_is_written_for_its_day_and_a_rerun_gives_the_same_bytes(tmp_path):
    lake = _hand_lake(tmp_path)

    digest = _sha(write_evaluation(lake, EVAL_DAY, evaluate_day(lake, EVAL_DAY)).path)
    again = _sha(write_evaluation(lake, EVAL_DAY, evaluate_day(lake, EVAL_DAY)).path)

    assert again == digest
    with Catalog(lake).connect() as con:
        assert con.execute("SELECT model, rows, ic FROM model_evaluation ORDER BY model").fetchall() == [
            ("lightgbm", 0, None),
            ("xgboost", 8, pytest.approx(0.25)),
        ]
    with pytest.raises(StoreError, match="holds rows of"):
        write_evaluation(lake, EVAL_DAY + dt.timedelta(days=1), evaluate_day(lake, EVAL_DAY))


def test_evaluating_a_day_without_labels_says_what_to_materialize(tmp_path):
    lake = _hand_lake(tmp_path)
    lake.path("labels", date=EVAL_DAY).unlink()

    with pytest.raises(StoreError, match=f"labels of {EVAL_DAY} is not stored; materialize it first"):
        evaluate_day(lake, EVAL_DAY)


# ------------------------------------------------------------ lakes built from the simulator
SIM_NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC)
SIM_SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"]
CANDLE_DAYS = [dt.date(2026, 11, 8) + dt.timedelta(days=k) for k in range(13)]  # 11-08 .. 11-20
FEATURE_DAYS = CANDLE_DAYS[3:-1]  # 11-11 .. 11-19: three days of warm-up before, labels need the next day
TRAIN_END = dt.date(2026, 11, 17)  # 7 feature days, 11-11 .. 11-17
LATER_DAYS = [dt.date(2026, 11, 18), dt.date(2026, 11, 19)]


def _simulated_lake(root: Path, *, signal: bool) -> Lake:
    """Candles of six symbols fetched over HTTP by the production client, then features and labels as
    the assets build them, and the universe snapshot of the first day."""
    lake = Lake(root)
    with Simulator(now=SIM_NOW, signal=signal) as sim:
        client = BinanceFuturesClient(sim.url, weight_per_minute=None, budget_dir=root / ".budget")
        result = collect_ohlcv(
            client,
            [SymbolDay(s, d) for s in SIM_SYMBOLS for d in CANDLE_DAYS],
            lambda p, frame: lake.write("ohlcv", frame, exchange="binance", symbol=p.symbol, date=p.day),
        )
    assert not result.failed, result.failed
    lake.compact_ohlcv(CANDLE_DAYS)
    write_universe(root, CANDLE_DAYS[0], SIM_SYMBOLS)
    for day in FEATURE_DAYS:
        write_feature_day(lake, build_feature_day(lake, day))
        write_label_day(lake, build_label_day(lake, day))
    return lake


@pytest.fixture(scope="module")
def signal_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return _simulated_lake(tmp_path_factory.mktemp("signal_on"), signal=True)


@pytest.fixture(scope="module")
def noise_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return _simulated_lake(tmp_path_factory.mktemp("signal_off"), signal=False)


def _train_predict_evaluate(lake: Lake, model: str, config: object) -> tuple[bool, str, pd.DataFrame]:
    result = train(lake, model, end_day=TRAIN_END, days=7, config=config, now=SIM_NOW)
    for day in LATER_DAYS:
        write_predictions(lake, day, predict_day(lake, day))
        write_evaluation(lake, day, evaluate_day(lake, day))
    with Catalog(lake).connect() as con:
        scored = con.execute(
            "SELECT day, rows, ic, baseline_last_ic, rmse, baseline_zero_rmse FROM model_evaluation "
            "WHERE model = ? ORDER BY day",
            [model],
        ).df()
    return result.promoted, result.reason, scored


def test_with_the_planted_signal_lightgbm_is_promoted_and_scores_on_later_days(signal_lake):
    promoted, reason, scored = _train_predict_evaluate(signal_lake, "lightgbm", LightGBMConfig.small())

    assert promoted, reason
    assert scored["day"].dt.date.tolist() == LATER_DAYS
    assert (scored["rows"] == 6 * 288).all()  # every label known: the candles of 11-20 are stored
    # One day of 6 symbols: the daily IC's standard error is about 0.09 (labels overlap 12 bars).
    assert scored["ic"].mean() > 0.1
    assert (scored["ic"] > scored["baseline_last_ic"]).all()


@pytest.mark.parametrize(
    ("model", "config"), [("xgboost", XGBoostConfig.small()), ("lightgbm", LightGBMConfig.small())]
)
def test_without_the_signal_no_tree_is_promoted_and_no_ic_is_far_from_zero(noise_lake, model, config):
    promoted, reason, scored = _train_predict_evaluate(noise_lake, model, config)

    assert not promoted, reason
    assert (scored["ic"].abs() < 0.2).all()  # about two standard errors of a day's IC


def test_the_live_path_predicts_the_last_closed_candle_as_the_stored_features_do(signal_lake):
    quick_nhits = dataclasses.replace(NHitsConfig.small(), max_steps=20, eval_every=10, valid_windows=256)
    later = SIM_NOW + dt.timedelta(hours=1)
    for model, config in (("xgboost", XGBoostConfig.small()), ("nhits", quick_nhits)):
        train(signal_lake, model, end_day=TRAIN_END, days=7, config=config, now=later)
    as_of = dt.datetime(2026, 11, 20, 0, 0, 30, tzinfo=dt.UTC)  # 11-19 23:55 closed 30 s ago

    live = latest_predictions(signal_lake, ["SOLUSDT", "BTCUSDT"], as_of)

    assert list(live.columns) == PREDICTION_COLUMNS
    assert {"xgboost", "nhits"} <= set(live["model"])
    assert live.groupby("model", sort=False)["symbol"].agg(list).map(tuple).unique().tolist() == [
        ("SOLUSDT", "BTCUSDT")
    ]
    assert (live["open_time"] == pd.Timestamp("2026-11-19 23:55")).all()
    # The stored path (feature_table rows, the day before as context) predicts the same candle alike.
    stored = predict_day(signal_lake, dt.date(2026, 11, 19))
    both = live.merge(stored, on=["model", "version", "symbol", "open_time"], suffixes=("", "_stored"))
    assert len(both) == len(live)
    np.testing.assert_allclose(both["prediction"], both["prediction_stored"], rtol=0, atol=1e-6)
    assert (both["promoted"] == both["promoted_stored"]).all()


def test_the_live_path_uses_no_version_whose_labels_were_not_yet_realized(signal_lake):
    early = dt.datetime(2026, 11, 17, 12, tzinfo=dt.UTC)  # every version's test labels end 11-18 00:00

    live = latest_predictions(signal_lake, "BTCUSDT", early)

    assert live.empty
    assert live.attrs["without_version"] == ["xgboost", "lightgbm", "nhits", "patchtst"]
