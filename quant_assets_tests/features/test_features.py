"""The feature library: registry, schema hash, strict schema check, compute_features' contract, labels.

Parity and no-look-ahead properties live in ``test_features_parity.py``, TA-Lib equality on the
simulator's candles in ``test_features_talib.py``, live inference in ``test_features_inference.py``,
the NaN rule in ``test_features_nan.py``. The candle generator below is shared by those files.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import quant_assets.features.registry as registry_module
from quant_assets.errors import SchemaMismatchError
from quant_assets.features import (
    FEATURES,
    Feature,
    check_schema,
    compute_features,
    compute_labels,
    feature_catalog,
    feature_schema,
)
from quant_assets.features import returns as returns_module
from quant_assets.features import volume as volume_module
from quant_assets.features.schema import definition_source, schema_hash
from quant_assets.features.talib_features import KAMA_WINDOW

FIVE_MINUTES = np.timedelta64(5, "m")
REAL_SPOT_5M = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "real" / "freqtrade" / "spot_5m"

# Parity tolerance: 1e-9 relative, with an absolute floor of 1e-12 for values that cross zero
# (returns, MACD, distances), where "relative" has no meaning. Every feature is O(1e-4) or larger.
RTOL, ATOL = 1e-9, 1e-12


# ------------------------------------------------------------------------------------------ candles
def random_candles(
    symbols: Sequence[str],
    bars: int,
    *,
    seed: int,
    start: str = "2026-03-01T00:00",
    gaps: int = 4,
    zero_volume: bool = True,
) -> pd.DataFrame:
    """Deterministic 5-minute candles in the ``ohlcv`` shape: random walks with volatility regimes.

    Each symbol gets its own price level (1e-3 .. 1e5), fat-tailed returns, `gaps` runs of 1-40
    missing candles, and, with `zero_volume`, bars without trades. The second symbol trades on a
    coarse tick (many equal closes) and has a 60-bar stretch where nothing moves, which makes
    variance-based indicators degenerate.
    """
    rng = np.random.default_rng(seed)
    first = np.datetime64(start, "ms")
    frames = []
    for i, symbol in enumerate(symbols):
        level = 90_000.0 if symbol == "BTCUSDT" else float(10 ** rng.uniform(-3, 5))
        regime = np.repeat(rng.lognormal(0.0, 0.6, bars // 400 + 1), 400)[:bars]
        returns = rng.standard_t(4, bars) * 0.0015 * regime
        close = level * np.exp(np.cumsum(returns))
        open_ = np.concatenate([[close[0] * np.exp(-returns[0])], close[:-1]])
        wick = np.abs(rng.normal(0.0, 0.0008 * regime, (2, bars)))
        high = np.maximum(open_, close) * (1 + wick[0])
        low = np.minimum(open_, close) * (1 - wick[1])
        volume = rng.lognormal(3.0, 1.0, bars)
        if i == 1:
            tick = level * 2e-3
            open_, high, low, close = (
                np.maximum(np.round(p / tick), 1.0) * tick for p in (open_, high, low, close)
            )
            if bars >= 300:
                at = bars // 3
                open_[at : at + 61] = high[at : at + 60] = low[at : at + 60] = close[at : at + 60] = close[
                    at - 1
                ]
                volume[at : at + 60] = 0.0
            high, low = np.maximum.reduce([high, open_, close]), np.minimum.reduce([low, open_, close])
        if zero_volume:
            volume[rng.random(bars) < 0.01] = 0.0
        typical = (high + low + close) / 3
        buy = volume * rng.uniform(0.3, 0.7, bars)
        frame = pd.DataFrame(
            {
                "exchange": "binance",
                "symbol": symbol,
                "open_time": first + np.arange(bars) * FIVE_MINUTES,
                "open": open_,
                "high": high,
                "low": low,
                "close": close,
                "volume": volume,
                "quote_volume": volume * typical,
                "trades": np.round(volume * 4).astype(np.int64),
                "taker_buy_volume": buy,
                "taker_buy_quote_volume": buy * typical,
            }
        )
        keep = np.ones(bars, dtype=bool)
        for _ in range(gaps):
            at = int(rng.integers(1, bars - 50))
            keep[at : at + int(rng.integers(1, 41))] = False
        frames.append(frame[keep])
    return pd.concat(frames, ignore_index=True)


def real_spot_candles() -> pd.DataFrame:
    """The ten real freqtrade 5-minute BTC-quoted spot series (with their real gaps) in ``ohlcv`` shape.

    ETH/BTC stands in as ``BTCUSDT``, the reference of beta features. The files have OHLCV only:
    quote volume is volume x typical price, trades and taker buys are derived from the candle.
    """
    if not REAL_SPOT_5M.exists():
        pytest.skip("../shared/fixtures/real is absent (fresh clone): freqtrade/spot_5m not found")
    frames = []
    for path in sorted(REAL_SPOT_5M.glob("*_BTC-5m.feather")):
        raw = pd.read_feather(path)
        base = path.name.split("_")[0]
        typical = (raw["high"] + raw["low"] + raw["close"]) / 3
        span = (raw["high"] - raw["low"]).where(raw["high"] > raw["low"], 1.0)
        buy_share = (0.5 + 0.4 * (raw["close"] - raw["open"]) / span).clip(0.0, 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "symbol": "BTCUSDT" if base == "ETH" else f"{base}USDT",
                    "open_time": raw["date"]
                    .dt.tz_convert("UTC")
                    .dt.tz_localize(None)
                    .astype("datetime64[ms]"),
                    "open": raw["open"],
                    "high": raw["high"],
                    "low": raw["low"],
                    "close": raw["close"],
                    "volume": raw["volume"],
                    "quote_volume": raw["volume"] * typical,
                    "trades": np.round(np.sqrt(raw["volume"]) * 7).astype(np.int64),
                    "taker_buy_volume": raw["volume"] * buy_share,
                    "taker_buy_quote_volume": raw["volume"] * buy_share * typical,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def close_enough(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Elementwise parity: both NaN, or equal within RTOL relative (ATOL absolute floor)."""
    both_nan = np.isnan(actual) & np.isnan(expected)
    scale = np.maximum(np.abs(actual), np.abs(expected))
    return both_nan | (np.abs(actual - expected) <= RTOL * scale + ATOL)


# ----------------------------------------------------------------------------------------- registry
def test_registry_declares_at_least_60_uniquely_named_features() -> None:
    names = [f.name for f in FEATURES]

    assert len(names) >= 60
    assert len(set(names)) == len(names)
    assert all(name.isidentifier() and name == name.lower() for name in names)


def test_registry_has_the_named_talib_indicators() -> None:
    names = {f.name for f in FEATURES}

    assert {"rsi_14", "natr_14", "adx_14", "cci_20", "mfi_14", "willr_14"} <= names
    assert {"macd_norm", "bb_pctb_20", "bb_width_20", "stoch_k_14", "roc_12", "obv_slope_12"} <= names
    assert {"kama_dist_30", "tema_dist_30"} <= names


def test_schema_lists_the_registry_in_order_and_warms_up_for_the_slowest_feature() -> None:
    schema = feature_schema()

    assert schema.names == [f.name for f in FEATURES]
    assert schema.warmup_bars == max(f.warmup_bars for f in FEATURES)
    # Three days at most: KAMA, the only feature whose seed could matter longer, is computed over a
    # fixed trailing window of 864 bars; every other feature settles sooner (TEMA: 684 bars).
    assert schema.warmup_bars == KAMA_WINDOW == 864
    assert sorted(f.warmup_bars for f in FEATURES)[-2] < 864


def test_schema_names_cannot_be_mutated_through_the_schema() -> None:
    schema = feature_schema()
    schema.names.append("extra")

    assert "extra" not in feature_schema().names


def test_schema_hash_is_the_same_in_another_process() -> None:
    code = "from quant_assets.features import feature_schema; print(feature_schema().hash)"
    root = Path(__file__).resolve().parents[2]

    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout.strip()

    assert other == feature_schema().hash
    assert len(other) == 64
    assert int(other, 16) >= 0


def _replace(features: tuple[Feature, ...], target: str, **changes: object) -> tuple[Feature, ...]:
    return tuple(dataclasses.replace(f, **changes) if f.name == target else f for f in features)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            _replace(FEATURES, "ret_12", compute=partial(returns_module.log_return, bars=13)), id="argument"
        ),
        pytest.param(_replace(FEATURES, "ret_12", lookback=13), id="lookback"),
        pytest.param(_replace(FEATURES, "ret_12", group="momentum"), id="group"),
        pytest.param(_replace(FEATURES, "ret_12", name="ret_12b"), id="name"),
        pytest.param((FEATURES[1], FEATURES[0], *FEATURES[2:]), id="order"),
        pytest.param(FEATURES[:-1], id="removed"),
    ],
)
def test_schema_hash_changes_with_any_declaration(changed: tuple[Feature, ...]) -> None:
    assert schema_hash(changed) != schema_hash(FEATURES)


def test_schema_hash_ignores_descriptions() -> None:
    reworded = _replace(FEATURES, "ret_12", description="a different wording")

    assert schema_hash(reworded) == schema_hash(FEATURES)


_PROBE_HELPER = """
import numpy as np

FACTOR = {factor}


def scale(x):
    return x * FACTOR


def probe(c):
    return scale(c.close)
"""

# The same code as _PROBE_HELPER with factor 2.0, reworded: comments, docstrings, blank lines,
# line breaks and the position of every line differ; no token that computes does.
_PROBE_REWORDED = '''
"""Probe module, documented this time."""
import numpy as np



# A comment that says why the factor is two.
FACTOR = (
    2.0
)


def scale(x):
    """Multiply by the factor."""
    # scale up
    return (x *
            FACTOR)


def probe(c):
    "The scaled close."
    return scale(c.close)  # trailing comment
'''


def _load_probe(tmp_path: Path, text: str, name: str) -> object:
    """`text` as a module inside the features package (its helpers and constants are followed into
    the hash), registered in ``sys.modules`` as an import would."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(f"quant_assets.features._{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _probe_hash(tmp_path: Path, text: str, name: str) -> str:
    module = _load_probe(tmp_path, text, name)
    try:
        return schema_hash((*FEATURES, Feature("probe", "test", 0, module.probe, "probe")))  # type: ignore[attr-defined]
    finally:
        del sys.modules[module.__name__]  # type: ignore[attr-defined]


def test_schema_hash_changes_when_a_constant_of_a_helper_changes(tmp_path: Path) -> None:
    two = _probe_hash(tmp_path, _PROBE_HELPER.format(factor=2.0), "two")
    three = _probe_hash(tmp_path, _PROBE_HELPER.format(factor=3.0), "three")

    assert two != three


def test_schema_hash_ignores_comments_docstrings_and_formatting_of_the_code(tmp_path: Path) -> None:
    plain = _probe_hash(tmp_path, _PROBE_HELPER.format(factor=2.0), "plain")
    reworded = _probe_hash(tmp_path, _PROBE_REWORDED, "plain")  # same module name, other text

    assert reworded == plain


def test_schema_hash_of_a_copied_feature_module_ignores_comments_and_sees_parameters(tmp_path: Path) -> None:
    # The real returns.py loaded from a copy, then from a copy with a comment and blank lines added
    # above the function (every line number moves) and its docstring reworded.
    original = Path(returns_module.__file__).read_text()
    commented = original.replace("def log_return(", "# Why: a comment.\n\n\ndef log_return(", 1)
    commented = commented.replace("unitless;", "unitless (reworded);", 1)
    assert commented != original

    def hash_of(text: str, bars: int) -> str:
        module = _load_probe(tmp_path, text, "returns_copy")
        try:
            compute = partial(module.log_return, bars=bars)  # type: ignore[attr-defined]
            return schema_hash((Feature("ret_12", "returns", 12, compute, "log return"),))
        finally:
            del sys.modules[module.__name__]  # type: ignore[attr-defined]

    assert hash_of(commented, 12) == hash_of(original, 12)
    assert hash_of(original, 13) != hash_of(original, 12)


def test_schema_hash_changes_when_a_compute_function_or_its_helper_changes(tmp_path: Path) -> None:
    times = _load_probe(tmp_path, _PROBE_HELPER.format(factor=2.0), "times")
    plus = _load_probe(tmp_path, _PROBE_HELPER.format(factor=2.0).replace("x * FACTOR", "x + FACTOR"), "plus")
    try:
        declared = [Feature("probe", "test", 0, m.probe, "probe") for m in (times, plus)]  # type: ignore[attr-defined]

        assert "Mult()" in definition_source(declared[0].compute)
        assert "Add()" in definition_source(declared[1].compute)
        assert schema_hash((*FEATURES, declared[0])) != schema_hash((*FEATURES, declared[1]))
    finally:
        del sys.modules[times.__name__], sys.modules[plus.__name__]  # type: ignore[attr-defined]


def test_definition_source_includes_the_helpers_a_feature_calls() -> None:
    source = definition_source(partial(returns_module.log_return, bars=12))

    assert "FunctionDef(name='log_return'" in source
    assert "FunctionDef(name='lag'" in source  # the helper from windows.py
    assert "('bars', 12)" in source
    assert "ln(close_t" not in source  # docstrings are not part of it


def test_check_schema_accepts_the_current_schema() -> None:
    schema = feature_schema()

    assert check_schema(schema.hash) == schema
    assert check_schema(schema.names) == schema
    assert check_schema(schema) == schema


def test_check_schema_refuses_a_model_trained_on_other_features_and_names_them() -> None:
    trained_on = [f"legacy_{i}" for i in range(50)]

    with pytest.raises(SchemaMismatchError) as error:
        check_schema(trained_on)

    message = str(error.value)
    assert "expects 50 features" in message
    assert f"computes {len(FEATURES)}" in message
    assert "legacy_0" in message
    assert "rsi_14" in message


def test_check_schema_names_missing_and_extra_features() -> None:
    names = feature_schema().names
    trained_on = [n for n in names if n != "rsi_14"] + ["rsi_21"]

    with pytest.raises(SchemaMismatchError, match=r"missing from the library: \['rsi_21'\]") as error:
        check_schema(trained_on)

    assert "not expected by the model: ['rsi_14']" in str(error.value)


def test_check_schema_names_a_reordering() -> None:
    names = feature_schema().names
    swapped = [names[1], names[0], *names[2:]]

    with pytest.raises(SchemaMismatchError, match=f"position 0 is {names[1]!r} for the model"):
        check_schema(swapped)


def test_check_schema_names_repeated_features() -> None:
    names = feature_schema().names

    with pytest.raises(SchemaMismatchError, match=r"repeats \['rsi_14'\]"):
        check_schema([*names, "rsi_14"])


def test_check_schema_refuses_another_hash() -> None:
    with pytest.raises(SchemaMismatchError, match="hash mismatch"):
        check_schema("0" * 64)


def test_feature_catalog_describes_every_feature_in_order() -> None:
    catalog = feature_catalog()

    assert list(catalog.columns) == ["name", "group", "description", "lookback_bars"]
    assert catalog["name"].tolist() == feature_schema().names
    assert catalog["lookback_bars"].tolist() == [f.lookback for f in FEATURES]
    assert catalog["description"].str.len().min() > 10


def test_registry_never_imports_labels() -> None:
    tree = ast.parse(Path(registry_module.__file__).read_text())
    imported = {
        *(alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names),
        *(node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)),
    }

    assert not any("label" in name for name in imported)
    assert not any(f.name.startswith("fwd_") for f in FEATURES)


def test_feature_library_imports_no_dagster() -> None:
    code = "import sys, quant_assets.features; print(any(m.split('.')[0] == 'dagster' for m in sys.modules))"
    root = Path(__file__).resolve().parents[2]

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )

    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------------------------- compute_features
@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return random_candles(["BTCUSDT", "ETHUSDT", "SOLUSDT"], 1200, seed=11)


@pytest.fixture(scope="module")
def features(candles: pd.DataFrame) -> pd.DataFrame:
    return compute_features(candles)


def test_output_has_symbol_open_time_and_every_feature_in_order(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    assert list(features.columns) == ["symbol", "open_time", *feature_schema().names]
    assert features.index.equals(candles.index)
    assert features["symbol"].tolist() == candles["symbol"].tolist()
    assert (features["open_time"].to_numpy() == candles["open_time"].to_numpy()).all()
    assert features["open_time"].dtype == np.dtype("datetime64[ms]")
    assert all(features[name].dtype == np.float64 for name in feature_schema().names)


def test_shuffled_input_gives_the_same_rows_aligned_to_its_index(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    shuffled = candles.sample(frac=1.0, random_state=3)
    shuffled.index = shuffled.index + 10_000  # any labels: the output keeps them

    result = compute_features(shuffled)

    assert result.index.equals(shuffled.index)
    expected = features.loc[shuffled.index - 10_000].set_axis(shuffled.index)
    pd.testing.assert_frame_equal(result, expected)


def test_timezone_aware_open_time_gives_the_same_features(
    candles: pd.DataFrame, features: pd.DataFrame
) -> None:
    aware = candles.assign(open_time=candles["open_time"].dt.tz_localize("UTC").dt.tz_convert("Asia/Tokyo"))

    pd.testing.assert_frame_equal(compute_features(aware), features)


def test_gaps_are_visible_in_bars_since_prev() -> None:
    candles = random_candles(["ETHUSDT"], 30, seed=1, gaps=0)
    with_gap = candles.drop(index=[10, 11, 12])  # three missing candles before bar 13

    bars_since_prev = compute_features(with_gap)["bars_since_prev"]

    assert np.isnan(bars_since_prev.iloc[0])
    assert bars_since_prev.loc[13] == 4.0
    assert (bars_since_prev.drop(index=[0, 13]) == 1.0).all()


def test_a_symbol_with_gaps_still_gets_every_feature_after_its_lookback() -> None:
    btc = random_candles(["BTCUSDT"], 800, seed=5, gaps=0, zero_volume=False)
    eth = random_candles(["ETHUSDT"], 800, seed=6, gaps=6, zero_volume=False)
    # With CoinGecko market data (mcap_rank, turnover).
    both = pd.concat([btc, eth], ignore_index=True).assign(market_cap_usd=1e9, market_volume_usd=2e8)
    eth = compute_features(both).query("symbol == 'ETHUSDT'")

    tail = eth.iloc[400:]  # past every lookback (288) plus the gaps
    assert tail["bars_since_prev"].max() > 1  # the gaps are there
    defined = tail[feature_schema().names].notna().mean()
    # ret_rel_btc_12 compares the last hour of both symbols: NaN while the candle an hour back is
    # missing, i.e. for 12 bars after each gap.
    assert defined.min() > 0.85, defined[defined <= 0.85].to_dict()


def test_features_are_scale_free(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    # The same market quoted in a currency worth 1/1024: prices and quote volumes x 1024. (A power
    # of two scales every price exactly, so equal prices of tick data stay equal and break ties as
    # before; x 1000 would move some ties by one rounding, and ADX's +DM/-DM choice with them.)
    prices = ["open", "high", "low", "close", "quote_volume", "taker_buy_quote_volume"]
    rescaled = candles.assign(**{p: candles[p] * 1024.0 for p in prices})

    result = compute_features(rescaled)

    # Except qvolz_288: log(1 + quote volume) moves by log(1024) only where quote volume >> 1 (true
    # of any listed perpetual's USDT volume, not of this generator's 0.001-priced coins).
    for name in feature_schema().names:
        if name == "qvolz_288":
            continue
        assert close_enough(result[name].to_numpy(), features[name].to_numpy()).all(), name


def test_reference_features_are_nan_without_btcusdt(candles: pd.DataFrame, features: pd.DataFrame) -> None:
    without_btc = candles[candles["symbol"] != "BTCUSDT"]

    result = compute_features(without_btc)

    for name in ("beta_btc_288", "corr_btc_288", "ret_rel_btc_12"):
        assert result[name].isna().all()
        assert features.loc[without_btc.index, name].iloc[-100:].notna().any()


def test_btcusdt_has_beta_and_correlation_one_to_itself(features: pd.DataFrame) -> None:
    btc = features[features["symbol"] == "BTCUSDT"].iloc[-200:]

    np.testing.assert_allclose(btc["beta_btc_288"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(btc["corr_btc_288"], 1.0, rtol=1e-9)
    np.testing.assert_allclose(btc["ret_rel_btc_12"].dropna(), 0.0, atol=1e-15)


def test_cross_sectional_ranks_use_the_symbols_present_at_each_time() -> None:
    times = np.datetime64("2026-03-01T00:00", "ms") + np.arange(3) * FIVE_MINUTES
    rows = []
    # At t2, A and B double (the same log return, to the bit), C falls; D has no candle at t2.
    for symbol, closes in {"A": [1, 1, 2], "B": [2, 2, 4], "C": [5, 5, 4], "D": [7, 8]}.items():
        for time, close in zip(times, closes, strict=False):
            rows.append({"symbol": symbol, "open_time": time, "close": float(close)})
    frame = pd.DataFrame(rows)
    frame = frame.assign(
        open=frame["close"],
        high=frame["close"],
        low=frame["close"],
        volume=1.0,
        quote_volume=frame["close"],
        trades=1,
        taker_buy_volume=0.5,
        taker_buy_quote_volume=frame["close"] / 2,
    )

    result = compute_features(frame).set_index(["symbol", "open_time"])

    at_t2 = result.xs(times[2], level="open_time")
    assert at_t2["xs_rank_ret_1"].to_dict() == {"A": 0.75, "B": 0.75, "C": 0.0}
    at_t1 = result.xs(times[1], level="open_time")["xs_rank_ret_1"]
    assert at_t1.to_dict() == {"A": 1 / 3, "B": 1 / 3, "C": 1 / 3, "D": 1.0}
    assert result.loc[("D", times[0]), "xs_rank_qvol"] == 1.0  # quote volumes 1, 2, 5, 7


def test_a_lone_symbol_ranks_in_the_middle() -> None:
    candles = random_candles(["ETHUSDT"], 50, seed=2, gaps=0)

    ranks = compute_features(candles)["xs_rank_qvol"]

    assert (ranks == 0.5).all()


@pytest.mark.parametrize("bars", [1, 2, 13, 289])
def test_short_histories_give_nan_not_errors(bars: int) -> None:
    candles = random_candles(["BTCUSDT", "ETHUSDT"], bars, seed=4, gaps=0)

    result = compute_features(candles)

    assert len(result) == len(candles)
    assert result["ret_288"].isna().all() if bars <= 288 else result["ret_288"].notna().any()


def test_empty_input_gives_an_empty_frame_with_every_column(candles: pd.DataFrame) -> None:
    result = compute_features(candles.iloc[:0])

    assert result.empty
    assert list(result.columns) == ["symbol", "open_time", *feature_schema().names]


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda f: f.drop(columns=["taker_buy_volume"]), KeyError, "taker_buy_volume"),
        (lambda f: pd.concat([f, f.iloc[[5]]]), ValueError, "appears twice"),
        (lambda f: f.assign(close=f["close"].where(f.index != 7, 0.0)), ValueError, "close must be > 0"),
        (lambda f: f.assign(high=f["high"].where(f.index != 7, np.nan)), ValueError, "high is not finite"),
        (lambda f: f.assign(volume=f["volume"].where(f.index != 7, -1.0)), ValueError, "volume must be >= 0"),
        (lambda f: f.assign(open_time=f["open_time"].astype("int64")), TypeError, "datetimes"),
    ],
    ids=["missing-column", "duplicate", "zero-price", "nan-price", "negative-volume", "not-datetime"],
)
def test_bad_candles_are_refused_with_a_reason(candles: pd.DataFrame, mutate, error, match) -> None:
    with pytest.raises(error, match=match):
        compute_features(mutate(candles.iloc[:50]))


# ---------------------------------------------------------------------------------------------- labels
def test_labels_are_forward_log_returns_with_nan_where_the_future_is_unknown() -> None:
    candles = random_candles(["ETHUSDT", "BTCUSDT"], 100, seed=8, gaps=0)
    close = candles["close"].to_numpy()

    labels = compute_labels(candles)

    assert list(labels.columns) == ["symbol", "open_time", "fwd_ret_1", "fwd_ret_12", "fwd_ret_48"]
    assert labels.index.equals(candles.index)
    eth = labels["symbol"] == "ETHUSDT"
    np.testing.assert_allclose(labels.loc[eth, "fwd_ret_12"].iloc[:88], np.log(close[12:100] / close[:88]))
    assert labels.loc[eth, "fwd_ret_12"].iloc[88:].isna().all()  # the last 12 bars: future unknown
    assert labels.loc[eth, "fwd_ret_48"].iloc[52:].isna().all()
    assert labels.loc[eth, "fwd_ret_1"].iloc[:99].notna().all()


def test_labels_are_nan_where_a_gap_hides_the_candle_k_slots_ahead() -> None:
    candles = random_candles(["ETHUSDT"], 40, seed=9, gaps=0).drop(index=[20])

    labels = compute_labels(candles).set_index("open_time")["fwd_ret_1"]

    slot = candles["open_time"].iloc[19]  # the candle 5 minutes later is missing
    assert np.isnan(labels.loc[slot])
    assert np.isfinite(labels.loc[candles["open_time"].iloc[18]])


def test_labels_of_shuffled_input_follow_their_rows() -> None:
    candles = random_candles(["ETHUSDT", "BTCUSDT"], 80, seed=10)
    shuffled = candles.sample(frac=1.0, random_state=1)

    pd.testing.assert_frame_equal(compute_labels(shuffled), compute_labels(candles).loc[shuffled.index])


def test_definition_source_follows_module_helpers_into_compiled_kernels() -> None:
    source = definition_source(partial(volume_module.volume_z, window=48))

    assert "FunctionDef(name='zscore'" in source  # windows.zscore, called by name
    assert "FunctionDef(name='window_zscore'" in source  # kernels.window_zscore, a numba kernel
    assert "FunctionDef(name='window_sum_into'" in source  # the kernel it calls
