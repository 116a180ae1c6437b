"""Binance's public data archive (data.binance.vision) over the simulated market: daily 5m kline zips.

Layout as the real archive: ``/data/futures/um/daily/klines/<SYMBOL>/5m/<SYMBOL>-5m-<YYYY-MM-DD>.zip``
holds one CSV, ``<SYMBOL>-5m-<YYYY-MM-DD>.csv``, with the day's closed candles in the REST row's
field order (``open_time,open,high,low,close,volume,close_time,quote_volume,count,
taker_buy_volume,taker_buy_quote_volume,ignore``), and ``<same>.zip.CHECKSUM`` holds
``<sha256 hex>  <SYMBOL>-5m-<YYYY-MM-DD>.zip`` (two spaces, newline). The values are the ones
``/fapi/v1/klines`` serves for the same candles, formatted the same way, so an archived day and a
REST-fetched day parse to the same rows.

The archive lags: a day is published once `lag_days` whole days have passed after it (default 1:
yesterday is not there yet, the day before is). A day before the symbol's listing has no file.

Switches for tests (``sim.archive``): ``header`` (the CSV's header row; the real archive added it
in 2022), ``remove(symbol, day)`` (404 for that day), ``corrupt(symbol, day, times)`` (the next
`times` downloads of the zip are damaged, the checksum file unchanged), ``replace(symbol, day)``
(the file is re-published: different bytes, new checksum, same candles). ``reset()`` clears them.
The archive costs no request weight.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
import threading
import zipfile
from collections import Counter, OrderedDict

from quant_assets.simulator.binance_api import klines_body
from quant_assets.simulator.faults import Faults
from quant_assets.simulator.market import Market
from quant_assets.simulator.wire import Reply

PREFIX = "/data/futures/um/daily/klines/"
HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
    "taker_buy_volume,taker_buy_quote_volume,ignore"
)
DAY_MS = 86_400_000
_PATH = re.compile(
    r"^/data/futures/um/daily/klines/(?P<symbol>[A-Z0-9]+)/5m/"
    r"(?P=symbol)-5m-(?P<day>\d{4}-\d{2}-\d{2})\.zip(?P<checksum>\.CHECKSUM)?$"
)
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries carry a date: fixed, so a file is reproducible


def archive_path(symbol: str, day: dt.date) -> str:
    """The zip's path for `symbol` and `day` (append ``.CHECKSUM`` for its checksum file)."""
    return f"{PREFIX}{symbol}/5m/{symbol}-5m-{day.isoformat()}.zip"


def _not_found() -> Reply:
    # The real archive sits behind S3/CloudFront: a missing key is an XML 404.
    body = b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code></Error>'
    return Reply(404, body, "application/xml")


class ArchiveApi:
    """Answers archive requests from a :class:`Market` (see the module docstring)."""

    def __init__(self, market: Market, faults: Faults, *, lag_days: int = 1) -> None:
        self.market = market
        self.faults = faults
        self.lag_days = lag_days
        self.header = True
        self._lock = threading.Lock()
        self._removed: set[tuple[str, dt.date]] = set()
        self._corrupt: Counter[tuple[str, dt.date]] = Counter()
        self._revision: Counter[tuple[str, dt.date]] = Counter()
        self.downloads: Counter[str] = Counter()  # zip downloads by path (checksum files not counted)
        # The checksum and the zip of a day are asked for one after the other: build each file once.
        self._files: OrderedDict[tuple[object, ...], bytes] = OrderedDict()

    def reset(self) -> None:
        """Header on, default lag, nothing removed, corrupted or replaced, counters zeroed."""
        with self._lock:
            self.header = True
            self.lag_days = 1
            self._removed.clear()
            self._corrupt.clear()
            self._revision.clear()
            self.downloads.clear()
            self._files.clear()

    def remove(self, symbol: str, day: dt.date) -> None:
        """That day's zip and checksum answer 404."""
        with self._lock:
            self._removed.add((symbol, day))

    def corrupt(self, symbol: str, day: dt.date, times: int = 1) -> None:
        """The next `times` downloads of that day's zip are damaged (its checksum file is not)."""
        with self._lock:
            self._corrupt[(symbol, day)] += times

    def replace(self, symbol: str, day: dt.date) -> None:
        """Re-publish that day: a new file (another byte layout, same candles) with a new checksum."""
        with self._lock:
            self._revision[(symbol, day)] += 1

    def zip_bytes(self, symbol: str, day: dt.date) -> bytes | None:
        """The day's zip as published now, or ``None`` when the archive has no file for it."""
        spec = self.market.contract(symbol)
        now_ms = self.market.now_ms()
        start_ms = (day - dt.date(1970, 1, 1)).days * DAY_MS
        with self._lock:
            removed = (symbol, day) in self._removed
            revision = self._revision[(symbol, day)]
            header = self.header
        published_ms = start_ms + (1 + self.lag_days) * DAY_MS
        if spec is None or removed or published_ms > now_ms or spec.onboard_ms >= start_ms + DAY_MS:
            return None
        gaps = self.faults.gaps_for(symbol)
        key = (symbol, day, revision, header, gaps)
        with self._lock:
            cached = self._files.get(key)
        if cached is not None:
            return cached
        candles = self.market.klines(
            spec,
            interval="5m",
            start_ms=start_ms,
            end_ms=start_ms + DAY_MS - 1,
            limit=288,
            gaps=gaps,
            now_ms=now_ms,
        )
        rows = klines_body(candles, spec.price_decimals, spec.qty_decimals).decode("ascii")
        lines = [] if rows == "[]" else rows[2:-2].split("],[")
        csv_lines = [line.replace('"', "") for line in lines]
        if header:
            csv_lines.insert(0, HEADER)
        name = f"{symbol}-5m-{day.isoformat()}.csv"
        text = "\n".join(csv_lines) + "\n"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # A re-published file: same candles, another compression level (new bytes, new checksum).
            archive.writestr(info, text, compresslevel=1 + revision % 9)
            if revision:
                archive.comment = f"revision {revision}".encode("ascii")
        data = buffer.getvalue()
        with self._lock:
            self._files[key] = data
            while len(self._files) > 512:
                self._files.popitem(last=False)
        return data

    def handle(self, path: str) -> Reply:
        """The reply to ``GET path`` under :data:`PREFIX`."""
        match = _PATH.match(path)
        if match is None:
            return _not_found()
        symbol = match["symbol"]
        try:
            day = dt.date.fromisoformat(match["day"])
        except ValueError:
            return _not_found()
        body = self.zip_bytes(symbol, day)
        if body is None:
            return _not_found()
        file_name = path.rsplit("/", 1)[1].removesuffix(".CHECKSUM")
        if match["checksum"]:
            line = f"{hashlib.sha256(body).hexdigest()}  {file_name}\n"
            return Reply(200, line.encode("ascii"), "text/plain; charset=utf-8")
        with self._lock:
            self.downloads[path] += 1
            damaged = self._corrupt[(symbol, day)] > 0
            if damaged:
                self._corrupt[(symbol, day)] -= 1
        if damaged:
            middle = len(body) // 2
            body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
        return Reply(200, body, "application/zip")
