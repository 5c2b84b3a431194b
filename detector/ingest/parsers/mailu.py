"""Mailu admin (Flask) log: authentication attempts refused by the rate limiter.

Mailu's front is nginx (see :mod:`.nginx_mail`); its admin container logs
``[time] WARNING in limiter: Authentication attempt from <ip> [for <user>] has been rate-limited.``
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    has,
    kind,
    lower_or_null,
    narrowed_columns,
    program_starts,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome

_FLASK = r"^(?:\[[^\]]+\] )?(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) in [\w.]+: "
_LIMITED = "has been rate-limited"


def claims() -> pl.Expr:
    flask = M.str.contains(_FLASK).fill_null(False)
    return program_starts("mailu") | ((PROGRAM.is_null() | program_starts("admin")) & flask)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    limited = has("Authentication attempt from ") & has(_LIMITED)
    # the name (the client's, verbatim) runs from `` for `` to the daemon's closing words
    parts = M.str.extract_groups(
        r"(?s)Authentication attempt from (\S+?)(?: for (.+))? has been rate-limited\.?$"
    )
    ambiguous = repeated(M, "Authentication attempt from ", _LIMITED)
    lf = lf.with_columns(parts.alias("_p"))
    columns = [
        pl.lit("mailu").alias(C.DAEMON),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.POLICY).alias(C.OUTCOME),
        lower_or_null(pl.col("_p").struct.field("2")).alias(C.ACCOUNT),
        canonical_ip(pl.col("_p").struct.field("1")).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("rate-limited").alias(C.REASON),
        kind(
            [
                (limited & ambiguous, AMBIGUOUS),
                (limited & pl.col("_p").struct.field("1").is_null(), "unparsed"),
                (limited, EVENT),
                (has("Invalid user ") | has("undecodable"), "noise:bad_request"),
                (M.str.contains(r"(?i)^(?:\[[^\]]+\] )?(?:DEBUG|INFO) in ").fill_null(False), "noise:info"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="mailu",
        claims=claims,
        programs=r"^(?:mailu|admin)",
        parse=parse,
        doc="Mailu admin 'Authentication attempt from <ip> has been rate-limited' lines (login refused by policy).",
    )
)
