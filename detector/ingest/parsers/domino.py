"""HCL (IBM, Lotus) Domino SMTP: ``smtp: <user> [<address>] authentication failure using internet
password`` and the older ``SMTP Server: Authentication failed for user <user> ; connecting host
<address>``.

The user (the client's, verbatim, spaces included) comes first; the address is the one the
daemon's closing words follow, read from the end of the line.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import EVENT, PROGRAM, M, has, kind, lower_or_null, narrowed_columns
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_NEW = "authentication failure using internet password"
_OLD = "Authentication failed for user "
_NEW_LINE = (
    r"(?s)^(?:.*?\bsmtp: )?(.*) \[?([0-9A-Fa-f:.]+)\]? authentication failure using internet password\s*$"
)
_OLD_LINE = r"(?s)Authentication failed for user (.*) ; connecting host \[?([0-9A-Fa-f:.]+)\]?\s*$"


def claims() -> pl.Expr:
    domino = PROGRAM.str.contains(r"^(?:smtp|domino|SMTP)").fill_null(False) | PROGRAM.is_null()
    return domino & (has(_NEW) | (has(_OLD) & has(" ; connecting host ")))


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    new = M.str.extract_groups(_NEW_LINE).struct
    old = M.str.extract_groups(_OLD_LINE).struct
    user = pl.coalesce(new.field("1"), old.field("1"))
    address = pl.coalesce(new.field("2"), old.field("2"))
    event = has(_NEW) | has(_OLD)
    columns = [
        pl.lit("domino").alias(C.DAEMON),
        pl.lit(Service.SMTP).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.lit(Outcome.FAILURE).alias(C.OUTCOME),
        lower_or_null(user).alias(C.ACCOUNT),
        canonical_ip(address).alias(C.SOURCE_IP),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.lit("authentication failure").alias(C.REASON),
        kind(
            [
                (event & repeated(M, _NEW, _OLD, " ; connecting host "), AMBIGUOUS),
                (event & address.is_null(), "unparsed"),
                (event, EVENT),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="domino",
        claims=claims,
        programs=r"^(?:smtp|domino|SMTP)",
        parse=parse,
        doc="HCL Domino SMTP 'authentication failure using internet password' and 'Authentication failed for user' lines.",
    )
)
