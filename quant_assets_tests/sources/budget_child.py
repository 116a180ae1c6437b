"""A separate process that spends a shared weight budget, started by ``test_budget_shared.py``.

``python -m quant_assets_tests.sources.budget_child fetch ...`` prints ``ready``, waits for the go file, fetches
candles from a simulator through :class:`BinanceFuturesClient` and writes them (and when it fetched)
to a Parquet file;
``python -m quant_assets_tests.sources.budget_child hold ...`` takes the budget's only request slot, or its
file lock, prints ``held`` and waits to be killed.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.budget import WeightBudget, budget_state_file


def _fetch(args: argparse.Namespace) -> None:
    client = BinanceFuturesClient(
        args.url,
        weight_per_minute=args.limit,
        window_seconds=args.window,
        clock=lambda: args.now_ms,
        backoff_base=0.01,
        backoff_max=0.05,
        budget_dir=Path(args.budget_dir),
    )
    print("ready", flush=True)
    go, deadline = Path(args.go), time.monotonic() + 300
    while not go.exists():  # the test starts every process at once
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 300 s")
        time.sleep(0.005)
    started = time.time()
    frames = [
        client.fetch_candles(symbol, args.start_ms, args.end_ms, limit=args.page).assign(symbol=symbol)
        for symbol in args.symbols.split(",")
    ]
    finished = time.time()
    pd.concat(frames, ignore_index=True).to_parquet(args.out)
    stats = client.budget.stats
    report = {"started": started, "finished": finished, "requests": stats.requests, "weight": stats.weight}
    Path(args.out).with_suffix(".json").write_text(json.dumps(report))


def _hold(args: argparse.Namespace) -> None:
    budget_dir = Path(args.budget_dir)
    budget_dir.mkdir(parents=True, exist_ok=True)
    state_file = budget_state_file(budget_dir, "binance", args.url)
    budget = WeightBudget(None, window_seconds=args.window, state_file=state_file)
    # The file lock itself is held as by a process killed in the middle of a transaction.
    context = budget.lease(1, max_seconds=3600.0) if args.what == "slot" else budget._store.transaction()
    with context:
        print("held", flush=True)
        threading.Event().wait()  # until killed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch")
    fetch.add_argument("--url", required=True)
    fetch.add_argument("--budget-dir", required=True)
    fetch.add_argument("--limit", type=int, required=True)
    fetch.add_argument("--window", type=float, required=True)
    fetch.add_argument("--symbols", required=True)
    fetch.add_argument("--start-ms", type=int, required=True)
    fetch.add_argument("--end-ms", type=int, required=True)
    fetch.add_argument("--now-ms", type=int, required=True)
    fetch.add_argument("--page", type=int, required=True)
    fetch.add_argument("--out", required=True)
    fetch.add_argument("--go", required=True, help="start fetching once this file exists")
    hold = commands.add_parser("hold")
    hold.add_argument("--url", required=True)
    hold.add_argument("--budget-dir", required=True)
    hold.add_argument("--window", type=float, required=True)
    hold.add_argument("--what", choices=("slot", "lock"), required=True)
    args = parser.parse_args(argv)
    _fetch(args) if args.command == "fetch" else _hold(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
