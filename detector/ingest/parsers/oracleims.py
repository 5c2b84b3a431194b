"""Oracle Communications Messaging Server (iPlanet/Sun) connection log records:
``<co ts=".." pi=".." sc="tcp_local" dr="+" ac="U" tr="TCP|<local>|<port>|<remote>|<port>"
ap="SMTP" mi="Bad password" us="<user>" di="535 ..."/>``.

The daemon writes ``tr`` (the addresses) and ``mi`` (its verdict) before ``us`` (the name the
client gave, verbatim); a record with any of these keys twice is ``ambiguous_field``.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import EVENT, M, first, has, kind, lower_or_null, narrowed_columns
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service


def claims() -> pl.Expr:
    return M.str.starts_with("<co ").fill_null(False) & has(' tr="')


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    tr = M.str.extract_groups(r' tr="TCP\|([0-9A-Fa-f:.]+)\|(\d+)\|([0-9A-Fa-f:.]+)\|(\d+)"').struct
    verdict = M.str.extract(r' mi="([^"]*)"', 1)
    failed = (verdict == "Bad password").fill_null(False)
    ok = verdict.str.starts_with("Authentication successful").fill_null(False)
    port = tr.field("2")
    columns = [
        pl.lit("oracleims").alias(C.DAEMON),
        first([(port.is_in(["465", "587"]), Service.SUBMISSION), (port.is_not_null(), Service.SMTP)])
        .cast(pl.String)
        .alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(ok).then(pl.lit(Outcome.SUCCESS)).otherwise(pl.lit(Outcome.FAILURE)).alias(C.OUTCOME),
        lower_or_null(M.str.extract(r'(?s) us="(.*)" di="', 1)).alias(C.ACCOUNT),
        canonical_ip(tr.field("3")).alias(C.SOURCE_IP),
        tr.field("4").cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        canonical_ip(tr.field("1")).alias(C.LOCAL_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        verdict.alias(C.REASON),
        kind(
            [
                ((failed | ok) & repeated(M, ' tr="', ' mi="', ' us="', ' di="'), AMBIGUOUS),
                ((failed | ok) & tr.field("3").is_null(), "unparsed"),
                (failed | ok, EVENT),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="oracleims",
        claims=claims,
        programs=r"^(?:oracleims|ims|mshttpd|tcp_)",
        messages=r"^<co ",
        parse=parse,
        doc="Oracle Communications Messaging Server connection records: 'Bad password' failures and 'Authentication successful' logins.",
    )
)
