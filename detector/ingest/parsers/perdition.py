"""perdition (IMAP/POP3 proxy): ``Auth: <client>:<port>-><server>:<port> client-secure=..
authorisation_id=.. authentication_id="<user>" server=".." protocol=.. server-secure=..
status="ok|failed: <reason>"``.

The client address follows the daemon's ``Auth: `` at once; the status ends the line (read from
the end); a second ``status=`` or ``authentication_id=`` (a name carrying one) is
``ambiguous_field``.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    kind,
    lower_or_null,
    narrowed_columns,
    program_starts,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service


def claims() -> pl.Expr:
    return program_starts("perdition")


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    head = M.str.extract_groups(r"^Auth: ([0-9A-Fa-f:.]+):(\d+)->([0-9A-Fa-f:.]+):(\d+) ").struct
    status = M.str.extract(r' status="([^"]*)"\s*$', 1)
    auth = head.field("1").is_not_null() & status.is_not_null()
    pop = PROGRAM.str.contains("pop", literal=True).fill_null(False)
    columns = [
        pl.lit("perdition").alias(C.DAEMON),
        pl.when(pop).then(pl.lit(Service.POP3)).otherwise(pl.lit(Service.IMAP)).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(status == "ok")
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(M.str.extract(r'(?s) authentication_id="(.*)" server="', 1)).alias(C.ACCOUNT),
        canonical_ip(head.field("1")).alias(C.SOURCE_IP),
        head.field("2").cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        canonical_ip(head.field("3")).alias(C.LOCAL_IP),
        pl.when(PROGRAM.str.ends_with("s").fill_null(False)).then(pl.lit(True)).alias(C.TLS),
        pl.lit(1).alias(C.ATTEMPTS),
        status.alias(C.REASON),
        kind(
            [
                (auth & repeated(M, " status=", " authentication_id=", " server=", "Auth: "), AMBIGUOUS),
                (auth, EVENT),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="perdition",
        claims=claims,
        programs=r"^perdition",
        parse=parse,
        doc="perdition IMAP/POP3 proxy 'Auth: <client>-><server> ... status=' lines.",
    )
)
