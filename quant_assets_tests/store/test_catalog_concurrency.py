"""The catalog opens read-only whatever runs are writing it: real processes, real DuckDB files."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import duckdb

from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake

REPO = Path(__file__).resolve().parents[2]
DAYS_PER_WRITER = 15


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "quant_assets_tests.store.catalog_child", *args]


def test_a_reader_opens_the_catalog_while_two_writers_rebuild_it(tmp_path: Path) -> None:
    Catalog(Lake(tmp_path)).ensure_views()  # the catalog exists before anyone reads it
    stop = tmp_path / "stop"
    reader = subprocess.Popen(
        _child("read", str(tmp_path), str(stop)), cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    writers: list[subprocess.Popen[str]] = []
    try:
        assert reader.stdout is not None
        assert reader.stdout.readline().strip() == "ready"
        writers = [
            subprocess.Popen(
                _child("write", str(tmp_path), first.isoformat(), str(DAYS_PER_WRITER)),
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            for first in (dt.date(2026, 1, 1), dt.date(2026, 6, 1))
        ]
        written = [json.loads(writer.communicate(timeout=300)[0]) for writer in writers]
    finally:
        stop.touch()
        for writer in writers:
            if writer.poll() is None:
                writer.kill()
                writer.wait(timeout=60)
    read = json.loads(reader.communicate(timeout=120)[0].strip().splitlines()[-1])

    assert [writer.returncode for writer in writers] == [0, 0]
    assert read["failed"] == 0, read["failures"]
    assert read["opens"] >= 20  # it kept opening while the writers worked
    assert read["seen"] >= 2  # and saw the catalog change under it
    assert all(w["rebuilt"] >= DAYS_PER_WRITER // 2 for w in written)  # forced rebuilds at least
    with duckdb.connect(str(tmp_path / "quant.duckdb"), read_only=True) as con:
        days = con.execute("SELECT count(DISTINCT snapshot_date) FROM coin_universe").fetchone()
    assert days == (2 * DAYS_PER_WRITER,)


def test_an_up_to_date_catalog_is_left_alone(tmp_path: Path) -> None:
    catalog = Catalog(Lake(tmp_path))
    assert catalog.ensure_views() != []
    inode = catalog.path.stat().st_ino

    assert catalog.ensure_views() == []
    assert catalog.path.stat().st_ino == inode


def test_a_view_whose_statement_changed_is_rebuilt_and_others_keep_theirs(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    catalog = Catalog(lake)
    catalog.ensure_views()
    from quant_assets_tests.store.catalog_child import _snapshot

    lake.write("coin_universe", _snapshot(dt.date(2026, 1, 1)), date=dt.date(2026, 1, 1))

    assert catalog.ensure_views() == ["coin_universe"]  # the empty placeholder now reads the files
    with catalog.connect() as con:
        assert con.execute("SELECT count(*) FROM coin_universe").fetchone() == (2,)
    assert not list(tmp_path.glob(".quant.duckdb.*.tmp*"))  # nothing left beside it


def test_a_damaged_catalog_file_is_rebuilt(tmp_path: Path) -> None:
    catalog = Catalog(Lake(tmp_path))
    catalog.path.write_bytes(b"not a duckdb file")

    assert "coin_universe" in catalog.ensure_views()
    with catalog.connect() as con:
        assert con.execute("SELECT count(*) FROM coin_universe").fetchone() == (0,)
