"""Binance's public data archive (data.binance.vision): daily zips of USD-M 5-minute klines.

``<base>/data/futures/um/daily/klines/<SYMBOL>/5m/<SYMBOL>-5m-<YYYY-MM-DD>.zip`` holds one CSV of
the day's candles in the REST row's field order, with or without a header row (files published
before 2022 have none); ``<same>.zip.CHECKSUM`` holds ``<sha256 hex>  <file name>``. Every zip is
verified against its checksum before use; a mismatch is downloaded again (checksum and zip) and
verified again, and a day still wrong, or missing (the archive lags a day or two), raises
:class:`ArchiveUnavailable`: the caller fetches that day from the REST API instead.

Nothing is cached: each fetch reads the checksum file anew, so a file replaced upstream is picked up
by the next run. The archive is not the API: it costs no request weight and is not metered by the
venue's budget. The rows are parsed by the same code as the REST rows
(:func:`~quant_assets.sources.payloads.parse_kline_page`), so an archived day gives the same table.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from quant_assets.errors import QuantAssetsError, SourceError
from quant_assets.sources.binance import ServedCandles
from quant_assets.sources.payloads import MalformedKlineError, parse_kline_page
from quant_assets.symbols import checked_symbol

VENUE = "binance_archive"
DAY_MS = 86_400_000
ARCHIVE_DIR = "/data/futures/um/daily/klines"
VERIFY_ATTEMPTS = 2  # a checksum mismatch is downloaded (and verified) once more


class ArchiveUnavailable(QuantAssetsError):
    """The archive has no usable file for a day: missing, or wrong after every attempt.

    Attributes:
        reason: ``missing``, ``checksum_mismatch``, ``bad_file`` or ``unreachable``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ArchivedDay:
    """One verified archive day.

    Attributes:
        served: the day's closed candles as :class:`ServedCandles` (rows outside the day counted).
        sha256: the verified checksum of the zip.
        header: whether the CSV had a header row.
        attempts: downloads it took (2 when the first failed its checksum).
    """

    served: ServedCandles
    sha256: str
    header: bool
    attempts: int


def archive_path(symbol: str, day: dt.date) -> str:
    """The zip's path under the base URL (its checksum file: the same with ``.CHECKSUM``)."""
    return f"{ARCHIVE_DIR}/{symbol}/5m/{symbol}-5m-{day.isoformat()}.zip"


def parse_checksum(text: str, file_name: str) -> str:
    """The sha256 hex digest of a ``.CHECKSUM`` file (``<hex>  <name>``) naming `file_name`.

    Raises:
        ArchiveUnavailable: (``bad_file``) not that format, or it names another file.
    """
    parts = text.strip().split("  ")
    digest = parts[0].strip().lower()
    if len(parts) != 2 or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ArchiveUnavailable(
            f"{file_name}.CHECKSUM is not '<sha256>  <name>': {text[:100]!r}", reason="bad_file"
        )
    if parts[1].strip() != file_name:
        raise ArchiveUnavailable(
            f"{file_name}.CHECKSUM names {parts[1].strip()!r}, not {file_name!r}", reason="bad_file"
        )
    return digest


def csv_rows(data: bytes, file_name: str) -> tuple[list[list[Any]], bool]:
    """The kline rows of a verified zip (open and close times as int, the rest as served) and
    whether the CSV had a header row.

    Raises:
        ArchiveUnavailable: (``bad_file``) not a zip of one CSV.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [name for name in archive.namelist() if name.endswith(".csv")]
            if len(members) != 1:
                raise ArchiveUnavailable(
                    f"{file_name} holds {len(members)} CSV files, not 1", reason="bad_file"
                )
            text = archive.read(members[0]).decode("ascii")
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError) as exc:
        raise ArchiveUnavailable(f"{file_name} is not a readable zip: {exc}", reason="bad_file") from exc
    lines = list(csv.reader(io.StringIO(text)))
    header = bool(lines) and bool(lines[0]) and not lines[0][0].strip().isdigit()
    rows: list[list[Any]] = []
    for line in lines[1:] if header else lines:
        if not line:
            continue
        row: list[Any] = list(line)
        if len(row) >= 7:
            # Times as integers, as the REST API serves them; microseconds (newer files) to ms.
            for index in (0, 6):
                number = int(row[index]) if row[index].isdigit() else row[index]
                row[index] = number // 1000 if isinstance(number, int) and number > 10**14 else number
            if len(row) > 8 and row[8].isdigit():
                row[8] = int(row[8])
        rows.append(row)
    return rows, header


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BinanceArchiveClient:
    """Reads verified daily 5m kline files of USD-M futures from the archive (or the simulator's)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: tuple[float, float] = (3.05, 30.0),
        verify_attempts: int = VERIFY_ATTEMPTS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: e.g. ``https://data.binance.vision`` or a simulator's ``archive_url``.
            timeout: (connect, read) timeouts in seconds.
            verify_attempts: downloads of a day before a checksum mismatch makes it unavailable.
            clock: "now" in epoch ms (default wall time): a candle not closed by it is left out.
        """
        if verify_attempts < 1:
            raise ValueError(f"verify_attempts must be >= 1, got {verify_attempts}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.verify_attempts = verify_attempts
        self._clock = clock or _wall_clock_ms
        self._local = threading.local()  # one HTTP session per thread

    def __repr__(self) -> str:
        return f"BinanceArchiveClient({self.base_url!r})"

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            self._local.session = session
        return session

    def _get(self, path: str) -> bytes | None:
        """The body of ``GET path``; ``None`` on 404/403 (S3 answers 403 for a missing key too)."""
        url = self.base_url + path
        last: Exception | None = None
        for _ in range(3):  # transport errors and 5xx: twice more
            try:
                response = self._session().get(url, timeout=self.timeout)
            except requests.RequestException as exc:
                last = exc
                continue
            if response.status_code in (403, 404):
                return None
            if response.status_code == 200:
                return response.content
            last = SourceError(
                f"HTTP {response.status_code}", venue=VENUE, endpoint=path, status=response.status_code
            )
            if response.status_code < 500:
                break
        raise ArchiveUnavailable(f"{path}: {last}", reason="unreachable")

    def fetch_day(self, symbol: str, day: dt.date) -> ArchivedDay:
        """The verified closed candles of `symbol` on UTC `day` from the archive.

        Raises:
            InvalidSymbolError: `symbol` is not a valid symbol.
            ArchiveUnavailable: the day is missing, still fails its checksum after
                `verify_attempts` downloads, is not a readable zip of kline rows, or the archive
                cannot be reached. The caller falls back to the REST API.
        """
        symbol = checked_symbol(symbol)
        path = archive_path(symbol, day)
        file_name = path.rsplit("/", 1)[1]
        mismatch = ""
        for attempt in range(1, self.verify_attempts + 1):
            checksum_text = self._get(path + ".CHECKSUM")
            if checksum_text is None:
                raise ArchiveUnavailable(f"{file_name}: not in the archive", reason="missing")
            expected = parse_checksum(checksum_text.decode("ascii", errors="replace"), file_name)
            data = self._get(path)
            if data is None:
                raise ArchiveUnavailable(f"{file_name}: not in the archive", reason="missing")
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                mismatch = f"{file_name}: sha256 {actual[:12]}... != CHECKSUM {expected[:12]}..."
                continue
            rows, header = csv_rows(data, file_name)
            start_ms = (day - dt.date(1970, 1, 1)).days * DAY_MS
            now = self._clock()
            try:
                page = parse_kline_page(rows, symbol=symbol, now_ms=now)
            except MalformedKlineError as exc:
                raise ArchiveUnavailable(f"{file_name}: {exc}", reason="bad_file") from exc
            candles = page.candles
            opens = candles["open_time"].astype("datetime64[ms]").astype("int64").to_numpy()
            inside = (opens >= start_ms) & (opens < start_ms + DAY_MS)
            served = ServedCandles(
                candles.loc[inside].reset_index(drop=True),
                still_open_ms=page.still_open_ms,
                repeated_ms=page.repeated_ms,
                outside_ms=tuple(int(t) for t in opens[~inside]),
            )
            return ArchivedDay(served, actual, header, attempt)
        raise ArchiveUnavailable(
            f"{mismatch} after {self.verify_attempts} downloads", reason="checksum_mismatch"
        )
