"""UW IMAP (``imapd``/``ipop3d``): ``Login``/``Authenticated`` successes, ``Login failed`` and
``AUTHENTICATE ... failure`` failures, ``Logout``/``Autologout`` session ends."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import before, between, canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    has,
    kind,
    lower_or_null,
    mechanism,
    narrowed_columns,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service


def claims() -> pl.Expr:
    return PROGRAM.is_in(["imapd", "ipop3d", "ipop2d", "imapd-ssl", "ipop3d-ssl"]).fill_null(False)


def _starts(text: str) -> pl.Expr:
    return M.str.starts_with(text).fill_null(False)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed = _starts("Login failed ") | _starts("Login excessive login failures ")
    disabled = _starts("Login disabled ")
    auth_failed = M.str.contains(r"^AUTHENTICATE \S+ failure ").fill_null(False)
    success = _starts("Login user=") | _starts("Authenticated user=")
    session_end = _starts("Logout user=") | _starts("Autologout user=")
    login = failed | disabled | auth_failed | success
    # imapd writes ``... user=%.80s [auth=%.80s] host=<name> [<ip>]``: user and auth are the
    # client's words, verbatim; the address is the bracketed one that ends the host field
    with_auth = failed | disabled
    ambiguous = repeated(M, " host=", " auth=", "user=")
    address = M.str.extract(r" host=(?:\S* )?\[([0-9A-Fa-f:.]+)\](?: [a-z]+=\S+)*$", 1)
    service = (
        pl.when(PROGRAM.str.contains("pop", literal=True).fill_null(False))
        .then(pl.lit(Service.POP3))
        .otherwise(pl.lit(Service.IMAP))
    )
    method = pl.coalesce(M.str.extract(r"^AUTHENTICATE (\S+) failure", 1), M.str.extract(r" mech=(\S+)", 1))
    columns = [
        pl.lit("uwimap").alias(C.DAEMON),
        service.alias(C.SERVICE),
        pl.when(session_end).then(pl.lit(Action.LOGOUT)).otherwise(pl.lit(Action.LOGIN)).alias(C.ACTION),
        pl.when(success)
        .then(pl.lit(Outcome.SUCCESS))
        .when(disabled)
        .then(pl.lit(Outcome.DISABLED))
        .when(login)
        .then(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(
            pl.when(with_auth).then(between(M, "user=", " auth=")).otherwise(between(M, "user=", " host="))
        ).alias(C.ACCOUNT),
        canonical_ip(address).alias(C.SOURCE_IP),
        pl.when(method.is_not_null()).then(mechanism(method)).alias(C.AUTH_METHOD),
        pl.when(PROGRAM.str.ends_with("-ssl").fill_null(False)).then(pl.lit(True)).alias(C.TLS),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(failed | disabled | auth_failed).then(before(before(M, " user="), " host=")).alias(C.REASON),
        kind(
            [
                ((login | session_end) & ambiguous, AMBIGUOUS),
                ((login | session_end) & address.is_null(), "unparsed"),
                (login | session_end, EVENT),
                (has(" service init from "), "noise:connect"),
                # PAM's own line under imapd's name: imapd's ``Login failed`` of the same attempt is the event
                (_starts("pam_unix("), "noise:pam"),
                (
                    _starts("Command stream end of file")
                    | _starts("Killed ")
                    | _starts("Kiss of death")
                    | _starts("Connection reset")
                    | _starts("Unexpected client disconnect")
                    | _starts("Broken pipe")
                    | _starts("Autologout host=")
                    | _starts("Logout host="),
                    "noise:disconnect",
                ),
                (
                    _starts("Preauthenticated user=") | _starts("Auth user=") | _starts("Moved "),
                    "noise:session",
                ),
                (has("SSL") | has("TLS"), "noise:tls"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="uwimap",
        claims=claims,
        programs=r"^(?:imapd|ipop3d|ipop2d)",
        parse=parse,
        doc="UW IMAP imapd/ipop3d 'Login', 'Authenticated', 'Login failed', 'AUTHENTICATE X failure', 'Logout' lines.",
    )
)
