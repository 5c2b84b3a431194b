"""Writing Parquet reports with key-value metadata that pyarrow, DuckDB, pandas and Spark can read.

The metadata goes into the Arrow schema that pyarrow embeds, so it appears both as the Parquet
footer's key-value metadata (``pl.read_parquet_metadata``, DuckDB's ``parquet_kv_metadata``) and as
``pyarrow.parquet.read_schema(path).metadata``. Lazy frames are written batch by batch, so a
large events table is never held in memory twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from detector.parquet_meta import encode_metadata

ROW_GROUP_ROWS = 512 * 1024


def write_parquet(frame: pl.LazyFrame | pl.DataFrame, path: Path, meta: dict[str, Any]) -> int:
    """Write ``frame`` to ``path`` with ``meta`` as key-value metadata; return the row count."""
    kv = encode_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, pl.DataFrame):
        table = frame.to_arrow()
        pq.write_table(
            table.replace_schema_metadata(kv), path, compression="zstd", row_group_size=ROW_GROUP_ROWS
        )
        return table.num_rows
    return write_batches(frame.collect_batches(chunk_size=ROW_GROUP_ROWS), frame.collect_schema(), path, meta)


def write_batches(
    batches: Iterable[pl.DataFrame],
    schema: pl.Schema,
    path: Path,
    meta: dict[str, Any],
    row_group_rows: int = ROW_GROUP_ROWS,
) -> int:
    """Write a stream of frames of ``schema`` to ``path`` with ``meta``; return the row count.

    Small batches are gathered into row groups of about ``row_group_rows`` rows (what is held in
    memory besides the batches themselves).
    """
    kv = encode_metadata(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow_schema: pa.Schema = pl.DataFrame(schema=schema).to_arrow().schema.with_metadata(kv)
    rows = 0
    pending: list[pl.DataFrame] = []
    with pq.ParquetWriter(path, arrow_schema, compression="zstd") as writer:

        def flush() -> None:
            table = pl.concat(pending).to_arrow().cast(arrow_schema)
            writer.write_table(table, row_group_size=row_group_rows)
            pending.clear()

        for batch in batches:
            pending.append(batch)
            rows += batch.height
            if sum(b.height for b in pending) >= row_group_rows:
                flush()
        if pending:
            flush()
    return rows
