"""Rows split into parts by a hash of a key, the one way every stage splits them.

Each part holds every row of its keys, so a group-by over a key (alone or with other columns) can
run part by part: shards of accounts, buckets of source addresses, the parts of a large group-by.
Rows without a key (null) hash to one fixed value, so they share one part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

PART = "_shard"
"""The column :func:`split_rows` splits on (dropped from the parts)."""


def hash_part(key: pl.Expr | pl.Series, n: int) -> pl.Expr | pl.Series:
    """The part of each row, 0 to ``n - 1``: ``key``'s hash modulo ``n``, as ``UInt32``."""
    return (key.hash(seed=0) % n).cast(pl.UInt32)


def key_part(column: str, parts: int, j: int) -> pl.Expr:
    """Rows whose ``column`` falls in part ``j`` of ``parts``."""
    return hash_part(pl.col(column), parts) == j


def split_rows(frame: pl.DataFrame, key: pl.Expr | pl.Series, n: int) -> list[pl.DataFrame]:
    """``frame``'s rows in ``n`` parts by ``key`` (its part, 0 to ``n - 1``), each part's rows in
    their order, every part present (empty where no row has its key)."""
    parts = frame.with_columns(key.alias(PART)).partition_by(PART, as_dict=True, include_key=False)
    empty = frame.clear()
    return [parts.pop((k,), empty) for k in range(n)]


def write_parts(parts: Sequence[pl.DataFrame], path_of: Callable[[int], Path]) -> list[Path]:
    """Each part ``j`` to ``path_of(j)`` (lz4 Parquet, as every work file), empty parts too; their
    paths in order."""
    paths = [path_of(j) for j in range(len(parts))]
    for part, path in zip(parts, paths, strict=True):
        part.write_parquet(path, compression="lz4")
    return paths


def parquet_rows(paths: Iterable[Path]) -> int:
    """Rows in these Parquet files, from their footers (no data read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
