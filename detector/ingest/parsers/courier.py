"""Courier-IMAP / Courier-POP3 / courieresmtpd: logins, failed logins, session ends, SMTP AUTH errors."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import between, canonical_ip, repeated, to_int
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
from detector.schema import Action, C, Outcome, Service

_MAIL_PROGRAMS = r"^(?:imapd|pop3d)(?:-ssl)?$"


def claims() -> pl.Expr:
    courier_prog = program_starts("courier", "authdaemond")
    imap_pop = PROGRAM.str.contains(_MAIL_PROGRAMS).fill_null(False)
    return courier_prog | (imap_pop & (has("ip=[") | has("LOGIN FAILED")))


def _kv(key: str) -> pl.Expr:
    """``key=value`` up to the next comma (``key`` given with its leading separator)."""
    return between(M, key, ",")


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    smtp = PROGRAM.str.contains("esmtp", literal=True).fill_null(False)
    failed = M.str.starts_with("LOGIN FAILED,").fill_null(False)
    success = M.str.starts_with("LOGIN, ").fill_null(False)
    session_end = (
        M.str.starts_with("LOGOUT, user=")
        | M.str.starts_with("DISCONNECTED, user=")
        | M.str.starts_with("TIMEOUT, user=")
    ).fill_null(False)
    smtp_auth = smtp & has("error,relay=") & M.str.contains(r'msg="5\d\d [^"]*[Aa]uth').fill_null(False)
    login = failed | success | smtp_auth
    # ``LOGIN[ FAILED], [method=M, ]user=<name>, ip=[<address>], ...``: the name is the client's,
    # verbatim, so it ends where the daemon's ``, ip=[`` begins
    ambiguous = pl.when(smtp).then(repeated(M, "relay=")).otherwise(repeated(M, "user=", "ip=[", "port=["))

    protocol = _kv("protocol=").str.to_lowercase()
    service = (
        pl.when(smtp)
        .then(pl.lit(Service.SMTP))
        .when(protocol.str.starts_with("pop3").fill_null(False))
        .then(pl.lit(Service.POP3))
        .when(protocol.str.starts_with("imap").fill_null(False))
        .then(pl.lit(Service.IMAP))
        .when(PROGRAM.str.contains("pop3", literal=True).fill_null(False))
        .then(pl.lit(Service.POP3))
        .when(PROGRAM.str.contains("imap", literal=True).fill_null(False))
        .then(pl.lit(Service.IMAP))
    )
    ip = pl.when(smtp).then(_kv("relay=")).otherwise(between(M, "ip=[", "]"))
    tls = pl.when(PROGRAM.str.ends_with("-ssl").fill_null(False) | has("stls=1") | has("starttls=1")).then(
        pl.lit(True)
    )
    pop3 = service == Service.POP3
    columns = [
        pl.lit("courier").alias(C.DAEMON),
        service.alias(C.SERVICE),
        pl.when(session_end).then(pl.lit(Action.LOGOUT)).otherwise(pl.lit(Action.LOGIN)).alias(C.ACTION),
        pl.when(success)
        .then(pl.lit(Outcome.SUCCESS))
        .when(login)
        .then(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(between(M, "user=", ", ip=[")).alias(C.ACCOUNT),
        canonical_ip(ip).alias(C.SOURCE_IP),
        to_int(pl.when(smtp).then(_kv(",port=")).otherwise(between(M, "port=[", "]")), pl.Int32).alias(
            C.SOURCE_PORT
        ),
        pl.when(smtp)
        .then(M.str.extract(r"cmd: AUTH (\S+)", 1))
        .otherwise(_kv("method="))
        .str.to_uppercase()
        .alias(C.AUTH_METHOD),
        tls.alias(C.TLS),
        pl.lit(1).alias(C.ATTEMPTS),
        to_int(_kv(", rcvd=")).alias(C.BYTES_IN),
        to_int(_kv(", sent=")).alias(C.BYTES_OUT),
        pl.when(pop3).then(to_int(_kv(", retr="))).alias(C.MESSAGE_SIZE),
        pl.when(smtp)
        .then(between(M, 'msg="', '"'))
        .when(failed)
        .then(pl.lit("LOGIN FAILED"))
        .alias(C.REASON),
        kind(
            [
                ((login | session_end) & ambiguous, AMBIGUOUS),
                (login | session_end, EVENT),
                (program_starts("authdaemond", "courier-authdaemon"), "noise:auth_backend"),
                (M.str.starts_with("Connection, ip=") | has("started,ip="), "noise:connect"),
                (
                    M.str.starts_with("Disconnected, ip=")
                    | M.str.starts_with("DISCONNECTED, ip=")
                    | M.str.starts_with("TIMEOUT, ip="),
                    "noise:disconnect",
                ),
                (has("Maximum connection limit"), "noise:limit"),
                (has("error,relay="), "noise:reject"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="courier",
        claims=claims,
        programs=r"^(?:courier|authdaemond|imapd|pop3d)",
        parse=parse,
        doc="Courier IMAP/POP3 'LOGIN'/'LOGIN FAILED'/'LOGOUT' lines and courieresmtpd 535 AUTH errors.",
    )
)
