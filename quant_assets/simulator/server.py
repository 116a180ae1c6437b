"""The simulator's HTTP server: Binance ``/fapi/v1`` and CoinGecko ``/api/v3`` on 127.0.0.1.

A stdlib ``ThreadingHTTPServer`` in a daemon thread, HTTP/1.1 with keep-alive (a client's session
reuses its connection, as with the real venues). Per request, in this order:

1. CoinGecko down (``faults.coingecko_down``) -> that status for every ``/api/v3`` request;
2. Binance ban: a client still inside a ``Retry-After`` it was given, or inside a ban -> 418;
3. an armed ``faults.fail_next`` -> that status (no weight spent);
4. Binance request weight: over the window's limit -> 429 with ``Retry-After``;
5. the endpoint's answer: after a stall if ``faults.timeout_next`` is armed, cut in half if
   ``faults.truncate_next`` is armed (refusals from steps 1-4 leave those armed).

Every Binance response carries ``X-MBX-USED-WEIGHT-1M``: the weight used in the current window,
this request included.

Bybit ``/v5/market/...`` and OKX ``/api/v5/...`` answer on the same port (:attr:`Simulator.bybit`,
:attr:`Simulator.okx`; ``bybit_api.py``, ``okx_api.py``): an armed ``faults.fail_next`` of their
path, then their own rate limit (Bybit 403 over 600 requests per 5 s, OKX 429 code 50011 over 20
per 2 s), then the endpoint; their own faults (``sim.bybit.faults.diverge(...)``,
``sim.okx.faults.unconfirmed(...)``) live on those objects and ``reset()`` clears them.

Binance's data archive (``/data/futures/um/daily/klines/...``, :attr:`Simulator.archive`,
``archive.py``) answers on the same port too, at no request weight; an armed ``faults.fail_next``
of its path comes first.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from quant_assets.simulator.archive import PREFIX as ARCHIVE_PREFIX
from quant_assets.simulator.archive import ArchiveApi
from quant_assets.simulator.binance_api import BinanceApi, banned, request_weight, too_many_requests
from quant_assets.simulator.bybit_api import PREFIX as BYBIT_PREFIX
from quant_assets.simulator.bybit_api import BybitApi
from quant_assets.simulator.coingecko_api import API_PREFIX, RATE_LIMITED_BODY, CoinGeckoApi
from quant_assets.simulator.faults import Failure, Faults
from quant_assets.simulator.market import Market
from quant_assets.simulator.okx_api import PREFIX as OKX_PREFIX
from quant_assets.simulator.okx_api import OkxApi
from quant_assets.simulator.wire import Reply, custom_body, html_error, json_reply, retry_after_text

logger = logging.getLogger(__name__)

BINANCE_PREFIX = "/fapi/"
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
BINANCE, COINGECKO = "binance", "coingecko"
_IDLE_CONNECTION_SECONDS = 30.0  # a keep-alive connection idle this long is closed


class SimStats:
    """What the simulator served, for tests to assert on. Thread-safe; read the attributes directly.

    Attributes:
        requests: requests received, by path (every venue, every outcome).
        statuses: responses sent, by HTTP status.
        weight_used: total request weight of the Binance requests served (all windows).
        banned_requests: 418 answers.
        rate_limited: 429 answers.
        klines_requests: ``(path, query)`` of every ``/fapi/v1/klines`` request, in arrival order.
        last_headers: the last request's headers per venue (``"binance"``, ``"coingecko"``), names
            lower-cased, e.g. ``last_headers["coingecko"]["x-cg-demo-api-key"]``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.weight_used = 0
        self.banned_requests = 0
        self.rate_limited = 0
        self.klines_requests: list[tuple[str, dict[str, str]]] = []
        self.last_headers: dict[str, dict[str, str]] = {}

    def reset(self) -> None:
        """Zero every counter and forget recorded requests and headers."""
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.weight_used = 0
            self.banned_requests = 0
            self.rate_limited = 0
            self.klines_requests.clear()
            self.last_headers.clear()

    def klines_queries(self) -> list[dict[str, str]]:
        """A copy of the query parameters of every klines request so far."""
        with self._lock:
            return [dict(q) for _, q in self.klines_requests]

    def _received(self, path: str, query: dict[str, str], venue: str | None, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests[path] += 1
            if path.endswith("/klines"):
                self.klines_requests.append((path, query))
            if venue is not None:
                self.last_headers[venue] = headers

    def _sent(self, status: int, weight: int) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.weight_used += weight
            if status == 418:
                self.banned_requests += 1
            elif status == 429:
                self.rate_limited += 1


@dataclass(frozen=True)
class _Verdict:
    status: int  # 200: go ahead; 429 or 418: refuse
    retry_after: float  # seconds, for refusals
    ban_until: float  # epoch seconds, for 418


class RateLimiter:
    """Binance's request-weight rule, on the real clock (``time.time()``), whatever the market clock.

    Windows are aligned to the wall clock, ``floor(time.time() / window_seconds)``. A request whose
    weight would take the window over the limit gets 429 and ``Retry-After`` (whole seconds to the
    next window, at least 1). Any request before that ``Retry-After`` has passed is banned: 418 with
    ``Retry-After = ban_seconds``, and every request 418 until the ban ends.
    """

    def __init__(self, limit: int | None, *, window_seconds: float, ban_seconds: float) -> None:
        """Raises ``ValueError`` for a limit below 1 or non-positive durations."""
        self._lock = threading.Lock()
        self.configure(limit, window_seconds=window_seconds, ban_seconds=ban_seconds)
        self.reset()

    def configure(self, limit: int | None, *, window_seconds: float, ban_seconds: float) -> None:
        """Change the rule (counts of the current window are kept). Raises ``ValueError`` as above."""
        if limit is not None and limit < 1:
            raise ValueError(f"weight_limit must be >= 1 or None, got {limit}")
        if window_seconds <= 0 or ban_seconds <= 0:
            raise ValueError(f"window and ban must last > 0 s, got {window_seconds} and {ban_seconds}")
        with self._lock:
            self.limit, self.window_seconds, self.ban_seconds = limit, window_seconds, ban_seconds

    def reset(self) -> None:
        """Forget used weight, pending ``Retry-After`` deadlines and bans."""
        with self._lock:
            self._window = -1
            self._used = 0
            self._retry_deadline = 0.0
            self._ban_until = 0.0

    def _roll(self, now: float) -> None:
        window = math.floor(now / self.window_seconds)
        if window != self._window:
            self._window, self._used = window, 0

    def used(self) -> int:
        """Weight used in the current window."""
        with self._lock:
            self._roll(time.time())
            return self._used

    def check_ban(self) -> _Verdict:
        """418 while banned; a request inside a ``Retry-After`` starts a ban. Else 200."""
        with self._lock:
            now = time.time()
            if now < self._ban_until:
                return _Verdict(418, max(1.0, math.ceil(self._ban_until - now)), self._ban_until)
            if now < self._retry_deadline:
                self._retry_deadline = 0.0
                self._ban_until = now + self.ban_seconds
                return _Verdict(418, self.ban_seconds, self._ban_until)
            return _Verdict(200, 0.0, 0.0)

    def note_retry_after(self, seconds: float) -> None:
        """Remember that a client was told to wait `seconds` (an injected 429)."""
        with self._lock:
            self._retry_deadline = max(self._retry_deadline, time.time() + seconds)

    def admit(self, weight: int) -> _Verdict:
        """Charge `weight` to the current window, or refuse with 429 if it would exceed the limit."""
        with self._lock:
            now = time.time()
            self._roll(now)
            if self.limit is not None and self._used + weight > self.limit:
                retry_after = max(1, math.ceil((self._window + 1) * self.window_seconds - now))
                self._retry_deadline = now + retry_after
                return _Verdict(429, float(retry_after), 0.0)
            self._used += weight
            return _Verdict(200, 0.0, 0.0)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # many client threads connect at once in a parallel backfill

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the venues
    server_version = "quant-assets-simulator"
    disable_nagle_algorithm = True  # headers and body leave at once; no 40 ms delayed-ACK stalls
    timeout = _IDLE_CONNECTION_SECONDS
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            self.server.simulator._serve(self, url.path, query, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its read timeout fired)

    def send_reply(self, reply: Reply, *, truncate: bool = False) -> None:
        body = reply.body
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if truncate:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # the rest of the promised body never comes
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_WR)
        else:
            self.wfile.write(body)


class Simulator:
    """Binance USD-M futures and CoinGecko on 127.0.0.1, with deterministic prices and faults.

    Use as a context manager (or ``start()``/``stop()``)::

        with Simulator(now=datetime(2026, 11, 23, 12, tzinfo=UTC)) as sim:
            client = BinanceFuturesClient(sim.binance_url)
            sim.faults.fail_next("/fapi/v1/klines", 503)

    Attributes:
        market: the simulated market (catalogue, contracts, candles, clock).
        faults: switches for injected faults.
        stats: counters of what was served.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        seed: int = 7,
        now: datetime | None = None,
        weight_limit: int | None = None,
        window_seconds: float = 60.0,
        ban_seconds: float = 120.0,
        n_symbols: int = 120,
        host: str = "127.0.0.1",
        signal: bool = False,
    ) -> None:
        """Configure a simulator (nothing listens until :meth:`start`).

        Args:
            port: TCP port; 0 picks a free one (read it from :attr:`url`).
            seed: fixes every price path.
            now: fixed market clock (UTC; naive read as UTC), or ``None`` for the wall clock. The
                rate limiter always runs on the wall clock.
            weight_limit: Binance request weight allowed per window; ``None`` for no limit.
            window_seconds: rate-limit window length (Binance: 60).
            ban_seconds: length of a 418 ban.
            n_symbols: Layer-1/Layer-2 USDT perpetuals in the world.
            host: interface to listen on.
            signal: plant the weak order-flow signal (:mod:`quant_assets.simulator.market`): the
                last hour's taker-buy flow moves the next hour's return. Off, returns hold nothing
                a model could learn.

        Raises:
            ValueError: a bad clock, limit, duration or `n_symbols`.
        """
        self.market = Market(seed=seed, now=now, n_symbols=n_symbols, signal=signal)
        self.faults = Faults()
        self.stats = SimStats()
        self.rate_limiter = RateLimiter(weight_limit, window_seconds=window_seconds, ban_seconds=ban_seconds)
        self._binance = BinanceApi(self.market, self.faults)
        self._coingecko = CoinGeckoApi(self.market)
        # Bybit /v5 and OKX /api/v5 (bybit_api.py, okx_api.py): their faults and rate limits.
        self.bybit = BybitApi(self.market, self.faults)
        self.okx = OkxApi(self.market, self.faults)
        # Binance's data archive (data.binance.vision layout, archive.py): no weight; sim.archive switches.
        self.archive = ArchiveApi(self.market, self.faults)
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ----------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bind the port and serve in a daemon thread. Raises ``RuntimeError`` if already started,
        ``OSError`` if the port is taken."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        self._stopping.clear()
        self._server = _Server((self._host, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"simulator:{self._server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop open connections and release the port (idempotent)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes stalled requests
        server.shutdown()
        with server.connections_lock:
            open_connections = list(server.connections)
        for connection in open_connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server, self._thread = None, None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the Binance base URL. Raises ``RuntimeError`` before start."""
        if self._server is None:
            raise RuntimeError("simulator not started: use it as a context manager or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def binance_url(self) -> str:
        """Base URL of the Binance endpoints (the client appends ``/fapi/v1/...``)."""
        return self.url

    @property
    def coingecko_url(self) -> str:
        """Base URL of the CoinGecko endpoints (the client appends ``/coins/markets``)."""
        return self.url + API_PREFIX

    @property
    def bybit_url(self) -> str:
        """Base URL of the Bybit endpoints (the client appends ``/v5/market/...``)."""
        return self.url

    @property
    def okx_url(self) -> str:
        """Base URL of the OKX endpoints (the client appends ``/api/v5/...``)."""
        return self.url

    @property
    def archive_url(self) -> str:
        """Base URL of the Binance data archive (the client appends ``/data/futures/um/daily/...``)."""
        return self.url

    @property
    def port(self) -> int:
        """The TCP port listened on. Raises ``RuntimeError`` before start."""
        return int(self.url.rsplit(":", 1)[1])

    def set_rate_limit(
        self,
        weight_limit: int | None,
        *,
        window_seconds: float | None = None,
        ban_seconds: float | None = None,
    ) -> None:
        """Change the Binance weight limit (and optionally the window and ban lengths) while running."""
        limiter = self.rate_limiter
        limiter.configure(
            weight_limit,
            window_seconds=limiter.window_seconds if window_seconds is None else window_seconds,
            ban_seconds=limiter.ban_seconds if ban_seconds is None else ban_seconds,
        )

    def reset(self) -> None:
        """Clear faults, counters, used weight, Retry-After deadlines and bans (not the clock)."""
        self.faults.clear()
        self.stats.reset()
        self.rate_limiter.reset()
        self.bybit.reset()
        self.okx.reset()
        self.archive.reset()

    # ------------------------------------------------------------------------------- serving
    def _serve(self, handler: _Handler, path: str, query: dict[str, str], headers: dict[str, str]) -> None:
        venue = (
            BINANCE if path.startswith(BINANCE_PREFIX) else COINGECKO if path.startswith(API_PREFIX) else None
        )
        other = (
            self.bybit if path.startswith(BYBIT_PREFIX) else self.okx if path.startswith(OKX_PREFIX) else None
        )
        self.stats._received(path, query, venue or (other.venue if other is not None else None), headers)
        if path.startswith(ARCHIVE_PREFIX):
            failure = self.faults.take_failure(path)
            reply = self._failure_reply(failure, "archive") if failure else self.archive.handle(path)
            served, weight = failure is None, 0
        elif other is not None:
            (reply, served), weight = other.reply(path, query), 0
        elif venue == BINANCE:
            reply, weight, served = self._binance_reply(path, query)
        elif venue == COINGECKO:
            (reply, served), weight = self._coingecko_reply(path, query), 0
        else:
            reply, weight, served = json_reply(404, {"error": "Not Found", "path": path}), 0, True
        truncate = False
        if served:  # stalls and truncations hit answers of the endpoint, not injected refusals
            stall = self.faults.take_timeout(path)
            if stall:
                self._stopping.wait(stall)  # stop() cuts a stall short
            truncate = self.faults.take_truncation(path)
        self.stats._sent(reply.status, weight)
        handler.send_reply(reply, truncate=truncate)

    def _binance_reply(self, path: str, query: Mapping[str, str]) -> tuple[Reply, int, bool]:
        """The reply, the weight it cost, and whether the endpoint itself answered."""
        limiter = self.rate_limiter
        verdict = limiter.check_ban()
        weight, served = 0, False
        if verdict.status == 418:
            reply = banned(int(verdict.ban_until * 1000))
            reply.headers["Retry-After"] = retry_after_text(verdict.retry_after)
        elif (failure := self.faults.take_failure(path)) is not None:
            reply = self._failure_reply(failure, BINANCE)
            if failure.status == 429 and failure.retry_after is not None:
                limiter.note_retry_after(failure.retry_after)
        else:
            weight = request_weight(path, query)
            verdict = limiter.admit(weight)
            if verdict.status == 429:
                weight = 0
                reply = too_many_requests(limiter.limit)
                reply.headers["Retry-After"] = retry_after_text(verdict.retry_after)
            else:
                found = self._binance.handle(
                    path, query, weight_limit=limiter.limit, window_seconds=limiter.window_seconds
                )
                reply = found or json_reply(404, {"code": -1, "msg": f"Unknown path {path}"})
                served = True
        reply.headers[USED_WEIGHT_HEADER] = str(limiter.used())
        return reply, weight, served

    def _coingecko_reply(self, path: str, query: Mapping[str, str]) -> tuple[Reply, bool]:
        """The reply and whether the endpoint itself answered."""
        down = self.faults.coingecko_status()
        if down is not None:
            return self._failure_reply(Failure(down, None, None), COINGECKO), False
        failure = self.faults.take_failure(path)
        if failure is not None:
            return self._failure_reply(failure, COINGECKO), False
        return self._coingecko.handle(path, query), True

    @staticmethod
    def _failure_reply(failure: Failure, venue: str) -> Reply:
        status = failure.status
        if failure.body is not None:
            reply = custom_body(status, failure.body)
        elif status >= 500:
            reply = html_error(status)
        elif status == 429:
            reply = json_reply(429, RATE_LIMITED_BODY) if venue == COINGECKO else too_many_requests(None)
        elif status == 418 and venue == BINANCE:
            reply = banned(int((time.time() + (failure.retry_after or 0)) * 1000))
        elif venue == BINANCE:
            reply = json_reply(
                status, {"code": -1000, "msg": "An unknown error occured while processing the request."}
            )
        else:
            reply = json_reply(status, {"error": f"simulated HTTP {status}"})
        if failure.retry_after is not None:
            reply.headers["Retry-After"] = retry_after_text(failure.retry_after)
        return reply


def run_server(
    *,
    port: int,
    host: str = "127.0.0.1",
    seed: int = 7,
    weight_limit: int | None = None,
    signal: bool = False,
) -> None:
    """Serve forever (blocking) on `host`:`port` with the wall clock, until KeyboardInterrupt.

    Used by ``quant-assets simulator --port N [--signal]``; prints the two base URLs once listening.

    Raises:
        OSError: the port is taken.
    """
    simulator = Simulator(port=port, seed=seed, weight_limit=weight_limit, host=host, signal=signal)
    # Everything after start() sits inside the try: an interrupt that arrives while the URLs are
    # printed (a caller may act on the first line at once) still stops the server and exits cleanly.
    try:
        simulator.start()
        print(f"simulator listening: QT_BINANCE_FAPI_URL={simulator.binance_url}", flush=True)
        print(f"                     QT_COINGECKO_API_URL={simulator.coingecko_url}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
