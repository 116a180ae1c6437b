"""What the domain code logs under ``quant_assets`` shows in the run's event log, once, from any thread."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from quant_assets.defs.assets.ohlcv import ohlcv
from quant_assets.defs.resources import DOMAIN_LOGGER, LakeResource
from quant_assets.log_forwarding import RunLogForwarder, is_forwarded
from quant_assets.simulator import Simulator
from quant_assets_tests.dagster_helpers import materialize_range, resources_for

THREAD_JOIN_TIMEOUT_S = 60  # bounds a failure only
SUBPROCESS_TIMEOUT_S = 300  # bounds a failure only: a loaded 2-core machine starts dagster slowly


def run_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The user messages of the run's event log, as the UI lists them, read back from the instance."""
    return [entry.user_message for entry in instance.all_logs(run_id)]


def forwarders() -> list[logging.Handler]:
    return [h for h in logging.getLogger(DOMAIN_LOGGER).handlers if isinstance(h, RunLogForwarder)]


@dg.asset
def chatty(lake: LakeResource) -> None:
    """Logs as the domain code does: from the step's thread and from a worker thread."""
    del lake
    logging.getLogger("quant_assets.ohlcv_collect").warning("from the step thread")

    def work() -> None:
        logging.getLogger("quant_assets.sources.http").info("from a worker thread")
        logging.getLogger("quant_assets.simulator.server").warning("the simulator's own chatter")

    worker = threading.Thread(target=work)
    worker.start()
    worker.join(THREAD_JOIN_TIMEOUT_S)


def test_a_429_retry_shows_in_the_run_event_log(sim: Simulator, tmp_path: Path, yesterday: dt.date) -> None:
    sim.faults.fail_next("/fapi/v1/klines", 429, retry_after=0.5)
    instance = dg.DagsterInstance.ephemeral()

    result = materialize_range(
        ohlcv, instance, resources_for(sim, tmp_path), ["BTCUSDT"], yesterday, yesterday
    )

    assert result.success
    retries = [
        m
        for m in run_messages(instance, result.run_id)
        if m.startswith("quant_assets.sources") and "429" in m
    ]
    assert len(retries) == 1, run_messages(instance, result.run_id)
    assert "Retry-After" in retries[0]


def test_records_from_worker_threads_reach_the_run_and_the_forwarder_leaves_after(tmp_path: Path) -> None:
    domain = logging.getLogger(DOMAIN_LOGGER)
    level_before = domain.level
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(
        [chatty], instance=instance, resources={"lake": LakeResource(data_dir=str(tmp_path))}
    )

    messages = run_messages(instance, result.run_id)
    assert messages.count("quant_assets.ohlcv_collect: from the step thread") == 1
    assert messages.count("quant_assets.sources.http: from a worker thread") == 1  # INFO reaches it too
    assert not any("simulator's own chatter" in m for m in messages)
    assert forwarders() == []
    assert domain.level == level_before


def test_no_line_twice_when_dagster_also_manages_the_domain_logger(tmp_path: Path) -> None:
    overrides = {"python_logs": {"managed_python_loggers": ["quant_assets"]}}
    with dg.instance_for_test(overrides=overrides) as instance:
        result = dg.materialize(
            [chatty], instance=instance, resources={"lake": LakeResource(data_dir=str(tmp_path))}
        )
        messages = run_messages(instance, result.run_id)

    # Dagster forwards the managed tree itself (without the logger's name in the line): once
    assert sum("from the step thread" in m for m in messages) == 1, messages
    assert forwarders() == []


def test_a_forwarded_record_is_marked_so_a_terminal_handler_can_skip_it() -> None:
    received: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            received.append(record)

    run_log = logging.getLogger("test_logs.run")
    run_log.propagate = False
    run_log.addHandler(Keep())
    forwarder = RunLogForwarder(run_log)
    forwarder.attach(logging.getLogger(DOMAIN_LOGGER))
    try:
        record = logging.makeLogRecord(
            {"name": "quant_assets.store.catalog", "levelno": logging.WARNING, "msg": "catalog busy"}
        )
        logging.getLogger("quant_assets.store.catalog").handle(record)
    finally:
        forwarder.detach()

    assert [r.getMessage() for r in received] == ["quant_assets.store.catalog: catalog busy"]
    assert is_forwarded(record)


@pytest.mark.parametrize("name", ["quant_assets.simulator", "quant_assets.simulator.server"])
def test_the_simulator_is_never_forwarded(name: str) -> None:
    forwarder = RunLogForwarder(logging.getLogger("test_logs.sink"))
    assert not forwarder.filter(logging.makeLogRecord({"name": name, "levelno": logging.WARNING}))


def test_the_cli_prints_a_retry_once(sim: Simulator, tmp_path: Path) -> None:
    sim.faults.fail_next("/fapi/v1/klines", 429, retry_after=0.3)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("QT_") and k != "DAGSTER_HOME"},
        "QT_DATA_DIR": str(tmp_path / "data"),
        "QT_BINANCE_FAPI_URL": sim.url,
        "QT_COINGECKO_API_URL": sim.coingecko_url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "quant_assets.cli", "backfill", "--days", "1", "--symbols", "BTCUSDT"],
        env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    retries = [line for line in output.splitlines() if "attempt 1/" in line and "429" in line]
    assert len(retries) == 1, retries  # through the run's console log, not a second time by the root
    assert "quant_assets.sources" in retries[0]
