"""``coin_universe`` materialized on a temporary instance against the simulator over real HTTP."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import query, resources_for


def materialization(instance: dg.DagsterInstance, day: dt.date) -> dict[str, object]:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("coin_universe"), asset_partitions=[str(day)]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def snapshot(
    instance: dg.DagsterInstance, sim: Simulator, data_dir: Path, day: dt.date, **env: str
) -> dg.ExecuteInProcessResult:
    """One materialization of `coin_universe` for `day` against the simulator."""
    return dg.materialize(
        [coin_universe],
        instance=instance,
        resources=resources_for(sim, data_dir, **env),
        partition_key=str(day),
    )


def test_snapshot_lands_in_the_view_and_registers_symbol_partitions(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = snapshot(instance, sim, tmp_path, yesterday)
    assert result.success
    rows = query(tmp_path, "SELECT rank, symbol, source FROM coin_universe ORDER BY rank")
    assert len(rows) == 10
    assert [r[0] for r in rows] == list(range(1, 11))
    assert {r[2] for r in rows} == {"coingecko"}
    symbols = [r[1] for r in rows]
    assert "BTCUSDT" in symbols
    assert sorted(instance.get_dynamic_partitions("symbol")) == sorted(symbols)
    meta = materialization(instance, yesterday)
    assert meta["source"] == "coingecko"
    assert sorted(meta["added"]) == sorted(symbols)
    assert meta["removed"] == []
    assert meta["point_in_time"] is True


def test_changes_against_the_previous_snapshot(sim: Simulator, tmp_path: Path, yesterday: dt.date) -> None:
    instance = dg.DagsterInstance.ephemeral()
    before = yesterday - dt.timedelta(days=1)
    snapshot(instance, sim, tmp_path, before, QT_MAX_SYMBOLS="6")
    snapshot(instance, sim, tmp_path, yesterday, QT_MAX_SYMBOLS="8")
    small = {
        r[0] for r in query(tmp_path, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [before])
    }
    large = {
        r[0] for r in query(tmp_path, "SELECT symbol FROM coin_universe WHERE snapshot_date = ?", [yesterday])
    }
    meta = materialization(instance, yesterday)
    assert sorted(meta["added"]) == sorted(large - small)
    assert sorted(meta["removed"]) == sorted(small - large)
    assert meta["previous_snapshot"] == str(before)
    assert len(meta["added"]) >= 2


def test_coingecko_down_falls_back_to_binance_ranking(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    sim.faults.coingecko_down(503)
    instance = dg.DagsterInstance.ephemeral()
    result = snapshot(instance, sim, tmp_path, yesterday)
    assert result.success
    rows = query(tmp_path, "SELECT symbol, source, coingecko_id FROM coin_universe")
    assert len(rows) == 10
    assert {r[1] for r in rows} == {"binance_fallback"}
    assert {r[2] for r in rows} == {None}
    assert not {"USDCUSDT", "FDUSDUSDT", "BTCUSDC"} & {r[0] for r in rows}
    meta = materialization(instance, yesterday)
    assert meta["source"] == "binance_fallback"
    assert any("CoinGecko unreachable" in w for w in meta["warnings"])


@pytest.mark.parametrize("hostile", ["BAD|SYM", "../../etc", "X'; DROP TABLE coin_universe"])
def test_hostile_symbol_is_skipped_and_listed(
    sim: Simulator, tmp_path: Path, yesterday: dt.date, hostile: str
) -> None:
    sim.faults.add_symbol(hostile)
    sim.faults.coingecko_down(503)  # the fallback ranks every listed perpetual, so the name is a candidate
    instance = dg.DagsterInstance.ephemeral()
    result = snapshot(instance, sim, tmp_path, yesterday)
    assert result.success
    meta = materialization(instance, yesterday)
    assert hostile in meta["rejected_symbols"]
    assert hostile not in instance.get_dynamic_partitions("symbol")
    assert hostile not in {r[0] for r in query(tmp_path, "SELECT symbol FROM coin_universe")}
    assert not any(".." in p.name or "|" in p.name for p in tmp_path.rglob("*"))


def test_an_older_day_says_it_is_not_point_in_time(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    old_day = yesterday - dt.timedelta(days=10)
    snapshot(instance, sim, tmp_path, old_day)
    meta = materialization(instance, old_day)
    assert meta["point_in_time"] is False
    assert any("not point-in-time" in w for w in meta["warnings"])


def test_cli_materialize_writes_the_universe(sim: Simulator, tmp_path: Path, yesterday: dt.date) -> None:
    env = {
        **os.environ,
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
        "QT_MAX_SYMBOLS": "5",
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [
            sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_assets.definitions",
            "--select", "coin_universe", "--partition", str(yesterday),
        ],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = query(
        tmp_path / "data",
        "SELECT count(*), min(source) FROM coin_universe WHERE snapshot_date = ?",
        [yesterday],
    )
    assert rows == [(5, "coingecko")]
