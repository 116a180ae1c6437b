"""The lake (Parquet files, one per partition) and its DuckDB catalog of views."""
