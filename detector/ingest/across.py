"""Joins across input files: a Postfix SASL failure and the Dovecot ``auth`` line naming its account.

Inside one file the correlation stage joins the two lines of one attempt (see
:mod:`detector.ingest.correlate`). A common layout puts them in different files: Postfix logs to
syslog (``mail.log``) while Dovecot writes its own ``log_path`` (``dovecot.log``). Each file then
yields one failure event for the same attempt: Postfix's without the account, Dovecot's ``auth``
line with it and no service. This pass runs once over the written events, after every input:
it pairs each such Postfix failure with the nearest Dovecot ``auth`` failure of the same client
address from another file (within :data:`WINDOW`, same host when both name one), one to one;
the Postfix event takes the account and the passdb's reason, the Dovecot event becomes
``noise:merged``. Only the narrow candidate columns are held in memory; the events file is
rewritten by a streaming join when something was paired.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import polars as pl

from detector.schema import C, Outcome

WINDOW = timedelta(seconds=2)
"""Largest time between the two lines of one attempt in different files."""

_KEY = (C.SOURCE_FILE, C.LINE_NUMBER)
PAIRS_SCHEMA = pl.Schema(
    {
        C.SOURCE_FILE: pl.String,
        C.LINE_NUMBER: pl.Int64,
        "_d_file": pl.String,
        "_d_line": pl.Int64,
        C.ACCOUNT: pl.String,
        C.REASON: pl.String,
    }
)


def _failed_login(daemon: str) -> pl.Expr:
    return (
        (pl.col(C.DAEMON) == daemon)
        & (pl.col(C.ACTION) == "login")
        & pl.col(C.OUTCOME).is_in(Outcome.FAILED)
        & pl.col(C.SOURCE_IP).is_not_null()
    )


def pairs_across_files(events: pl.LazyFrame) -> pl.DataFrame:
    """``source_file, line_number`` of each Postfix failure, the Dovecot event paired with it
    (``_d_file``, ``_d_line``), and the ``account`` and ``reason`` it takes."""
    postfix, dovecot = pl.collect_all(
        [
            events.filter(_failed_login("postfix") & pl.col(C.ACCOUNT).is_null()).select(
                *_KEY, C.TIMESTAMP, C.SOURCE_IP, C.HOST
            ),
            events.filter(
                _failed_login("dovecot") & pl.col(C.SERVICE).is_null() & pl.col(C.ACCOUNT).is_not_null()
            ).select(
                pl.col(C.SOURCE_FILE).alias("_d_file"),
                pl.col(C.LINE_NUMBER).alias("_d_line"),
                pl.col(C.TIMESTAMP).alias("_d_ts"),
                C.SOURCE_IP,
                pl.col(C.HOST).alias("_d_host"),
                C.ACCOUNT,
                C.REASON,
            ),
        ]
    )
    if postfix.is_empty() or dovecot.is_empty():
        return pl.DataFrame(schema=PAIRS_SCHEMA)
    cand = postfix.join(dovecot, on=C.SOURCE_IP, how="inner").filter(
        (pl.col(C.SOURCE_FILE) != pl.col("_d_file"))
        & ((pl.col(C.TIMESTAMP) - pl.col("_d_ts")).abs() <= WINDOW)
        & (pl.col(C.HOST).is_null() | pl.col("_d_host").is_null() | (pl.col(C.HOST) == pl.col("_d_host")))
    )
    cand = cand.with_columns((pl.col(C.TIMESTAMP) - pl.col("_d_ts")).abs().alias("_gap")).sort(
        "_gap", C.TIMESTAMP, *_KEY, "_d_file", "_d_line"
    )
    # one to one: each Postfix failure takes its nearest Dovecot line, each Dovecot line serves once
    cand = cand.unique(subset=list(_KEY), keep="first", maintain_order=True)
    cand = cand.unique(subset=["_d_file", "_d_line"], keep="first", maintain_order=True)
    return cand.select(PAIRS_SCHEMA.names())


def join_across_files(path: Path) -> int:
    """Apply :func:`pairs_across_files` to the events Parquet at ``path``; returns the events merged."""
    events = pl.scan_parquet(path)
    pairs = pairs_across_files(events)
    if pairs.is_empty():
        return 0
    fill = pairs.select(*_KEY, pl.col(C.ACCOUNT).alias("_acc"), pl.col(C.REASON).alias("_why"))
    drop = pairs.select(pl.col("_d_file").alias(C.SOURCE_FILE), pl.col("_d_line").alias(C.LINE_NUMBER))
    columns = events.collect_schema().names()
    tmp = path.with_suffix(".across.parquet")
    (
        events.join(drop.lazy(), on=list(_KEY), how="anti", maintain_order="left")
        .join(fill.lazy(), on=list(_KEY), how="left", maintain_order="left")
        .with_columns(
            pl.coalesce(C.ACCOUNT, "_acc").alias(C.ACCOUNT),
            pl.coalesce("_why", C.REASON).alias(C.REASON),
        )
        .select(columns)
        .sink_parquet(tmp)
    )
    os.replace(tmp, path)
    return pairs.height
