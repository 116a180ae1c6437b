"""Separate processes around one catalog, started by ``test_catalog_concurrency.py``.

``python -m quant_assets_tests.store.catalog_child write DATA_DIR FIRST_DAY DAYS`` stores one
``coin_universe`` snapshot a day and rebuilds the catalog after each (forced every other time, so
it really is rebuilt); ``read DATA_DIR STOP_FILE`` opens ``quant.duckdb`` read-only and queries it
in a tight loop until `STOP_FILE` exists, then prints what it saw as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
import pandas as pd

from quant_assets.store.catalog import CATALOG_FILE, Catalog
from quant_assets.store.lake import Lake

READ_DEADLINE_S = 600.0  # a reader never outlives a test that forgot to stop it


def _snapshot(day: dt.date) -> pd.DataFrame:
    symbols = ["BTCUSDT", "ETHUSDT"]
    return pd.DataFrame(
        {
            "snapshot_date": [day] * 2,
            "rank": [1, 2],
            "symbol": symbols,
            "base_asset": ["BTC", "ETH"],
            "coingecko_id": ["bitcoin", "ethereum"],
            "categories": ["layer-1"] * 2,
            "volume_24h_usd": [2e9, 1e9],
            "market_cap_usd": [2e10, 1e10],
            "source": ["coingecko"] * 2,
            "fetched_at": [dt.datetime.combine(day, dt.time(0, 10))] * 2,
        }
    )


def write(data_dir: Path, first_day: dt.date, days: int) -> None:
    lake = Lake(data_dir)
    rebuilt = 0
    for n in range(days):
        day = first_day + dt.timedelta(days=n)
        lake.write("coin_universe", _snapshot(day), date=day)
        rebuilt += bool(Catalog(lake).ensure_views(force=n % 2 == 0, timeout_s=120.0))
    print(json.dumps({"rebuilt": rebuilt}), flush=True)


def read(data_dir: Path, stop_file: Path) -> None:
    path = str(data_dir / CATALOG_FILE)
    opens, failures, seen = 0, [], set()
    print("ready", flush=True)
    deadline = time.monotonic() + READ_DEADLINE_S
    while not stop_file.exists() and time.monotonic() < deadline:
        try:
            with duckdb.connect(path, read_only=True) as con:
                count = con.execute("SELECT count(DISTINCT snapshot_date) FROM coin_universe").fetchone()
        except duckdb.Error as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        else:
            seen.add(count[0] if count else None)
        opens += 1
    print(json.dumps({"opens": opens, "failures": failures[:5], "failed": len(failures), "seen": len(seen)}))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[0] == "write":
        write(Path(args[1]), dt.date.fromisoformat(args[2]), int(args[3]))
    else:
        read(Path(args[1]), Path(args[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
