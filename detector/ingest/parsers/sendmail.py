"""Sendmail (``sendmail``/``sm-mta``): SMTP AUTH successes (``AUTH=server``) and failures
(``AUTH failure (MECH): ...``)."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import between, canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    M,
    by_words,
    has,
    kind,
    lower_or_null,
    mechanism,
    narrowed_columns,
    program_starts,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_OK = "AUTH=server, relay="
_FAILED = "AUTH failure ("

_OUTCOMES = (
    ("user not found", Outcome.UNKNOWN_USER),
    ("no such user", Outcome.UNKNOWN_USER),
    ("temporary failure", Outcome.TEMPFAIL),
    ("(-4)", Outcome.TEMPFAIL),
    ("disabled", Outcome.DISABLED),
    ("expired", Outcome.DISABLED),
)


def claims() -> pl.Expr:
    return program_starts("sendmail", "sm-mta", "sm-msp", "sm-accepting")


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    # success or failure from the daemon's own first words (``[qid: ]AUTH=server, relay=`` /
    # ``AUTH failure (MECH): ``); the user name it writes later is the client's, verbatim
    ok = M.str.contains(r"^(?:\w+: )?AUTH=server, relay=").fill_null(False)
    failed = M.str.contains(r"^(?:\w+: )?AUTH failure \(").fill_null(False)
    # ``QID: [name ][<ip>]( (may be forged))?: possible SMTP attack: command=AUTH, count=N``:
    # the client tried AUTH N times in one session (sendmail's own words, no client text)
    attack = M.str.extract_groups(
        r"^(?:\w+: )?(?:\S+ )?\[([0-9A-Fa-f:.]+)\](?: \(may be forged\))?: possible SMTP attack: command=AUTH, count=(\d+)$"
    )
    attacked = attack.struct.field("1").is_not_null()
    ambiguous = repeated(M, "relay=", "user=", "authid=", "AUTH failure (", "AUTH=server")
    reason = pl.when(failed).then(
        M.str.extract(r"^(?:\w+: )?AUTH failure \([^)]*\): (.*?), (?:user=|relay=)", 1)
    )
    columns = [
        pl.lit("sendmail").alias(C.DAEMON),
        pl.lit(Service.SMTP).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(ok)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(by_words(pl.coalesce(reason, pl.lit("")), _OUTCOMES, Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(
            pl.when(ok).then(between(M, "authid=", ", mech=")).otherwise(between(M, "user=", ", relay="))
        ).alias(C.ACCOUNT),
        canonical_ip(
            pl.when(attacked)
            .then(attack.struct.field("1"))
            .otherwise(M.str.extract(r"relay=(?:\S* )?\[([^\]]*)\]", 1))
        ).alias(C.SOURCE_IP),
        mechanism(pl.when(ok).then(between(M, "mech=", ",")).otherwise(between(M, _FAILED, ")"))).alias(
            C.AUTH_METHOD
        ),
        pl.when(attacked)
        .then(attack.struct.field("2").cast(pl.Int64, strict=False))
        .otherwise(1)
        .alias(C.ATTEMPTS),
        pl.when(attacked).then(pl.lit("too many AUTH commands")).otherwise(reason).alias(C.REASON),
        kind(
            [
                ((ok | failed) & ambiguous, AMBIGUOUS),
                (ok | failed | attacked, EVENT),
                (has("STARTTLS") | has("TLS handshake") | has("tls_"), "noise:tls"),
                (has("reject=") | has("Relaying denied") | has("User unknown") | has("DSN:"), "noise:reject"),
                (has("from=<") | has("to=<") | has("stat=") | has("Message accepted"), "noise:delivery"),
                (
                    has("did not issue")
                    | has("lost input channel")
                    | has("timeout waiting")
                    | has("collect: ")
                    | has("Connection rate limit"),
                    "noise:connect",
                ),
                (has("AUTH warning") | has("AUTH: available"), "noise:daemon"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="sendmail",
        claims=claims,
        programs=r"^(?:sendmail|sm-mta|sm-msp|sm-accepting)",
        parse=parse,
        doc="Sendmail 'AUTH=server, relay=..., authid=' successes and 'AUTH failure (MECH): ...' failures.",
    )
)
