"""The same log content read twice counts once.

Two ways an input set holds copies:

* **The same file under two names** (a rotated file copied aside, one directory given twice
  through a symlink, ``mail.log.1`` and a backup of it): :func:`unique_contents` reads each
  content once and warns naming both files. Only files of equal size are hashed, so a set without
  copies costs one ``stat`` per file.
* **The same line in two files by severity**: Debian's rsyslog writes every ``mail.*`` line to
  ``mail.log`` and the warnings and errors again to ``mail.warn`` and ``mail.err`` (Postfix's
  ``warning: ...: SASL LOGIN authentication failed`` is one of them). :func:`drop_copies` runs once
  over the written events: an event of one file is a copy of an event of another file when the
  two files overlap in time and share a host, and the events agree on the fields read from the
  line itself (time, host, daemon, service, action, address, port, method, sizes); only the
  events of the smaller file of each such pair, and those of the larger at the same second, host
  and daemon, are held in memory. ``k`` equal
  events in one file and ``m`` in another count ``max(k, m)`` times; the copy kept is the one
  with an account (``mail.log`` joined the Postfix warning to Dovecot's line naming the account;
  ``mail.warn`` has only the warning), else the one of the file with more events.

Files that never overlap in time (``mail.log.1`` and ``mail.log``) or come from different hosts
(one file per server) are never compared.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import polars as pl

from detector.ingest.sources import STDIN, InputFile, file_sha256
from detector.schema import C

COPY_KEY: tuple[str, ...] = (
    C.TIMESTAMP,
    C.HOST,
    C.DAEMON,
    C.SERVICE,
    C.ACTION,
    C.SOURCE_IP,
    C.SOURCE_PORT,
    C.AUTH_METHOD,
    C.BYTES_IN,
    C.BYTES_OUT,
    C.RECIPIENTS,
    C.MESSAGE_SIZE,
)
"""Fields an event takes from its own line (not from the lines correlation joined to it)."""

_ROW = (C.SOURCE_FILE, C.LINE_NUMBER)


def unique_contents(files: list[InputFile]) -> tuple[list[InputFile], list[str]]:
    """``files`` without the later ones whose bytes equal an earlier one's, and a warning per copy."""
    by_size: dict[int, list[InputFile]] = defaultdict(list)
    for f in files:
        if f.path != STDIN and f.size:
            by_size[f.size].append(f)
    first: dict[str, str] = {}
    skip: dict[str, str] = {}
    for group in by_size.values():
        if len(group) < 2:
            continue
        for f in group:
            digest = file_sha256(f.path)
            if digest in first:
                skip[f.path] = first[digest]
            else:
                first[digest] = f.path
    kept = [f for f in files if f.path not in skip]
    warnings = [
        f"{path} has the same content as {orig}: read once (as {orig})" for path, orig in skip.items()
    ]
    return kept, warnings


def _pairs(events: pl.LazyFrame) -> pl.DataFrame:
    """``small, large``: pairs of files whose time spans overlap and that share a (host, daemon),
    the one with fewer events first (ties by name)."""
    spans = (
        events.group_by(C.SOURCE_FILE)
        .agg(
            pl.col(C.TIMESTAMP).min().alias("_t0"),
            pl.col(C.TIMESTAMP).max().alias("_t1"),
            pl.concat_str(pl.col(C.HOST).fill_null(""), pl.lit("\x1f"), pl.col(C.DAEMON).fill_null(""))
            .unique()
            .alias("_sources"),
            pl.len().alias("_n"),
        )
        .collect()
        .drop_nulls(["_t0", "_t1"])
    )
    if spans.height < 2:
        return pl.DataFrame(schema={"small": pl.String, "large": pl.String})
    a, b = pl.col(C.SOURCE_FILE), pl.col(f"{C.SOURCE_FILE}_b")
    first = (pl.col("_n") < pl.col("_n_b")) | ((pl.col("_n") == pl.col("_n_b")) & (a < b))
    return (
        spans.join(spans, how="cross", suffix="_b")
        .filter(
            first
            & (pl.col("_t0") <= pl.col("_t1_b"))
            & (pl.col("_t0_b") <= pl.col("_t1"))
            & (pl.col("_sources").list.set_intersection("_sources_b").list.len() > 0)
        )
        .select(a.alias("small"), b.alias("large"))
    )


_NARROW = (*COPY_KEY, *_ROW)


def _candidates(events: pl.LazyFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """The events of each pair's smaller file, and those of its larger file at the same time, host
    and daemon: memory in proportion to the smaller files (``mail.warn``), not to ``mail.log``."""
    narrow = events.select(*_NARROW, pl.col(C.ACCOUNT).is_null().alias("_anon"))
    small = narrow.filter(pl.col(C.SOURCE_FILE).is_in(pairs["small"].unique().implode())).collect()
    when = [C.TIMESTAMP, C.HOST, C.DAEMON]
    parts = [small]
    for large, group in pairs.group_by("large"):
        seeds = small.filter(pl.col(C.SOURCE_FILE).is_in(group["small"].implode())).select(when).unique()
        parts.append(
            narrow.filter(pl.col(C.SOURCE_FILE) == large[0])
            .join(seeds.lazy(), on=when, how="semi", nulls_equal=True)
            .collect()
        )
    return pl.concat(parts).unique(list(_ROW), keep="first")


def copies(events: pl.LazyFrame) -> pl.DataFrame:
    """``source_file, line_number`` of the events that copy an event of another file (see module doc)."""
    pairs = _pairs(events)
    if pairs.is_empty():
        return pl.DataFrame(schema={C.SOURCE_FILE: pl.String, C.LINE_NUMBER: pl.Int64})
    cand = _candidates(events, pairs)
    size = events.group_by(C.SOURCE_FILE).len("_size").collect()
    key = list(COPY_KEY)
    ranked = (
        cand.join(size, on=C.SOURCE_FILE)
        .sort(*_ROW)
        .with_columns(pl.int_range(pl.len()).over([*key, C.SOURCE_FILE]).alias("_n"))
        .with_columns(pl.col(C.SOURCE_FILE).n_unique().over([*key, "_n"]).alias("_files"))
        .filter(pl.col("_files") > 1)
        .sort("_anon", "_size", C.SOURCE_FILE, descending=[False, True, False])
        .with_columns(pl.int_range(pl.len()).over([*key, "_n"]).alias("_rank"))
    )
    return ranked.filter(pl.col("_rank") > 0).select(*_ROW).sort(*_ROW)


def drop_copies(path: Path) -> int:
    """Remove from the events Parquet at ``path`` the events :func:`copies` finds; returns how many."""
    events = pl.scan_parquet(path)
    drop = copies(events)
    if drop.is_empty():
        return 0
    tmp = path.with_suffix(".copies.parquet")
    events.join(drop.lazy(), on=list(_ROW), how="anti", maintain_order="left").sink_parquet(tmp)
    os.replace(tmp, path)
    return drop.height
