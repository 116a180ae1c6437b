"""Fixtures shared by the Dagster-level tests: one simulator per session, a fresh lake per test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from quant_assets.simulator import Simulator

SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "real"


@pytest.fixture(scope="session")
def simulator() -> Iterator[Simulator]:
    """The exchange simulator on 127.0.0.1, market clock = wall clock; faults cleared per test."""
    with Simulator() as sim:
        yield sim


@pytest.fixture(scope="session")
def signal_simulator() -> Iterator[Simulator]:
    """A second simulator with the planted signal on (``Simulator(signal=True)``), wall clock.

    The last hour's taker-buy flow predicts the next hour's return; see
    ``quant_assets.simulator.market``. The plain ``simulator`` holds nothing a model could learn.
    """
    with Simulator(signal=True) as sim:
        yield sim


@pytest.fixture
def sim(simulator: Simulator) -> Iterator[Simulator]:
    simulator.faults.clear()
    simulator.stats.reset()
    yield simulator
    simulator.faults.clear()


@pytest.fixture
def yesterday() -> dt.date:
    return dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)


def real_fixture(*parts: str) -> Path:
    """A file of the recorded real payloads beside the repo; skips the test when it is absent."""
    path = SHARED_FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/fixtures/real is absent (fresh clone): {'/'.join(parts)} not found")
    return path
