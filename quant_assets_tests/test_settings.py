"""QT_* settings: one table of names, defaults and validators, checked alike on every path.

Paths: ``Settings.from_env`` (the quant-assets CLI), the resources built from ``EnvVar`` (a run
started by ``materialize``, ``dagster asset materialize`` or the daemon), and ``QT_HISTORY_START``
when the definitions load.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pydantic
import pytest

from quant_assets.defs.assets.coin_universe import coin_universe
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import ohlcv_sensor
from quant_assets.defs.ranges import lookback_window
from quant_assets.defs.resources import build_resources
from quant_assets.errors import ConfigError
from quant_assets.log_forwarding import RunLogForwarder
from quant_assets.settings import SETTINGS, Settings, check, default, lookback_start
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, resources_for

REPO = Path(__file__).resolve().parents[1]
SUBPROCESS_TIMEOUT_S = 240  # bounds a failure only: a loaded 2-core machine imports dagster slowly

BAD_VALUES = [
    ("QT_MAX_SYMBOLS", "0"),
    ("QT_MAX_SYMBOLS", "ten"),
    ("QT_MAX_SYMBOLS", "-5"),
    ("QT_UNIVERSE", "foo"),
    ("QT_DATA_LOOKBACK_DAYS", "1.5"),
    ("QT_HISTORY_START", "2026-13-01"),
    ("QT_HISTORY_START", "yesterday"),
    ("QT_HISTORY_START", "2026-1-1"),
    ("QT_BINANCE_FAPI_URL", "fapi.binance.com"),
    ("QT_BINANCE_FAPI_URL", "ftp://fapi.binance.com"),
    ("QT_BINANCE_WEIGHT_PER_MINUTE", "0"),
    ("QT_COINGECKO_API_URL", "https://"),
]


def clean_env(**values: str) -> dict[str, str]:
    """The test process's environment without any QT_* or DAGSTER_HOME, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QT_") and k != "DAGSTER_HOME"}
    return {**env, **values}


@pytest.fixture
def no_qt_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("QT_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(("name", "raw"), BAD_VALUES)
def test_a_bad_value_is_refused_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}=") as caught:
        check(name, raw)
    assert "expected" in str(caught.value)


@pytest.mark.parametrize(("name", "raw"), BAD_VALUES)
def test_the_cli_reader_and_the_resources_refuse_the_same_values(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name}="):
        Settings.from_env({name: raw})
    if name == "QT_HISTORY_START":
        return  # a partition setting, read when the definitions load (tested below), no resource field
    with pytest.raises(pydantic.ValidationError, match=rf"{name}="):
        build_resources({name: raw})


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("QT_MAX_SYMBOLS", " 25 ", 25),
        ("QT_BINANCE_FAPI_URL", "http://127.0.0.1:8900/", "http://127.0.0.1:8900"),
        ("QT_HISTORY_START", "2026-10-01", dt.date(2026, 10, 1)),
        ("QT_COINGECKO_API_KEY", "", None),
        ("QT_UNIVERSE", "", "l1l2-top"),  # empty means unset: the default
    ],
)
def test_a_good_value_is_parsed(name: str, raw: str, expected: object) -> None:
    assert check(name, raw) == expected


def test_resource_defaults_are_the_settings_defaults(no_qt_env: None) -> None:
    resources = build_resources()
    effective = Settings.from_env({})
    assert Path(resources["lake"].data_dir) == effective.data_dir == Path(str(default("QT_DATA_DIR")))
    assert resources["binance"].base_url == effective.binance_fapi_url == "https://fapi.binance.com"
    assert resources["binance"].weight_per_minute == effective.binance_weight_per_minute == 2400
    assert resources["coingecko"].base_url == effective.coingecko_api_url
    assert resources["coingecko"].api_key is effective.coingecko_api_key is None
    assert resources["collection"].max_symbols == effective.max_symbols == 100
    assert resources["collection"].universe == effective.universe == "l1l2-top"
    assert resources["collection"].lookback_days == effective.lookback_days == 90
    assert effective.history_start == dt.date(2026, 1, 1)


def test_a_variable_that_is_set_reaches_its_resource_as_envvar(
    no_qt_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QT_UNIVERSE", "l1l2-top")
    monkeypatch.setenv("QT_MAX_SYMBOLS", "12")
    collection = build_resources()["collection"]
    config = collection.get_resource_definition().config_schema.default_value
    assert config["universe"] == {"env": "QT_UNIVERSE"}  # what the UI shows: the variable's name
    assert config["max_symbols"] == {"env": "QT_MAX_SYMBOLS"}
    assert config["lookback_days"] == 90


def test_the_refresh_hours_setting_is_gone() -> None:
    names = {s.env for s in SETTINGS}
    assert "QT_UNIVERSE_REFRESH_HOURS" not in names
    assert "universe_refresh_hours" not in type(build_resources({})["collection"]).model_fields


@pytest.mark.parametrize("days", [1, 7, 90])
def test_lookback_start_is_the_first_day_of_the_sensors_window(days: int) -> None:
    # settings.lookback_start sets QT_HISTORY_START, so it cannot use the partitions; it must agree
    # with the window the sensors and the CLI request (yesterday and the days - 1 before it)
    today = dt.date(2026, 11, 29)
    assert lookback_start(days, today=today) == lookback_window(days, end=today - dt.timedelta(days=1))[0]
    assert lookback_start(7, today=today) == dt.date(2026, 11, 22)
    with pytest.raises(ConfigError, match=r"^QT_DATA_LOOKBACK_DAYS="):
        lookback_start("seven")


def run_failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """Every error message the instance recorded for the run (failures and their causes)."""
    texts = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
        texts.append(entry.user_message)
    return "\n".join(texts)


def test_a_bad_variable_fails_the_run_at_start_naming_it(
    no_qt_env: None, monkeypatch: pytest.MonkeyPatch, sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    monkeypatch.setenv("QT_BINANCE_FAPI_URL", sim.url)
    monkeypatch.setenv("QT_COINGECKO_API_URL", sim.coingecko_url)
    monkeypatch.setenv("QT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QT_UNIVERSE", "foo")
    instance = dg.DagsterInstance.ephemeral()

    failed = dg.materialize(
        [coin_universe], instance=instance, resources=build_resources(), partition_key=str(yesterday),
        raise_on_error=False,
    )  # fmt: skip

    assert not failed.success
    assert "QT_UNIVERSE='foo': expected one of l1l2-top" in run_failure_text(instance, failed.run_id)
    assert sum(sim.stats.requests.values()) == 0, "nothing was fetched"
    assert not (tmp_path / "lake").exists(), "nothing was written"
    assert not any(isinstance(h, RunLogForwarder) for h in logging.getLogger("quant_assets").handlers)

    monkeypatch.setenv("QT_UNIVERSE", "l1l2-top")
    mended = dg.materialize(
        [coin_universe], instance=instance, resources=build_resources(), partition_key=str(yesterday)
    )
    assert mended.success


def test_a_bad_variable_the_run_does_not_use_still_fails_it(
    no_qt_env: None, monkeypatch: pytest.MonkeyPatch, sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> None:
    # ohlcv never reads the universe rule; the run refuses it anyway, as the quant-assets CLI does
    monkeypatch.setenv("QT_UNIVERSE", "foo")
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path)

    failed = materialize_range(ohlcv, instance, resources, ["BTCUSDT"], yesterday, yesterday)

    assert not failed.success
    assert "QT_UNIVERSE='foo'" in run_failure_text(instance, failed.run_id)
    assert sum(sim.stats.requests.values()) == 0


def test_a_bad_variable_fails_a_sensor_tick_naming_it(
    no_qt_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon resolves the sensor's resources as this tick does: from EnvVar, when it evaluates.
    monkeypatch.setenv("QT_DATA_LOOKBACK_DAYS", "0")
    resources = build_resources()
    defs = dg.Definitions(assets=[coin_universe, ohlcv], sensors=[ohlcv_sensor], resources=resources)
    with (
        dg.instance_for_test() as instance,
        # `with`: the context opens its own instance from the ref and must close it again.
        dg.build_sensor_context(
            instance_ref=instance.get_ref(), definitions=defs, resources=resources
        ) as context,
        pytest.raises(dg.DagsterResourceFunctionError) as caught,
    ):
        ohlcv_sensor.evaluate_tick(context)

    causes = []
    error: BaseException | None = caught.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("QT_DATA_LOOKBACK_DAYS='0': expected a positive integer" in c for c in causes), causes


def test_dagster_cli_materialize_refuses_a_bad_variable(tmp_path: Path, yesterday: dt.date) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = clean_env(
        DAGSTER_HOME=str(home),
        QT_DATA_DIR=str(tmp_path / "data"),
        QT_BINANCE_FAPI_URL="http://127.0.0.1:9",  # never reached: the run stops before any request
        QT_COINGECKO_API_URL="http://127.0.0.1:9/api/v3",
        QT_UNIVERSE="foo",
    )
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "quant_assets.definitions",
         "--select", "coin_universe", "--partition", str(yesterday)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip

    assert out.returncode != 0
    assert "QT_UNIVERSE='foo': expected one of l1l2-top" in out.stdout + out.stderr
    assert not (tmp_path / "data" / "lake").exists()


PRINT_FIRST_PARTITIONS = """
import datetime as dt
from quant_assets.definitions import defs
from quant_assets.defs.orchestrate import backfill_ohlcv
from quant_assets.errors import QuantAssetsError

for key in ("coin_universe", "ohlcv", "feature_table"):
    partitions = defs.get_assets_def(key).partitions_def
    daily = partitions.get_partitions_def_for_dimension("date") if key == "ohlcv" else partitions
    print(key, daily.get_first_partition_key())
first = dt.date.fromisoformat(daily.get_first_partition_key())
try:  # the CLI's window clipping follows: days before the first partition are not collected
    backfill_ohlcv(days=3, end=first - dt.timedelta(days=1), symbols=["BTCUSDT"])
except QuantAssetsError as error:
    print("backfill:", error)
"""


def test_history_start_is_the_first_partition_of_every_asset(tmp_path: Path) -> None:
    env = clean_env(QT_HISTORY_START="2026-10-05", QT_DATA_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", PRINT_FIRST_PARTITIONS],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip

    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[:3] == ["coin_universe 2026-10-05", "ohlcv 2026-10-05", "feature_table 2026-10-05"]
    assert lines[3] == "backfill: nothing to collect: 3 days up to 2026-10-04 all fall before 2026-10-05"


def test_a_bad_history_start_stops_the_definitions_loading_naming_it() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", "quant_assets.definitions"],
        cwd=REPO, env=clean_env(QT_HISTORY_START="2026-02-30"), capture_output=True, text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip

    assert out.returncode != 0
    assert "QT_HISTORY_START='2026-02-30': expected a date written YYYY-MM-DD" in out.stdout + out.stderr
