"""Helpers for the deployment tests: a PostgreSQL server, background services in their own process
groups, and polling with a deadline that only bounds failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
_T = TypeVar("_T")


def wait_for(condition: Callable[[], _T], *, timeout_s: float, what: str, every_s: float = 0.5) -> _T:
    """The first truthy value of `condition()`, polled until `timeout_s` has passed (then fails)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """A background command in its own process group, output to a log file; stopped by group id."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path) -> None:
        self.log = log
        self._sink = log.open("ab")
        self.proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdout=self._sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops its children too
            # An inherited "ignore" would make the service unkillable by SIGINT/SIGTERM.
            preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)],
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, *, grace_s: float = 30.0) -> None:
        """SIGTERM to the whole group, SIGKILL to what is left after `grace_s`."""
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace_s)
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived their parent
        self.proc.wait(timeout=30)
        self._sink.close()


@contextmanager
def postgres_server(directory: Path) -> Iterator[dict[str, str]]:
    """A real PostgreSQL (``pgserver``) in `directory`; yields the environment ``deploy/dagster.yaml``
    reads (unix socket: an empty host and libpq's ``PGHOST``)."""
    import pgserver  # a dev extra; callers importorskip it

    server = pgserver.get_server(directory, cleanup_mode="stop")
    try:
        socket_dir = server.get_uri().split("host=")[-1].split("&")[0]
        yield {
            "DAGSTER_PG_HOST": "",
            "PGHOST": socket_dir,
            "DAGSTER_PG_PORT": "5432",
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_DB": "postgres",
        }
    finally:
        server.cleanup()


def deployment_home(home: Path, instance_file: str = "dagster.yaml") -> Path:
    """`home` as a DAGSTER_HOME holding ``deploy/<instance_file>`` unchanged, and a workspace file."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "deploy" / instance_file, home / "dagster.yaml")
    (home / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: quant_assets.definitions\n"
        "      location_name: quant_assets\n"
    )
    return home


def base_env(**values: str) -> dict[str, str]:
    """This process's environment without QT_*/DAGSTER_* variables, the venv first on PATH, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "DAGSTER_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(values)
    return env


def environ(values: Mapping[str, str]) -> Any:
    """Context manager setting `values` in ``os.environ`` for the block (restored after)."""

    @contextmanager
    def _apply() -> Iterator[None]:
        previous = {k: os.environ.get(k) for k in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    return _apply()
