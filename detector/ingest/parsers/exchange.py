"""Microsoft Exchange protocol logs (CSV): IMAP4/POP3 authentication results and SMTP Receive
``535``/``235`` AUTH replies. The time stamp is the first CSV field (cut by the envelope stage)."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import between, canonical_ip
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    by_words,
    kind,
    lower_or_null,
    narrowed_columns,
    service_from_port,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome

_EP = r"(?:[0-9.]+|\[[0-9A-Fa-f:.]+\]):\d+"
_TWO_ENDPOINTS = rf",{_EP},{_EP},"
_STAMP = r"^\d{4}-\d{2}-\d{2}T[0-9:.]+Z?,"

_OUTCOMES = (
    ("disabled", Outcome.DISABLED),
    ("locked", Outcome.DISABLED),
    ("expired", Outcome.DISABLED),
    ("nouser", Outcome.UNKNOWN_USER),
    ("usernotfound", Outcome.UNKNOWN_USER),
    ("no such user", Outcome.UNKNOWN_USER),
    ("temporar", Outcome.TEMPFAIL),
    ("454 ", Outcome.TEMPFAIL),
    ("504 ", Outcome.POLICY),
    ("538 ", Outcome.POLICY),
)


def _text() -> pl.Expr:
    """The CSV record after the stamp. A syslog-style tag split may have cut it at the first
    ``:`` of an endpoint (``program`` then holds CSV fields); such a split is undone here."""
    split = PROGRAM.str.contains(",", literal=True).fill_null(False)
    text = pl.when(split).then(pl.concat_str([PROGRAM, pl.lit(":"), M])).otherwise(M)
    return text.str.replace(_STAMP, "")


def claims() -> pl.Expr:
    no_tag = PROGRAM.is_null() | PROGRAM.str.contains(",", literal=True).fill_null(False)
    return no_tag & _text().str.contains(rf"^(?:[^,]*,){{1,2}}\d+{_TWO_ENDPOINTS}").fill_null(False)


def _is_endpoint(expr: pl.Expr) -> pl.Expr:
    return expr.str.contains(rf"^{_EP}$").fill_null(False)


def _ip(endpoint: pl.Expr) -> pl.Expr:
    return canonical_ip(endpoint.str.replace(r":\d+$", ""))


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    body = _text()
    lf = lf.with_columns(body.str.split(",").alias("_f"), body.alias("_body"))
    f = pl.col("_f")
    smtp_layout = _is_endpoint(f.list.get(3, null_on_oob=True)) & _is_endpoint(
        f.list.get(4, null_on_oob=True)
    )
    local = (
        pl.when(smtp_layout).then(f.list.get(3, null_on_oob=True)).otherwise(f.list.get(2, null_on_oob=True))
    )
    remote = (
        pl.when(smtp_layout).then(f.list.get(4, null_on_oob=True)).otherwise(f.list.get(3, null_on_oob=True))
    )
    b = pl.col("_body")

    # IMAP4 / POP3: sessionId,seq,local,remote,user,duration,rqsize,rpsize,command,parameters,context
    command = f.list.get(8, null_on_oob=True).str.strip_chars().str.to_lowercase()
    auth_cmd = command.is_in(["login", "authenticate", "auth", "pass", "user", "apop"]).fill_null(False)
    reply = between(b, 'R=""', '""')
    mailbox_fail = ~smtp_layout & (
        b.str.contains("AuthFailed", literal=True)
        | (auth_cmd & reply.str.contains(r"^(?:\S+ NO |-ERR )").fill_null(False))
    ).fill_null(False)
    mailbox_ok = (
        ~smtp_layout
        & auth_cmd
        & reply.str.contains(r"^(?:\S+ OK (?:LOGIN|AUTHENTICATE)|\+OK)").fill_null(False)
    )
    user_field = pl.when(~smtp_layout).then(f.list.get(4, null_on_oob=True))
    # Exchange quotes a CSV field holding a comma or a quote: the fields before the command are
    # read by position, so a quote among them (a user name holding ``,`` or ``"``) is ambiguous
    ambiguous = ~smtp_layout & f.list.head(9).list.join(",").str.contains('"', literal=True).fill_null(False)
    account = pl.coalesce(lower_or_null(user_field), lower_or_null(b.str.extract(r"User: ([^\"\s;]+)", 1)))

    # SMTP Receive: connector,sessionId,seq,local,remote,event,data,context
    direction = f.list.get(5, null_on_oob=True)
    data = f.list.get(6, null_on_oob=True)
    smtp_reply = smtp_layout & (direction == ">").fill_null(False)
    smtp_fail = smtp_reply & data.str.contains(r"^(?:535|454|504|538) ").fill_null(False)
    smtp_ok = smtp_reply & data.str.starts_with("235 ").fill_null(False)

    failed = mailbox_fail | smtp_fail
    ok = mailbox_ok | smtp_ok
    reason = (
        pl.when(smtp_layout).then(data).otherwise(pl.coalesce(b.str.extract(r"ErrMsg=([^;\",]+)", 1), reply))
    )
    method = pl.when(~smtp_layout & command.is_in(["authenticate", "auth"])).then(
        f.list.get(9, null_on_oob=True).str.strip_chars().str.to_uppercase()
    )
    columns = [
        pl.lit("exchange").alias(C.DAEMON),
        service_from_port(local.str.extract(r":(\d+)$", 1)).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(ok)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(by_words(pl.coalesce(reason, pl.lit("")), _OUTCOMES, Outcome.FAILURE))
        .alias(C.OUTCOME),
        pl.when(~smtp_layout).then(account).alias(C.ACCOUNT),
        _ip(remote).alias(C.SOURCE_IP),
        remote.str.extract(r":(\d+)$", 1).cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        _ip(local).alias(C.LOCAL_IP),
        pl.when(method.str.len_bytes() > 0).then(method).alias(C.AUTH_METHOD),
        pl.when(smtp_layout)
        .then(f.list.get(1, null_on_oob=True))
        .otherwise(f.list.get(0, null_on_oob=True))
        .alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        kind(
            [((failed | ok) & ambiguous, AMBIGUOUS), (failed | ok, EVENT), (pl.lit(True), "noise:protocol")],
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="exchange",
        claims=claims,
        programs=",",
        parse=parse,
        doc="Exchange IMAP4/POP3 protocol logs (AuthFailed / OK LOGIN) and SMTP Receive logs (535/235 AUTH replies).",
    )
)
