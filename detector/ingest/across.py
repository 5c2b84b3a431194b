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

The same pass joins the two lines of one Dovecot failure that a rotation at that very second put
in different files (``auth`` line in ``mail.log.1``, ``-login`` line in ``mail.log``), by the
rules of :mod:`detector.ingest.correlate`: same host and session id, or, where one line has no
session id, same host, address and account with the login line within
:data:`detector.ingest.correlate.LOGIN_WINDOW` after. The ``auth`` event takes service, TLS,
method, local address, port, session and attempts; the login event becomes ``noise:merged``.
Dovecot pairs are made first, as within a file, so a Postfix failure only takes an ``auth``
line no login line claimed.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import polars as pl

from detector.ingest.correlate import LOGIN_WINDOW, spread_attempts
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


LOGIN_FILL = {
    C.SERVICE: "_svc",
    C.TLS: "_tls",
    C.AUTH_METHOD: "_method",
    C.LOCAL_IP: "_lip",
    C.SOURCE_PORT: "_port",
    C.SESSION_ID: "_sess",
    C.ATTEMPTS: "_att",
}
"""Columns an ``auth`` event takes from the login line paired with it, and their names in the pairs."""


def dovecot_pairs_across_files(events: pl.LazyFrame) -> pl.DataFrame:
    """``source_file, line_number`` of each Dovecot ``auth`` failure paired with the ``-login``
    failure line of the same attempt in another file (``_d_file``, ``_d_line``), and the
    :data:`LOGIN_FILL` values it takes."""
    dovecot_failure = _failed_login("dovecot")
    auth, login = pl.collect_all(
        [
            events.filter(dovecot_failure & pl.col(C.SERVICE).is_null()).select(
                *_KEY,
                C.TIMESTAMP,
                pl.col(C.HOST).fill_null("").alias("_h"),
                C.SESSION_ID,
                C.SOURCE_IP,
                C.ACCOUNT,
            ),
            events.filter(
                dovecot_failure & pl.col(C.SERVICE).is_not_null() & (pl.col(C.REASON) == "auth failed")
            ).select(
                pl.col(C.SOURCE_FILE).alias("_d_file"),
                pl.col(C.LINE_NUMBER).alias("_d_line"),
                pl.col(C.TIMESTAMP).alias("_d_ts"),
                pl.col(C.HOST).fill_null("").alias("_h"),
                pl.col(C.SESSION_ID).alias("_d_session"),
                C.SOURCE_IP,
                C.ACCOUNT,
                *[pl.col(c).alias(a) for c, a in LOGIN_FILL.items()],
            ),
        ]
    )
    schema = pl.Schema(
        {C.SOURCE_FILE: pl.String, C.LINE_NUMBER: pl.Int64, "_d_file": pl.String, "_d_line": pl.Int64}
        | {a: login.schema[a] for a in LOGIN_FILL.values()}
    )
    if auth.is_empty() or login.is_empty():
        return pl.DataFrame(schema=schema)
    other_file = pl.col(C.SOURCE_FILE) != pl.col("_d_file")
    by_session = auth.filter(pl.col(C.SESSION_ID).is_not_null()).join(
        login.filter(pl.col("_d_session").is_not_null()),
        left_on=["_h", C.SESSION_ID],
        right_on=["_h", "_d_session"],
        how="inner",
    )
    by_session = by_session.filter(other_file)
    gap = pl.col("_d_ts") - pl.col(C.TIMESTAMP)
    # the address fallback is for lines without a session id, as within a file
    near = (
        auth.filter(pl.col(C.ACCOUNT).is_not_null())
        .join(login.filter(pl.col(C.ACCOUNT).is_not_null()), on=["_h", C.SOURCE_IP, C.ACCOUNT], how="inner")
        .filter(
            other_file
            & (pl.col(C.SESSION_ID).is_null() | pl.col("_d_session").is_null())
            & (gap >= pl.duration(seconds=0))
            & (gap <= LOGIN_WINDOW)
        )
        .sort(gap, *_KEY, "_d_file", "_d_line")
        .unique(subset=list(_KEY), keep="first", maintain_order=True)
    )
    pairs = pl.concat(
        [
            by_session.select(*_KEY, C.TIMESTAMP, *schema.names()[2:]),
            near.select(*_KEY, C.TIMESTAMP, *schema.names()[2:]),
        ],
        how="vertical_relaxed",
    ).unique(subset=list(_KEY), keep="first", maintain_order=True)
    if pairs.is_empty():
        return pl.DataFrame(schema=schema)
    # one login line standing for N attempts and k auth lines: the last carries the remainder
    k = pl.len().over("_d_file", "_d_line")
    i = pl.int_range(pl.len()).over("_d_file", "_d_line")
    pairs = pairs.sort(C.TIMESTAMP, *_KEY).with_columns(
        spread_attempts(pl.col("_att"), k, i).cast(schema["_att"]).alias("_att")
    )
    return pairs.select(schema.names())


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
    """Apply :func:`dovecot_pairs_across_files`, then :func:`pairs_across_files` to the events
    Parquet at ``path``; returns the events merged."""
    events = pl.scan_parquet(path)
    dovecot = dovecot_pairs_across_files(events)
    # an auth line paired with its login line has a service now: Postfix failures do not take it
    paired = dovecot.select(*_KEY).lazy()
    pairs = pairs_across_files(events.join(paired, on=list(_KEY), how="anti", maintain_order="left"))
    if pairs.is_empty() and dovecot.is_empty():
        return 0
    fill = pl.concat(
        [
            pairs.select(*_KEY, pl.col(C.ACCOUNT).alias("_acc"), pl.col(C.REASON).alias("_why")),
            dovecot.select(*_KEY, *LOGIN_FILL.values()),
        ],
        how="diagonal_relaxed",
    )
    drop = pl.concat([pairs.select("_d_file", "_d_line"), dovecot.select("_d_file", "_d_line")]).select(
        pl.col("_d_file").alias(C.SOURCE_FILE), pl.col("_d_line").alias(C.LINE_NUMBER)
    )
    columns = events.collect_schema().names()
    tmp = path.with_suffix(".across.parquet")
    (
        events.join(drop.lazy(), on=list(_KEY), how="anti", maintain_order="left")
        .join(fill.lazy(), on=list(_KEY), how="left", maintain_order="left")
        .with_columns(
            pl.coalesce(C.ACCOUNT, "_acc").alias(C.ACCOUNT),
            pl.coalesce("_why", C.REASON).alias(C.REASON),
            *[pl.coalesce(a, c).alias(c) for c, a in LOGIN_FILL.items()],
        )
        .select(columns)
        .sink_parquet(tmp)
    )
    os.replace(tmp, path)
    return pairs.height + dovecot.select("_d_file", "_d_line").n_unique()
