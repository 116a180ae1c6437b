"""Stored feature days and the registry's schema hash: views that keep schemas apart, a check that
lists stale days, and the sensor and the CLI that rebuild them.

A feature's parameter is changed the honest way: the registry is given one feature whose compute
function lives in a small module written here, so the test can change that module's source (a
parameter, or only a comment) as a developer would, and the library hashes what it reads.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pytest

from quant_assets import cli
from quant_assets.defs.assets.feature_table import STALE_CHECK, feature_table
from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.automation import RANGE_END, RANGE_START, feature_table_sensor
from quant_assets.feature_days import stale_feature_days
from quant_assets.features import feature_schema, registry
from quant_assets.simulator import Simulator
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets_tests.dagster_helpers import materialize_range, query, resources_for
from quant_assets_tests.feature_helpers import write_universe

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
CHANGED = "rvol_ratio_12_288"
MODULE = "qa_test_rvol_ratio"  # one module name for every version, as an edited file keeps its name
SOURCE = """from quant_assets.features import volatility


def rvol_ratio(c):
    return volatility.vol_ratio(c, short={short}, long=288)
"""
COMMENTED = """# A comment-only edit: the same computation, explained.
from quant_assets.features import volatility


def rvol_ratio(c):
    # recent (one hour) against daily realized volatility
    return volatility.vol_ratio(c, short={short}, long=288)  # both windows in 5-minute bars
"""

UseVersion = Callable[[str, int], str]


@pytest.fixture
def use_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[UseVersion]:
    """Put a version of `CHANGED`'s computation in the registry; returns the registry's new hash."""
    original = registry.FEATURES

    def use(template: str, short: int) -> str:
        folder = tmp_path / f"version_{len(list(tmp_path.glob('version_*')))}"
        folder.mkdir()
        path = folder / f"{MODULE}.py"
        path.write_text(template.format(short=short))
        spec = importlib.util.spec_from_file_location(MODULE, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, MODULE, module)
        spec.loader.exec_module(module)
        features = tuple(replace(f, compute=module.rvol_ratio) if f.name == CHANGED else f for f in original)
        current = registry.FEATURES
        for name, holder in list(sys.modules.items()):  # every module that holds the registry's tuple
            if name.startswith("quant_assets") and getattr(holder, "FEATURES", None) is current:
                monkeypatch.setattr(holder, "FEATURES", features)
        feature_schema.cache_clear()
        return feature_schema().hash

    yield use
    monkeypatch.undo()
    feature_schema.cache_clear()


@pytest.fixture
def two_days(
    sim: Simulator, tmp_path: Path, yesterday: dt.date
) -> tuple[dg.DagsterInstance, dict, list[dt.date]]:
    """Candles of two days stored, the universe of the first; no features yet."""
    days = [yesterday - dt.timedelta(days=1), yesterday]
    instance = dg.DagsterInstance.ephemeral()
    resources = resources_for(sim, tmp_path / "data")
    write_universe(tmp_path / "data", days[0], SYMBOLS)
    assert materialize_range(ohlcv, instance, resources, SYMBOLS, days[0], days[1]).success
    return instance, resources, days


def build(instance: dg.DagsterInstance, resources: dict, first: dt.date, last: dt.date) -> None:
    tags = {RANGE_START: str(first), RANGE_END: str(last)}
    assert dg.materialize([feature_table], instance=instance, resources=resources, tags=tags).success


def stale_check(instance: dg.DagsterInstance) -> tuple[bool, dict]:
    """The latest evaluation of the stale-days check, as the instance recorded it."""
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("feature_table"), STALE_CHECK)
    )
    assert record is not None
    assert record.event is not None
    evaluation = record.event.dagster_event.event_specific_data
    return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}


def tick(
    instance: dg.DagsterInstance, resources: dict, cursor: str | None
) -> dg.SensorResult | dg.SkipReason:
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        return feature_table_sensor(context)


def test_a_parameter_change_marks_stored_days_stale_until_the_sensor_rebuilds_them(
    two_days: tuple[dg.DagsterInstance, dict, list[dt.date]], use_version: UseVersion, tmp_path: Path
) -> None:
    instance, resources, (first, last) = two_days
    data = tmp_path / "data"
    old_hash = use_version(SOURCE, 12)
    build(instance, resources, first, last)
    assert stale_check(instance)[0] is True
    settled = tick(instance, resources, None)  # takes the new candles in; the days are built already
    assert isinstance(settled, dg.SensorResult)
    before = query(data, f'SELECT "{CHANGED}" FROM features WHERE symbol = ? ORDER BY open_time', ["ETHUSDT"])

    new_hash = use_version(SOURCE, 24)  # a parameter changes
    assert new_hash != old_hash
    assert set(stale_feature_days(Lake(data))) == {first, last}
    Catalog(Lake(data)).ensure_views()  # a process on the new code opens the catalog
    assert query(data, "SELECT count(*) FROM features") == [(0,)]  # no day of this schema yet
    assert query(data, "SELECT feature_schema_hash, count(*) FROM features_all GROUP BY 1") == [
        (old_hash, 4 * 288)
    ]

    build(instance, resources, last, last)  # a new run under the new schema
    passed, metadata = stale_check(instance)
    assert passed is False
    assert metadata["stale"] == {str(first): old_hash}
    # The days of the two schemas never mix in `features`; `features_all` keeps both, told apart.
    assert query(data, "SELECT DISTINCT feature_schema_hash, CAST(open_time AS DATE) FROM features") == [
        (new_hash, last)
    ]
    assert set(query(data, "SELECT feature_schema_hash, count(*) FROM features_all GROUP BY 1")) == {
        (old_hash, 2 * 288),
        (new_hash, 2 * 288),
    }

    result = tick(instance, resources, settled.cursor)
    assert isinstance(result, dg.SensorResult)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests] == [
        (str(first), str(first))
    ]
    assert dg.materialize(
        [feature_table], instance=instance, resources=resources, tags=result.run_requests[0].tags
    ).success

    passed, metadata = stale_check(instance)
    assert (passed, metadata["stale_days"]) == (True, 0)
    assert stale_feature_days(Lake(data)) == {}
    after = query(data, f'SELECT "{CHANGED}" FROM features WHERE symbol = ? ORDER BY open_time', ["ETHUSDT"])
    assert len(after) == len(before) == 2 * 288
    assert after != before  # the parameter really changed the values
    assert isinstance(tick(instance, resources, result.cursor), dg.SkipReason)


def test_a_comment_only_edit_keeps_the_hash_and_rebuilds_nothing(
    two_days: tuple[dg.DagsterInstance, dict, list[dt.date]], use_version: UseVersion, tmp_path: Path
) -> None:
    instance, resources, (first, last) = two_days
    old_hash = use_version(SOURCE, 12)
    build(instance, resources, first, last)
    settled = tick(instance, resources, None)
    assert isinstance(settled, dg.SensorResult)

    assert use_version(COMMENTED, 12) == old_hash
    assert stale_feature_days(Lake(tmp_path / "data")) == {}
    assert isinstance(tick(instance, resources, settled.cursor), dg.SkipReason)


def test_the_cli_lists_and_rebuilds_the_stale_days(
    two_days: tuple[dg.DagsterInstance, dict, list[dt.date]],
    use_version: UseVersion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    instance, resources, (first, last) = two_days
    use_version(SOURCE, 12)
    build(instance, resources, first, last)
    use_version(SOURCE, 24)
    monkeypatch.setenv("QT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the CLI then runs on an ephemeral instance

    assert cli.main(["features"]) == 0
    listed = capsys.readouterr().out
    assert "2 stored days built under another one" in listed
    assert f"  {first}  " in listed
    assert f"  {last}  " in listed

    assert cli.main(["features", "--rebuild-stale"]) == 0
    assert f"feature_table {first}..{last}: ok" in capsys.readouterr().out
    assert stale_feature_days(Lake(tmp_path / "data")) == {}
