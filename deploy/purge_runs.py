"""Run retention for the instance of ``$DAGSTER_HOME``: delete old finished runs that recorded nothing.

Dagster OSS never expires runs (``retention:`` in dagster.yaml covers schedule and sensor ticks
only). Deleting a run also deletes its event log, and in this project the event log is the record
of which partitions exist: the sensors request every partition of the lookback that has no
materialization, so deleting a run that materialized candles would make the next tick fetch them
again. This script therefore deletes only finished runs (succeeded, failed or canceled) older than
``--older-than-days`` that recorded no asset materialization and no check evaluation: runs that
failed before writing anything, canceled runs, runs that found nothing to do.

Run it where the daemon runs, e.g. daily from cron or a Kubernetes CronJob:

    DAGSTER_HOME=... python deploy/purge_runs.py --older-than-days 90 [--dry-run]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence

import dagster as dg

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
RECORDS = (dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION)
PAGE = 500


def recorded_something(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run recorded a materialization or a check evaluation (its events must stay)."""
    return any(
        instance.get_records_for_run(run_id, of_type=event_type, limit=1).records for event_type in RECORDS
    )


def purgeable_runs(instance: dg.DagsterInstance, *, older_than: dt.timedelta) -> list[str]:
    """Ids of the finished runs created before now - `older_than` that recorded nothing."""
    before = dt.datetime.now(dt.UTC) - older_than
    found: list[str] = []
    cursor = None
    while True:
        records = instance.get_run_records(
            dg.RunsFilter(statuses=FINISHED, created_before=before), limit=PAGE, cursor=cursor
        )
        found += [
            r.dagster_run.run_id for r in records if not recorded_something(instance, r.dagster_run.run_id)
        ]
        if len(records) < PAGE:
            return found
        cursor = records[-1].dagster_run.run_id


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--older-than-days", type=float, required=True, help="age of the runs to delete")
    parser.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    args = parser.parse_args(argv)
    if args.older_than_days < 0:
        parser.error("--older-than-days must be >= 0")
    with dg.DagsterInstance.get() as instance:
        run_ids = purgeable_runs(instance, older_than=dt.timedelta(days=args.older_than_days))
        for run_id in run_ids:
            if not args.dry_run:
                instance.delete_run(run_id)
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"purge_runs: {verb} {len(run_ids)} runs older than {args.older_than_days:g} days that recorded nothing"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
