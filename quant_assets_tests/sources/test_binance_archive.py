"""Binance's data archive: the simulator's tree and the client, over real HTTP on 127.0.0.1.

Every zip is verified against its ``.CHECKSUM`` before use; a corrupted download is refused and
fetched again; a day the archive lacks (or still cannot verify) raises ``ArchiveUnavailable`` for the
caller to fall back to REST; a CSV with or without a header row parses to the rows REST serves.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import zipfile
from collections.abc import Iterator

import pandas as pd
import pytest
import requests

from quant_assets.simulator import Simulator
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.binance_archive import (
    ArchiveUnavailable,
    BinanceArchiveClient,
    archive_path,
    parse_checksum,
)

DAY_MS = 86_400_000


@pytest.fixture
def archive_sim(sim: Simulator) -> Iterator[Simulator]:
    sim.archive.reset()
    yield sim
    sim.archive.reset()


@pytest.fixture
def archived_day() -> dt.date:
    """A day the archive holds (it lags: yesterday is not published yet)."""
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)


def rest_day(sim: Simulator, symbol: str, day: dt.date) -> pd.DataFrame:
    start = (day - dt.date(1970, 1, 1)).days * DAY_MS
    return BinanceFuturesClient(sim.url, weight_per_minute=None).fetch_candles(symbol, start, start + DAY_MS)


def test_the_tree_follows_the_archive_layout_with_two_space_checksums(
    archive_sim: Simulator, archived_day: dt.date
) -> None:
    path = f"/data/futures/um/daily/klines/BTCUSDT/5m/BTCUSDT-5m-{archived_day.isoformat()}.zip"
    assert archive_path("BTCUSDT", archived_day) == path
    data = requests.get(archive_sim.archive_url + path, timeout=10).content
    checksum = requests.get(archive_sim.archive_url + path + ".CHECKSUM", timeout=10).text

    assert checksum == f"{hashlib.sha256(data).hexdigest()}  BTCUSDT-5m-{archived_day.isoformat()}.zip\n"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [f"BTCUSDT-5m-{archived_day.isoformat()}.csv"]
        lines = archive.read(archive.namelist()[0]).decode().splitlines()
    assert lines[0].startswith("open_time,open,high,low,close,volume,close_time")
    assert len(lines) == 1 + 288
    assert archive_sim.stats.weight_used == 0


def test_the_archive_lags_recent_days_are_missing(archive_sim: Simulator, yesterday: dt.date) -> None:
    client = BinanceArchiveClient(archive_sim.archive_url)

    with pytest.raises(ArchiveUnavailable, match="not in the archive") as caught:
        client.fetch_day("BTCUSDT", yesterday)

    assert caught.value.reason == "missing"
    assert client.fetch_day("BTCUSDT", yesterday - dt.timedelta(days=1)).served.candles.shape[0] == 288


@pytest.mark.parametrize("header", [True, False])
def test_verified_day_equals_what_rest_serves_with_or_without_header(
    archive_sim: Simulator, archived_day: dt.date, header: bool
) -> None:
    archive_sim.archive.header = header

    day = BinanceArchiveClient(archive_sim.archive_url).fetch_day("ETHUSDT", archived_day)

    assert day.header is header
    assert day.attempts == 1
    assert len(day.served.candles) == 288
    rest = rest_day(archive_sim, "ETHUSDT", archived_day)
    assert day.served.candles.equals(rest)
    assert list(day.served.candles.dtypes) == list(rest.dtypes)


def test_a_corrupted_download_is_refused_and_fetched_again(
    archive_sim: Simulator, archived_day: dt.date
) -> None:
    archive_sim.archive.corrupt("BTCUSDT", archived_day, times=1)

    day = BinanceArchiveClient(archive_sim.archive_url).fetch_day("BTCUSDT", archived_day)

    assert day.attempts == 2
    assert archive_sim.archive.downloads[archive_path("BTCUSDT", archived_day)] == 2
    assert day.served.candles.equals(rest_day(archive_sim, "BTCUSDT", archived_day))


def test_a_download_still_corrupt_after_the_retry_is_unavailable(
    archive_sim: Simulator, archived_day: dt.date
) -> None:
    archive_sim.archive.corrupt("BTCUSDT", archived_day, times=2)

    with pytest.raises(ArchiveUnavailable, match="sha256") as caught:
        BinanceArchiveClient(archive_sim.archive_url).fetch_day("BTCUSDT", archived_day)

    assert caught.value.reason == "checksum_mismatch"
    assert archive_sim.archive.downloads[archive_path("BTCUSDT", archived_day)] == 2


def test_a_removed_day_is_missing(archive_sim: Simulator, archived_day: dt.date) -> None:
    archive_sim.archive.remove("BTCUSDT", archived_day)

    with pytest.raises(ArchiveUnavailable) as caught:
        BinanceArchiveClient(archive_sim.archive_url).fetch_day("BTCUSDT", archived_day)

    assert caught.value.reason == "missing"


def test_a_replaced_file_is_read_with_its_new_checksum(archive_sim: Simulator, archived_day: dt.date) -> None:
    client = BinanceArchiveClient(archive_sim.archive_url)
    before = client.fetch_day("BTCUSDT", archived_day)

    archive_sim.archive.replace("BTCUSDT", archived_day)
    after = client.fetch_day("BTCUSDT", archived_day)

    assert after.sha256 != before.sha256
    assert after.attempts == 1  # no stale checksum kept by the client
    assert after.served.candles.equals(before.served.candles)


def test_a_checksum_file_of_another_shape_is_refused() -> None:
    good = "a" * 64
    assert parse_checksum(f"{good}  X.zip\n", "X.zip") == good
    with pytest.raises(ArchiveUnavailable, match="names"):
        parse_checksum(f"{good}  Y.zip\n", "X.zip")
    with pytest.raises(ArchiveUnavailable, match="is not"):
        parse_checksum(f"{good} X.zip\n", "X.zip")
