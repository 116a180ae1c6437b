"""Materialize the graph from Python: what ``quant-assets demo``, ``backfill`` and ``train`` run.

Each ``ohlcv`` rectangle (days x contiguous symbols) is ONE run carrying Dagster's partition-range
tags: the same runs the sensors request and the CLI's ``--partition-range`` launches.

Two ways to run a job:

* **through the instance** (:func:`submit_job_runs`, the CLI's default): each run is created from the
  job's remote definition, loaded by a code server as the web UI loads it, and handed to the
  instance's run coordinator with ``instance.submit_run``, exactly as a launch from the UI. The
  daemon (or the run launcher of a deployment: Kubernetes, Celery...) executes it; the caller
  follows its event log, printing the run's own progress lines, and gets each run's outcome with
  the failure it reported. An instance whose coordinator queues runs (Dagster 1.13's default, even
  for a bare ``dagster.yaml``) and that has no live daemon gets its runs launched by the caller, one
  at a time, so nothing waits for a daemon that is not there.
* **in process** (``in_process=True``, the CLI's ``--in-process``): ``materialize()`` in the
  calling process, the fast local mode; runs go to the instance of ``$DAGSTER_HOME`` when it is set
  (so the web UI shows them), else to an ephemeral one.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

from quant_assets.defs.automation import REASON_TAG, ohlcv_rectangles
from quant_assets.defs.partitions import (
    START_DATE,
    last_complete_day,
    split_ohlcv_key,
    symbol_partitions,
)
from quant_assets.defs.ranges import day_range_tags, lookback_window, ohlcv_range_tags
from quant_assets.defs.resources import build_resources
from quant_assets.errors import QuantAssetsError
from quant_assets.settings import Settings
from quant_assets.store.catalog import Catalog
from quant_assets.store.lake import Lake
from quant_assets.symbols import checked_symbol

if TYPE_CHECKING:
    from quant_assets.defs.assets._model_asset import ModelRunOutcome


@dataclass
class BackfillResult:
    """What a backfill did: runs launched, their ids and outcome."""

    runs: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    partitions: int = 0
    failures: list[str] = field(default_factory=list)  # each failed run's own account

    @property
    def success(self) -> bool:
        return not self.failed_runs

    def __str__(self) -> str:
        state = "ok" if self.success else f"{len(self.failed_runs)} runs failed: {self.failed_runs}"
        lines = [f"backfill: {self.partitions} symbol-days in {len(self.runs)} runs, {state}", *self.failures]
        return "\n".join(lines)


# Runs started from a terminal log at INFO: progress lines and warnings, not every engine event.
TERMINAL_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def default_instance() -> dg.DagsterInstance:
    """The ``$DAGSTER_HOME`` instance if configured, else an ephemeral one (nothing persists)."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    return dg.DagsterInstance.ephemeral()


def _assets() -> list[dg.AssetsDefinition]:
    from quant_assets.definitions import defs

    return [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]


def _asset(name: str) -> dg.AssetsDefinition:
    return next(a for a in _assets() if a.key == dg.AssetKey(name))


# ----------------------------------------------------------------------- runs through the instance
CODE_LOCATION = "quant_assets"  # pyproject's [tool.dagster] code_location_name: the daemon's too
DEFINITIONS_MODULE = "quant_assets.definitions"
QUEUED_RUN_DAEMON = "QUEUED_RUN_COORDINATOR"
DAEMON_HEARTBEAT_TOLERANCE_S = 90.0  # the daemon beats every 30 s; three missed beats mean "gone"
POLL_S = 0.5
FAILURE_EVENTS = {
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.RUN_FAILURE,
    dg.DagsterEventType.ENGINE_EVENT,
}


@dataclass(frozen=True)
class JobRun:
    """One run to submit: a job of the definitions, its tags, run config and asset subset."""

    job_name: str
    tags: Mapping[str, str] = field(default_factory=dict)
    run_config: Mapping[str, object] = field(default_factory=dict)
    assets: Sequence[str] | None = None  # asset names; None: every asset of the job


@dataclass
class RunOutcome:
    """How a submitted run ended: its id, job, final status and, when it failed, why."""

    run_id: str
    job_name: str
    status: str
    step_failures: dict[str, str] = field(default_factory=dict)  # step key: its own description
    run_failure: str = ""

    @property
    def success(self) -> bool:
        return self.status == dg.DagsterRunStatus.SUCCESS.value

    @property
    def failures(self) -> list[str]:
        """Each failed step's own description (a ``dg.Failure`` names its partitions), else the run's."""
        if self.step_failures:
            return list(self.step_failures.values())
        return [self.run_failure] if self.run_failure else []

    def __str__(self) -> str:
        head = f"run {self.run_id} ({self.job_name}): {self.status}"
        return "\n".join([head, *(f"  {line}" for f in self.failures for line in f.splitlines())])


@contextmanager
def code_location(instance: dg.DagsterInstance) -> Iterator[object]:
    """A workspace request context holding the ``quant_assets`` code location, served by a code
    server process as ``dagster dev`` and the daemon serve it; closed (server stopped) on exit."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget

    target = ModuleTarget(
        module_name=DEFINITIONS_MODULE,
        attribute=None,
        working_directory=os.getcwd(),
        location_name=CODE_LOCATION,
    )
    with WorkspaceProcessContext(instance, target) as process_context:
        workspace = process_context.create_request_context()
        errors = workspace.get_code_location_error(CODE_LOCATION)
        if errors:
            raise QuantAssetsError(f"the {CODE_LOCATION} code location did not load: {errors.message}")
        yield workspace


def create_job_run(instance: dg.DagsterInstance, workspace: object, request: JobRun) -> str:
    """Create (not yet start) a run of `request` from the job's remote definition, as the UI does.

    Raises:
        QuantAssetsError: the job or an asset of the subset is not in the definitions.
    """
    from dagster._core.definitions.selector import JobSubsetSelector

    location = workspace.get_code_location(CODE_LOCATION)  # type: ignore[attr-defined]
    (repository,) = location.get_repositories().values()
    if not repository.has_job(request.job_name):
        raise QuantAssetsError(f"no job {request.job_name!r} in {DEFINITIONS_MODULE}")
    keys = [dg.AssetKey(name) for name in request.assets] if request.assets else None
    job = location.get_job(
        JobSubsetSelector(
            location_name=CODE_LOCATION,
            repository_name=repository.name,
            job_name=request.job_name,
            op_selection=None,
            asset_selection=keys,
        )
    )
    if keys:
        unknown = set(keys) - set(job.asset_selection or keys)
        if unknown:
            raise QuantAssetsError(
                f"job {request.job_name} has no assets {sorted(k.to_user_string() for k in unknown)}"
            )
    plan = location.get_execution_plan(
        job, dict(request.run_config), step_keys_to_execute=None, known_state=None, instance=instance
    )
    run = instance.create_run(
        job_name=request.job_name,
        run_id=None,
        run_config=dict(request.run_config),
        resolved_op_selection=None,
        step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
        op_selection=None,
        status=dg.DagsterRunStatus.NOT_STARTED,
        root_run_id=None,
        parent_run_id=None,
        tags={**job.tags, **request.tags},
        job_snapshot=job.job_snapshot,
        execution_plan_snapshot=plan.execution_plan_snapshot,
        parent_job_snapshot=job.parent_job_snapshot,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        asset_selection=frozenset(keys) if keys else None,
        asset_check_selection=None,
        asset_graph=repository.asset_graph,
    )
    return run.run_id


def queue_daemon_alive(instance: dg.DagsterInstance, now: float | None = None) -> bool:
    """Whether a daemon that dequeues runs has sent a heartbeat recently."""
    beat = instance.get_daemon_heartbeats().get(QUEUED_RUN_DAEMON)
    return beat is not None and (now or time.time()) - beat.timestamp < DAEMON_HEARTBEAT_TOLERANCE_S


def launch_queued_run(instance: dg.DagsterInstance, workspace: object, run_id: str) -> None:
    """Start a QUEUED run as the daemon's dequeuer does, for an instance that has no daemon."""
    from dagster._core.launcher import LaunchRunContext

    instance.report_dagster_event(
        dg.DagsterEvent(event_type_value=dg.DagsterEventType.PIPELINE_STARTING.value, job_name=""),
        run_id=run_id,
    )
    run = instance.get_run_by_id(run_id)
    assert run is not None  # created above
    instance.run_launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=workspace))  # type: ignore[arg-type]


def follow_run(
    instance: dg.DagsterInstance,
    run_id: str,
    *,
    echo: Callable[[str], None] = print,
    workspace: object | None = None,
    timeout_s: float | None = None,
) -> RunOutcome:
    """Wait for run `run_id` to finish, echoing its own log lines (progress, warnings) as they land.

    A run still QUEUED while no daemon is alive is launched here (needs `workspace`). `timeout_s`
    bounds the wait (None: until the run ends); a run still going then is reported with its status.
    """
    started, cursor, launched, said_queued = time.monotonic(), None, False, False
    while True:
        run = instance.get_run_by_id(run_id)
        assert run is not None, run_id
        connection = instance.get_records_for_run(run_id, cursor=cursor)
        cursor = connection.cursor
        for record in connection.records:
            entry = record.event_log_entry
            if entry.dagster_event is None and entry.level >= 20 and entry.user_message:  # INFO and up
                echo(f"  {entry.user_message}")
        if run.is_finished:
            return finished_outcome(instance, run)
        if run.status == dg.DagsterRunStatus.QUEUED and not launched:
            if workspace is not None and not queue_daemon_alive(instance):
                echo(f"  run {run_id} queued and no daemon is running: launching it from here")
                launch_queued_run(instance, workspace, run_id)
                launched = True
            elif not said_queued:
                echo(f"  run {run_id} queued: the daemon starts it when its pool has room")
                said_queued = True
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            return RunOutcome(
                run_id, run.job_name, run.status.value, [f"still {run.status.value} after {timeout_s:.0f} s"]
            )
        time.sleep(POLL_S)  # polling the instance; the run itself never waits on this


def finished_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunOutcome:
    """The outcome of a finished run, with each failed step's own description."""
    outcome = RunOutcome(run.run_id, run.job_name, run.status.value)
    for record in instance.get_records_for_run(run.run_id, of_type=FAILURE_EVENTS).records:
        event = record.event_log_entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data:
            data = event.step_failure_data
            outcome.step_failures[str(event.step_key)] = (
                data.user_failure_data.description
                if data.user_failure_data and data.user_failure_data.description
                else f"{event.step_key}: {data.error.message.strip() if data.error else 'failed'}"
            )
        elif event.event_type == dg.DagsterEventType.RUN_FAILURE and event.message:
            outcome.run_failure = event.message
    return outcome


def run_materializations(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogRecord]:
    """The asset materializations a run recorded, in order (e.g. a model asset's ``version``)."""
    return list(
        instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    )


def submission_instance() -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME``; raises :class:`QuantAssetsError` when it is not set."""
    if not os.environ.get("DAGSTER_HOME"):
        raise QuantAssetsError(
            "runs go through the instance of $DAGSTER_HOME, which is not set: set it "
            "(e.g. export DAGSTER_HOME=$PWD/.dagster_home) or pass --in-process"
        )
    return dg.DagsterInstance.get()


def submit_job_runs(
    requests: Sequence[JobRun],
    *,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
    timeout_s: float | None = None,
) -> list[RunOutcome]:
    """Submit every run of `requests` to the instance's run coordinator, then follow each to its end.

    Runs are submitted together (a daemon with room starts them in parallel, pools permitting) and
    followed in order; see the module docstring for instances without a daemon. `instance`
    defaults to ``$DAGSTER_HOME``'s, which must be set: an ephemeral instance has no coordinator.

    Raises:
        QuantAssetsError: ``DAGSTER_HOME`` is unset, the code location does not load, a job is unknown.
    """
    instance = instance or submission_instance()
    outcomes: list[RunOutcome] = []
    with code_location(instance) as workspace:
        run_ids = [create_job_run(instance, workspace, request) for request in requests]
        for run_id, request in zip(run_ids, requests, strict=True):
            instance.submit_run(run_id, workspace)  # type: ignore[arg-type]
            echo(f"submitted run {run_id} ({request.job_name}) to {type(instance.run_coordinator).__name__}")
        for run_id in run_ids:
            outcome = follow_run(instance, run_id, echo=echo, workspace=workspace, timeout_s=timeout_s)
            echo(str(outcome).splitlines()[0])
            outcomes.append(outcome)
    return outcomes


def backfill_ohlcv(
    *,
    days: int,
    end: dt.date | None = None,
    symbols: Sequence[str] | None = None,
    instance: dg.DagsterInstance | None = None,
    only_missing: bool = False,
    in_process: bool = True,
    echo: Callable[[str], None] = print,
) -> BackfillResult:
    """Collect ``ohlcv`` for `days` days up to `end` (default: yesterday) for `symbols`.

    `symbols` None means every registered ``symbol`` partition; unknown ones are registered first.
    `only_missing` skips symbol-days already materialized. `in_process` False submits one
    ``ohlcv_job`` run per rectangle to the instance's run coordinator and follows them
    (:func:`submit_job_runs`). Raises :class:`QuantAssetsError` when there is nothing to collect.
    """
    instance = instance or (default_instance() if in_process else submission_instance())
    end = end or last_complete_day()
    if symbols is not None:
        wanted = [checked_symbol(s) for s in symbols]
        new = [s for s in wanted if not instance.has_dynamic_partition(symbol_partitions.name, s)]
        if new:
            instance.add_dynamic_partitions(symbol_partitions.name, new)
    else:
        wanted = list(instance.get_dynamic_partitions(symbol_partitions.name))
    if not wanted:
        raise QuantAssetsError("no symbols to backfill: materialize coin_universe first, or pass --symbols")
    window = lookback_window(days, end=end)
    if not window:
        raise QuantAssetsError(f"nothing to collect: {days} days up to {end} all fall before {START_DATE}")
    have = (
        {split_ohlcv_key(k) for k in instance.get_materialized_partitions(dg.AssetKey("ohlcv"))}
        if only_missing
        else set()
    )
    missing = [(s, d) for s in wanted for d in window if (s, d) not in have]
    order = instance.get_dynamic_partitions(symbol_partitions.name)
    result = BackfillResult(partitions=len(missing))
    rectangles = ohlcv_rectangles(missing, order)
    if not in_process:
        requests = [
            JobRun(
                "ohlcv_job",
                tags={**ohlcv_range_tags(block, first, last), REASON_TAG: "quant-assets backfill"},
            )
            for first, last, block in rectangles
        ]
        for outcome in submit_job_runs(requests, instance=instance, echo=echo):
            result.runs.append(outcome.run_id)
            if not outcome.success:
                result.failed_runs.append(outcome.run_id)
                result.failures += outcome.failures
        return result
    asset = _asset("ohlcv")
    for first, last, block in rectangles:
        outcome = dg.materialize(
            [asset],
            instance=instance,
            resources=build_resources(),
            tags=ohlcv_range_tags(block, first, last),
            run_config=TERMINAL_RUN_CONFIG,
            raise_on_error=False,
        )
        result.runs.append(outcome.run_id)
        if not outcome.success:
            result.failed_runs.append(outcome.run_id)
            result.failures += [
                event.step_failure_data.user_failure_data.description
                if event.step_failure_data.user_failure_data
                else event.step_failure_data.error.message
                for event in outcome.all_events
                if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.step_failure_data
            ]
    return result


def materialize_window(
    *, days: int, instance: dg.DagsterInstance | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Universe of yesterday, its candles for `days` days, their features and labels.

    Returns (rows per symbol, rows per catalog view).
    """
    instance = instance or default_instance()
    resources = build_resources()
    day = last_complete_day()
    dg.materialize(
        [_asset("coin_universe")],
        instance=instance,
        resources=resources,
        partition_key=str(day),
        run_config=TERMINAL_RUN_CONFIG,
    )
    lake = Lake(Settings.from_env().data_dir)
    universe = lake.read("coin_universe", date=day)["symbol"].tolist()
    backfill = backfill_ohlcv(days=days, end=day, symbols=universe, instance=instance, only_missing=True)
    if not backfill.success:
        raise QuantAssetsError(f"ohlcv collection failed: {backfill}")
    dg.materialize(
        [_asset("feature_table"), _asset("labels")],
        instance=instance,
        resources=resources,
        tags=day_range_tags(lookback_window(days, end=day)[0], day),
        run_config=TERMINAL_RUN_CONFIG,
    )
    with Catalog(lake).connect() as con:
        per_symbol = con.execute(
            "SELECT u.rank, o.symbol, count(*) AS candles, min(o.open_time) AS first_candle, "
            "max(o.open_time) AS last_candle, round(last(o.close ORDER BY o.open_time), 6) AS last_close, "
            "(SELECT count(*) FROM features f WHERE f.symbol = o.symbol) AS feature_rows "
            "FROM ohlcv o LEFT JOIN coin_universe u ON u.symbol = o.symbol AND u.snapshot_date = ? "
            "WHERE o.exchange = 'binance' "  # the reference venue; the demo prints rows per venue apart
            "GROUP BY u.rank, o.symbol ORDER BY u.rank NULLS LAST, o.symbol",
            [day],
        ).df()
        tables = con.execute(
            "SELECT 'coin_universe' AS view, count(*) AS rows FROM coin_universe "
            "UNION ALL SELECT 'ohlcv', count(*) FROM ohlcv "
            "UNION ALL SELECT 'features', count(*) FROM features "
            "UNION ALL SELECT 'feature_catalog', count(*) FROM feature_catalog "
            "UNION ALL SELECT 'labels', count(*) FROM labels"
        ).df()
    return per_symbol, tables


def submit_training(
    models: Sequence[str],
    *,
    days: int | None,
    profile: str,
    end_day: dt.date | None = None,
    instance: dg.DagsterInstance | None = None,
    echo: Callable[[str], None] = print,
) -> ModelRunOutcome:
    """Train `models` in ONE ``retrain_job`` run submitted to the instance's run coordinator.

    The same run config as the in-process path (``materialize_models``); each model is its own step,
    so an executor with workers (Celery) trains them in parallel. The registry is read back for the
    versions the run wrote.
    """
    from quant_assets.defs.assets._model_asset import ModelRunOutcome, model_run_config
    from quant_assets.models.registry import versions

    instance = instance or submission_instance()
    request = JobRun(
        "retrain_job",
        tags={REASON_TAG: "quant-assets train"},
        run_config=model_run_config(models, days=days, profile=profile, end_day=end_day),
        assets=[f"{model}_model" for model in models],
    )
    (run,) = submit_job_runs([request], instance=instance, echo=echo)
    outcome = ModelRunOutcome(
        run_id=run.run_id,
        failures={step.removesuffix("_model"): message for step, message in run.step_failures.items()},
    )
    lake = Lake(Settings.from_env().data_dir)
    for record in run_materializations(instance, run.run_id):
        if record.asset_key is None or record.asset_materialization is None:
            continue
        model = record.asset_key.path[-1].removesuffix("_model")
        version = str(record.asset_materialization.metadata["version"].value)
        outcome.versions[model] = next(v for v in versions(lake, model) if v.version == version)
    if not run.success and not outcome.failures:
        outcome.failures["run"] = run.run_failure or f"run {run.run_id} ended {run.status}"
    return outcome
