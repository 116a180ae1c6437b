"""WeightBudget and shared_budget on their own: real clocks, short windows, no server."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

import pytest

from quant_assets.sources.http import WeightBudget, parse_retry_after, shared_budget


def _fresh_window(budget: WeightBudget, *, lead: float = 0.0) -> None:
    """Sleep until `lead` seconds after the next window boundary, so a short test stays inside one window."""
    now = time.time()
    boundary = (math.floor(now / budget.window_seconds) + 1) * budget.window_seconds
    time.sleep(boundary - now + lead)


def _set_up_in_one_window(
    setup: Callable[[WeightBudget], object], *, lead: float = 0.01
) -> tuple[WeightBudget, int]:
    """A fresh budget (limit 10, 0.5 s windows) on which `setup` ran inside one window, and that window.

    `setup` starts `lead` seconds or later into that window. On a busy machine the sleep may wake
    late (even in a later window) or the window may turn while `setup` runs; such an attempt proves
    nothing and is made again on a fresh budget, at most 20 times, so a broken budget fails, never hangs.
    """
    for _ in range(20):
        budget = WeightBudget(10, window_seconds=0.5)
        _fresh_window(budget, lead=lead)
        started = time.time()
        window = budget.window_index(started)
        setup(budget)
        if budget.window_index() == window and started - window * budget.window_seconds >= lead:
            return budget, window
    pytest.fail("the set-up never fitted in one 0.5 s window")


def test_acquire_inside_the_limit_does_not_wait() -> None:
    budget = WeightBudget(10, window_seconds=0.5)
    _fresh_window(budget, lead=0.01)

    waits = [budget.acquire(5), budget.acquire(5)]

    assert max(waits) < 0.25  # waiting for a window takes >= 0.49 s here; 0.25 s leaves room for load
    assert (budget.stats.requests, budget.stats.weight) == (2, 10)


def test_acquire_over_the_limit_waits_for_the_next_wall_clock_window() -> None:
    budget, first_window = _set_up_in_one_window(lambda b: b.acquire(10))
    next_window_at = (first_window + 1) * budget.window_seconds

    waited = budget.acquire(1)

    assert time.time() >= next_window_at  # not before the next window
    assert waited < 1.0  # nor for the window after it (a late wake-up on a busy machine is no error)
    assert budget.stats.waited_seconds == pytest.approx(waited, abs=0.01)


def test_observe_takes_the_server_count_when_it_is_higher() -> None:
    budget, first_window = _set_up_in_one_window(lambda b: b.acquire(1))

    budget.observe(10)  # another process spent the rest of the window from our IP
    budget.acquire(1)

    assert budget.window_index() == first_window + 1


def test_observe_never_lowers_the_local_count() -> None:
    # acquire(8): still in flight, the server has not counted it yet
    budget, first_window = _set_up_in_one_window(lambda b: b.acquire(8))

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

    assert waited < 0.25  # waiting for the next window would take >= 0.49 s
    assert budget.window_index() == current


def test_a_request_at_the_end_of_a_window_is_charged_to_the_next_one_too() -> None:
    assert WeightBudget(10, window_seconds=0.5).edge_seconds == pytest.approx(0.025)
    # acquire(6) 12 ms before a boundary, inside the 25 ms edge
    budget, edge_window = _set_up_in_one_window(lambda b: b.acquire(6), lead=0.5 - 0.012)

    budget.acquire(5)  # the next window already holds the 6, so this one waits for the one after

    assert budget.window_index() == edge_window + 2


def test_hold_until_blocks_every_acquire_and_counts_the_status() -> None:
    budget = WeightBudget(None)
    held_from = time.monotonic()
    budget.hold_until(0.3, status=429)
    returned: list[float] = []
    threads = [
        threading.Thread(target=lambda: (budget.acquire(1), returned.append(time.monotonic())))
        for _ in range(3)
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Judged by when each acquire returned, not by how long it waited: on a busy machine a thread
    # may start late and wait less, but none may return before the hold ends.
    assert len(returned) == 3
    assert min(returned) >= held_from + 0.3 - 0.01
    assert (budget.stats.rate_limited, budget.stats.banned, budget.stats.requests) == (1, 0, 3)


def test_a_shorter_hold_never_shortens_a_longer_one() -> None:
    budget = WeightBudget(None)
    held_from = time.monotonic()

    budget.hold_until(0.4, status=418)
    budget.hold_until(0.1)
    remaining = budget.hold_remaining()
    ends_at = time.monotonic() + remaining  # read after: never earlier than the hold's true end

    assert ends_at >= held_from + 0.4 - 0.01  # still the longer hold, however slow the machine
    assert budget.stats.banned == 1


def test_unlimited_budget_still_counts() -> None:
    budget = WeightBudget(None)

    for _ in range(50):
        budget.acquire(40)

    assert (budget.stats.requests, budget.stats.weight) == (50, 2000)
    assert budget.stats.waited_seconds < 1.0  # never a window (60 s); room for a busy machine's locks


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
