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


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("coin_universe", "coin_universe", schemas.COIN_UNIVERSE),
    ViewSpec("ohlcv", "ohlcv_daily", schemas.OHLCV),
    ViewSpec("features", "features", None, union_by_name=True),
    ViewSpec("feature_catalog", "feature_catalog", schemas.FEATURE_CATALOG),
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
                if current.get(name) is None or (current[name] and self.lake.files(view.table))
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

    def _current_views(self) -> dict[str, bool] | None:
        """{view name: is it the empty placeholder}, or None when the file is busy."""
        try:
            with duckdb.connect(str(self.path), read_only=True) as con:
                rows = con.execute(
                    "SELECT view_name, sql LIKE '%WHERE false%' FROM duckdb_views() WHERE NOT internal"
                ).fetchall()
        except duckdb.IOException:
            return None
        return {name: bool(empty) for name, empty in rows}
