"""cucipop (Cubic Circle POP3): ``authentication failure <user> <address>`` lines."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import after, canonical_ip
from detector.ingest.parsers._common import EVENT, M, kind, lower_or_null, narrowed_columns, program_starts
from detector.ingest.registry import LineParser, register
from detector.schema import Action, C, Outcome, Service

_FAILURE = "authentication failure "


def claims() -> pl.Expr:
    return program_starts("cucipop")


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed = M.str.starts_with(_FAILURE).fill_null(False)
    rest = after(M, _FAILURE).str.strip_chars()
    parts = M.str.extract_groups(r"^authentication failure (?:(\S+) )?(\S+)\s*$")
    lf = lf.with_columns(parts.alias("_p"))
    columns = [
        pl.lit("cucipop").alias(C.DAEMON),
        pl.lit(Service.POP3).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        lower_or_null(pl.col("_p").struct.field("1")).alias(C.ACCOUNT),
        canonical_ip(pl.coalesce(pl.col("_p").struct.field("2"), rest)).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("authentication failure").alias(C.REASON),
        kind([(failed, EVENT)]),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="cucipop",
        claims=claims,
        programs=r"^cucipop",
        parse=parse,
        doc="cucipop POP3 'authentication failure <user> <address>' lines.",
    )
)
