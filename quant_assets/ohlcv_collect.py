"""Collect closed 5-minute candles for a batch of (symbol, UTC day) partitions, Dagster-free.

The ``ohlcv`` asset hands a whole batch of partitions to :func:`collect_ohlcv`, which fetches each
symbol's consecutive days with as few requests as the venue allows (one ``fetch_candles`` over the
whole run of days, 499 candles a request, about 1.7 days each) instead of one request series per
partition, splits the candles by UTC day and hands each day to ``write``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

from quant_assets.errors import QuantAssetsError
from quant_assets.sources.binance import IncompleteFetchError, ServedCandles
from quant_assets.sources.binance_archive import ArchivedDay, ArchiveUnavailable
from quant_assets.sources.bybit import BybitClient
from quant_assets.sources.http import VenueSession
from quant_assets.sources.okx import OkxClient
from quant_assets.sources.venues import Instrument
from quant_assets.symbols import checked_symbol

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
LEFT_OUT_REASONS = ("still_open", "exact_repeats", "outside_range")


class CandleSource(Protocol):
    """What the collection needs of a venue: its session (for metering), clock and candles by symbol.

    :class:`~quant_assets.sources.binance.BinanceFuturesClient` is one; :class:`VenueCandles`
    makes the Bybit and OKX clients one.
    """

    session: VenueSession

    def now_ms(self) -> int: ...

    def fetch_candles_served(
        self, symbol: str, start_ms: int, end_ms: int, *, limit: int
    ) -> ServedCandles: ...


class ArchiveSource(Protocol):
    """Verified whole days of candles from a bulk archive (Binance's: ``BinanceArchiveClient``)."""

    def fetch_day(self, symbol: str, day: dt.date) -> ArchivedDay: ...


class VenueCandles:
    """A Bybit or OKX client as a :class:`CandleSource` of universe symbols.

    `instruments` maps each universe (Binance) symbol to the venue's instrument of the same coin
    (:func:`~quant_assets.sources.venues.match_instruments`); the candles carry the universe symbol
    and the instrument's name in ``venue_symbol``.
    """

    def __init__(self, client: BybitClient | OkxClient, instruments: Mapping[str, Instrument]) -> None:
        self.client = client
        self.session = client.session
        self.instruments = dict(instruments)

    def now_ms(self) -> int:
        return self.client.now_ms()

    def fetch_candles_served(self, symbol: str, start_ms: int, end_ms: int, *, limit: int) -> ServedCandles:
        """The closed candles of the instrument of `symbol` (``KeyError`` if the venue lists none)."""
        return self.client.fetch_candles_served(
            self.instruments[symbol], symbol, start_ms, end_ms, limit=limit
        )


@dataclass(frozen=True, order=True)
class SymbolDay:
    """One ``ohlcv`` partition: a symbol and a UTC calendar day."""

    symbol: str
    day: dt.date


@dataclass
class CollectProgress:
    """Where a collection stands; passed to ``on_progress`` after each symbol.

    Attributes:
        days_done: partitions finished (written or failed).
        days_total: partitions asked for (after removing repeats).
        candles: candles written so far.
        requests: HTTP requests sent so far (retries included).
        weight: request weight spent so far.
        elapsed_s: seconds since the collection started.
        eta_s: estimated seconds left, from the pace so far (``None`` before the first day is done).
    """

    days_done: int
    days_total: int
    candles: int
    requests: int
    weight: int
    elapsed_s: float
    eta_s: float | None


@dataclass
class CollectResult:
    """What a collection did.

    Attributes:
        written: candles written per partition (0 when the venue served none that day).
        failed: why each partition that was not written failed.
        left_out: per written partition that had any, rows the client left out of the candles it
            was served, by reason (:data:`LEFT_OUT_REASONS`): ``still_open`` (not closed yet),
            ``exact_repeats`` (a row served again, identical), ``outside_range`` (an open time
            outside the days asked for, counted on the nearest of them).
        requests: HTTP requests sent (retries included).
        weight: request weight spent.
        sources: per written partition, where its candles came from: ``archive`` or ``rest``.
        archive_fallbacks: per partition the archive could not give, why (it went to REST).
        archive_sha256: per partition taken from the archive, the verified checksum of its zip.
    """

    written: dict[SymbolDay, int] = field(default_factory=dict)
    failed: dict[SymbolDay, str] = field(default_factory=dict)
    left_out: dict[SymbolDay, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    weight: int = 0
    sources: dict[SymbolDay, str] = field(default_factory=dict)
    archive_fallbacks: dict[SymbolDay, str] = field(default_factory=dict)
    archive_sha256: dict[SymbolDay, str] = field(default_factory=dict)


@dataclass
class _SymbolOutcome:
    """The fetch of one symbol: a frame per day, or a message per day that cannot be written."""

    symbol: str
    frames: dict[SymbolDay, pd.DataFrame] = field(default_factory=dict)
    failed: dict[SymbolDay, str] = field(default_factory=dict)
    left_out: dict[SymbolDay, dict[str, int]] = field(default_factory=dict)
    requests: int = 0
    weight: int = 0


def _day_start_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def consecutive_runs(days: Iterable[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Group `days` into runs of consecutive days: sorted (first, last) pairs, both inclusive."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in sorted(set(days)):
        if runs and day == runs[-1][1] + dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _day_of(ms: int, first: dt.date, last: dt.date) -> dt.date:
    """The UTC day of `ms`, clamped to ``[first, last]`` (a row outside the range counts on its edge)."""
    day = dt.date(1970, 1, 1) + dt.timedelta(days=ms // DAY_MS)
    return min(max(day, first), last)


def _count_left_out(outcome: _SymbolOutcome, served: ServedCandles, first: dt.date, last: dt.date) -> None:
    """Count what the client left out of `served`, per day of ``[first, last]``."""
    for reason, times in (
        ("still_open", served.still_open_ms),
        ("exact_repeats", served.repeated_ms),
        ("outside_range", served.outside_ms),
    ):
        for ms in times:
            key = SymbolDay(outcome.symbol, _day_of(ms, first, last))
            counts = outcome.left_out.setdefault(key, dict.fromkeys(LEFT_OUT_REASONS, 0))
            counts[reason] += 1


def _split_days(outcome: _SymbolOutcome, served: ServedCandles, days: list[dt.date]) -> None:
    """Give each of `days` its candles (an empty frame when the venue served none that day)."""
    candles = served.candles
    by_day = dict(list(candles.groupby(candles["open_time"].dt.date, sort=True)))
    empty = candles.iloc[0:0]
    for day in days:
        frame = by_day.get(day)
        # A day the venue served nothing for (before a listing, a day-long outage) is stored as
        # served: empty. The asset's completeness check reports it.
        outcome.frames[SymbolDay(outcome.symbol, day)] = (
            empty if frame is None else frame.reset_index(drop=True)
        )


def _fetch_symbol(client: CandleSource, symbol: str, days: list[dt.date], *, limit: int) -> _SymbolOutcome:
    """Fetch every run of `days` of one symbol.

    A run whose request fails for good keeps the days fetched whole before the failure and fails the
    rest of that run with the error's message; the symbol's other runs are still fetched. An invalid
    symbol fails every day.
    """
    outcome = _SymbolOutcome(symbol)
    with client.session.metered() as meter:
        try:
            checked_symbol(symbol)
        except QuantAssetsError as exc:
            outcome.failed.update({SymbolDay(symbol, day): str(exc) for day in days})
            days = []
        for first, last in consecutive_runs(days):
            run = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
            start_ms, end_ms = _day_start_ms(first), _day_start_ms(last) + DAY_MS
            try:
                served = client.fetch_candles_served(symbol, start_ms, end_ms, limit=limit)
            except IncompleteFetchError as exc:
                whole = [day for day in run if _day_start_ms(day) + DAY_MS <= exc.complete_before_ms]
                logger.warning(
                    "ohlcv %s: %s; keeping the %d whole days fetched before it", symbol, exc, len(whole)
                )
                _split_days(outcome, exc.served, whole)
                if whole:
                    _count_left_out(outcome, exc.served, first, whole[-1])
                outcome.failed.update(
                    {SymbolDay(symbol, day): f"not fetched: {exc}" for day in run if day not in whole}
                )
                continue
            except QuantAssetsError as exc:
                logger.warning("ohlcv %s: %s", symbol, exc)
                outcome.failed.update({SymbolDay(symbol, day): str(exc) for day in run})
                continue
            _split_days(outcome, served, run)
            _count_left_out(outcome, served, first, last)
    outcome.requests, outcome.weight = meter.requests, meter.weight
    return outcome


def collect_ohlcv(
    client: CandleSource,
    partitions: Iterable[SymbolDay],
    write: Callable[[SymbolDay, pd.DataFrame], None],
    *,
    on_progress: Callable[[CollectProgress], None] | None = None,
    limit: int = 499,
    workers: int = 1,
    archive: ArchiveSource | None = None,
    archive_workers: int = 4,
) -> CollectResult:
    """Fetch and write the closed candles of every (symbol, UTC day) partition in `partitions`.

    Per symbol, consecutive days are fetched as one range, so a batch costs about one request per
    499 candles. Each day is passed to ``write(partition, frame)`` (frame columns as
    :func:`~quant_assets.sources.binance.parse_klines` returns them, only that day's candles, gaps
    left as gaps; empty when the venue served none, e.g. before the symbol's listing). A partition
    is recorded in ``failed`` instead when

    * its day has not fully ended by the client's clock (only complete UTC days are collected);
    * the symbol is invalid (every day of it fails), or unknown to the venue;
    * a request for it failed for good: the days of that run of consecutive days fetched whole
      before the failure are still written, the others carry the error's message;
    * ``write`` raised one of this package's errors (:class:`~quant_assets.errors.QuantAssetsError`).

    A failing symbol never stops the others. Other exceptions (bugs, ``KeyboardInterrupt``) propagate.

    Args:
        client: the venue's candles (the Binance client, or :class:`VenueCandles` of Bybit or
            OKX); its shared budget keeps all workers inside the venue's limit.
        partitions: the partitions to collect; repeats are collected once.
        write: stores one partition. Always called from the calling thread, one partition at a
            time, so it need not be thread-safe.
        on_progress: called from the calling thread after each symbol.
        limit: candles per request (Binance: 499 is the cheapest weight per candle; Bybit up to
            1,000; OKX up to 100).
        workers: symbols fetched concurrently (threads); 1 fetches in the calling thread.
        archive: when given, every partition is first asked of this bulk archive (verified daily
            files, no request weight); the days it cannot give (missing, checksum still wrong)
            are fetched from `client` as above. ``sources`` and ``archive_fallbacks`` say which.
        archive_workers: archive days downloaded concurrently (threads).

    Returns:
        Candles written per partition, failures with their messages, requests and weight spent.

    Raises:
        ValueError: `workers` below 1.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    started = time.monotonic()
    wanted = sorted(set(partitions))
    result = CollectResult()
    now_ms = client.now_ms()
    days_by_symbol: dict[str, list[dt.date]] = defaultdict(list)
    for partition in wanted:
        day_end_ms = _day_start_ms(partition.day) + DAY_MS
        if day_end_ms > now_ms:
            result.failed[partition] = (
                f"{partition.day} (UTC) has not ended yet for {partition.symbol}: "
                "only complete days are collected"
            )
        else:
            days_by_symbol[partition.symbol].append(partition.day)
    candles_written = 0
    if archive is not None and days_by_symbol:
        from_archive = _collect_archive(archive, days_by_symbol, write, result, workers=archive_workers)
        candles_written += sum(from_archive.values())
        for symbol in list(days_by_symbol):
            days_by_symbol[symbol] = [
                d for d in days_by_symbol[symbol] if SymbolDay(symbol, d) not in from_archive
            ]
            if not days_by_symbol[symbol]:
                del days_by_symbol[symbol]

    def finish(outcome: _SymbolOutcome) -> None:
        nonlocal candles_written
        result.requests += outcome.requests
        result.weight += outcome.weight
        result.failed.update(outcome.failed)
        for key, frame in sorted(outcome.frames.items()):
            try:
                write(key, frame)
            except QuantAssetsError as exc:
                logger.warning("ohlcv %s %s: write failed: %s", key.symbol, key.day, exc)
                result.failed[key] = f"write failed: {exc}"
            else:
                result.written[key] = len(frame)
                result.sources[key] = "rest"
                candles_written += len(frame)
                if key in outcome.left_out:
                    result.left_out[key] = outcome.left_out[key]
        if on_progress is not None:
            done = len(result.written) + len(result.failed)
            elapsed = time.monotonic() - started
            remaining = len(wanted) - done
            on_progress(
                CollectProgress(
                    days_done=done,
                    days_total=len(wanted),
                    candles=candles_written,
                    requests=result.requests,
                    weight=result.weight,
                    elapsed_s=elapsed,
                    eta_s=elapsed / done * remaining if done else None,
                )
            )

    if workers == 1:
        for symbol, days in days_by_symbol.items():
            finish(_fetch_symbol(client, symbol, days, limit=limit))
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ohlcv") as pool:
            futures: list[Future[_SymbolOutcome]] = [
                pool.submit(_fetch_symbol, client, symbol, days, limit=limit)
                for symbol, days in days_by_symbol.items()
            ]
            for future in as_completed(futures):
                finish(future.result())
    return result


def _collect_archive(
    archive: ArchiveSource,
    days_by_symbol: Mapping[str, list[dt.date]],
    write: Callable[[SymbolDay, pd.DataFrame], None],
    result: CollectResult,
    *,
    workers: int,
) -> dict[SymbolDay, int]:
    """Write every partition the archive gives; record why the others fall back to REST.

    Returns the candles written per partition taken from the archive. Downloads run in `workers`
    threads; ``write`` is called from the calling thread only.
    """
    partitions = [SymbolDay(symbol, day) for symbol, days in days_by_symbol.items() for day in days]
    written: dict[SymbolDay, int] = {}

    def fetch(partition: SymbolDay) -> ArchivedDay:
        return archive.fetch_day(partition.symbol, partition.day)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="archive") as pool:
        futures = {pool.submit(fetch, partition): partition for partition in partitions}
        for future in as_completed(futures):
            partition = futures[future]
            try:
                day = future.result()
            except (ArchiveUnavailable, QuantAssetsError) as exc:
                result.archive_fallbacks[partition] = str(exc)
                continue
            try:
                write(partition, day.served.candles)
            except QuantAssetsError as exc:
                logger.warning("ohlcv %s %s: write failed: %s", partition.symbol, partition.day, exc)
                result.failed[partition] = f"write failed: {exc}"
                written[partition] = 0  # not fetched again from REST: the write is what failed
                continue
            written[partition] = len(day.served.candles)
            result.written[partition] = len(day.served.candles)
            result.sources[partition] = "archive"
            result.archive_sha256[partition] = day.sha256
            counts = dict.fromkeys(LEFT_OUT_REASONS, 0)
            counts["still_open"] = len(day.served.still_open_ms)
            counts["exact_repeats"] = len(day.served.repeated_ms)
            counts["outside_range"] = len(day.served.outside_ms)
            if any(counts.values()):
                result.left_out[partition] = counts
    if result.archive_fallbacks:
        logger.info(
            "ohlcv archive: %d of %d symbol-days from the archive, %d from REST",
            len(written),
            len(partitions),
            len(result.archive_fallbacks),
        )
    return written
