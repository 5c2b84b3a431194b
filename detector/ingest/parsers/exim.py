"""Exim: SMTP AUTH failures, authenticated submissions and AUTH protocol errors.

Reads syslog lines (``exim[pid]:``, ``exim4[pid]:``) and Exim's own main log (ISO time stamp, no
program; claimed by the Exim markers in the message).
"""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip
from detector.ingest.parsers._common import EVENT, PROGRAM, M, done, has, kind, mechanism, service_from_port
from detector.ingest.registry import LineParser, register
from detector.schema import Action, C, Outcome, Service

_FAILED = "authenticator failed for "
_PROTO = 'SMTP protocol error in "AUTH'
_HOST = r"(?:\S+ )?(?:\([^)]*\) )?\[([0-9A-Fa-f:.]+)\](?::(\d+))?"
"""``name (helo) [ip]:port`` as Exim writes a remote host; groups: address, port."""
_MSGID = r"^(?:\[\d+\] )?([0-9A-Za-z]{6}-[0-9A-Za-z]{6,11}-[0-9A-Za-z]{2,4}) "


def claims() -> pl.Expr:
    exim_prog = PROGRAM.str.starts_with("exim").fill_null(False)
    no_prog = PROGRAM.is_null()
    markers = (
        has(_FAILED)
        | has(_PROTO)
        | M.str.contains(r"(?:^|\s)H=\S*(?: \([^)]*\))? \[").fill_null(False)
        | M.str.contains(_MSGID + r"(?:<=|=>|->|>>|\*\*|==|Completed)").fill_null(False)
    )
    return exim_prog | (no_prog & markers)


def _is_failed() -> pl.Expr:
    return has(_FAILED)


def _is_send() -> pl.Expr:
    return has(" <= ") & has(" A=")


def _is_proto() -> pl.Expr:
    return has(_PROTO)


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    failed, send, proto = _is_failed(), _is_send(), _is_proto()
    fail_host = M.str.extract_groups(_FAILED + _HOST)
    h_host = M.str.extract_groups(r"(?:^|\s)H=" + _HOST)
    local = M.str.extract_groups(r" I=\[([0-9A-Fa-f:.]+)\](?::(\d+))?")
    reason_fail = M.str.extract(r": (\d{3} [^(]*?)\s*(?:\(set_id=|$)", 1)
    lf = lf.with_columns(
        fail_host.alias("_fh"), h_host.alias("_hh"), local.alias("_li"), reason_fail.alias("_rf")
    )
    ip_raw = pl.when(failed).then(pl.col("_fh").struct.field("1")).otherwise(pl.col("_hh").struct.field("1"))
    port_raw = (
        pl.when(failed).then(pl.col("_fh").struct.field("2")).otherwise(pl.col("_hh").struct.field("2"))
    )
    local_port = pl.col("_li").struct.field("2")
    authenticator = M.str.extract(r"(\S+) " + _FAILED, 1)
    a_field = M.str.extract(r" A=(\S+)", 1)
    account = (
        pl.when(failed)
        .then(M.str.extract(r"\(set_id=([^)]*)\)", 1))
        .when(send)
        .then(a_field.str.extract(r"^[^:]+:(.+)$", 1))
    )
    method = pl.when(failed).then(authenticator).when(send).then(a_field.str.extract(r"^([^:]+)", 1))
    outcome = (
        pl.when(failed & pl.col("_rf").str.contains(r"^4\d\d ").fill_null(False))
        .then(pl.lit(Outcome.TEMPFAIL))
        .when(failed)
        .then(pl.lit(Outcome.FAILURE))
        .when(proto)
        .then(pl.lit(Outcome.POLICY))
    )
    reason = (
        pl.when(failed)
        .then(pl.col("_rf"))
        .when(proto)
        .then(M.str.extract(r"\[[0-9A-Fa-f:.]+\](?::\d+)? (.*?)(?::\s*\d+ Time\(s\))?$", 1))
    )
    default_service = pl.when(send).then(pl.lit(Service.SUBMISSION)).otherwise(pl.lit(Service.SMTP))
    out = lf.with_columns(
        pl.lit("exim").alias(C.DAEMON),
        pl.coalesce(service_from_port(local_port), default_service).alias(C.SERVICE),
        pl.when(send).then(pl.lit(Action.SEND)).otherwise(pl.lit(Action.LOGIN)).alias(C.ACTION),
        outcome.alias(C.OUTCOME),
        account.str.strip_chars().str.to_lowercase().alias(C.ACCOUNT),
        canonical_ip(ip_raw).alias(C.SOURCE_IP),
        port_raw.cast(pl.Int32, strict=False).alias(C.SOURCE_PORT),
        canonical_ip(pl.col("_li").struct.field("1")).alias(C.LOCAL_IP),
        pl.when(method.is_not_null()).then(mechanism(method)).alias(C.AUTH_METHOD),
        pl.when(send).then(has(" X=") | has(" P=esmtps")).alias(C.TLS),
        pl.when(send).then(M.str.extract(_MSGID, 1)).alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(send).then(M.str.extract(r" S=(\d+)", 1).cast(pl.Int64, strict=False)).alias(C.MESSAGE_SIZE),
        reason.alias(C.REASON),
        kind(
            [
                (failed | send | proto, EVENT),
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
                (
                    has("queue run") | has("daemon started") | has("Spool file") | has("exim "),
                    "noise:daemon",
                ),
            ]
        ),
    )
    return done(out)


PARSER = register(
    LineParser(
        name="exim",
        claims=claims,
        parse=parse,
        doc="Exim: 'authenticator failed for' (SMTP AUTH failures), '<= ... A=' authenticated submissions, AUTH protocol errors.",
    )
)
