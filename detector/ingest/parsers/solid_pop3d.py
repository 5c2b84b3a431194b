"""solid-pop3d: ``<words> [user] <name> - <address>`` failure lines.

The daemon opens every line with its words and ends it with `` - <address>``; the name (the
client's, verbatim) runs between them, so the outcome is read from the start, the address from
the end, and a name holding `` - `` or any daemon wording moves neither.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip
from detector.ingest.parsers._common import EVENT, M, kind, lower_or_null, narrowed_columns, program_starts
from detector.ingest.registry import LineParser, register
from detector.schema import Action, C, Outcome, Service

_LINE = (
    r"(?s)^(authentication failed: no such user: |authentication failed: can't map user name: |"
    r"authentication failed for (?:mapped )?user |APOP authentication failed for user |"
    r"can't find APOP secret for user |)(.*?)(?:^| )?(root login not allowed )?- ([0-9A-Fa-f:.]+)$"
)


def claims() -> pl.Expr:
    return program_starts("solid-pop3d")


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    parts = M.str.extract_groups(_LINE).struct
    words, name, root = parts.field("1"), parts.field("2"), parts.field("3")
    known = (words.str.len_bytes() > 0).fill_null(False) | root.is_not_null()
    unknown = words.str.contains("no such user|can't map|can't find APOP").fill_null(False)
    columns = [
        pl.lit("solid-pop3d").alias(C.DAEMON),
        pl.lit(Service.POP3).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(root.is_not_null())
        .then(pl.lit(Outcome.POLICY))
        .when(unknown)
        .then(pl.lit(Outcome.UNKNOWN_USER))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(pl.when(root.is_not_null()).then(pl.lit("root")).otherwise(name)).alias(C.ACCOUNT),
        canonical_ip(parts.field("4")).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(known).then(pl.coalesce(root, words).str.strip_chars(" :")).alias(C.REASON),
        kind([(known, EVENT)]),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="solid_pop3d",
        claims=claims,
        programs=r"^solid-pop3d",
        parse=parse,
        doc="solid-pop3d 'authentication failed ... <user> - <address>' and 'root login not allowed' lines.",
    )
)
