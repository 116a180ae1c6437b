"""The DuckDB catalog ``<data_dir>/quant.duckdb``: views over the lake, nothing else.

The catalog holds no data. A view reads its files through a glob, so new partitions show up without
touching the catalog; it only changes when a view is missing or its statement changed (a placeholder
whose table now has files, a new feature schema). Anyone can open it read-only at any time, also
while runs write: DuckDB refuses a read-only open while another process holds the file read-write,
so no process ever opens ``quant.duckdb`` for writing. :meth:`Catalog.ensure_views` builds a new
catalog file beside it and renames it into place (``os.replace``): a reader that opened the old
file keeps reading it, the next one opens the new one. Writers take turns through a lock file
(``fcntl.flock``, dropped by the kernel if the process dies). Each view carries the fingerprint of
its statement as its DuckDB comment, which is how a run tells, read-only, that nothing needs doing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from quant_assets.store import schemas
from quant_assets.store.lake import TABLES, Lake

log = logging.getLogger(__name__)

CATALOG_FILE = "quant.duckdb"
WRITER_LOCK_FILE = ".quant.duckdb.lock"  # writers of the catalog take turns on it; readers never look


@dataclass(frozen=True)
class ViewSpec:
    """A catalog view: the lake table it reads and its schema for when no file exists yet."""

    name: str
    table: str
    schema: pa.Schema | None  # None: schema-on-read only (features); no empty placeholder
    union_by_name: bool = False
    # Narrows the files' rows: `select(source)` is the view's SQL over the files' SELECT. Its text
    # is part of the statement's fingerprint, so a new feature schema hash recreates the view.
    select: Callable[[str], str] | None = None


def _features_of_current_schema(source: str) -> str:
    """The rows built under the registry's current schema, with exactly its columns, in order.

    Days built under another schema (a parameter changed since) are left to ``features_all`` until
    the feature sensor or ``quant-assets features --rebuild-stale`` rebuilds them: a query on
    ``features`` never mixes two definitions of a column. Files that predate the hash column have
    NULL there and are left out alike.
    """
    from quant_assets.features import feature_schema

    schema = feature_schema()
    typed = schemas.features_schema(schema.names)
    columns = ", ".join(f'"{field.name}"' for field in typed)
    # Every column exists even when no file has it yet (an empty typed row set joined by name), so
    # the view binds before the first day of a new schema is stored. The hash is hex and the names
    # come from the registry (checked identifiers), never from input.
    empty = ", ".join(f'CAST(NULL AS {_DUCKDB_TYPES[field.type]}) AS "{field.name}"' for field in typed)
    return (
        f"SELECT {columns} FROM ({source} UNION ALL BY NAME SELECT {empty} WHERE false) "
        f"WHERE {schemas.FEATURE_SCHEMA_HASH} = '{schema.hash}'"
    )


def _every_column(source: str, schema: pa.Schema) -> str:
    """`source` with exactly `schema`'s columns in order; a column no file has yet reads NULL."""
    columns = ", ".join(f'"{field.name}"' for field in schema)
    empty = ", ".join(f'CAST(NULL AS {_DUCKDB_TYPES[field.type]}) AS "{field.name}"' for field in schema)
    return f"SELECT {columns} FROM ({source} UNION ALL BY NAME SELECT {empty} WHERE false)"


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("coin_universe", "coin_universe", schemas.COIN_UNIVERSE),
    ViewSpec("coin_market", "coin_market", schemas.COIN_MARKET),
    # venue_symbol reads NULL from day files written before it (until `quant-assets catalog`).
    ViewSpec(
        "ohlcv",
        "ohlcv_daily",
        schemas.OHLCV,
        union_by_name=True,
        select=lambda s: _every_column(s, schemas.OHLCV),
    ),
    ViewSpec(
        "features",
        "features",
        None,
        union_by_name=True,
        select=_features_of_current_schema,
    ),
    ViewSpec("features_all", "features", None, union_by_name=True),  # every stored day, any hash
    ViewSpec("feature_catalog", "feature_catalog", schemas.FEATURE_CATALOG, union_by_name=True),
    ViewSpec("labels", "labels", schemas.LABELS),
    ViewSpec("model_registry", "model_registry", schemas.MODEL_REGISTRY, union_by_name=True),
    ViewSpec("predictions", "predictions", schemas.PREDICTIONS),
    ViewSpec("model_evaluation", "model_evaluation", schemas.MODEL_EVALUATION, union_by_name=True),
)

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.date32(): "DATE",
    pa.timestamp("ms"): "TIMESTAMP",
    pa.timestamp("us"): "TIMESTAMP",
    pa.bool_(): "BOOLEAN",
    pa.list_(pa.string()): "VARCHAR[]",
}


class Catalog:
    """The DuckDB file of views over a :class:`Lake`."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self.path = lake.data_dir / CATALOG_FILE

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection for queries; close it when done (``with catalog.connect() as con``)."""
        self.ensure_views()
        return duckdb.connect(str(self.path), read_only=True)

    def view_sql(self, view: ViewSpec) -> str | None:
        """The ``CREATE VIEW`` statement for `view`: over its files, or empty and typed if none exist yet."""
        files = self.lake.files(view.table)
        if files:
            glob = self.lake.glob(view.table).replace("'", "''")
            options = ", union_by_name = true" if view.union_by_name else ""
            columns = "*"
            if keys := TABLES[view.table].path_keys:
                # The files leave out the keys their directories carry (lake.py): read them from the
                # path as strings, and list the columns in the contract's order.
                types = ", ".join(f"'{key}': VARCHAR" for key in keys)
                options += f", hive_partitioning = true, hive_types = {{{types}}}"
                if view.schema is not None and view.select is None:
                    columns = ", ".join(f'"{name}"' for name in view.schema.names)
            source = f"SELECT {columns} FROM read_parquet('{glob}'{options})"
        elif view.schema is not None:
            columns = ", ".join(
                f'CAST(NULL AS {_DUCKDB_TYPES[field.type]}) AS "{field.name}"' for field in view.schema
            )
            source = f"SELECT {columns} WHERE false"
        else:
            return None
        if files and view.select is not None:
            source = view.select(source)
        return f'CREATE OR REPLACE VIEW "{view.name}" AS {source}'

    def ensure_views(self, *, force: bool = False, timeout_s: float = 10.0) -> list[str]:
        """Bring the catalog up to date with the lake; returns the views (re)created.

        A view is (re)created when it is missing or its statement changed; `force` rebuilds every
        view (after the data directory moved). The new catalog is built in a file of its own and
        renamed over ``quant.duckdb``, so readers are never locked out. Never raises because
        another writer is busy: after waiting `timeout_s` for it, logs a warning and returns ``[]``
        (the data is safe in the lake; the next run refreshes the views).
        """
        if not force and not self._stale(self._statements()):
            return []  # the common case: read-only, no lock
        with self._writer_lock(timeout_s) as locked:
            if not locked:
                log.warning(
                    "catalog %s: another writer held it for %.0f s; views not updated", self.path, timeout_s
                )
                return []
            # Again under the lock: another writer may have just done it, and files may have appeared.
            statements = self._statements()
            stale = list(statements) if force else self._stale(statements)
            if stale:
                self._build(statements)
            return stale

    def _statements(self) -> dict[str, str]:
        """{view name: its CREATE VIEW statement} for every view the lake can give today."""
        return {view.name: sql for view in VIEWS if (sql := self.view_sql(view)) is not None}

    def _stale(self, statements: dict[str, str]) -> list[str]:
        """Views of `statements` missing from the catalog or built from another statement.

        A catalog holding a view no longer wanted counts as stale too (all of them, then).
        """
        current = self._current_fingerprints()
        if current is None:
            return list(statements)
        stale = [name for name, sql in statements.items() if current.get(name) != _fingerprint(sql)]
        if not stale and set(current) - set(statements):
            return list(statements)
        return stale

    @contextlib.contextmanager
    def _writer_lock(self, timeout_s: float) -> Iterator[bool]:
        """Hold the writers' lock inside the block; yields False if it stayed taken for `timeout_s`."""
        self.lake.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lake.data_dir / WRITER_LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.01)  # a writer holds it for the few ms a build takes
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _build(self, statements: dict[str, str]) -> None:
        """Write a catalog of `statements` beside ``quant.duckdb`` and rename it into place."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        leftovers = (tmp, tmp.with_name(tmp.name + ".wal"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        try:
            with duckdb.connect(str(tmp)) as con:
                for name, sql in statements.items():
                    con.execute(sql)
                    # The name comes from VIEWS and the fingerprint is hex: nothing from outside.
                    con.execute(f"COMMENT ON VIEW \"{name}\" IS '{_fingerprint(sql)}'")
            # A write-ahead log left beside the old file by an older version would be replayed into
            # the new one; the new file was checkpointed when its connection closed.
            self.path.with_name(self.path.name + ".wal").unlink(missing_ok=True)
            os.replace(tmp, self.path)
        finally:
            for path in leftovers:
                path.unlink(missing_ok=True)

    def _current_fingerprints(self) -> dict[str, str] | None:
        """{view name: the fingerprint it was built from}; None when there is no readable catalog."""
        if not self.path.exists():
            return None
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                rows = con.execute(
                    "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal"
                ).fetchall()
        except duckdb.Error as exc:  # held read-write by someone else, or not a catalog: rebuild it
            log.warning("catalog %s cannot be read (%s); building it anew", self.path, exc)
            return None
        return {str(name): str(comment or "") for name, comment in rows}


def _fingerprint(statement: str) -> str:
    """What a view's DuckDB comment records: a hash of the statement it was created from."""
    return "quant_assets:" + hashlib.sha256(statement.encode()).hexdigest()[:20]
