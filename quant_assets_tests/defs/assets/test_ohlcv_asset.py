"""``ohlcv`` materialized on a temporary instance against the simulator over real HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import requests

from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.simulator import Simulator
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import check_evaluations, materialize_range, query, resources_for

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def served_closed_candles(sim: Simulator, symbol: str, day: dt.date) -> pd.DataFrame:
    """What the venue serves for `day`, fetched raw (no client code of ours), as floats."""
    start = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
    rows = requests.get(
        f"{sim.url}/fapi/v1/klines",
        params={
            "symbol": symbol,
            "interval": "5m",
            "startTime": start,
            "endTime": start + 86_400_000 - 1,
            "limit": 1500,
        },
        timeout=10,
    ).json()
    frame = pd.DataFrame(
        [[r[0], *map(float, r[1:6]), float(r[7]), int(r[8]), float(r[9]), float(r[10])] for r in rows],
        columns=[
            "open_ms",
            "open",
            "high",
            "low",
            "close",
            "volume",
            "quote_volume",
            "trades",
            "taker_buy_volume",
            "taker_buy_quote_volume",
        ],
    )
    frame.insert(0, "open_time", pd.to_datetime(frame.pop("open_ms"), unit="ms"))
    return frame


def stored(data_dir: Path, symbol: str, day: dt.date) -> pd.DataFrame:
    """One stored partition, its path's keys (exchange, symbol) as columns."""
    return Lake(data_dir).read("ohlcv", exchange="binance", symbol=symbol, date=day)


def digest(data_dir: Path) -> dict[str, str]:
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data_dir / "lake").rglob("*.parquet"))
    }


def test_one_run_stores_each_symbol_day_exactly_as_served(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    first = yesterday - dt.timedelta(days=2)
    result = materialize_range(ohlcv, instance, resources_for(sim, tmp_path), SYMBOLS, first, yesterday)
    assert result.success
    assert len(instance.get_materialized_partitions(dg.AssetKey("ohlcv"))) == 9
    # Consecutive days of a symbol are fetched together: 864 candles = 2 requests of 499, not 3 days.
    assert sim.stats.requests["/fapi/v1/klines"] == 3 * 2
    for symbol in SYMBOLS:
        for offset in range(3):
            day = first + dt.timedelta(days=offset)
            got = stored(tmp_path, symbol, day)
            want = served_closed_candles(sim, symbol, day)
            assert len(got) == 288
            pd.testing.assert_frame_equal(got[want.columns].reset_index(drop=True), want, check_dtype=False)
            assert set(got["exchange"]) == {"binance"}
    rows = query(tmp_path, "SELECT symbol, count(*) FROM ohlcv GROUP BY symbol ORDER BY symbol")
    assert rows == [("BTCUSDT", 864), ("ETHUSDT", 864), ("SOLUSDT", 864)]
    summary = check_evaluations(instance, "ohlcv", "candles_valid")[None]
    assert summary.status.value == "SUCCEEDED"
    assert summary.event.dagster_event.asset_check_evaluation_data.metadata["partitions_checked"].value == 9
    for record in instance.fetch_materializations(dg.AssetKey("ohlcv"), limit=100).records:
        metadata = record.asset_materialization.metadata
        assert metadata["candles_valid"].value is True
        assert metadata["missing_candles"].value == 0


def test_faults_are_survived_and_the_gap_is_kept_and_reported(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    gap_start = dt.datetime.combine(yesterday, dt.time(10, 0), dt.UTC)
    sim.faults.gap("ETHUSDT", gap_start, gap_start + dt.timedelta(minutes=25))
    sim.faults.fail_next("/fapi/v1/klines", 429, retry_after=1)
    sim.faults.fail_next("/fapi/v1/klines", 503)
    sim.faults.truncate_next("/fapi/v1/klines")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(ohlcv, instance, resources_for(sim, tmp_path), SYMBOLS, yesterday, yesterday)
    assert result.success  # a gap is a fact of the market: a warning, not a failure
    assert sim.stats.banned_requests == 0
    assert sim.stats.rate_limited >= 1
    eth = stored(tmp_path, "ETHUSDT", yesterday)
    assert len(eth) == 283
    pd.testing.assert_frame_equal(
        eth[served_closed_candles(sim, "ETHUSDT", yesterday).columns].reset_index(drop=True),
        served_closed_candles(sim, "ETHUSDT", yesterday),
        check_dtype=False,
    )
    complete = check_evaluations(instance, "ohlcv", "complete_day")
    gap_check = complete[f"{yesterday}|ETHUSDT"]
    assert gap_check.status.value == "FAILED"
    evaluation = gap_check.event.dagster_event.asset_check_evaluation_data
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["gaps"].value == ["10:00-10:20"]
    summary = complete[None].event.dagster_event.asset_check_evaluation_data
    assert complete[None].status.value == "FAILED"
    assert summary.severity == dg.AssetCheckSeverity.WARN
    assert summary.metadata["failing"].value == [f"{yesterday}|ETHUSDT"]
    assert f"{yesterday}|BTCUSDT" not in complete


def test_rematerializing_writes_identical_bytes(sim: Simulator, tmp_path: Path, yesterday: dt.date) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    materialize_range(ohlcv, instance, resources, SYMBOLS[:2], yesterday - dt.timedelta(days=1), yesterday)
    before = digest(tmp_path)
    materialize_range(ohlcv, instance, resources, SYMBOLS[:2], yesterday - dt.timedelta(days=1), yesterday)
    assert digest(tmp_path) == before
    assert len(before) == 4 + 2  # four partitions and two day files


def test_a_delisted_symbol_fails_alone_and_is_named(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    sim.faults.delist("ETHUSDT")
    instance = dg.DagsterInstance.ephemeral()
    result = materialize_range(ohlcv, instance, resources_for(sim, tmp_path), SYMBOLS, yesterday, yesterday)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.user_failure_data.description
    assert f"{yesterday}|ETHUSDT" in message
    assert "Traceback" not in message
    assert sorted(instance.get_materialized_partitions(dg.AssetKey("ohlcv"))) == [
        f"{yesterday}|BTCUSDT",
        f"{yesterday}|SOLUSDT",
    ]
    assert stored(tmp_path, "BTCUSDT", yesterday).shape[0] == 288


def test_failed_fetch_leaves_the_previous_partition_untouched(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday)
    before = digest(tmp_path)
    sim.faults.fail_next("/fapi/v1/klines", 503, times=50)
    result = materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday)
    assert not result.success
    assert digest(tmp_path) == before


def _materialize_cli(env: dict[str, str], partition_range: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_assets.definitions",
        "--select", "ohlcv", "--partition-range", partition_range,
    ]  # fmt: skip
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def cli_env(sim: Simulator, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    return {
        **os.environ,
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "DAGSTER_HOME": str(home),
    }


def test_a_run_killed_mid_write_leaves_only_whole_files(
    sim: Simulator, cli_env: dict[str, str], tmp_path: Path, yesterday: dt.date
) -> None:
    data = tmp_path / "data"
    with dg.DagsterInstance.local_temp(cli_env["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("symbol", ["BTCUSDT", "ETHUSDT"])
    first = yesterday - dt.timedelta(days=29)
    sim.faults.timeout_next("/fapi/v1/klines", seconds=0.3, times=100)  # slow enough to be caught mid-run
    child = _materialize_cli(cli_env, f"{first}|BTCUSDT...{yesterday}|ETHUSDT")
    deadline = time.monotonic() + 120
    while len(list(data.glob("lake/ohlcv/**/*.parquet"))) < 5:
        assert child.poll() is None, child.stdout.read() if child.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)  # no cleanup of ours runs
    child.wait()
    files = list(data.glob("lake/ohlcv/**/*.parquet"))
    assert files
    for path in files:
        assert len(pd.read_parquet(path)) == 288  # every visible file is whole
    sim.faults.clear()
    rerun = _materialize_cli(cli_env, f"{first}|BTCUSDT...{yesterday}|ETHUSDT")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output[-3000:]
    assert len(list(data.glob("lake/ohlcv/**/*.parquet"))) == 60
    assert query(data, "SELECT count(*) FROM ohlcv") == [(60 * 288,)]


def test_concurrent_runs_and_a_reader_do_not_block_each_other(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    resources = resources_for(sim, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("symbol", SYMBOLS)
    materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday)  # views exist
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                counts.append(query(tmp_path, "SELECT count(*) FROM ohlcv")[0][0])
            except BaseException as error:  # the assertion below reports it
                errors.append(error)
            time.sleep(0.01)

    reader = threading.Thread(target=read)
    reader.start()
    days = [yesterday - dt.timedelta(days=i) for i in range(1, 6)]
    outcomes = []

    def run(symbol: str) -> None:
        outcomes.append(materialize_range(ohlcv, instance, resources, [symbol], days[-1], days[0]).success)

    writers = [threading.Thread(target=run, args=(s,)) for s in ("ETHUSDT", "SOLUSDT")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stop.set()
    reader.join()
    assert outcomes == [True, True]
    assert errors == []
    assert counts
    assert query(tmp_path, "SELECT count(*) FROM ohlcv") == [(288 * 11,)]


def test_days_before_a_listing_are_stored_empty_and_reported(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    recent = [
        c for c in sim.market.contracts.values()
        if c.contract_type == "PERPETUAL" and c.quote_asset == "USDT"
        and dt.datetime.fromtimestamp(c.onboard_ms / 1000, dt.UTC).date() < yesterday
        and dt.datetime.fromtimestamp(c.onboard_ms / 1000, dt.UTC).date() > yesterday - dt.timedelta(days=60)
    ]  # fmt: skip
    listing = min(recent, key=lambda c: c.symbol)
    listed_on = dt.datetime.fromtimestamp(listing.onboard_ms / 1000, dt.UTC).date()
    instance = dg.DagsterInstance.ephemeral()
    before = listed_on - dt.timedelta(days=1)
    result = materialize_range(
        ohlcv, instance, resources_for(sim, tmp_path), [listing.symbol], before, listed_on
    )
    assert result.success  # nothing served is a fact of the market, not a failure
    assert stored(tmp_path, listing.symbol, before).empty
    assert len(stored(tmp_path, listing.symbol, listed_on)) == 288
    evaluation = check_evaluations(instance, "ohlcv", "complete_day")[f"{before}|{listing.symbol}"]
    metadata = evaluation.event.dagster_event.asset_check_evaluation_data.metadata
    assert metadata["missing_candles"].value == 288
    assert "not listed yet" in metadata["note"].value


def test_cli_backfill_is_one_run_and_names_what_failed(
    sim: Simulator, cli_env: dict[str, str], yesterday: dt.date
) -> None:
    sim.faults.delist("ETHUSDT")
    done = subprocess.run(
        [sys.executable, "-m", "quant_assets.cli", "backfill", "--days", "3", "--symbols", "BTCUSDT,ETHUSDT"],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1
    assert "6 symbol-days in 1 runs" in done.stdout
    for offset in range(3):
        assert f"{yesterday - dt.timedelta(days=offset)}|ETHUSDT: " in done.stdout
    assert "Invalid symbol" in done.stdout
    assert "symbol-days, " in done.stderr  # progress lines: symbol-days, candles, requests, weight, ETA
    assert "ETA" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbols", "btc"], "refusing symbol 'btc'"),
        (["--days", "3", "--end", "2026-01-01", "--symbols", "BTCUSDT"], None),
        (["--days", "2", "--end", "2025-06-01", "--symbols", "BTCUSDT"], "all fall before 2026-01-01"),
    ],
)
def test_cli_backfill_refuses_bad_input_without_a_traceback(
    cli_env: dict[str, str], args: list[str], message: str | None
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "quant_assets.cli", "backfill", *args],
        env=cli_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    if message is None:  # a window reaching before the first partition is clipped to it
        assert done.returncode == 0, done.stderr[-2000:]
        assert "1 symbol-days in 1 runs, ok" in done.stdout
    else:
        assert done.returncode == 2
        assert message in done.stderr
