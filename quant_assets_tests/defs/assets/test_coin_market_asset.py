"""``coin_market`` materialized after ``coin_universe`` on a temporary instance, real HTTP to the simulator."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.assets.coin_market import coin_market
from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.feature_table import feature_table
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for


def test_every_universe_coin_has_market_cap_volume_and_supply(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    assert dg.materialize(
        [coin_universe], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    sim.stats.reset()

    result = dg.materialize(
        [coin_market], instance=instance, resources=resources, partition_key=str(yesterday)
    )

    assert result.success
    universe = query(tmp_path, "SELECT symbol, coingecko_id FROM coin_universe ORDER BY symbol")
    rows = query(
        tmp_path,
        "SELECT symbol, coingecko_id, market_cap_usd, total_volume_usd, circulating_supply, point_in_time "
        "FROM coin_market ORDER BY symbol",
    )
    assert [(r[0], r[1]) for r in rows] == universe
    assert all(r[2] > 0 and r[3] > 0 and r[4] > 0 and r[5] is True for r in rows)
    # market cap = circulating supply x price: BTC's implied price is BTC's price in the simulator
    btc = next(r for r in rows if r[0] == "BTCUSDT")
    assert 1_000 < btc[2] / btc[4] < 1_000_000
    assert sim.stats.requests["/api/v3/coins/markets"] == 1  # 10 ids: one request
    record = instance.fetch_materializations(dg.AssetKey("coin_market"), limit=1).records[0]
    meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
    assert (meta["coins"], meta["missing"], meta["point_in_time"]) == (len(universe), [], True)


def test_without_the_day_s_universe_the_run_fails_naming_it(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    result = dg.materialize(
        [coin_market],
        instance=dg.DagsterInstance.ephemeral(),
        resources=resources_for(sim, tmp_path),
        partition_key=str(yesterday),
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "no coin_universe snapshot" in str(failure.event_specific_data.error)


def test_a_day_before_yesterday_is_marked_not_point_in_time(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    day = yesterday - dt.timedelta(days=5)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)
    assert dg.materialize(
        [coin_universe], instance=instance, resources=resources, partition_key=str(day)
    ).success

    assert dg.materialize(
        [coin_market], instance=instance, resources=resources, partition_key=str(day)
    ).success

    assert query(tmp_path, "SELECT DISTINCT point_in_time FROM coin_market") == [(False,)]


@pytest.mark.parametrize("bogus", ["no-such-coin"])
def test_a_coin_coingecko_does_not_return_keeps_a_row_of_nulls(sim: Simulator, bogus: str) -> None:
    import pandas as pd

    from quant_assets.coin_market import fetch_coin_market
    from quant_assets.sources.coingecko import CoinGeckoClient

    universe = pd.DataFrame(
        {"symbol": ["BTCUSDT", "ZZZUSDT", "YYYUSDT"], "coingecko_id": ["bitcoin", bogus, None]}
    )
    day = dt.datetime.now(dt.UTC).date()

    market = fetch_coin_market(CoinGeckoClient(sim.coingecko_url), universe, day=day)

    assert market.missing == ["ZZZUSDT", "YYYUSDT"]
    assert market.frame["market_cap_usd"].notna().tolist() == [True, False, False]
    assert market.frame["symbol"].tolist() == ["BTCUSDT", "ZZZUSDT", "YYYUSDT"]


def test_feature_table_reads_the_previous_day_s_coin_market(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    before = yesterday - dt.timedelta(days=1)
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path, QT_MAX_SYMBOLS="4")
    for day in (before, yesterday):
        assert dg.materialize(
            [coin_universe], instance=instance, resources=resources, partition_key=str(day)
        ).success
    assert dg.materialize(
        [coin_market], instance=instance, resources=resources, partition_key=str(before)
    ).success
    symbols = [
        r[0]
        for r in query(
            tmp_path, "SELECT symbol FROM coin_universe WHERE snapshot_date = ? ORDER BY rank", [yesterday]
        )
    ]
    assert materialize_range(ohlcv, instance, resources, symbols, before, yesterday).success

    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success

    market = {
        r[0]: (r[1], r[2])
        for r in query(
            tmp_path,
            "SELECT symbol, market_cap_usd, total_volume_usd FROM coin_market WHERE snapshot_date = ?",
            [before],
        )
    }
    rows = query(
        tmp_path,
        "SELECT symbol, min(mcap_rank), max(mcap_rank), min(turnover), max(turnover) FROM features GROUP BY symbol",
    )
    assert {r[0] for r in rows} == set(symbols)
    by_cap = sorted(market, key=lambda s: market[s][0])
    for symbol, low_rank, high_rank, low_turnover, high_turnover in rows:
        # One value all day: the previous day's snapshot, not the day's own.
        assert low_rank == high_rank == by_cap.index(symbol) / (len(by_cap) - 1)
        assert low_turnover == pytest.approx(high_turnover)
        assert low_turnover == pytest.approx(market[symbol][1] / market[symbol][0])
    check = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("feature_table"), "no_nan_after_warmup"), limit=1
    )[0]
    assert check.status.value == "SUCCEEDED"


def test_without_the_previous_day_s_coin_market_the_features_are_nan_and_explained(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path, QT_MAX_SYMBOLS="3")
    assert dg.materialize(
        [coin_universe], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    # The day's own coin_market exists, but feature_table(d) reads d - 1 only: no look-ahead.
    assert dg.materialize(
        [coin_market], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success
    symbols = [r[0] for r in query(tmp_path, "SELECT symbol FROM coin_universe ORDER BY rank")]
    assert materialize_range(ohlcv, instance, resources, symbols, yesterday, yesterday).success

    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, partition_key=str(yesterday)
    ).success

    assert query(tmp_path, "SELECT count(mcap_rank), count(turnover), count(*) > 0 FROM features") == [
        (0, 0, True)
    ]
    check = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("feature_table"), "no_nan_after_warmup"), limit=1
    )[0]
    assert check.status.value == "SUCCEEDED"
