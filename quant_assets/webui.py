"""The Dagster web UI from outside: ``dagster dev`` as a child process, its GraphQL API, a browser.

Used by the end-to-end tests and ``make screenshots``; it talks to the server only over HTTP, the
way the UI's own pages do, and imports no Dagster.

``dagster dev`` starts the webserver, the daemon and a code server as its children, all in one
process group. :class:`DevServer` starts it in a new group of its own with SIGINT and SIGTERM at
their defaults (an inherited "ignore", e.g. under ``nohup`` or a CI runner, would make it
unkillable), on a port nobody answered on a moment before, and stops the whole group by its id:
SIGINT first (Ctrl-C, so runs end cleanly), SIGKILL if it is still there after a bounded wait.
Every wait here polls a condition under a timeout that only bounds failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, TypeVar

import requests

_T = TypeVar("_T")

LOCATION = "quant_assets"  # workspace.yaml's location_name
REPOSITORY = "__repository__"  # the repository a Definitions object becomes
CHROMIUM_NAMES = ("chromium", "chromium-browser")  # Debian's package, and Ubuntu's older name


class WebUIError(RuntimeError):
    """The server did not come up, a query failed, or a condition was not met in time."""


def poll(condition: Callable[[], _T], *, timeout: float, what: str, interval: float = 0.5) -> _T:
    """Call `condition` until it returns something truthy and return that; raise after `timeout` s.

    The timeout only bounds a failure: a condition met early returns at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise WebUIError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice, never a fixed one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _default_signals() -> None:
    """In the child before exec: SIGINT and SIGTERM do what they say, whatever the parent ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


class DevServer:
    """``dagster dev`` (webserver + daemon) on 127.0.0.1 for the workspace in `cwd`.

    `env` is the complete environment of the server (``DAGSTER_HOME``, the ``QT_*`` settings);
    its output goes to `log_path`. Use as a context manager: entering waits until the code
    location is loaded, leaving stops the process group.
    """

    def __init__(
        self, *, cwd: Path, env: Mapping[str, str], log_path: Path, startup_timeout: float = 240.0
    ) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._session = requests.Session()

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until its GraphQL API serves the loaded code location."""
        if self._answers():  # never talk to someone else's server on a reused port
            raise WebUIError(f"port {self.port} already answers; refusing to start a second server there")
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                "workspace.yaml",
            ],
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped by the group's id
            preexec_fn=_default_signals,  # signals only: nothing that could deadlock after fork
        )
        try:
            poll(self._ready, timeout=self.startup_timeout, what=f"dagster dev on {self.url}", interval=1.0)
        except BaseException:
            self.stop()
            raise

    def _alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise WebUIError(f"dagster dev exited with code {self._process.returncode}:\n{self.log_tail()}")

    def _answers(self) -> bool:
        try:
            return self._session.get(f"{self.url}/server_info", timeout=5).ok
        except requests.RequestException:
            return False

    def _ready(self) -> bool:
        self._alive()
        if not self._answers():
            return False
        entries = self.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                located = entry["locationOrLoadError"]
                if located["__typename"] != "RepositoryLocation":
                    causes = "".join(
                        f"\ncaused by: {c['message']}{''.join(c['stack'][-3:])}" for c in located["causes"]
                    )
                    raise WebUIError(f"code location {LOCATION} failed to load: {located['message']}{causes}")
                return True
        return False

    def graphql(self, query: str, variables: Mapping[str, Any] | None = None, *, timeout: float = 60) -> Any:
        """POST one GraphQL operation to ``/graphql``; return its ``data``, raise on any error."""
        self._alive()
        response = self._session.post(
            f"{self.url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=timeout
        )
        if not response.ok:
            raise WebUIError(f"GraphQL HTTP {response.status_code}: {response.text[:2000]}")
        body = response.json()
        if body.get("errors"):
            raise WebUIError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, chars: int = 6000) -> str:
        """The end of the server's output (webserver, daemon, runs), for failure messages."""
        with contextlib.suppress(OSError):
            return self.log_path.read_bytes()[-chars:].decode(errors="replace")
        return ""

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the process group: SIGINT (as Ctrl-C), then SIGKILL if it outlives `timeout` s."""
        process, self._process = self._process, None
        if process is not None:
            pgid = process.pid  # start_new_session: the group's id is the leader's pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=timeout)
            with contextlib.suppress(ProcessLookupError):  # children left behind, or the leader
                os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._session.close()


WORKSPACE_QUERY = """
query Workspace {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message causes { message stack } }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


IN_FLIGHT = ("QUEUED", "NOT_STARTED", "MANAGED", "STARTING", "STARTED", "CANCELING")  # run statuses

REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}

ASSET_NAMES = """
query AssetNames {
  assetNodes { assetKey { path } groupName }
}
"""

SENSOR_NAMES = """
query SensorNames($selector: RepositorySelector!) {
  repositoryOrError(repositorySelector: $selector) {
    __typename
    ... on Repository { sensors { name } }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId jobName status startTime endTime tags { key value } } }
    ... on PythonError { message }
  }
}
"""

LATEST_SENSOR_TICK = """
query LatestSensorTick($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState {
        status
        ticks(limit: 1) { status timestamp runIds skipReason error { message } }
      }
    }
  }
}
"""

REQUESTED_BACKFILLS = """
query RequestedBackfills {
  partitionBackfillsOrError(status: REQUESTED) {
    __typename
    ... on PartitionBackfills { results { id } }
  }
}
"""

RUN_ERRORS = """
query RunErrors($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection { events { __typename ... on MessageEvent { message level } } }
  }
}
"""


def typed(payload: Mapping[str, Any], typename: str, what: str) -> Any:
    """`payload` when GraphQL resolved it to `typename`; else a :class:`WebUIError` showing it."""
    if payload.get("__typename") != typename:
        raise WebUIError(f"{what}: expected {typename}, got {dict(payload)}")
    return payload


def asset_names(server: DevServer) -> dict[str, str]:
    """{asset name: group name} of every asset the server lists (as the asset catalog does)."""
    nodes = server.graphql(ASSET_NAMES)["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node["groupName"] for node in nodes}


def sensor_names(server: DevServer) -> list[str]:
    """The sensors of the code location, as the Automation page lists them."""
    repository = server.graphql(SENSOR_NAMES, {"selector": REPO_SELECTOR})["repositoryOrError"]
    return [sensor["name"] for sensor in typed(repository, "Repository", LOCATION)["sensors"]]


def runs(server: DevServer, statuses: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Every run of the instance (newest first), or those in one of `statuses`."""
    variables = {"filter": {"statuses": list(statuses)} if statuses else {}}
    return typed(server.graphql(RUNS, variables)["runsOrError"], "Runs", "runs")["results"]


def failure_messages(server: DevServer, run_id: str) -> list[str]:
    """The ERROR and CRITICAL messages of a run's event log, oldest first."""
    logs = typed(server.graphql(RUN_ERRORS, {"runId": run_id})["logsForRun"], "EventConnection", run_id)
    return [event["message"] for event in logs["events"] if event.get("level") in {"ERROR", "CRITICAL"}]


def is_quiet(server: DevServer, sensors: list[str], since: float) -> bool:
    """No run or backfill in flight, and every sensor in `sensors` ticked after the last run ended
    (and after `since`, a UNIX time) and asked for nothing.

    Raises :class:`WebUIError` at once, naming it, when a sensor's latest tick failed.
    """
    if runs(server, IN_FLIGHT):
        return False
    backfills = server.graphql(REQUESTED_BACKFILLS)["partitionBackfillsOrError"]
    if typed(backfills, "PartitionBackfills", "backfills")["results"]:
        return False
    last_end = max([since, *(run["endTime"] or 0.0 for run in runs(server))])
    for name in sensors:
        sensor = server.graphql(LATEST_SENSOR_TICK, {"selector": {**REPO_SELECTOR, "sensorName": name}})
        ticks = typed(sensor["sensorOrError"], "Sensor", name)["sensorState"]["ticks"]
        tick = ticks[0] if ticks else None
        if tick is not None and tick["status"] == "FAILURE":
            raise WebUIError(f"sensor {name} failed: {tick['error']}")
        if tick is None or tick["status"] == "STARTED" or tick["timestamp"] <= last_end or tick["runIds"]:
            return False
    return True


def wait_for_quiet(server: DevServer, *, since: float, timeout: float) -> None:
    """Wait until :func:`is_quiet` holds for every sensor of the code location.

    Sensors tick at their own minimum intervals, so this takes at least one interval after the
    last run; `timeout` only bounds a failure. The error names the runs still in flight.
    """
    sensors = sensor_names(server)
    try:
        poll(lambda: is_quiet(server, sensors, since), timeout=timeout, what="a quiet instance", interval=3)
    except WebUIError as error:
        in_flight = [(run["jobName"], run["status"]) for run in runs(server, IN_FLIGHT)]
        raise WebUIError(f"{error}; runs in flight: {in_flight}\n{server.log_tail()}") from None


def system_chromium() -> Path | None:
    """The system's Chromium (Debian's ``chromium`` package), or None where none is installed."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


@contextlib.contextmanager
def browser_page(*, width: int = 1600, height: int = 1000) -> Iterator[Any]:
    """A Playwright page in the system's headless Chromium; nothing is downloaded.

    Raises :class:`WebUIError` when no Chromium is installed. Yields a
    ``playwright.sync_api.Page``.
    """
    from playwright.sync_api import sync_playwright

    executable = system_chromium()
    if executable is None:
        raise WebUIError(f"no Chromium found on PATH (looked for {', '.join(CHROMIUM_NAMES)})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(executable), headless=True, args=["--no-sandbox"]
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()


def open_ui(page: Any, server: DevServer, path: str, *, timeout: float = 120.0) -> None:
    """Open `path` of the UI and dismiss the first-visit "Join the Dagster community" dialog.

    The UI shows that dialog (after a second) on a fresh instance opened at 127.0.0.1 until someone
    presses "Skip"; the server says beforehand whether it will (``shouldShowNux``), so this waits
    for the button only when it is coming, and clicks it as a person would.
    """
    will_show = server.graphql("query { shouldShowNux }")["shouldShowNux"]
    page.goto(f"{server.url}{path}", timeout=timeout * 1000)
    if will_show:
        skip = page.get_by_role("button", name="Skip")
        skip.wait_for(state="visible", timeout=timeout * 1000)
        skip.click()
        skip.wait_for(state="hidden", timeout=timeout * 1000)


def show_asset_graph(page: Any, server: DevServer, *, timeout: float = 120.0) -> list[str]:
    """Open the global asset lineage with every group expanded; return the asset names it shows.

    Waits until each asset the server lists is visible on the page and raises
    :class:`WebUIError` naming those that never are.
    """
    names = asset_names(server)
    # The graph is drawn first and coloured by materialization status when this query answers.
    with page.expect_response(lambda r: "op=AssetGraphLiveQuery" in r.url, timeout=timeout * 1000):
        open_ui(page, server, "/asset-groups", timeout=timeout)
    labels = [*names, *set(names.values())]
    poll(
        lambda: any(page.get_by_text(label, exact=True).first.is_visible() for label in labels),
        timeout=timeout,
        what="the asset graph to draw",
    )
    if not all(page.get_by_text(name, exact=True).first.is_visible() for name in names):
        page.keyboard.press("Alt+e")  # "Expand all groups" (the graph's settings menu, ⌥E)
    try:
        poll(
            lambda: all(page.get_by_text(name, exact=True).first.is_visible() for name in names),
            timeout=timeout,
            what="every asset name on the asset graph",
        )
    except WebUIError:
        hidden = [n for n in names if not page.get_by_text(n, exact=True).first.is_visible()]
        raise WebUIError(f"the asset graph does not show {hidden}") from None
    page.evaluate(NEXT_FRAMES)  # let the status colours reach the screen
    return sorted(n for n in names if page.get_by_text(n, exact=True).first.is_visible())


# Resolves after two animation frames: whatever React committed before has been painted.
NEXT_FRAMES = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
