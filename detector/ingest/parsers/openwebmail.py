"""OpenWebMail: ``[pid] (<address>) <user> - login error - <reason>`` and ``userinfo error``
lines (after its ``Sat Nov 22 03:14:15 2026 - `` stamp).

The address is in the daemon's parentheses before the user; the user (verbatim) runs to the
daemon's `` - login error - `` / `` - userinfo error - ``; that wording twice is ``ambiguous_field``.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import EVENT, M, has, kind, lower_or_null, narrowed_columns
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_LINE = r"(?s)^\[\d+\] \(([0-9A-Fa-f:.]+)\) (.*?) - (login error|userinfo error) - (.*)$"


def claims() -> pl.Expr:
    return M.str.contains(r"^\[\d+\] \([0-9A-Fa-f:.]+\) ").fill_null(False) & (
        has(" - login error - ") | has(" - userinfo error - ")
    )


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    parts = M.str.extract_groups(_LINE).struct
    reason = parts.field("4")
    event = parts.field("1").is_not_null()
    unknown = reason.str.contains(r"(?i)no such user|doesn't exist").fill_null(False)
    columns = [
        pl.lit("openwebmail").alias(C.DAEMON),
        pl.lit(Service.WEBMAIL).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(unknown)
        .then(pl.lit(Outcome.UNKNOWN_USER))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(parts.field("2")).alias(C.ACCOUNT),
        canonical_ip(parts.field("1")).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        parts.field("3").alias(C.REASON),
        kind(
            [
                (event & repeated(M, " - login error - ", " - userinfo error - "), AMBIGUOUS),
                (event, EVENT),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="openwebmail",
        claims=claims,
        programs=r"^openwebmail",
        messages=r"^\[\d+\] \(",
        parse=parse,
        doc="OpenWebMail '(<address>) <user> - login error - ...' and 'userinfo error' lines.",
    )
)
