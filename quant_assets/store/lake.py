"""The lake: one Parquet file per partition, written atomically, plus read-optimised day files.

Layout under ``<data_dir>/lake`` (DESIGN.md §3)::

    coin_universe/date=2026-11-23.parquet
    ohlcv/exchange=binance/symbol=BTCUSDT/date=2026-11-23.parquet   # one per (symbol, day): the truth
    ohlcv_daily/exchange=binance/date=2026-11-23.parquet            # every symbol of a day: for reads
    features/date=2026-11-23.parquet
    labels/date=2026-11-23.parquet
    feature_catalog/schema=<hash>.parquet   # one per feature schema
    model_registry/xgboost/xgboost-20261129T171530.123456Z.parquet  # one per trained version
    predictions/date=2026-11-23.parquet
    model_evaluation/date=2026-11-23.parquet

Why two ``ohlcv`` layouts: a partition is the unit of work, so it is written on its own and never
blocks another writer; but a query over 9,000 one-day files costs about a second, against a few
milliseconds over 90 day files. After writing partitions, the writer calls :meth:`Lake.compact_ohlcv`
for the days it touched; the ``ohlcv`` view reads the day files. Compaction of one day holds an
exclusive lock on that day, so concurrent writers of the same day serialise and the last one in sees
every symbol file written before it.

Every write goes to a temporary name and is renamed into place (``os.replace``): a reader or a crash
never sees half a file, and the previous version survives any failure. Files are written with fixed
options from rows in a fixed order, so the same data gives the same bytes.

A key carried by a directory of the path (hive style, ``exchange=binance/``) is not stored in the file
too: pandas and pyarrow refuse a directory of files whose column repeats a hive key with another
type (``pd.read_parquet("lake/ohlcv")`` failed with "Unable to merge: Field exchange has incompatible
types"). The path is the one source of those columns; :meth:`Lake.read`, :meth:`Lake.read_ohlcv`
and the catalog's views put them back. A key in the file name (``date=...parquet``) is no hive key:
no reader parses file names, and every table keeps its date inside the rows where it has one.
Files written before this layout still hold the key columns; every reader here accepts both, and
:meth:`Lake.strip_path_columns` (run by ``quant-assets catalog``) rewrites them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quant_assets.errors import StoreError
from quant_assets.store import schemas
from quant_assets.symbols import checked_symbol

_EXCHANGE = re.compile(r"[a-z]{2,20}")
_SCHEMA_HASH = re.compile(r"[0-9a-f]{8,64}")
_MODEL = re.compile(r"[a-z][a-z0-9_]{1,39}")
_VERSION = re.compile(r"[a-z][a-z0-9_]{1,39}-[0-9]{8}T[0-9]{6}\.[0-9]{6}Z")

# Key of an ``ohlcv`` partition file's metadata, present only when its candles failed
# ``candles_valid``; its value says why (see :meth:`Lake.invalid_ohlcv`).
OHLCV_INVALID_KEY = "quant_assets.ohlcv_invalid"

# Fixed writer options: the same table always gives the same bytes (no timestamps are written).
_PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": True}


@dataclass(frozen=True)
class TableSpec:
    """Where a table's partitions live and how their rows are ordered."""

    name: str
    template: str  # path under the lake root, with {key} placeholders
    sort_by: tuple[str, ...]
    schema: pa.Schema | None  # None: the schema comes with the data (features)

    @property
    def path_keys(self) -> tuple[str, ...]:
        """The hive keys of the directories above a partition's file, e.g. ("exchange", "symbol")."""
        directories = self.template.rpartition("/")[0]
        return tuple(re.findall(r"([a-z_]+)=\{", directories))

    def file_schema(self, schema: pa.Schema | None = None) -> pa.Schema | None:
        """`schema` (default: the table's) without the path keys: the columns its files hold."""
        full = schema if schema is not None else self.schema
        if full is None:
            return None
        return pa.schema([field for field in full if field.name not in self.path_keys])


TABLES: dict[str, TableSpec] = {
    "coin_universe": TableSpec(
        "coin_universe", "coin_universe/date={date}.parquet", ("rank",), schemas.COIN_UNIVERSE
    ),
    "coin_market": TableSpec(
        "coin_market", "coin_market/date={date}.parquet", ("symbol",), schemas.COIN_MARKET
    ),
    "ohlcv": TableSpec(
        "ohlcv",
        "ohlcv/exchange={exchange}/symbol={symbol}/date={date}.parquet",
        ("open_time",),
        schemas.OHLCV,
    ),
    "ohlcv_daily": TableSpec(
        "ohlcv_daily",
        "ohlcv_daily/exchange={exchange}/date={date}.parquet",
        ("symbol", "open_time"),
        schemas.OHLCV,
    ),
    "features": TableSpec("features", "features/date={date}.parquet", ("symbol", "open_time"), None),
    "labels": TableSpec("labels", "labels/date={date}.parquet", ("symbol", "open_time"), schemas.LABELS),
    "feature_catalog": TableSpec(
        "feature_catalog", "feature_catalog/schema={schema_hash}.parquet", (), schemas.FEATURE_CATALOG
    ),
    # One file per trained version, written once (models/registry.py); no hive keys: every column
    # is inside the file.
    "model_registry": TableSpec(
        "model_registry", "model_registry/{model}/{version}.parquet", (), schemas.MODEL_REGISTRY
    ),
    "predictions": TableSpec(
        "predictions",
        "predictions/date={date}.parquet",
        ("model", "version", "symbol", "open_time"),
        schemas.PREDICTIONS,
    ),
    "model_evaluation": TableSpec(
        "model_evaluation",
        "model_evaluation/date={date}.parquet",
        ("model", "version", "day"),
        schemas.MODEL_EVALUATION,
    ),
}


@dataclass(frozen=True)
class WriteResult:
    """What one atomic write left on disk."""

    path: Path
    rows: int
    bytes: int
    sha256: str


def write_table_atomic(path: Path, table: pa.Table) -> WriteResult:
    """Write `table` so readers see the previous file or the new one, never a partial one.

    Raises whatever pyarrow or the OS raises; the temporary file is removed and any previous file at
    `path` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(table)}.tmp")
    try:
        pq.write_table(table, tmp, **_PARQUET_OPTIONS)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        size = tmp.stat().st_size
        os.replace(tmp, path)  # atomic within one filesystem
    finally:
        tmp.unlink(missing_ok=True)
    return WriteResult(path=path, rows=table.num_rows, bytes=size, sha256=digest)


def write_bytes_atomic(path: Path, data: bytes) -> WriteResult:
    """Write `data` to `path` like :func:`write_table_atomic`: the old file or the new one, never half.

    For files that are not Parquet tables (model artifacts, JSON). Raises what the OS raises; the
    temporary file is removed and any previous file at `path` is left untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)  # atomic within one filesystem
    finally:
        tmp.unlink(missing_ok=True)
    return WriteResult(path=path, rows=0, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def to_arrow(
    frame: pd.DataFrame | pa.Table,
    schema: pa.Schema | None,
    sort_by: Sequence[str],
    metadata: Mapping[str, str] | None = None,
) -> pa.Table:
    """Convert `frame` to an Arrow table with exactly `schema`'s columns, rows sorted by `sort_by`.

    `metadata` becomes the file's key-value metadata (e.g. the feature schema hash); pandas'
    own metadata is dropped so the bytes depend on the data only. Raises :class:`StoreError`
    naming the missing columns when `frame` lacks some.
    """
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    if schema is not None:
        missing = [name for name in schema.names if name not in table.column_names]
        if missing:
            raise StoreError(f"cannot store a frame without columns {missing}")
        table = table.select(schema.names).cast(schema)
    table = table.replace_schema_metadata(dict(metadata) if metadata else None)
    if sort_by and table.num_rows:
        table = table.sort_by([(column, "ascending") for column in sort_by])
    return table


class Lake:
    """The Parquet lake under ``<data_dir>/lake``. Cheap to construct; holds no open files."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "lake"

    def __repr__(self) -> str:
        return f"Lake({str(self.data_dir)!r})"

    # -- paths --------------------------------------------------------------------------------------

    def path(self, table: str, **keys: object) -> Path:
        """The file of one partition of `table`. Every key is validated before it becomes a path.

        Raises :class:`StoreError` for an unknown table or missing key, and
        :class:`~quant_assets.errors.InvalidSymbolError` for an unsafe symbol.
        """
        spec = _spec(table)
        clean = {name: _clean_key(name, value) for name, value in keys.items()}
        try:
            return self.root / spec.template.format(**clean)
        except KeyError as missing:
            raise StoreError(f"table {table!r} needs partition key {missing}") from None

    def glob(self, table: str) -> str:
        """A glob matching every partition file of `table` (for DuckDB's ``read_parquet``)."""
        template = _spec(table).template
        return str(self.root / re.sub(r"\{[a-z_]+\}", "*", template))

    def files(self, table: str) -> list[Path]:
        """Every partition file of `table`, sorted by path."""
        template = _spec(table).template
        return sorted(self.root.glob(re.sub(r"\{[a-z_]+\}", "*", template)))

    # -- writes -------------------------------------------------------------------------------------

    def write(
        self,
        table: str,
        frame: pd.DataFrame | pa.Table,
        *,
        schema: pa.Schema | None = None,
        metadata: Mapping[str, str] | None = None,
        **keys: object,
    ) -> WriteResult:
        """Write one partition of `table` atomically (see the module docstring).

        `schema` is needed only for tables whose columns are not fixed (``features``).
        Columns named like a key of the path's directories (``exchange``, ``symbol`` of ``ohlcv``)
        are checked against the key and left out of the file; a row of another symbol raises
        :class:`StoreError` and writes nothing.
        """
        spec = _spec(table)
        path = self.path(table, **keys)
        arrow = _without_path_columns(table, frame, {name: keys[name] for name in spec.path_keys})
        if table == "ohlcv":
            arrow = _with_venue_symbol(arrow, _clean_key("symbol", keys["symbol"]))
        return write_table_atomic(path, to_arrow(arrow, spec.file_schema(schema), spec.sort_by, metadata))

    def file_metadata(self, table: str, **keys: object) -> dict[str, str]:
        """The key-value metadata stored in one partition's file ({} when it has none)."""
        raw = pq.read_schema(self.path(table, **keys)).metadata or {}
        return {k.decode(): v.decode() for k, v in raw.items()}

    def compact_ohlcv(self, days: Iterable[dt.date], *, exchange: str = "binance") -> list[WriteResult]:
        """Rebuild the read-optimised day file of each of `days` from that day's partition files.

        Holds an exclusive lock per day while it reads and writes, so concurrent writers of the same
        day serialise. A day with no partition files loses its day file. Each file's symbol comes
        from its path (files of the older layout that also hold it are read alike). A partition that
        failed ``candles_valid`` (:meth:`invalid_ohlcv`) stays in its own file, as served, and is
        kept out of the day file: the ``ohlcv`` view and :meth:`read_ohlcv` show valid days only, so
        (exchange, symbol, open_time) stays a key there.
        """
        exchange = _clean_key("exchange", exchange)
        daily = _spec("ohlcv_daily")
        results = []
        for day in sorted(set(days)):
            date = _clean_key("date", day)
            with self._lock(f"ohlcv_daily-{exchange}-{date}"):
                sources = sorted(self.root.glob(f"ohlcv/exchange={exchange}/symbol=*/date={date}.parquet"))
                target = self.path("ohlcv_daily", exchange=exchange, date=date)
                if not sources:
                    target.unlink(missing_ok=True)
                    continue
                tables = [(source, pq.read_table(source)) for source in sources]
                valid = [
                    _with_path_columns(
                        "ohlcv",
                        _with_venue_symbol(table, source.parent.name.removeprefix("symbol=")),
                        {"exchange": exchange, "symbol": source.parent.name.removeprefix("symbol=")},
                    )
                    for source, table in tables
                    if OHLCV_INVALID_KEY.encode() not in (table.schema.metadata or {})
                ]
                if not valid:
                    target.unlink(missing_ok=True)
                    continue
                merged = pa.concat_tables(valid)
                arrow = to_arrow(merged.drop_columns(["exchange"]), daily.file_schema(), daily.sort_by)
                results.append(write_table_atomic(target, arrow))
        return results

    def strip_path_columns(self) -> list[Path]:
        """Rewrite the files of the older layout, which repeat their path's hive keys as columns.

        Each file keeps its rows, row order and key-value metadata, minus those columns; a file of
        the current layout is not touched. Returns the files rewritten. Safe to run again, and while
        runs write (each rewrite is atomic; a partition rewritten meanwhile by a run is already new).
        """
        rewritten = []
        for spec in TABLES.values():
            if not spec.path_keys:
                continue
            for path in self.files(spec.name):
                stored = pq.read_schema(path)
                extra = [name for name in spec.path_keys if name in stored.names]
                # Files written before venue_symbol existed get it: Binance names it as the universe.
                no_venue_symbol = spec.schema is schemas.OHLCV and "venue_symbol" not in stored.names
                if not extra and not no_venue_symbol:
                    continue
                table = pq.read_table(path).drop_columns(extra)
                if no_venue_symbol and spec.name == "ohlcv":
                    table = _with_venue_symbol(table, path.parent.name.removeprefix("symbol="))
                elif no_venue_symbol:
                    table = table.append_column("venue_symbol", table.column("symbol"))
                write_table_atomic(path, table.replace_schema_metadata(stored.metadata))
                rewritten.append(path)
        return rewritten

    # -- reads --------------------------------------------------------------------------------------

    def read(self, table: str, **keys: object) -> pd.DataFrame:
        """Read one partition of `table`, its path keys restored as columns in the schema's order.

        Raises :class:`StoreError` if it was never written.
        """
        spec = _spec(table)
        path = self.path(table, **keys)
        if not path.exists():
            raise StoreError(f"{table} partition {keys} has not been written ({path.name} missing)")
        clean = {name: _clean_key(name, keys[name]) for name in spec.path_keys}
        arrow = pq.read_table(path)
        if table == "ohlcv":
            arrow = _with_venue_symbol(arrow, clean["symbol"])
        return _with_path_columns(table, arrow, clean).to_pandas()

    def read_ohlcv(
        self,
        *,
        symbols: Sequence[str] | None,
        start: dt.datetime,
        end: dt.datetime,
        exchange: str = "binance",
    ) -> pd.DataFrame:
        """Closed candles with ``start <= open_time < end`` (naive or UTC datetimes), from the day files.

        `symbols` None means every symbol. Rows are sorted by symbol, open_time; columns are
        :data:`~quant_assets.store.schemas.OHLCV_COLUMNS`. Days never written are simply absent.
        """
        start_utc, end_utc = _naive_utc(start), _naive_utc(end)
        day = start_utc.date()
        paths = []
        while day <= end_utc.date():
            path = self.path("ohlcv_daily", exchange=exchange, date=day)
            if path.exists():
                paths.append(str(path))
            day += dt.timedelta(days=1)
        if not paths:
            return pa.Table.from_batches([], schema=schemas.OHLCV).to_pandas()
        clean_symbols = [checked_symbol(s) for s in symbols] if symbols is not None else None
        # The day files' directory gives `exchange`; a file of the older layout holding it too is
        # read alike (DuckDB prefers the hive value).
        query = (
            "SELECT * FROM read_parquet(?, hive_partitioning = true, union_by_name = true, "
            "hive_types = {'exchange': VARCHAR}) WHERE open_time >= ? AND open_time < ?"
        )
        params: list[object] = [paths, start_utc, end_utc]
        if clean_symbols is not None:
            query += " AND list_contains(?, symbol)"
            params.append(clean_symbols)
        query += " ORDER BY symbol, open_time"
        with duckdb.connect() as con:
            found = con.sql(query, params=params).to_arrow_table()
        # Day files written before the column: Binance names the instrument as the universe does.
        if "venue_symbol" not in found.column_names:
            found = found.append_column("venue_symbol", found.column("symbol"))
        elif found.column("venue_symbol").null_count:
            filled = pc.coalesce(found.column("venue_symbol"), found.column("symbol"))
            found = found.set_column(found.column_names.index("venue_symbol"), "venue_symbol", filled)
        return found.select(schemas.OHLCV.names).cast(schemas.OHLCV).to_pandas()

    def invalid_ohlcv(self, day: dt.date, *, exchange: str = "binance") -> dict[str, str]:
        """Symbols of `day` whose stored candles failed ``candles_valid``: symbol -> the reason.

        Read from the key-value metadata the ``ohlcv`` asset writes into each partition's file,
        atomically with its candles (:data:`OHLCV_INVALID_KEY`). The candles stay stored (report,
        never repair); a consumer such as ``feature_table`` leaves these symbols out. A file written
        before this metadata existed counts as valid.
        """
        date, exchange = _clean_key("date", day), _clean_key("exchange", exchange)
        invalid: dict[str, str] = {}
        for path in sorted(self.root.glob(f"ohlcv/exchange={exchange}/symbol=*/date={date}.parquet")):
            reason = (pq.read_schema(path).metadata or {}).get(OHLCV_INVALID_KEY.encode())
            if reason is not None:
                invalid[path.parent.name.removeprefix("symbol=")] = reason.decode()
        return invalid

    # -- internals ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        lock_dir = self.root / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        with open(lock_dir / f"{name}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _without_path_columns(table: str, frame: pd.DataFrame | pa.Table, keys: Mapping[str, object]) -> pa.Table:
    """`frame` as Arrow without its columns named like the path keys, once they match those keys."""
    arrow = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    present = [name for name in keys if name in arrow.column_names]
    for name in present:
        expected = _clean_key(name, keys[name])
        column = arrow.column(name)
        others = sorted({str(v) for v in pc.unique(column).to_pylist()} - {expected})
        if column.null_count or others:
            shown = others[:5] + (["null"] if column.null_count else [])
            raise StoreError(
                f"{table} partition {name}={expected} cannot hold rows with {name} {shown}; "
                "nothing was written"
            )
    return arrow.drop_columns(present)


def _with_venue_symbol(arrow: pa.Table, symbol: str) -> pa.Table:
    """`arrow` with ``venue_symbol`` filled where missing or NULL: by default the venue names the
    instrument as the universe does (Binance); Bybit and OKX rows carry their own name."""
    if "venue_symbol" not in arrow.column_names:
        return arrow.append_column("venue_symbol", pa.repeat(symbol, arrow.num_rows).cast(pa.string()))
    column = arrow.column("venue_symbol")
    if not column.null_count:
        return arrow
    filled = pc.fill_null(column.cast(pa.string()), symbol)
    return arrow.set_column(arrow.column_names.index("venue_symbol"), "venue_symbol", filled)


def _with_path_columns(table: str, arrow: pa.Table, keys: Mapping[str, str]) -> pa.Table:
    """`arrow` read from one file, with its path keys (validated values) as string columns.

    They take their place in the table's schema order; a file of the older layout that holds them
    already gets them from its path all the same.
    """
    spec = _spec(table)
    arrow = arrow.drop_columns([name for name in keys if name in arrow.column_names])
    names = spec.schema.names if spec.schema is not None else []
    for name in sorted(keys, key=lambda n: names.index(n) if n in names else 0):
        position = min(names.index(name), arrow.num_columns) if name in names else 0
        arrow = arrow.add_column(position, pa.field(name, pa.string()), pa.repeat(keys[name], arrow.num_rows))
    return arrow


def _spec(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise StoreError(f"unknown table {table!r}; known: {sorted(TABLES)}") from None


def _clean_key(name: str, value: object) -> str:
    """Validate one partition key value; it becomes part of a path."""
    if name == "symbol":
        return checked_symbol(value)
    if name == "date":
        if isinstance(value, dt.datetime):
            raise StoreError(f"date key must be a date, got the datetime {value!r}")
        if isinstance(value, dt.date):
            return value.isoformat()
        try:
            return dt.date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise StoreError(f"date key {value!r} is not an ISO date (YYYY-MM-DD)") from None
    if name == "exchange":
        if not isinstance(value, str) or not _EXCHANGE.fullmatch(value):
            raise StoreError(f"exchange key {value!r} must be lower-case letters, e.g. 'binance'")
        return value
    if name == "model":
        if not isinstance(value, str) or not _MODEL.fullmatch(value):
            raise StoreError(f"model key {value!r} must be a lower-case name, e.g. 'xgboost'")
        return value
    if name == "version":
        if not isinstance(value, str) or not _VERSION.fullmatch(value):
            raise StoreError(f"version key {value!r} must look like 'xgboost-20261129T171530.123456Z'")
        return value
    if name == "schema_hash":
        if not isinstance(value, str) or not _SCHEMA_HASH.fullmatch(value):
            raise StoreError(f"schema_hash key {value!r} must be a lower-case hex hash")
        return value
    raise StoreError(f"unknown partition key {name!r}")


def _naive_utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment
