"""Zimbra mailbox.log / audit.log: ``authentication failed for [user], reason`` and audit
``security - cmd=Auth`` lines, with the originating client address (``oip=``)."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import between, canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    by_words,
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

_FAILED = "authentication failed for ["
_AUDIT = "security - cmd=Auth"
_LEVEL = r"^(?:\S+ \S+ )?(?:INFO|WARN|ERROR|DEBUG|FATAL|TRACE) +\["

_OUTCOMES = (
    ("account not found", Outcome.UNKNOWN_USER),
    ("no such account", Outcome.UNKNOWN_USER),
    ("lockout", Outcome.DISABLED),
    ("locked", Outcome.DISABLED),
    ("not active", Outcome.DISABLED),
    ("closed", Outcome.DISABLED),
    ("maintenance", Outcome.TEMPFAIL),
    ("must change password", Outcome.POLICY),
    ("two-factor", Outcome.POLICY),
)


def claims() -> pl.Expr:
    shaped = PROGRAM.is_null() & M.str.contains(_LEVEL).fill_null(False)
    return program_starts("zimbra", "mailboxd") | shaped


def _ctx(key: str) -> pl.Expr:
    """``key=value`` of Zimbra's ``[k=v;k=v;]`` context block."""
    return M.str.extract(rf"[\[;]{key}=([^;\]]*)", 1)


def _ctx_keys() -> pl.Expr:
    """How many of the keys ``oip ip name oport port`` the line holds, each counted once."""
    n = pl.lit(0)
    for key in ("oip", "ip", "name", "oport", "port"):
        n = n + M.str.contains(rf"[\[;]{key}=").fill_null(False).cast(pl.Int32)
    return n


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed = has(_FAILED)
    audit = has(_AUDIT)
    audit_error = audit & has(" error=")
    success = audit & ~audit_error & ~failed
    event = failed | audit
    # the context block ``[name=<account>;oip=<address>;ua=<agent>;...]`` and the message carry
    # names and agents verbatim: a second ``oip=``/``ip=``/``name=`` key is ambiguous
    ambiguous = (
        M.str.count_matches(r"[\[;](?:oip|ip|name|oport|port)=").fill_null(0) > _ctx_keys()
    ) | repeated(M, _FAILED, _AUDIT)
    reason = pl.coalesce(
        M.str.extract(r"authentication failed for \[[^\]]*\],\s*([^;]+)", 1),
        M.str.extract(r" error=([^;]+)", 1),
    )
    proto = pl.coalesce(_ctx("oproto"), M.str.extract(r" protocol=([^;\s]+)", 1)).str.to_lowercase()
    service = pl.coalesce(
        first(
            [
                (proto.str.starts_with("imap").fill_null(False), Service.IMAP),
                (proto.str.starts_with("pop").fill_null(False), Service.POP3),
                (proto.str.contains("smtp|lmtp").fill_null(False), Service.SMTP),
                (proto.str.contains("soap|http|zsync|sync").fill_null(False), Service.WEBMAIL),
                (M.str.contains(r"\[(?:Imap|ImapSSL)Server").fill_null(False), Service.IMAP),
                (M.str.contains(r"\[(?:Pop3|Pop3SSL)Server").fill_null(False), Service.POP3),
                (has("/service/"), Service.WEBMAIL),
            ]
        ).cast(pl.String),
    )
    address = pl.coalesce(_ctx("oip"), _ctx("ip")).str.split(",").list.first().str.strip_chars()
    # Zimbra writes the name up to three times with different delimiters (``[name=..;``,
    # ``account=..;``, ``for [..]``): a name holding one of them reads differently, ambiguous
    names = [between(M, _FAILED, "]"), M.str.extract(r" account=([^;\s]+)", 1), _ctx("name")]
    account = pl.coalesce(*names)
    disagree = pl.lit(False)
    for n in names:
        disagree = disagree | (n.is_not_null() & (n != account)).fill_null(False)
    columns = [
        pl.lit("zimbra").alias(C.DAEMON),
        service.alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(success)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(by_words(pl.coalesce(reason, pl.lit("")), _OUTCOMES, Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(account).alias(C.ACCOUNT),
        canonical_ip(address).alias(C.SOURCE_IP),
        pl.coalesce(_ctx("oport"), _ctx("port")).cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        pl.coalesce(_ctx("soapId"), _ctx("sid")).alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.str.strip_chars().alias(C.REASON),
        kind(
            [
                (event & (ambiguous | disagree), AMBIGUOUS),
                (event, EVENT),
                (has("handler exception"), "noise:soap_exception"),
                (has("security - cmd="), "noise:audit"),
            ],
            hint=M.str.contains(r"(?i)authentication failed|login failed|invalid password").fill_null(False),
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="zimbra",
        claims=claims,
        programs=r"^(?:zimbra|mailboxd)",
        parse=parse,
        doc="Zimbra mailbox.log 'authentication failed for [user], reason' and audit.log 'security - cmd=Auth' lines.",
    )
)
