"""Kerio Connect security log: ``Failed SMTP login from <address> with SASL method <M>.``,
``Failed IMAP login from <address>, ...`` and ``Administration login into Web Administration
from <address> failed: ...``.

Kerio's own words open the line and the address follows them at once; nothing the client types
comes before it.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip
from detector.ingest.parsers._common import EVENT, M, first, kind, mechanism, narrowed_columns
from detector.ingest.registry import LineParser, register
from detector.schema import Action, C, Outcome, Service

_FAILED = r"^Failed (SMTP|IMAP|POP3|HTTP|XMPP|LDAP) login from ([0-9A-Fa-f:.]+?)\.?(?:$|[ ,])"
_ADMIN = r"^Administration login into Web Administration from ([0-9A-Fa-f:.]+?) failed"
_SERVICES = {"SMTP": Service.SUBMISSION, "IMAP": Service.IMAP, "POP3": Service.POP3, "HTTP": Service.WEBMAIL}


def claims() -> pl.Expr:
    return M.str.contains(
        r"^(?:Failed [A-Z0-9]+ login from |Administration login into Web Administration from )"
    ).fill_null(False)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed = M.str.extract_groups(_FAILED).struct
    admin = M.str.extract(_ADMIN, 1)
    is_failed = failed.field("1").is_not_null()
    is_admin = admin.is_not_null()
    columns = [
        pl.lit("kerio").alias(C.DAEMON),
        first(
            [
                (is_failed, failed.field("1").replace_strict(_SERVICES, default=None)),
                (is_admin, Service.WEBMAIL),
            ]
        )
        .cast(pl.String)
        .alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(is_admin).then(pl.lit(Outcome.POLICY)).otherwise(pl.lit(Outcome.FAILURE)).alias(C.OUTCOME),
        canonical_ip(pl.coalesce(failed.field("2"), admin)).alias(C.SOURCE_IP),
        pl.when(is_failed)
        .then(
            mechanism(M.str.extract(r"^Failed SMTP login from \S+ with SASL method ([A-Za-z0-9-]+)\.?$", 1))
        )
        .alias(C.AUTH_METHOD),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(is_admin)
        .then(pl.lit("administration login refused"))
        .otherwise(pl.lit("login failed"))
        .alias(C.REASON),
        kind([(is_failed | is_admin, EVENT)]),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="kerio",
        claims=claims,
        programs=r"^kerio",
        messages=r"^(?:Failed [A-Z0-9]+ login from |Administration login into Web Administration from )",
        parse=parse,
        doc="Kerio Connect security log 'Failed SMTP/IMAP/POP3 login from <address>' and refused administration logins.",
    )
)
