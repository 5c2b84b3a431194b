"""Webmail front ends: Roundcube login results and IMAP login errors, SOGo login results.

Roundcube writes ``Failed login for <user> from <ip> in session <id> (error: N)`` and
``Successful login for <user> (ID: N) from <ip> in session <id>`` (userlogins, with
``log_logins``) and ``IMAP Error: Login failed for <user> against <host> from <ip>. ...``
(errors); behind a proxy the address is written ``<proxy>(X-Forwarded-For: <client>)``, and the
client is kept. SOGo writes ``SOGoRootPage Login from '<ip>' for user '<user>' might not have
worked`` and ``SOGoRootPage successful login from '<ip>' for user '<user>'``.
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import after, before, between, canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    first,
    has,
    kind,
    lower_or_null,
    narrowed_columns,
    program_starts,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_RC_FAILED = "Failed login for "
_RC_OK = "Successful login for "
_RC_IMAP = "IMAP Error: Login failed for "
_SOGO_FAILED = "SOGoRootPage Login from '"
_SOGO_OK = "SOGoRootPage successful login from '"


def claims() -> pl.Expr:
    programs = program_starts("roundcube", "sogo", "rcube")
    orphan = (PROGRAM.is_null() | (PROGRAM == "")).fill_null(True) & (
        has(_RC_FAILED) | has("FAILED login for ") | has(_RC_OK) | has(_RC_IMAP) | has("SOGoRootPage")
    )
    return programs | orphan


def _client(text: pl.Expr) -> pl.Expr:
    """The client of ``ip`` or ``proxy(X-Forwarded-For: client, ...)`` / ``(X-Real-IP: client)``."""
    forwarded = after(text, "X-Forwarded-For: ").str.extract(r"^\s*([^,)\s]+)", 1)
    real = after(text, "X-Real-IP: ").str.extract(r"^\s*([^,)\s]+)", 1)
    direct = text.str.extract(r"^\s*([^,(\s]+)", 1).str.strip_suffix(".")
    return pl.coalesce(forwarded, real, direct)


_RC_HEAD = r"^(?:\[[^\]]*\]:? )?(?:<\w+> )?"
"""What Roundcube writes before its words: its own date (in its log files) and ``<session>``."""


def _starts(words: str) -> pl.Expr:
    return M.str.contains(_RC_HEAD + words).fill_null(False)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    # the outcome from the daemon's first words; the user name (written verbatim, later in the
    # line) may carry another daemon's wording, and a second ``from``/``for user`` is ambiguous
    rc_failed = _starts("(?:Failed|FAILED) login for ")
    rc_ok, rc_imap = _starts(_RC_OK), _starts(_RC_IMAP)
    rc_any = rc_failed | rc_ok | rc_imap
    sogo_words = M.str.extract(r"SOGoRootPage (Login|successful login) from '", 1)
    sogo_failed = (sogo_words == "Login").fill_null(False) & ~rc_any
    sogo_ok = (sogo_words == "successful login").fill_null(False) & ~rc_any
    sogo = sogo_failed | sogo_ok
    roundcube = rc_failed | rc_ok | rc_imap
    ambiguous = (
        pl.when(sogo)
        .then(repeated(M, "SOGoRootPage", " from '", " for user '"))
        .otherwise(repeated(M, "login for ", "Login failed for ", " from ", " in session ", " against "))
    )
    rc_from = (
        pl.when(rc_imap).then(between(M, " from ", ". ")).otherwise(between(M, " from ", " in session "))
    )
    rc_user = first(
        [
            (rc_failed, before(after(M, "login for "), " from ")),
            (rc_ok, before(before(after(M, _RC_OK), " from "), " (ID:")),
            (rc_imap, before(before(after(M, _RC_IMAP), " against "), " from ")),
        ]
    ).cast(pl.String)
    sogo_from = pl.coalesce(between(M, _SOGO_FAILED, "'"), between(M, _SOGO_OK, "'"))
    address = pl.when(sogo).then(sogo_from.str.split(",").list.first()).otherwise(_client(rc_from))
    rc_reason = first(
        [
            (rc_failed, M.str.extract(r"\((error: -?\d+)\)", 1)),
            (rc_imap, M.str.extract(r"from [^ ]+?\.\s+(.*?)(?: in /\S+ on line \d+.*)?$", 1)),
        ]
    ).cast(pl.String)
    columns = [
        pl.when(sogo | program_starts("sogo"))
        .then(pl.lit("sogo"))
        .otherwise(pl.lit("roundcube"))
        .alias(C.DAEMON),
        pl.lit(Service.WEBMAIL).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(rc_ok | sogo_ok)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(
            pl.when(sogo)
            .then(M.str.extract(r"(?s) for user '(.*)'(?: might not have worked| - |$)", 1))
            .otherwise(rc_user)
        ).alias(C.ACCOUNT),
        canonical_ip(address).alias(C.SOURCE_IP),
        pl.when(roundcube)
        .then(pl.coalesce(M.str.extract(r" in session (\w+)", 1), M.str.extract(r"^<(\w+)>", 1)))
        .alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(sogo_failed).then(pl.lit("might not have worked")).otherwise(rc_reason).alias(C.REASON),
        kind(
            [
                ((roundcube | sogo) & ambiguous, AMBIGUOUS),
                (roundcube | sogo, EVENT),
                (has("SOGoRootPage"), "noise:sogo"),
                (has("PHP ") | has("DB Error") | has("SMTP Error") | has("IMAP Error"), "noise:error"),
            ],
            hint=M.str.contains(r"(?i)login|authenticat").fill_null(False),
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="webmail",
        claims=claims,
        programs=r"^(?:roundcube|sogo|rcube)",
        parse=parse,
        doc="Roundcube 'Failed/Successful login for' and 'IMAP Error: Login failed' lines; SOGo 'SOGoRootPage ... login from' lines.",
    )
)
