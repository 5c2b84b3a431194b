"""Cyrus IMAP/POP3: ``login:`` successes and ``badlogin:`` failures (SASL or plaintext)."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import after, before, between, canonical_ip
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    by_words,
    has,
    kind,
    lower_or_null,
    mechanism,
    narrowed_columns,
)
from detector.ingest.registry import LineParser, register
from detector.schema import Action, C, Outcome, Service

_PROGRAMS = r"^(?:imaps?|pop3s?|sieve|timsieved)$"
"""Bare program names of Cyrus services; anything under ``cyrus/`` is claimed too."""


def claims() -> pl.Expr:
    cyrus_prog = PROGRAM.str.contains(_PROGRAMS).fill_null(False)
    badlogin = M.str.starts_with("badlogin: ").fill_null(False)
    return PROGRAM.str.starts_with("cyrus").fill_null(False) | cyrus_prog | badlogin


_OUTCOMES = (
    ("user not found", Outcome.UNKNOWN_USER),
    ("no such user", Outcome.UNKNOWN_USER),
    ("account disabled", Outcome.DISABLED),
    ("account locked", Outcome.DISABLED),
    ("temporary failure", Outcome.TEMPFAIL),
    ("try again later", Outcome.TEMPFAIL),
    ("not authorized", Outcome.POLICY),
)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    bad = M.str.starts_with("badlogin: ").fill_null(False)
    good = M.str.starts_with("login: ").fill_null(False) & has("User logged in")
    rest = after(M, "] ")
    tok1 = before(rest, " ")
    rest2 = after(rest, " ")
    tok2 = before(rest2, " ")
    # ``badlogin: <host> [<ip>] <mech> [<user>] <reason>``: the user (the client's, verbatim,
    # spaces included) runs from the mechanism to the last SASL reason (``SASL(-N): ...`` or
    # ``[...]``), which the daemon writes at the end
    parts = M.str.extract_groups(
        r"(?s)^badlogin: (?:\S+ )?\[[^\]]*\] \S+ (?:(.+) )?(SASL\(-?\d+\): [^\[\]]*|\[[^\[]*\])$"
    )
    named, tail = parts.struct.field("1"), parts.struct.field("2")
    bad_user = (
        pl.when(named.str.starts_with("(") & named.str.ends_with(")"))
        .then(named.str.slice(1, named.str.len_chars() - 2))
        .otherwise(named)
    )
    mech_raw = pl.when(bad).then(tok1).when(good).then(tok2)
    mech_name = before(mech_raw, "+")
    mech = (
        pl.when(mech_name.str.to_lowercase() == "plaintext")
        .then(pl.lit("LOGIN"))
        .otherwise(mechanism(mech_name))
    )
    reason = pl.when(bad).then(
        pl.when(tail.str.starts_with("["))
        .then(tail.str.strip_prefix("[").str.strip_suffix("]"))
        .otherwise(tail)
    )
    service = (
        pl.when(PROGRAM.str.contains("pop3", literal=True).fill_null(False))
        .then(pl.lit(Service.POP3))
        .when(PROGRAM.str.contains("sieve", literal=True).fill_null(False))
        .then(pl.lit(Service.MANAGESIEVE))
        .otherwise(pl.lit(Service.IMAP))
    )
    columns = [
        pl.lit("cyrus").alias(C.DAEMON),
        service.alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(good)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(by_words(pl.coalesce(reason, pl.lit("")), _OUTCOMES, Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(pl.when(bad).then(bad_user).when(good).then(tok1)).alias(C.ACCOUNT),
        canonical_ip(between(M, "[", "]")).alias(C.SOURCE_IP),
        mech.alias(C.AUTH_METHOD),
        pl.when(
            mech_raw.str.contains("+TLS", literal=True).fill_null(False)
            | PROGRAM.str.ends_with("s").fill_null(False)
        )
        .then(pl.lit(True))
        .alias(C.TLS),
        between(M, "SessionId=<", ">").alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        kind(
            [
                (bad | good, EVENT),
                (has("TLS negotiation failed") | has("starttls") | has("SSL_accept"), "noise:tls"),
                (
                    has("accepted connection") | has("Connection reset") | has("Lost connection"),
                    "noise:connect",
                ),
                (
                    has("imapd:Loading hard-coded") | has("skiplist") | has("seen_db") | has("USAGE"),
                    "noise:daemon",
                ),
                (
                    has("open: user ") | has("Expunged") | has("Delivered") | has("duplicate_"),
                    "noise:mailbox",
                ),
                (M.str.starts_with("Logout: ") | has("autologout"), "noise:logout"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="cyrus",
        claims=claims,
        programs=r"^(?:cyrus|imap|pop3|sieve|timsieved)",
        messages=r"^badlogin: ",
        parse=parse,
        doc="Cyrus IMAP/POP3 'login: ... User logged in' successes and 'badlogin:' failures.",
    )
)
