"""Request-weight budgets per venue, shared by the threads of a process or by every process of a machine.

A venue limits and bans by IP, not by process: Binance counts request weight per IP in wall-clock
minutes, answers 429 with ``Retry-After`` when a minute is spent, and bans the IP (418) for any
request sent before that wait is over. So every client that talks to one venue from one machine must
spend one budget and honour one hold.

* :class:`WeightBudget` paces requests so a per-window weight limit is never crossed, holds every
  caller after a 429/418, and lets at most ``max_in_flight`` requests be on the wire at once (see
  :meth:`WeightBudget.lease`).
* With a ``state_file`` its state lives in that small file instead of in memory, read and written
  under an advisory lock (``fcntl.flock``) for a few microseconds per request, so every process that
  names the same file (the CLI, ``dagster asset materialize``, run workers, the daemon's runs) spends
  the same budget. The lock is never held while sleeping or sending, and the kernel drops it when
  its process dies; a request slot held by a process that died is taken back at once (its pid is
  gone) or when its lease expires.
* :func:`shared_budget` hands every client and thread of the process the same budget per
  (venue, base URL, state directory).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import logging
import math
import os
import re
import struct
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from quant_assets.errors import ConfigError

logger = logging.getLogger(__name__)

MAX_ENTRIES = 64  # request slots and queued waiters one state file can record
SLOT_POLL_SECONDS = 0.001  # how often a caller queued for a request slot looks again
WAITER_GRACE_SECONDS = 5.0  # a queued waiter that has not looked again this long after it meant to is dropped
_IN_FLIGHT, _WAITING = 1, 2  # kinds of entries


@dataclass(frozen=True)
class BudgetStats:
    """What a budget has seen in this process since it was created (a consistent snapshot).

    Attributes:
        requests: requests let through by :meth:`WeightBudget.acquire` / :meth:`WeightBudget.lease`
            (each retry counts).
        weight: total weight of those requests.
        waited_seconds: total time callers spent blocked (pacing, holds and request slots).
        rate_limited: HTTP 429 answers reported through :meth:`WeightBudget.hold_until`.
        banned: HTTP 418 answers reported through :meth:`WeightBudget.hold_until`.
    """

    requests: int = 0
    weight: int = 0
    waited_seconds: float = 0.0
    rate_limited: int = 0
    banned: int = 0


@dataclass
class RequestMeter:
    """Requests and weight spent by one thread inside :meth:`VenueSession.metered`."""

    requests: int = 0
    weight: int = 0


@dataclass
class _Entry:
    """A request on the wire (`_IN_FLIGHT`) or a caller queued for a slot (`_WAITING`)."""

    pid: int
    token: int
    kind: int
    expires: float  # epoch seconds: an in-flight lease ends, or a waiter is presumed gone


@dataclass
class _State:
    """What every user of one budget must agree on; the counts belong to window `window`."""

    window: int = -1
    used: int = 0
    next_used: int = 0  # pre-charged to window `window + 1` (requests sent at the edge)
    hold_until: float = 0.0  # epoch seconds; nothing is let through before
    window_seconds: float = 0.0  # the window length the counts were made with
    entries: list[_Entry] = field(default_factory=list)


class _MemoryStore:
    """The state of a budget shared by the threads of this process only."""

    def __init__(self) -> None:
        self._state = _State()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_State]:
        yield self._state  # the caller holds the budget's thread lock

    def after_fork(self) -> None:
        """Nothing to do: a forked child gets its own copy of the memory."""


# magic, version, window, used, next_used, hold_until, window_seconds, entries
_HEADER = struct.Struct("<4sIqqqddq")
_ENTRY = struct.Struct("<qqqd")  # pid, token, kind, expires
_MAGIC, _VERSION = b"QABG", 1
_FILE_SIZE = _HEADER.size + MAX_ENTRIES * _ENTRY.size


def _decode(raw: bytes) -> _State:
    """The state in `raw`; an empty or unknown file reads as a fresh budget."""
    if len(raw) < _HEADER.size:
        return _State()
    magic, version, window, used, next_used, hold_until, window_seconds, count = _HEADER.unpack_from(raw)
    if magic != _MAGIC or version != _VERSION or not 0 <= count <= MAX_ENTRIES:
        return _State()
    if len(raw) < _HEADER.size + count * _ENTRY.size:
        return _State()
    entries = [_Entry(*_ENTRY.unpack_from(raw, _HEADER.size + i * _ENTRY.size)) for i in range(count)]
    return _State(window, used, next_used, hold_until, window_seconds, entries)


def _encode(state: _State) -> bytes:
    entries = state.entries[:MAX_ENTRIES]
    parts = [
        _HEADER.pack(
            _MAGIC,
            _VERSION,
            state.window,
            state.used,
            state.next_used,
            state.hold_until,
            state.window_seconds,
            len(entries),
        )
    ]
    parts.extend(_ENTRY.pack(e.pid, e.token, e.kind, e.expires) for e in entries)
    return b"".join(parts)


class _FileStore:
    """The state of a budget in a small file, shared by every process that opens the same path.

    Each transaction takes an exclusive ``flock``, reads the file, lets the caller change the state,
    writes it back if it changed and unlocks: one process at a time, for microseconds. A process
    that dies holding the lock loses it with its file descriptors.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot open the weight-budget state file {self.path}: {exc}") from exc

    def after_fork(self) -> None:
        """Open the file anew in a forked child: a shared open file description shares the lock too."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = self._open()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_State]:
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            raw = os.pread(fd, _FILE_SIZE, 0)
            state = _decode(raw)
            yield state
            encoded = _encode(state)
            if encoded != raw:
                os.pwrite(fd, encoded, 0)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _process_alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie, killed but not yet reaped, counts as gone)."""
    if pid == os.getpid():
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat.rsplit(")", 1)[-1].split()[:1]
    return state not in (["Z"], ["X"])


_LIVE_BUDGETS: weakref.WeakSet[WeightBudget] = weakref.WeakSet()
_TOKENS = itertools.count(1)  # lease ids, unique in this process (with the pid: on the machine)


class WeightBudget:
    """A request-weight budget per wall-clock window, shared by threads and, with a file, processes.

    Windows are aligned to the wall clock, ``floor(time.time() / window_seconds)``, as Binance aligns
    its ``REQUEST_WEIGHT`` minute. The budget spends the whole limit (no headroom: headroom costs the
    same fraction of a backfill's time) and stays exact by

    * counting weight when a request is let through, before it is sent, so requests still in flight
      are counted;
    * taking ``max(own count, server count)`` from the venue's used-weight header (:meth:`observe`),
      which also covers other programs spending from the same IP;
    * charging a request let through in the last moments of a window (``edge_seconds``) to the next
      window too, because it may reach the server after the boundary and count there.

    With `state_file`, counts, holds and request slots are shared by every process using that file;
    without, by the threads of this process. The limit and window are this object's own: give every
    user of one file the same ones. Thread-safe; fork-safe (a forked child reopens the file).
    ``limit=None`` means unlimited: weight is still counted and holds still apply.
    """

    def __init__(
        self,
        limit: int | None,
        *,
        window_seconds: float = 60.0,
        state_file: Path | None = None,
        max_in_flight: int | None = 1,
    ) -> None:
        """Create a budget.

        Args:
            limit: weight allowed per window, or ``None`` for no limit.
            window_seconds: window length in seconds (Binance: 60).
            state_file: the file that shares this budget between processes (created if missing; its
                directory must exist); ``None`` keeps it in this process.
            max_in_flight: requests :meth:`lease` lets be on the wire at once (``None``: no cap).

        Raises:
            ValueError: a limit below 1, a window that is not positive, or `max_in_flight` outside
                1..``MAX_ENTRIES``.
            ConfigError: `state_file` cannot be opened for writing.
        """
        self._check_config(limit, window_seconds)
        if max_in_flight is not None and not 1 <= max_in_flight <= MAX_ENTRIES:
            raise ValueError(f"max_in_flight must be 1..{MAX_ENTRIES} or None, got {max_in_flight}")
        self._lock = threading.Lock()
        self._limit = limit
        self._window_seconds = window_seconds
        self._max_in_flight = max_in_flight
        self._state_file = state_file
        self._store: _MemoryStore | _FileStore = (
            _MemoryStore() if state_file is None else _FileStore(state_file)
        )
        self._stats = BudgetStats()
        _LIVE_BUDGETS.add(self)

    @staticmethod
    def _check_config(limit: int | None, window_seconds: float) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"weight limit must be >= 1 or None, got {limit}")
        if not window_seconds > 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")

    def __repr__(self) -> str:
        where = f", state_file={str(self._state_file)!r}" if self._state_file is not None else ""
        return f"WeightBudget(limit={self._limit}, window_seconds={self._window_seconds}{where})"

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it at the fork
        self._store.after_fork()

    @property
    def limit(self) -> int | None:
        """Weight allowed per window (``None``: unlimited)."""
        return self._limit

    @property
    def window_seconds(self) -> float:
        """Window length in seconds."""
        return self._window_seconds

    @property
    def state_file(self) -> Path | None:
        """The file sharing this budget between processes, or ``None`` (this process only)."""
        return self._state_file

    @property
    def max_in_flight(self) -> int | None:
        """Requests :meth:`lease` lets be on the wire at once (``None``: no cap)."""
        return self._max_in_flight

    @property
    def edge_seconds(self) -> float:
        """A request let through this close to a window's end is charged to the next window too."""
        return min(0.5, self._window_seconds * 0.05)

    @property
    def stats(self) -> BudgetStats:
        """A consistent snapshot of this process's counters."""
        with self._lock:
            return self._stats

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[_State]:
        with self._lock, self._store.transaction() as state:
            if state.window_seconds != self._window_seconds:
                # Counts made with another window length mean nothing in this one.
                state.window, state.used, state.next_used = -1, 0, 0
                state.window_seconds = self._window_seconds
            yield state

    def reconfigure(self, limit: int | None, *, window_seconds: float) -> None:
        """Change the limit and window length; counts of the current window are kept.

        Raises:
            ValueError: as the constructor.
        """
        self._check_config(limit, window_seconds)
        with self._lock:
            self._limit, self._window_seconds = limit, window_seconds

    def window_index(self, at: float | None = None) -> int:
        """Index of the wall-clock window holding epoch second `at` (default now)."""
        return math.floor((time.time() if at is None else at) / self._window_seconds)

    def hold_remaining(self) -> float:
        """Seconds until a hold set by :meth:`hold_until` (by any sharer) ends; 0 when none is active."""
        with self._transaction() as state:
            return max(0.0, state.hold_until - time.time())

    def _roll(self, state: _State, now: float) -> None:
        index = math.floor(now / self._window_seconds)
        if index != state.window:
            state.used = state.next_used if index == state.window + 1 else 0
            state.next_used = 0
            state.window = index

    def acquire(self, weight: int) -> float:
        """Block until `weight` fits in the current window and no hold is active, then count it.

        Takes no request slot (see :meth:`lease`).

        Args:
            weight: the request's weight (>= 0).

        Returns:
            Seconds spent waiting (pacing and any hold set by :meth:`hold_until`).

        Raises:
            ValueError: `weight` is negative or larger than the whole limit (it could never fit).
        """
        return self._acquire(weight, slot=None)

    @contextlib.contextmanager
    def lease(self, weight: int, *, max_seconds: float = 60.0) -> Iterator[float]:
        """Count `weight` as :meth:`acquire` does and hold one request slot for the block.

        At most ``max_in_flight`` leases are held at once by all sharers, granted in the order
        callers queued. Send the request inside the block and record what the answer says (a hold
        after a 429/418, the used-weight header) before leaving it: with one slot, no request leaves
        this machine while another one's answer may still ask everybody to wait, so a 429 never
        turns into a ban for a request that was already on its way. A slot whose process died is
        taken back as soon as someone waits for it; one whose holder stays silent, after `max_seconds`.

        Yields:
            Seconds spent waiting (pacing, holds and the slot).

        Raises:
            ValueError: as :meth:`acquire`.
        """
        if self._max_in_flight is None:
            yield self._acquire(weight, slot=None)
            return
        token = next(_TOKENS)
        waited = self._acquire(weight, slot=(token, max_seconds))
        try:
            yield waited
        finally:
            self._release(token)

    def _release(self, token: int) -> None:
        pid = os.getpid()
        with self._transaction() as state:
            state.entries = [e for e in state.entries if not (e.pid == pid and e.token == token)]

    def _acquire(self, weight: int, *, slot: tuple[int, float] | None) -> float:
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        limit = self._limit
        if limit is not None and weight > limit:
            raise ValueError(f"a request of weight {weight} can never fit a limit of {limit}")
        started = time.monotonic()
        try:
            while True:
                with self._transaction() as state:
                    delay = self._try_take(state, time.time(), weight, slot)
                    if delay is None:
                        waited = time.monotonic() - started
                        self._stats = dataclasses.replace(
                            self._stats,
                            requests=self._stats.requests + 1,
                            weight=self._stats.weight + weight,
                            waited_seconds=self._stats.waited_seconds + waited,
                        )
                        return waited
                time.sleep(delay)
        except BaseException:
            if slot is not None:  # interrupted while queued: give the place up at once
                self._release(slot[0])
            raise

    def _try_take(
        self, state: _State, now: float, weight: int, slot: tuple[int, float] | None
    ) -> float | None:
        """Let the request through and return None, or return how long to sleep before trying again."""
        delay = state.hold_until - now
        if delay > 0:
            return delay
        if slot is not None:
            wait = self._slot_wait(state, now, slot)
            if wait is not None:
                return wait
        self._roll(state, now)
        limit = self._limit
        if limit is not None and state.used + weight > limit:
            # A millisecond past the boundary, so floor() lands in the next window.
            delay = (state.window + 1) * self._window_seconds - now + 0.001
            if slot is not None:
                self._mark_waiting(state, slot[0], now + delay)
            return delay
        state.used += weight
        if (state.window + 1) * self._window_seconds - now < self.edge_seconds:
            state.next_used += weight
        if slot is not None:
            token, max_seconds = slot
            pid = os.getpid()
            state.entries = [e for e in state.entries if not (e.pid == pid and e.token == token)]
            state.entries.append(_Entry(pid, token, _IN_FLIGHT, now + max_seconds))
        return None

    def _slot_wait(self, state: _State, now: float, slot: tuple[int, float]) -> float | None:
        """None when this caller may take a slot now; else seconds to wait (it stays queued)."""
        assert self._max_in_flight is not None  # only leases ask for slots
        token, _ = slot
        pid = os.getpid()
        for pruned in (False, True):
            in_flight = sum(1 for e in state.entries if e.kind == _IN_FLIGHT)
            ahead = 0  # callers queued before this one
            for entry in state.entries:
                if entry.pid == pid and entry.token == token:
                    break
                ahead += entry.kind == _WAITING
            if in_flight + ahead < self._max_in_flight:
                return None
            if pruned:
                break
            # Someone is in the way: drop entries of processes that died or leases that ran out.
            state.entries = [
                e for e in state.entries if e.expires > now and (e.pid == pid or _process_alive(e.pid))
            ]
        self._mark_waiting(state, token, now + SLOT_POLL_SECONDS)
        return SLOT_POLL_SECONDS

    def _mark_waiting(self, state: _State, token: int, back_at: float) -> None:
        """Queue this caller (or keep its place) until `back_at` plus a grace period."""
        pid = os.getpid()
        expires = back_at + WAITER_GRACE_SECONDS
        for entry in state.entries:
            if entry.pid == pid and entry.token == token:
                if entry.expires < expires - 1.0:  # refresh now and then, not on every poll
                    entry.expires = expires
                return
        if len(state.entries) < MAX_ENTRIES:  # a full table costs fairness, never correctness
            state.entries.append(_Entry(pid, token, _WAITING, expires))

    def observe(self, used_in_window: int, *, sent_at: float | None = None) -> None:
        """Sync with the venue's count of the current window (e.g. ``X-MBX-USED-WEIGHT-1M``).

        Args:
            used_in_window: weight the venue says this IP used in its current window.
            sent_at: epoch seconds when the request that carried the header was let through. When it
                lies in an earlier window than now, the header may count either window and is ignored
                (the edge pre-charge covers a request that crossed the boundary).
        """
        with self._transaction() as state:
            now = time.time()
            self._roll(state, now)
            if sent_at is not None and math.floor(sent_at / self._window_seconds) != state.window:
                return
            if used_in_window > state.used:
                state.used = used_in_window

    def hold_until(self, retry_after_seconds: float, *, status: int | None = None) -> None:
        """Stop every :meth:`acquire` and :meth:`lease` of every sharer for `retry_after_seconds`.

        Call it on 429/418 with the venue's ``Retry-After``: sending anything earlier turns a 429
        into a ban. An earlier, longer hold is kept.

        Args:
            retry_after_seconds: seconds to hold, from now.
            status: the HTTP status that asked for it; 429 and 418 are counted in :attr:`stats`.
        """
        with self._transaction() as state:
            state.hold_until = max(state.hold_until, time.time() + max(0.0, retry_after_seconds))
            if status == 429:
                self._stats = dataclasses.replace(self._stats, rate_limited=self._stats.rate_limited + 1)
            elif status == 418:
                self._stats = dataclasses.replace(self._stats, banned=self._stats.banned + 1)


def _reset_budgets_after_fork() -> None:
    for budget in list(_LIVE_BUDGETS):
        budget._after_fork()


os.register_at_fork(after_in_child=_reset_budgets_after_fork)

_BUDGETS: dict[tuple[str, str, str | None], WeightBudget] = {}
_BUDGETS_LOCK = threading.Lock()
_VENUE_NAME = re.compile(r"[a-z0-9_-]{1,40}")


def budget_dir_of(data_dir: Path) -> Path:
    """Where the budgets of a data directory live: every process that uses it shares them."""
    return data_dir / ".budget"


def budget_state_file(state_dir: Path, venue: str, base_url: str) -> Path:
    """The state file of (`venue`, `base_url`) in `state_dir`: ``<venue>-<hash of the URL>.budget``.

    Raises:
        ValueError: a venue name that is not lowercase letters, digits, ``_`` or ``-``.
    """
    if not _VENUE_NAME.fullmatch(venue):
        raise ValueError(f"venue name must match {_VENUE_NAME.pattern}, got {venue!r}")
    digest = hashlib.sha256(base_url.rstrip("/").encode()).hexdigest()[:16]
    return state_dir / f"{venue}-{digest}.budget"


def shared_budget(
    venue: str,
    base_url: str,
    *,
    limit: int | None,
    window_seconds: float = 60.0,
    state_dir: Path | None = None,
) -> WeightBudget:
    """The budget of (`venue`, `base_url`), created on first use in this process.

    Every client and thread of the process that talks to the same venue base URL with the same
    `state_dir` gets the same object, so together they stay inside the limit and all wait out a
    ``Retry-After``. With `state_dir`, the budget lives in a file there (see
    :func:`budget_state_file`), and every process on the machine that uses the same directory shares
    it too. When a later caller asks for another limit or window, the budget is reconfigured to it
    (the newest configuration wins, logged at WARNING); the counts of the current window are kept.

    Raises:
        ValueError: a limit below 1, a window that is not positive, or a bad venue name.
        ConfigError: `state_dir` cannot be created or its file opened for writing.
    """
    url = base_url.rstrip("/")
    key = (venue, url, None if state_dir is None else str(state_dir.resolve()))
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            state_file = None
            if state_dir is not None:
                state_file = budget_state_file(state_dir, venue, url)
                try:
                    state_dir.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(
                        f"cannot create the weight-budget directory {state_dir}: {exc}"
                    ) from exc
            budget = _BUDGETS[key] = WeightBudget(limit, window_seconds=window_seconds, state_file=state_file)
        elif (budget.limit, budget.window_seconds) != (limit, window_seconds):
            logger.warning(
                "%s %s: weight budget reconfigured from %s/%ss to %s/%ss",
                venue,
                url,
                budget.limit,
                budget.window_seconds,
                limit,
                window_seconds,
            )
            budget.reconfigure(limit, window_seconds=window_seconds)
    return budget
