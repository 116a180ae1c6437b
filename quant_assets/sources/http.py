"""The HTTP layer every venue client stands on: one session per venue, retries, typed errors.

:class:`VenueSession` is one ``requests.Session`` per venue with connect/read timeouts, retries with
capped exponential backoff and full jitter on 5xx, timeouts and broken bodies, ``Retry-After``
honoured on 429/418 (and 503), and typed errors (:mod:`quant_assets.errors`) that name the venue,
the endpoint and the HTTP status. Every attempt is paced through the venue's weight budget
(:mod:`quant_assets.sources.budget`, re-exported here), which one process or a whole machine shares.

Connection failures (nothing reached the server, so no weight was spent) are retried by urllib3's
own ``Retry`` under the session; everything that did reach the server is retried here, through the
budget, so every attempt is paced and counted.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Self

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from quant_assets.errors import RateLimitError, SourceError, UnknownSymbolError
from quant_assets.sources.budget import BudgetStats, RequestMeter, WeightBudget, shared_budget

__all__ = [
    "BudgetStats",
    "RequestMeter",
    "VenueClient",
    "VenueSession",
    "WeightBudget",
    "parse_retry_after",
    "shared_budget",
]

logger = logging.getLogger(__name__)

BINANCE_UNKNOWN_SYMBOL_CODE = -1121  # {"code": -1121, "msg": "Invalid symbol."}
CONNECT_RETRIES = 2  # urllib3 retries of a refused/timed-out connect; no weight is spent on these


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent.

    A date in the past gives 0; a value that is neither form gives None.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _venue_message(response: requests.Response) -> str:
    """The venue's own error text: Binance ``msg``, CoinGecko ``error`` / ``status.error_message``."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        status = payload.get("status")
        for candidate in (
            payload.get("msg"),
            payload.get("error"),
            status.get("error_message") if isinstance(status, dict) else None,
        ):
            if isinstance(candidate, str) and candidate:
                code = payload.get("code")
                return f"{candidate} (code {code})" if code is not None else candidate
    text = response.text.strip().replace("\n", " ")
    return text[:200] if text else (response.reason or "no body")


class _RetryableFailure(Exception):
    """One attempt failed in a way worth retrying; carries what the final error should say."""

    def __init__(self, message: str, *, status: int | None, wait: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.wait = wait  # the venue's Retry-After, if it gave one


class VenueSession:
    """One ``requests.Session`` per venue: timeouts, retries, the weight budget, typed errors."""

    def __init__(
        self,
        venue: str,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 20.0),
        max_attempts: int = 6,
        backoff_base: float = 0.25,
        backoff_max: float = 20.0,
        budget: WeightBudget | None = None,
        headers: Mapping[str, str] | None = None,
        used_weight_header: str | None = None,
        max_retry_after: float = 600.0,
    ) -> None:
        """Open a session.

        Args:
            venue: venue name used in errors and logs (``binance``, ``coingecko``).
            base_url: scheme, host and path prefix, e.g. ``https://fapi.binance.com``.
            timeout: (connect, read) timeouts in seconds.
            max_attempts: attempts per request that reaches the server (first try included).
            backoff_base: first backoff ceiling in seconds; it doubles per attempt (full jitter).
            backoff_max: cap of the backoff ceiling, seconds.
            budget: weight budget every attempt is paced through; ``None`` means no pacing, and a
                ``Retry-After`` then only delays this session's own request.
            headers: sent with every request (e.g. an API key: never logged or put in errors).
            used_weight_header: response header carrying the venue's used weight of the window.
            max_retry_after: a ``Retry-After`` longer than this (seconds) fails the request at once
                instead of sleeping (the hold still applies to every sharer of the budget).

        Raises:
            ValueError: `max_attempts` below 1.
        """
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.venue = venue
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.budget = budget
        self.used_weight_header = used_weight_header
        self.max_retry_after = max_retry_after
        self._meters = threading.local()
        self._session = requests.Session()
        if headers:
            self._session.headers.update(headers)
        # urllib3 retries only failed connects (no weight spent); reads, statuses and redirects are
        # ours, and urllib3 never sleeps on Retry-After on top of us.
        retry = Retry(
            total=None,
            connect=CONNECT_RETRIES,
            read=False,
            status=False,
            other=0,
            redirect=3,
            backoff_factor=backoff_base,
            backoff_max=backoff_max,
            backoff_jitter=backoff_base,
            respect_retry_after_header=False,
            raise_on_status=False,
            allowed_methods=frozenset({"GET"}),
        )
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16, max_retries=retry)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def __repr__(self) -> str:
        # Headers may carry an API key: never show them.
        return f"VenueSession(venue={self.venue!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> VenueSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def metered(self) -> Iterator[RequestMeter]:
        """Count the requests and weight this thread sends through this session inside the block."""
        stack: list[RequestMeter] = self._meters.__dict__.setdefault("stack", [])
        meter = RequestMeter()
        stack.append(meter)
        try:
            yield meter
        finally:
            stack.remove(meter)

    def _count(self, weight: int) -> None:
        for meter in self._meters.__dict__.get("stack", ()):
            meter.requests += 1
            meter.weight += weight

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def get_json(self, path: str, params: Mapping[str, object] | None = None, *, weight: int = 1) -> Any:
        """GET ``base_url + path`` and return the decoded JSON body.

        Args:
            path: endpoint path starting with ``/``, e.g. ``/fapi/v1/klines``.
            params: query parameters.
            weight: the request's weight in the venue's budget.

        Returns:
            The decoded JSON payload.

        Raises:
            UnknownSymbolError: HTTP 400 with Binance code -1121 (not retried).
            RateLimitError: 429/418 on every attempt, or a ``Retry-After`` above ``max_retry_after``.
            SourceError: any other 4xx (not retried, the venue's message included), or 5xx, timeouts,
                connection failures and broken bodies after ``max_attempts`` attempts.
        """
        url = self.base_url + path
        failure: _RetryableFailure | None = None
        for attempt in range(1, self.max_attempts + 1):
            if self.budget is not None:
                held = self.budget.hold_remaining()
                if held > self.max_retry_after:
                    raise RateLimitError(
                        f"venue asked every user of this budget to wait {held:.0f} s (more than {self.max_retry_after:.0f})",
                        venue=self.venue,
                        endpoint=path,
                        status=failure.status if failure else None,
                        retry_after=held,
                    )
            # The request slot is held until the answer is recorded (a 429's hold included), so no
            # sharer of the budget sends anything while this answer may still ask everyone to wait.
            slot = (
                self.budget.lease(weight, max_seconds=self.timeout[0] + 2 * self.timeout[1] + 5.0)
                if self.budget is not None
                else contextlib.nullcontext(0.0)
            )
            with slot:
                sent_at = time.time()
                self._count(weight)
                try:
                    return self._attempt(url, path, params, sent_at)
                except _RetryableFailure as exc:
                    failure = exc
                rate_limited = failure.status in (418, 429)
                if rate_limited:
                    # Set the hold even when this was the last attempt: other requests of every
                    # sharer must not walk into a ban.
                    self._hold(path, failure)
            if attempt == self.max_attempts:
                break
            sleep = (
                0.0 if rate_limited and self.budget is not None else self._plan_wait(path, failure, attempt)
            )
            logger.warning(
                "%s %s: attempt %d/%d failed (status %s: %s); retrying in %.2f s%s",
                self.venue,
                path,
                attempt,
                self.max_attempts,
                failure.status,
                failure,
                self.budget.hold_remaining() if self.budget is not None and not sleep else sleep,
                " (Retry-After, held for every sharer of the budget)" if failure.status in (418, 429) else "",
            )
            if sleep > 0:
                time.sleep(sleep)
        assert failure is not None  # the loop only ends here after a failed attempt
        message = f"gave up after {self.max_attempts} attempts: {failure}"
        if failure.status in (418, 429):
            raise RateLimitError(
                message, venue=self.venue, endpoint=path, status=failure.status, retry_after=failure.wait
            )
        raise SourceError(message, venue=self.venue, endpoint=path, status=failure.status)

    def _retry_after(self, failure: _RetryableFailure) -> float:
        # Binance always sends Retry-After with 429/418; without one, wait the longest backoff.
        return failure.wait if failure.wait is not None else self.backoff_max

    def _hold(self, path: str, failure: _RetryableFailure) -> None:
        """After a 429/418: hold every sharer of the budget; refuse a wait that is too long."""
        wait = self._retry_after(failure)
        if self.budget is not None:
            # Every request of every sharer, this session's next one included, waits it out.
            self.budget.hold_until(wait, status=failure.status)
        if wait > self.max_retry_after:
            raise RateLimitError(
                f"venue asked to wait {wait:.0f} s (more than {self.max_retry_after:.0f}): {failure}",
                venue=self.venue,
                endpoint=path,
                status=failure.status,
                retry_after=wait,
            )

    def _plan_wait(self, path: str, failure: _RetryableFailure, attempt: int) -> float:
        """Seconds this thread sleeps before its next attempt (holds are waited in ``acquire``)."""
        if failure.status in (418, 429):  # no budget to hold: this request alone waits
            return self._retry_after(failure)
        if failure.wait is not None:  # 503 with Retry-After: honoured exactly, for this request
            if failure.wait > self.max_retry_after:
                raise SourceError(
                    f"venue asked to wait {failure.wait:.0f} s: {failure}",
                    venue=self.venue,
                    endpoint=path,
                    status=failure.status,
                )
            return failure.wait
        return self._backoff(attempt)

    def _attempt(self, url: str, path: str, params: Mapping[str, object] | None, sent_at: float) -> Any:
        """One request; returns the payload, raises a final error or a :class:`_RetryableFailure`."""
        try:
            # stream=True: status and headers first, the body after. A 429/418 whose body breaks off
            # still carries its Retry-After, and retrying early would earn a ban.
            response = self._session.get(url, params=params, timeout=self.timeout, stream=True)  # type: ignore[arg-type]
        except requests.exceptions.Timeout as exc:
            raise _RetryableFailure(f"timed out ({type(exc).__name__})", status=None) from exc
        except requests.exceptions.ConnectionError as exc:
            raise _RetryableFailure(f"connection failed ({type(exc).__name__})", status=None) from exc
        with response:
            self._observe(response, sent_at)
            try:
                response.content  # noqa: B018 - reads the whole body now
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ContentDecodingError,
                requests.exceptions.Timeout,
            ) as exc:
                # The body broke off (Content-Length mismatch, reset or stall mid-body).
                status = response.status_code
                raise _RetryableFailure(
                    f"body failed ({type(exc).__name__})",
                    status=status if status in (418, 429) or status >= 500 else None,
                    wait=parse_retry_after(response.headers.get("Retry-After"))
                    if status in (418, 429)
                    else None,
                ) from exc
        return self._interpret(response, path, params)

    def _interpret(self, response: requests.Response, path: str, params: Mapping[str, object] | None) -> Any:
        """Turn a response whose body has been read into a payload or an error."""
        status = response.status_code
        if status in (418, 429):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _RetryableFailure(_venue_message(response), status=status, wait=retry_after)
        if status >= 500:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise _RetryableFailure(_venue_message(response), status=status, wait=retry_after)
        if status >= 400:
            message = _venue_message(response)
            if status == 400 and _binance_code(response) == BINANCE_UNKNOWN_SYMBOL_CODE:
                symbol = (params or {}).get("symbol")
                raise UnknownSymbolError(
                    f"unknown symbol {symbol!r}: {message}", venue=self.venue, endpoint=path, status=status
                )
            raise SourceError(message, venue=self.venue, endpoint=path, status=status)
        try:
            return response.json()
        except ValueError as exc:
            raise _RetryableFailure(
                f"body is not valid JSON ({len(response.content)} bytes)", status=status
            ) from exc

    def _observe(self, response: requests.Response, sent_at: float) -> None:
        if self.budget is None or self.used_weight_header is None:
            return
        raw = response.headers.get(self.used_weight_header)
        if raw is None:
            return
        try:
            used = int(raw)
        except ValueError:
            logger.warning("%s: ignoring %s=%r (not an integer)", self.venue, self.used_weight_header, raw)
            return
        self.budget.observe(used, sent_at=sent_at)


def _binance_code(response: requests.Response) -> int | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    code = payload.get("code") if isinstance(payload, dict) else None
    return code if isinstance(code, int) else None


class VenueClient:
    """What every venue client shares: one :class:`VenueSession`, closed when the client is."""

    session: VenueSession

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
