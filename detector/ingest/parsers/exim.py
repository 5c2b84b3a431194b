"""Exim: SMTP AUTH failures, authenticated submissions and AUTH protocol errors.

Reads syslog lines (``exim[pid]:``, ``exim4[pid]:``) and Exim's own main log (ISO time stamp, no
program; claimed by the Exim markers in the message).
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import after, before, canonical_ip, repeated, to_int
from detector.ingest.parsers._common import (
    EVENT,
    PROGRAM,
    M,
    has,
    kind,
    lower_or_null,
    mechanism,
    narrowed,
    service_from_port,
)
from detector.ingest.registry import KIND, LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

STAGE = "_stage"
SASL_FAIL_STAGE = "pf_sasl_fail"
"""Correlation stage shared with Postfix SASL failures (see detector.ingest.correlate)."""
_FAILED = "authenticator failed for "
_PROTO = 'SMTP protocol error in "AUTH'
_HOST = r"(?:\S+ )?(?:\([^)]*\) )?\[([0-9A-Fa-f:.]+)\](?::(\d+))?"
"""``name (helo) [ip]:port`` as Exim writes a remote host; groups: address, port."""
_REPLY_HOST = (
    r"\[([0-9A-Fa-f:.]+)\](?::(\d+))?(?: (?:I=\[[0-9A-Fa-f:.]+\](?::\d+)?|U=\S*|Ci=\d+))*: [45]\d\d "
)
"""The client of a failed authentication: the bracketed address that the SMTP reply code follows
(the HELO name before it may hold brackets; a line with two such places is ambiguous)."""
_MSGID = r"^(?:\[\d+\] )?([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) "
_DROP_WORDS = ' dropped: too many syntax or protocol errors (last command was "'
_DROPPED = (
    r"^(?:\[\d+\] )?SMTP call from (?:\S+ )?(?:\([^)]*\) )?\[([0-9A-Fa-f:.]+)\](?::(\d+))?"
    r"(?: I=\[([0-9A-Fa-f:.]+)\](?::(\d+))?)?(?: Ci=\d+)?"
    r' dropped: too many syntax or protocol errors \(last command was "(?i:AUTH)\b'
)
"""smtp_in.c's ``SMTP call from <host_and_ident> dropped: too many syntax or protocol errors (last
command was "<command>"[, C=...])`` where the client's last command was AUTH; groups: address,
port, local address, local port. Everything from the command on is the client's."""
DROP_STAGE = "ex_auth_drop"
PROTO_STAGE = "ex_auth_proto"
"""Correlation stages: a dropped call counts only where no AUTH line of that client precedes it
(see detector.ingest.correlate)."""


def claims() -> pl.Expr:
    exim_prog = PROGRAM.str.starts_with("exim").fill_null(False)
    no_prog = PROGRAM.is_null()
    markers = (
        has(_FAILED)
        | _is_proto()
        | _is_dropped()
        | M.str.contains(r"(?:^|\s)H=\S*(?: \([^)]*\))? \[").fill_null(False)
        | M.str.contains(_MSGID + r"(?:<=|=>|->|>>|\*\*|==|Completed)").fill_null(False)
    )
    return exim_prog | (no_prog & markers)


def _is_failed() -> pl.Expr:
    return has(_FAILED)


def _is_send() -> pl.Expr:
    return has(" <= ") & has(" A=")


def _is_proto() -> pl.Expr:
    return M.str.contains(r'(?i)SMTP protocol error in "AUTH').fill_null(False)


def _is_dropped() -> pl.Expr:
    """A call dropped after too many errors, the last one an AUTH command (any case)."""
    return has(_DROP_WORDS) & M.str.contains(_DROPPED).fill_null(False)


def _kind() -> pl.Expr:
    return kind(
        [
            (_is_failed() | _is_send() | _is_proto() | _is_dropped(), EVENT),
            (has(" <= "), "noise:receive"),
            (
                has(" => ") | has(" -> ") | has(" >> ") | has(" ** ") | has(" == ") | has(" Completed"),
                "noise:delivery",
            ),
            (
                has("rejected") | has("sender verify fail") | has(" refused") | has(" dropped: "),
                "noise:reject",
            ),
            (
                has("SMTP connection from")
                | has("no host name found")
                | has("no IP address found")
                | has("SMTP command timeout")
                | has("unexpected disconnection"),
                "noise:connect",
            ),
            (has("TLS error") | has("TLS session"), "noise:tls"),
            (has("queue run") | has("daemon started") | has("Spool file") | has("exim "), "noise:daemon"),
        ]
    )


def _fields(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed, send, proto, dropped = _is_failed(), _is_send(), _is_proto(), _is_dropped()
    # Anchored regexes on the text after a literal marker: much faster than searching the line.
    host_text = pl.when(failed).then(after(M, _FAILED)).otherwise(after(pl.concat_str(pl.lit(" "), M), " H="))
    drop = M.str.extract_groups(_DROPPED)
    host = (
        pl.when(failed)
        .then(M.str.extract_groups(_REPLY_HOST))
        .when(dropped)
        .then(pl.struct(drop.struct.field("1"), drop.struct.field("2")))
        .otherwise(host_text.str.extract_groups("^" + _HOST))
    )
    local = (
        pl.when(dropped)
        .then(pl.struct(drop.struct.field("3").alias("1"), drop.struct.field("4").alias("2")))
        .otherwise(after(M, " I=[").str.extract_groups(r"^([0-9A-Fa-f:.]+)\](?::(\d+))?"))
    )
    lf = lf.with_columns(host.alias("_h"), local.alias("_li"))
    local_port = pl.col("_li").struct.field("2")
    authenticator = before(M, " " + _FAILED)
    a_field = before(after(M, " A="), " ")
    account = (
        pl.when(failed).then(M.str.extract(r"(?s)\(set_id=(.*)\)$", 1)).when(send).then(after(a_field, ":"))
    )
    method = pl.when(failed & has(" " + _FAILED)).then(authenticator).when(send).then(before(a_field, ":"))
    reply = pl.when(failed).then(M.str.extract(r": (\d{3} [^(]*)", 1).str.strip_chars())
    outcome = (
        pl.when(failed & reply.str.starts_with("4"))
        .then(pl.lit(Outcome.TEMPFAIL))
        .when(failed)
        .then(pl.lit(Outcome.FAILURE))
        .when(proto | dropped)
        .then(pl.lit(Outcome.POLICY))
    )
    reason = (
        pl.when(failed)
        .then(reply.str.strip_chars())
        .when(proto)
        .then(M.str.extract(r"\[[0-9A-Fa-f:.]+\](?::\d+)? (.*?)(?::\s*\d+ Time\(s\))?$", 1))
        .when(dropped)
        .then(pl.lit("too many syntax or protocol errors, the last an AUTH command"))
    )
    # the HELO name, the sender and set_id are the client's words, verbatim: a second host field,
    # ``A=``/``set_id=`` or authenticator head makes the line ambiguous
    ambiguous = repeated(M, " H=", " A=", "(set_id=", _FAILED, _DROP_WORDS) | (
        M.str.count_matches(_REPLY_HOST).fill_null(0).gt(1)
    )
    default_service = pl.when(send).then(pl.lit(Service.SUBMISSION)).otherwise(pl.lit(Service.SMTP))
    return lf.with_columns(
        pl.coalesce(service_from_port(local_port), default_service).alias(C.SERVICE),
        pl.when(send).then(pl.lit(Action.SEND)).otherwise(pl.lit(Action.LOGIN)).alias(C.ACTION),
        outcome.alias(C.OUTCOME),
        lower_or_null(account).alias(C.ACCOUNT),
        canonical_ip(pl.col("_h").struct.field("1")).alias(C.SOURCE_IP),
        pl.col("_h").struct.field("2").cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        canonical_ip(pl.col("_li").struct.field("1")).alias(C.LOCAL_IP),
        pl.when(method.is_not_null()).then(mechanism(method)).alias(C.AUTH_METHOD),
        pl.when(send).then(has(" X=") | has(" P=esmtps")).alias(C.TLS),
        pl.when(send).then(M.str.extract(_MSGID, 1)).alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(send).then(to_int(after(M, " S="))).alias(C.MESSAGE_SIZE),
        reason.alias(C.REASON),
        # Exim's dovecot_* authenticators: the Dovecot auth line of the same attempt is merged
        # into this event by detector.ingest.correlate, as for Postfix with Dovecot SASL.
        pl.when(failed)
        .then(pl.lit(SASL_FAIL_STAGE))
        .when(proto)
        .then(pl.lit(PROTO_STAGE))
        .when(dropped)
        .then(pl.lit(DROP_STAGE))
        .alias(STAGE),
        pl.when(ambiguous).then(pl.lit(AMBIGUOUS)).otherwise(pl.col(KIND)).alias(KIND),
    )


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    return narrowed(lf, "exim", _kind(), _fields, keep=(STAGE,))


PARSER = register(
    LineParser(
        name="exim",
        claims=claims,
        programs=r"^exim",
        parse=parse,
        doc="Exim: 'authenticator failed for' (SMTP AUTH failures), '<= ... A=' authenticated submissions, AUTH protocol errors, calls dropped after AUTH errors.",
    )
)
