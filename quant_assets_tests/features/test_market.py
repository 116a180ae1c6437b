"""Market-data features (``features/market.py``): market-cap rank within the universe and turnover."""

from __future__ import annotations

import numpy as np
import pandas as pd

from quant_assets.features import compute_features, unexplained_nans
from quant_assets_tests.features.test_features import random_candles

CAPS = {"BTCUSDT": 1.5e12, "ETHUSDT": 4e11, "SOLUSDT": 8e10}
VOLUMES = {"BTCUSDT": 3e10, "ETHUSDT": 2e10, "SOLUSDT": 4e9}


def with_market(candles: pd.DataFrame) -> pd.DataFrame:
    return candles.assign(
        market_cap_usd=candles["symbol"].map(CAPS).astype(float),
        market_volume_usd=candles["symbol"].map(VOLUMES).astype(float),
    )


def test_rank_by_market_cap_and_turnover_per_symbol() -> None:
    candles = with_market(random_candles(list(CAPS), 50, seed=1, gaps=0, zero_volume=False))

    features = compute_features(candles)

    by_symbol = features.groupby("symbol")[["mcap_rank", "turnover"]].agg(["min", "max"])
    assert by_symbol[("mcap_rank", "min")].to_dict() == {"BTCUSDT": 1.0, "ETHUSDT": 0.5, "SOLUSDT": 0.0}
    assert (by_symbol[("mcap_rank", "min")] == by_symbol[("mcap_rank", "max")]).all()
    for symbol in CAPS:
        assert by_symbol.loc[symbol, ("turnover", "min")] == VOLUMES[symbol] / CAPS[symbol]
    assert unexplained_nans(candles, features) == {}


def test_without_market_data_both_are_nan_and_explained() -> None:
    candles = random_candles(list(CAPS), 50, seed=2, gaps=0, zero_volume=False)
    partial = with_market(candles)
    partial.loc[partial["symbol"] == "SOLUSDT", "market_cap_usd"] = np.nan  # CoinGecko gave none

    plain, some = compute_features(candles), compute_features(partial)

    assert plain[["mcap_rank", "turnover"]].isna().all().all()
    assert unexplained_nans(candles, plain) == {}
    sol = some["symbol"] == "SOLUSDT"
    assert some.loc[sol, ["mcap_rank", "turnover"]].isna().all().all()
    assert set(some.loc[~sol, "mcap_rank"]) == {0.0, 1.0}  # ranked among the coins that have a cap
    assert unexplained_nans(partial, some) == {}


def test_a_nan_the_market_rule_does_not_explain_is_reported() -> None:
    candles = with_market(random_candles(list(CAPS), 50, seed=3, gaps=0, zero_volume=False))
    features = compute_features(candles)
    features.loc[features.index[-1], "turnover"] = np.nan  # a NaN with market data present

    assert unexplained_nans(candles, features) == {"turnover": 1}
