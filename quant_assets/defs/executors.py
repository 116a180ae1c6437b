"""How a run executes its steps, chosen by ``QT_EXECUTOR`` when the definitions load.

The same code runs on a laptop and on a cluster; only the environment differs:

* ``in_process`` (default): every step in the run's own process. A run here is a batch of partitions
  in one process; a subprocess per step would only add seconds of start-up to every run
  (DAGSTER_NOTES: 3.1 s in process against 6-7 s).
* ``multiprocess``: one subprocess per step, independent steps in parallel (the retrain job's four
  models on one machine's cores).
* ``celery``: each step is a Celery task, run by ``dagster-celery`` workers on any host that shares
  the instance (``deploy/dagster.yaml``) and the data directory. Broker and result backend come from
  ``QT_CELERY_BROKER`` and ``QT_CELERY_BACKEND``, which the workers read too
  (``deploy/celery_worker.yaml``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import dagster as dg

from quant_assets import settings
from quant_assets.errors import ConfigError

CELERY_SETTINGS = {"broker": "QT_CELERY_BROKER", "backend": "QT_CELERY_BACKEND"}


def celery_config(env: Mapping[str, str] | None = None) -> dict[str, object]:
    """The celery executor's config: ``{"env": NAME}`` for a variable that is set (resolved and shown
    by name when a run starts; a URL may hold a password), else the setting's default."""
    env = os.environ if env is None else env
    config: dict[str, object] = {}
    for key, name in CELERY_SETTINGS.items():
        raw = env.get(name)
        settings.check(name, raw)  # a bad URL stops the definitions loading, named
        config[key] = {"env": name} if (raw or "").strip() else settings.default(name)
    return config


def select_executor(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor ``QT_EXECUTOR`` names in `env` (default ``os.environ``).

    Raises:
        ConfigError: ``QT_EXECUTOR`` or a Celery URL is invalid, or ``celery`` is chosen where
            ``dagster-celery`` is not installed.
    """
    choice = settings.executor_choice(env)
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "multiprocess":
        return dg.multiprocess_executor
    try:
        from dagster_celery import celery_executor  # an extra: only a Celery deployment needs it
    except ImportError as error:
        raise ConfigError(
            "QT_EXECUTOR=celery needs dagster-celery and redis: pip install -e '.[celery]'"
        ) from error
    return celery_executor.configured(celery_config(env), name="celery")
