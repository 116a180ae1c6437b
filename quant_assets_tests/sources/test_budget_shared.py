"""One weight budget per venue for the whole machine: a state file under a lock, shared by processes.

Sharers in one process are two budgets on one file (each has its own open file, so the lock
separates them as it separates processes); the issue's cases run real processes against the
simulator over HTTP.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from quant_assets.errors import ConfigError
from quant_assets.simulator import Simulator
from quant_assets.sources.binance import BinanceFuturesClient
from quant_assets.sources.budget import WeightBudget, budget_state_file, shared_budget

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 10, 12, 2, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
KLINES = "/fapi/v1/klines"
PING = "/fapi/v1/ping"
URL = "http://budget-shared.invalid:1"


def _fresh_window(window_seconds: float, *, lead: float = 0.01) -> None:
    """Sleep until `lead` seconds after the next window boundary."""
    now = time.time()
    boundary = (math.floor(now / window_seconds) + 1) * window_seconds
    time.sleep(boundary - now + lead)


def _poll(condition: object, *, timeout: float, what: str) -> None:
    """Wait until `condition()` is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "binance.budget"


# ------------------------------------------------------------------------------ sharers of one file
def _sharers_set_up_in_one_window(
    tmp_path: Path, setup: Callable[[WeightBudget], object]
) -> tuple[WeightBudget, WeightBudget, int]:
    """Two sharers of a fresh file (limit 10, 0.5 s windows), `setup` run on the first inside one
    window, and that window. On a busy machine the window may turn during `setup`; then the attempt
    proves nothing and is made again on a fresh file, at most 20 times."""
    for attempt in range(20):
        state_file = tmp_path / f"attempt{attempt}.budget"
        first = WeightBudget(10, window_seconds=0.5, state_file=state_file)
        second = WeightBudget(10, window_seconds=0.5, state_file=state_file)
        _fresh_window(0.5)
        window = first.window_index()
        setup(first)
        if first.window_index() == window:
            return first, second, window
    pytest.fail("the set-up never fitted in one 0.5 s window")


def test_two_sharers_of_a_file_spend_one_window_together(tmp_path: Path) -> None:
    first, second, window = _sharers_set_up_in_one_window(tmp_path, lambda b: b.acquire(10))

    second.acquire(1)

    assert time.time() >= (window + 1) * 0.5  # the first spent the window for both
    assert (first.stats.weight, second.stats.weight) == (10, 1)


def test_a_hold_set_by_one_sharer_holds_the_other(state_file: Path) -> None:
    first = WeightBudget(None, state_file=state_file)
    second = WeightBudget(None, state_file=state_file)

    first.hold_until(0.4, status=429)
    waited = second.acquire(1)

    assert waited >= 0.39
    assert (first.stats.rate_limited, second.stats.rate_limited) == (1, 0)


def test_the_used_weight_header_seen_by_one_sharer_corrects_the_other(tmp_path: Path) -> None:
    # The venue counted a whole window from this IP.
    _, second, window = _sharers_set_up_in_one_window(tmp_path, lambda b: b.observe(10))

    second.acquire(1)

    assert time.time() >= (window + 1) * 0.5


def test_a_lease_keeps_the_only_slot_until_it_ends(state_file: Path) -> None:
    first = WeightBudget(None, state_file=state_file)
    second = WeightBudget(None, state_file=state_file)
    leased = threading.Event()

    def take_the_slot() -> None:
        with second.lease(1):
            leased.set()

    with first.lease(1):
        waiter = threading.Thread(target=take_the_slot)
        waiter.start()
        assert not leased.wait(0.3)  # the slot is taken: the other sharer queues
    waiter.join(timeout=30)

    assert leased.is_set()
    assert second.stats.waited_seconds >= 0.25


def test_queued_callers_get_the_slot_in_the_order_they_came(state_file: Path) -> None:
    budget = WeightBudget(None, state_file=state_file)
    order: list[int] = []

    def request(n: int) -> None:
        with budget.lease(1):
            order.append(n)

    with budget.lease(1):
        threads = []
        for n in range(3):
            thread = threading.Thread(target=request, args=(n,))
            thread.start()
            threads.append(thread)
            _poll(lambda n=n: _queued(state_file) == n + 1, timeout=30, what=f"caller {n} to queue")
    for thread in threads:
        thread.join(timeout=30)

    assert order == [0, 1, 2]


def _queued(state_file: Path) -> int:
    """Callers waiting for a slot in the state file."""
    from quant_assets.sources.budget import _WAITING, _decode

    return sum(1 for e in _decode(state_file.read_bytes()).entries if e.kind == _WAITING)


def test_a_damaged_state_file_reads_as_a_fresh_budget(state_file: Path) -> None:
    state_file.write_bytes(b"not a budget")
    budget = WeightBudget(10, window_seconds=0.5, state_file=state_file)

    waited = budget.acquire(10)

    assert waited < 0.05
    assert budget.hold_remaining() == 0.0


def test_a_state_dir_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")

    with pytest.raises(ConfigError, match="weight-budget directory"):
        shared_budget("binance", URL, limit=10, state_dir=blocker / "budget")


def test_shared_budget_with_a_directory_keeps_its_state_in_a_file_there(tmp_path: Path) -> None:
    budget = shared_budget("binance", URL, limit=10, state_dir=tmp_path / "budget")

    budget.hold_until(5.0)

    assert budget.state_file == budget_state_file(tmp_path / "budget", "binance", URL)
    assert budget.state_file is not None
    assert budget.state_file.stat().st_size > 0
    assert shared_budget("binance", URL, limit=10, state_dir=tmp_path / "budget") is budget
    assert shared_budget("binance", URL, limit=10).hold_remaining() == 0.0  # this process only: apart


# ---------------------------------------------------------------------------------------- processes
def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "quant_assets_tests.sources.budget_child", *args]


@pytest.fixture
def held_sim() -> Iterator[Simulator]:
    with Simulator(now=NOW) as sim:
        yield sim


@pytest.mark.parametrize("what", ["slot", "lock"])
def test_a_process_killed_while_it_holds_the_budget_never_blocks_the_next(
    tmp_path: Path, held_sim: Simulator, what: str
) -> None:
    budget_dir = tmp_path / "budget"
    holder = subprocess.Popen(
        _child(
            "hold", "--url", held_sim.url, "--budget-dir", str(budget_dir), "--window", "60", "--what", what
        ),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        client = BinanceFuturesClient(
            held_sim.url, clock=lambda: NOW_MS, budget_dir=budget_dir, backoff_base=0.01, backoff_max=0.05
        )
        done = threading.Event()
        worker = threading.Thread(target=lambda: (client.ping(), done.set()), daemon=True)
        worker.start()
        assert not done.wait(0.5)  # blocked behind the holder
        assert held_sim.stats.requests[PING] == 0

        killed = time.monotonic()
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=60)
        assert done.wait(30), "the next process did not go on after the holder was killed"
        went_on = time.monotonic() - killed
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(timeout=60)

    assert went_on < 5.0
    assert held_sim.stats.requests[PING] == 1


def test_two_processes_fetching_at_once_share_one_budget_and_draw_no_ban(tmp_path: Path) -> None:
    limit, window, page, faults = 4, 1.0, 50, 3  # pages of 50 candles weigh 1 each
    day_start = NOW_MS // DAY_MS * DAY_MS - DAY_MS
    groups = ["BTCUSDT,ETHUSDT", "SOLUSDT,BNBUSDT"]
    budget_dir = tmp_path / "budget"
    with Simulator(now=NOW, weight_limit=limit, window_seconds=window, ban_seconds=60.0) as sim:
        stop = threading.Event()

        def arm_429s() -> None:
            # One 429 at a time while both processes are sending, each after the last was served.
            for n in range(faults):
                deadline = time.monotonic() + 120
                while sim.stats.requests[KLINES] < 3 + 5 * n or sim.stats.rate_limited < n:
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    time.sleep(0.002)
                sim.faults.fail_next(KLINES, 429, retry_after=0.5)

        go = tmp_path / "go"
        children = [
            subprocess.Popen(
                _child(
                    "fetch",
                    *("--url", sim.url, "--budget-dir", str(budget_dir), "--limit", str(limit)),
                    *("--window", str(window), "--symbols", symbols, "--page", str(page)),
                    *("--start-ms", str(day_start), "--end-ms", str(day_start + DAY_MS)),
                    *("--now-ms", str(NOW_MS), "--out", str(tmp_path / f"child{i}.parquet")),
                    *("--go", str(go)),
                ),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i, symbols in enumerate(groups)
        ]
        armer = threading.Thread(target=arm_429s, daemon=True)
        try:
            # Both start fetching together, however long each took to start on a busy machine.
            for child in children:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == "ready"
            armer.start()
            go.touch()
            errors = [child.communicate(timeout=300)[1] for child in children]
        finally:
            stop.set()
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=60)
        if armer.ident is not None:  # started
            armer.join(timeout=30)
        stats = sim.stats
        banned, rate_limited, weight_served = stats.banned_requests, stats.rate_limited, stats.weight_used

    assert [child.returncode for child in children] == [0, 0], errors
    assert banned == 0
    assert rate_limited == faults  # the injected ones only: together they never crossed the limit
    with Simulator(now=NOW) as reference_sim:
        reference = BinanceFuturesClient(reference_sim.url, clock=lambda: NOW_MS, weight_per_minute=None)
        for i, symbols in enumerate(groups):
            got = pd.read_parquet(tmp_path / f"child{i}.parquet")
            expected = pd.concat(
                [
                    reference.fetch_candles(s, day_start, day_start + DAY_MS, limit=page).assign(symbol=s)
                    for s in symbols.split(",")
                ],
                ignore_index=True,
            )
            assert len(got) == 2 * 288
            pd.testing.assert_frame_equal(got, expected)
    reports = [json.loads((tmp_path / f"child{i}.json").read_text()) for i in range(2)]
    sent = sum(r["weight"] for r in reports)  # the 429'd attempts included
    assert sent == weight_served + faults
    span = max(r["finished"] for r in reports) - min(r["started"] for r in reports)
    windows = math.ceil(sent / limit)
    # The floor: `windows` windows of `limit`, the first possibly partly spent. Never faster than
    # that (one budget, not two); near it: a window, the 429 holds and process noise at most.
    assert (windows - 2) * window <= span <= (windows + 1) * window + faults * 0.5 + 5.0


def test_the_resources_share_the_budget_through_the_data_directory(tmp_path: Path) -> None:
    from quant_assets.defs.resources import build_resources

    resources = build_resources({"QT_DATA_DIR": str(tmp_path), "QT_BINANCE_FAPI_URL": URL})
    binance = resources["binance"].client()  # type: ignore[attr-defined]
    coingecko = resources["coingecko"].client()  # type: ignore[attr-defined]

    assert binance.budget.state_file == budget_state_file(tmp_path / ".budget", "binance", URL)
    assert coingecko.budget.state_file is not None
    assert coingecko.budget.state_file.parent == tmp_path / ".budget"
