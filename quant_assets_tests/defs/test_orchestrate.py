"""The CLI's runs go through the instance's run coordinator, as a launch from the UI does.

A temporary ``$DAGSTER_HOME`` with a bare ``dagster.yaml`` (Dagster 1.13's default coordinator
queues runs) and no daemon: the CLI launches its queued run itself, follows it and exits by its
outcome. The run executes in a process the code server starts, against the simulator over HTTP.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from quant_assets import cli
from quant_assets.defs.orchestrate import JobRun, submit_job_runs
from quant_assets.errors import QuantAssetsError
from quant_assets.simulator import Simulator


@pytest.fixture
def home(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh instance directory and data directory; the environment a CLI user would have."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("QT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QT_BINANCE_FAPI_URL", sim.url)
    monkeypatch.setenv("QT_COINGECKO_API_URL", sim.coingecko_url)
    return dagster_home


def test_cli_backfill_submits_one_run_to_the_instance_and_follows_it(
    home: Path, yesterday: dt.date, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["backfill", "--days", "2", "--symbols", "BTCUSDT,ETHUSDT"])
    out = capsys.readouterr().out
    assert code == 0, out
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert [(r.job_name, r.status) for r in runs] == [("ohlcv_job", dg.DagsterRunStatus.SUCCESS)]
        assert runs[0].tags["quant_assets/reason"] == "quant-assets backfill"
        materialized = instance.get_materialized_partitions(dg.AssetKey("ohlcv"))
    first = yesterday - dt.timedelta(days=1)
    assert materialized == {f"{d}|{s}" for d in (first, yesterday) for s in ("BTCUSDT", "ETHUSDT")}
    assert "submitted run" in out
    assert "no daemon is running: launching it from here" in out
    assert "ohlcv run done: 4 partitions written" in out  # the run's own log, followed live


def test_cli_backfill_exits_non_zero_naming_the_symbol_days_that_failed(
    sim: Simulator, home: Path, yesterday: dt.date, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults.delist("ETHUSDT")  # klines answer 400 -1121 for it
    code = cli.main(["backfill", "--days", "1", "--symbols", "BTCUSDT,ETHUSDT"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert f"{yesterday}|ETHUSDT" in out
    assert "1 runs failed" in out
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("ohlcv")) == {f"{yesterday}|BTCUSDT"}


def test_submitting_needs_an_instance_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(QuantAssetsError, match=r"DAGSTER_HOME.*--in-process"):
        submit_job_runs([JobRun("ohlcv_job")])


def test_cli_train_submits_a_retrain_job_run_and_names_why_each_model_failed(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["train", "--models", "xgboost,lightgbm", "--profile", "small"])  # nothing stored yet
    out = capsys.readouterr().out
    assert code == 1, out
    assert "xgboost  FAILED" in out
    assert "lightgbm  FAILED" in out
    assert "materialize feature_table first" in out
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
    assert run.job_name == "retrain_job"
    assert run.asset_selection == {dg.AssetKey("xgboost_model"), dg.AssetKey("lightgbm_model")}
    assert run.tags["quant_assets/reason"] == "quant-assets train"


def test_cli_backfill_without_an_instance_home_runs_in_process_and_says_so(
    home: Path, yesterday: dt.date, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DAGSTER_HOME")
    assert cli.main(["backfill", "--days", "1", "--symbols", "BTCUSDT"]) == 0
    captured = capsys.readouterr()
    assert "running in this process (as --in-process)" in captured.err
    assert "1 symbol-days in 1 runs, ok" in captured.out
    assert "submitted run" not in captured.out
