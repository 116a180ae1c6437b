"""The DuckDB catalog ``<data_dir>/quant.duckdb``: views over the lake, nothing else.

The catalog holds no data, so it is opened read-write only for the moment it takes to create a
missing view; runs never hold it, and any number of users can query it read-only while runs write.
A view reads its files through a glob, so new partitions show up without touching the catalog.

DuckDB lets one process at a time open a file read-write, and a reader holding it open read-only
blocks that too. So :meth:`Catalog.ensure_views` first looks read-only and only asks for write
access when a view is missing; if the file is busy it retries briefly, then gives up without
failing the caller: the data is already safe in the lake and the next run creates the view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from quant_assets.store import schemas
from quant_assets.store.lake import TABLES, Lake

log = logging.getLogger(__name__)

CATALOG_FILE = "quant.duckdb"


@dataclass(frozen=True)
class ViewSpec:
    """A catalog view: the lake table it reads and its schema for when no file exists yet."""

    name: str
    table: str
    schema: pa.Schema | None  # None: schema-on-read only (features); no empty placeholder
    union_by_name: bool = False
    # Narrows the files' rows (`select(source)` is the view's SQL over the files' SELECT), and the
    # text its SQL must hold to be current: a view without it is recreated (features: the hash).
    select: Callable[[str], str] | None = None
    pinned: Callable[[], str] | None = None


def _current_feature_hash() -> str:
    # Imported here: only the features views need the (heavy) feature library.
    from quant_assets.features import feature_schema

    return feature_schema().hash


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


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("coin_universe", "coin_universe", schemas.COIN_UNIVERSE),
    ViewSpec("ohlcv", "ohlcv_daily", schemas.OHLCV),
    ViewSpec(
        "features",
        "features",
        None,
        union_by_name=True,
        select=_features_of_current_schema,
        pinned=_current_feature_hash,
    ),
    ViewSpec("features_all", "features", None, union_by_name=True),  # every stored day, any hash
    ViewSpec("feature_catalog", "feature_catalog", schemas.FEATURE_CATALOG, union_by_name=True),
    ViewSpec("labels", "labels", schemas.LABELS),
)

_DUCKDB_TYPES = {
    pa.string(): "VARCHAR",
    pa.float64(): "DOUBLE",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.date32(): "DATE",
    pa.timestamp("ms"): "TIMESTAMP",
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
                if view.schema is not None:
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
        """Create every view that is missing or still empty; returns the views (re)created.

        `force` recreates all of them (after the data directory moved). Never raises because the
        file is busy: logs a warning and returns what it managed.
        """
        wanted = {view.name: view for view in VIEWS}
        if not force and self.path.exists():
            current = self._current_views()
            if current is None:
                return []
            wanted = {
                name: view
                for name, view in wanted.items()
                if current.get(name) is None
                or (current[name].rstrip("; ").endswith("WHERE false") and self.lake.files(view.table))
                or (view.pinned is not None and view.pinned() not in current[name])
            }
        statements = {name: sql for name, view in wanted.items() if (sql := self.view_sql(view)) is not None}
        if not statements:
            return []
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with duckdb.connect(str(self.path)) as con:
                    for sql in statements.values():
                        con.execute(sql)
                return list(statements)
            except duckdb.IOException as busy:
                if time.monotonic() > deadline:
                    log.warning("catalog %s is busy (%s); views not updated this time", self.path, busy)
                    return []
                time.sleep(0.2)

    def _current_views(self) -> dict[str, str] | None:
        """{view name: its SQL}, or None when the file is busy."""
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                rows = con.execute("SELECT view_name, sql FROM duckdb_views() WHERE NOT internal").fetchall()
        except duckdb.IOException:
            return None
        return {name: str(sql) for name, sql in rows}
