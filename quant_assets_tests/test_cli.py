"""``quant-assets train``, ``predict`` and the demo's model part, on a simulator lake (real runs)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.cli import main
from quant_assets.defs.assets._model_asset import DEMO_MIN_DAYS, demo_models
from quant_assets.errors import QuantAssetsError
from quant_assets_tests.dagster_helpers import query
from quant_assets_tests.model_helpers import (
    FIRST,
    LAST,
    SCORED_DAYS,
    TRAIN_DAYS,
    TRAIN_END,
    TREES,
    ModelLake,
    model_lake,
)


@pytest.fixture(scope="module")
def signal(tmp_path_factory: pytest.TempPathFactory) -> ModelLake:
    return model_lake(tmp_path_factory.getbasetemp(), signal=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No QT_* variable and no DAGSTER_HOME: defaults, and an ephemeral Dagster instance."""
    for name in [k for k in os.environ if k.startswith("QT_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return monkeypatch


@pytest.fixture
def data_dir(signal: ModelLake, tmp_path: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """A copy of the signal lake as the CLI's QT_DATA_DIR."""
    copied = signal.copy(tmp_path / "data")
    clean_env.setenv("QT_DATA_DIR", str(copied))
    return copied


def test_train_prints_each_model_against_both_baselines_and_its_verdict(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "train",
        "--models",
        "xgboost",
        "--profile",
        "small",
        "--days",
        str(TRAIN_DAYS),
        "--end-day",
        str(TRAIN_END),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    (header,) = [line for line in out if line.startswith("xgboost  xgboost-")]
    assert header.endswith("PROMOTED")
    table = out[out.index(header) + 1 : out.index(header) + 7]
    assert table[0].split() == ["test", "metric", "model", "zero", "last", "12"]
    assert [row.split()[0] for row in table[1:5]] == ["IC", "RMSE", "MAE", "directional"]
    assert table[5].startswith("  verdict: IC ")
    version = header.split()[1]
    assert query(data_dir, "SELECT promoted FROM model_registry WHERE version = ?", [version]) == [(True,)]


def test_train_refuses_an_unknown_model_naming_the_known_ones(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--models", "xgboost,prophet"]) == 2
    err = capsys.readouterr().err
    assert "unknown models ['prophet']" in err
    assert "xgboost, lightgbm, nhits, patchtst" in err


def test_train_fails_naming_the_model_when_no_features_are_stored(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("QT_DATA_DIR", str(tmp_path / "empty"))
    assert main(["train", "--models", "lightgbm", "--profile", "small"]) == 1
    out = capsys.readouterr().out
    assert "lightgbm  FAILED: lightgbm: no features of the current schema hash" in out


def test_the_demo_trains_the_models_then_predicts_and_scores_the_days_after(
    signal: ModelLake, tmp_path: Path
) -> None:
    # The tree models only: the torch ones take tens of seconds here (the demo itself trains all four).
    data_dir = signal.copy(tmp_path / "data")
    resources = {**signal.resources, "lake": type(signal.resources["lake"])(data_dir=str(data_dir))}
    before = {m: v.version for m, v in signal.trained.versions.items()}
    printed = demo_models(
        FIRST, LAST, instance=dg.DagsterInstance.ephemeral(), resources=resources, models=TREES
    )
    trained = query(data_dir, "SELECT model, version, promoted FROM model_registry ORDER BY model, version")
    new = [(m, v, p) for m, v, p in trained if v != before[m]]
    assert [(m, p) for m, _, p in new] == [("lightgbm", True), ("xgboost", True)]
    predicted = query(
        data_dir, "SELECT DISTINCT CAST(open_time AS DATE), version FROM predictions ORDER BY 1, 2"
    )
    assert predicted == [(day, v) for day in SCORED_DAYS for _, v, _ in sorted(new, key=lambda r: r[1])]
    scored = query(data_dir, "SELECT day, count(*) FROM model_evaluation GROUP BY day ORDER BY day")
    assert scored == [(day, 2) for day in SCORED_DAYS]  # the last day was scored by the fixture
    assert f"model_evaluation of the days after training ({SCORED_DAYS[0]} .. {SCORED_DAYS[-2]})" in printed


def test_the_demo_refuses_a_window_too_short_to_split() -> None:
    with pytest.raises(QuantAssetsError, match=f"at least {DEMO_MIN_DAYS} days"):
        demo_models(FIRST, FIRST + dt.timedelta(days=3), instance=dg.DagsterInstance.ephemeral())


def test_predict_prints_each_model_at_the_last_closed_candle_marking_the_promoted(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", "--symbol", "BTCUSDT", "--as-of", "2026-06-20T12:00:00"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = {line.split()[1]: line.split() for line in out if line.startswith("* ")}
    assert sorted(rows) == ["lightgbm", "xgboost"]  # both promoted, both marked
    for model, cells in rows.items():
        assert cells[2:4] == ["2026-06-20", "11:55"]  # the last candle closed by 12:00
        (stored,) = query(
            data_dir,
            "SELECT prediction FROM predictions WHERE model = ? AND symbol = 'BTCUSDT' AND open_time = ?",
            [model, dt.datetime(2026, 6, 20, 11, 55)],
        )
        # The live path (features from candles) gives what the day's batch stored, to the printed digits.
        assert float(cells[4]) == pytest.approx(stored[0], abs=1e-6)
    assert out[-1].startswith("  * promoted")


def test_predict_says_why_there_is_nothing_to_print(
    tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clean_env.setenv("QT_DATA_DIR", str(tmp_path / "empty"))
    assert main(["predict", "--symbol", "BTCUSDT"]) == 1
    assert "BTCUSDT: no prediction" in capsys.readouterr().out
