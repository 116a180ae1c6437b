"""WeightBudget and shared_budget on their own: real clocks, short windows, no server."""

from __future__ import annotations

import math
import threading
import time

import pytest

from quant_assets.sources.http import WeightBudget, parse_retry_after, shared_budget


def _fresh_window(budget: WeightBudget, *, lead: float = 0.0) -> None:
    """Sleep until `lead` seconds after the next window boundary, so a short test stays inside one window."""
    now = time.time()
    boundary = (math.floor(now / budget.window_seconds) + 1) * budget.window_seconds
    time.sleep(boundary - now + lead)


def test_acquire_inside_the_limit_does_not_wait() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)

    waits = [budget.acquire(5), budget.acquire(5)]

    assert max(waits) < 0.05
    assert (budget.stats.requests, budget.stats.weight) == (2, 10)


def test_acquire_over_the_limit_waits_for_the_next_wall_clock_window() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)
    first_window = budget.window_index()
    budget.acquire(10)

    waited = budget.acquire(1)

    assert budget.window_index() == first_window + 1
    assert 0.4 < waited < 0.6
    assert budget.stats.waited_seconds == pytest.approx(waited, abs=0.01)


def test_observe_takes_the_server_count_when_it_is_higher() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)
    first_window = budget.window_index()
    budget.acquire(1)

    budget.observe(10)  # another process spent the rest of the window from our IP
    budget.acquire(1)

    assert budget.window_index() == first_window + 1


def test_observe_never_lowers_the_local_count() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)
    first_window = budget.window_index()
    budget.acquire(8)  # still in flight: the server has not counted it yet

    budget.observe(2)
    budget.acquire(2)
    budget.acquire(1)

    assert budget.window_index() == first_window + 1


def test_observe_ignores_a_header_from_an_earlier_window() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)
    sent_at = time.time()
    _fresh_window(budget, lead=0.01)
    current = budget.window_index()

    budget.observe(10, sent_at=sent_at)  # counted in the window the request was sent in
    waited = budget.acquire(10)

    assert waited < 0.05
    assert budget.window_index() == current


def test_a_request_at_the_end_of_a_window_is_charged_to_the_next_one_too() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    assert budget.edge_seconds == pytest.approx(0.025)
    _fresh_window(budget, lead=0.5 - 0.012)  # 12 ms before a boundary, inside the 25 ms edge
    edge_window = budget.window_index()
    budget.acquire(6)

    budget.acquire(5)  # the next window already holds the 6, so this one waits for the one after

    assert budget.window_index() == edge_window + 2


def test_hold_until_blocks_every_acquire_and_counts_the_status() -> None:
    budget = WeightBudget(None)
    budget.hold_until(0.3, status=429)
    waits: list[float] = []
    threads = [threading.Thread(target=lambda: waits.append(budget.acquire(1))) for _ in range(3)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(waits) == 3
    assert min(waits) >= 0.29
    assert (budget.stats.rate_limited, budget.stats.banned, budget.stats.requests) == (1, 0, 3)


def test_a_shorter_hold_never_shortens_a_longer_one() -> None:
    budget = WeightBudget(None)

    budget.hold_until(0.4, status=418)
    budget.hold_until(0.1)

    assert budget.hold_remaining() > 0.3
    assert budget.stats.banned == 1


def test_unlimited_budget_still_counts() -> None:
    budget = WeightBudget(None)

    for _ in range(50):
        budget.acquire(40)

    assert (budget.stats.requests, budget.stats.weight) == (50, 2000)
    assert budget.stats.waited_seconds < 0.05


@pytest.mark.parametrize("weight", [-1, 11])
def test_acquire_refuses_a_weight_that_can_never_fit(weight: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        WeightBudget(10).acquire(weight)


def test_shared_budget_is_one_object_per_venue_and_base_url() -> None:
    first = shared_budget("binance", "http://budget-test.invalid:1", limit=50)

    same = shared_budget("binance", "http://budget-test.invalid:1/", limit=50)
    other_url = shared_budget("binance", "http://budget-test.invalid:2", limit=50)
    other_venue = shared_budget("bybit", "http://budget-test.invalid:1", limit=50)

    assert same is first
    assert other_url is not first
    assert other_venue is not first


def test_shared_budget_takes_the_newest_limit() -> None:
    first = shared_budget("binance", "http://budget-test.invalid:3", limit=50)

    again = shared_budget("binance", "http://budget-test.invalid:3", limit=80, window_seconds=10.0)

    assert again is first
    assert (first.limit, first.window_seconds) == (80, 10.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("3", 3.0),
        ("0.25", 0.25),
        ("-5", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date in the past: go now
        ("soon", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_reads_an_http_date_in_the_future() -> None:
    from email.utils import formatdate

    header = formatdate(time.time() + 30, usegmt=True)

    assert 28.0 < (parse_retry_after(header) or 0.0) <= 30.0
