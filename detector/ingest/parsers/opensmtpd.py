"""OpenSMTPD (``smtpd[pid]:``): AUTH results, failed AUTH commands, with the client address taken
from the session's ``connected`` line where the result line lacks it (OpenSMTPD >= 6.4)."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import canonical_ip, repeated
from detector.ingest.parsers._common import EVENT, PROGRAM, M, done, has, kind, lower_or_null, mechanism
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome, Service

_SID = r"^([0-9a-f]{16}) smtp "


def claims() -> pl.Expr:
    return PROGRAM.is_in(["smtpd", "opensmtpd"]).fill_null(False) | (
        PROGRAM.is_null() & M.str.contains(_SID).fill_null(False)
    )


def _word(key: str) -> pl.Expr:
    """Value of `` key=`` up to the next space; quoted values up to the closing quote."""
    return (
        M.str.extract(rf"(?:^|\s){key}=(?:\"([^\"]*)\"|(\S+))", 0)
        .str.replace(rf"^\s?{key}=", "")
        .str.strip_chars('"')
    )


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    sid = M.str.extract(_SID, 1)
    auth_result = has("smtp authentication ") | has("smtp event=authentication ")
    failed_cmd = (has(" failed-command ") | has("event=failed-command")) & has('command="AUTH')
    connected = has("smtp connected ") | has("smtp event=connected ")
    lf = lf.with_columns(
        sid.alias("_sid"),
        _word("address").alias("_addr"),
        auth_result.alias("_auth"),
        connected.alias("_conn"),
    )
    sessions = (
        lf.filter(pl.col("_conn") & pl.col("_addr").is_not_null())
        .group_by("_sid")
        .agg(pl.col("_addr").first().alias("_conn_addr"))
    )
    with_auth = lf.filter(pl.col("_auth")).group_by("_sid").agg(pl.lit(True).alias("_has_auth"))
    lf = lf.join(sessions, on="_sid", how="left").join(with_auth, on="_sid", how="left")
    result = _word("result")
    # A failed AUTH command is the event only where no authentication line covers the session.
    cmd_event = failed_cmd & pl.col("_has_auth").is_null() & result.str.contains(r"^5\d\d").fill_null(False)
    auth_ok = result == "ok"
    command = _word("command")
    # ``user=`` is the client's name, verbatim: a second ``user=``/``result=``/``address=`` is
    # ambiguous (``user=x result=ok`` in a failed attempt)
    ambiguous = repeated(
        M, " user=", " result=", " address=", "smtp authentication ", "event=authentication "
    )
    out = lf.with_columns(
        pl.lit("opensmtpd").alias(C.DAEMON),
        pl.lit(Service.SMTP).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(pl.col("_auth") & auth_ok)
        .then(pl.lit(Outcome.SUCCESS))
        .when(pl.col("_auth") & (result == "tempfail"))
        .then(pl.lit(Outcome.TEMPFAIL))
        .when(cmd_event & ~result.str.starts_with("535").fill_null(False))
        .then(pl.lit(Outcome.POLICY))
        .otherwise(pl.lit(Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(
            pl.coalesce(
                M.str.extract(r"(?s) user=(.*?) (?:address|result)=", 1), _word("user")
            ).str.strip_chars('"')
        ).alias(C.ACCOUNT),
        canonical_ip(pl.coalesce(pl.col("_addr"), pl.col("_conn_addr"))).alias(C.SOURCE_IP),
        pl.when(cmd_event).then(mechanism(command.str.extract(r"^AUTH (\S+)", 1))).alias(C.AUTH_METHOD),
        pl.col("_sid").alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        pl.when(pl.col("_auth")).then(pl.lit("result=") + result).otherwise(result).alias(C.REASON),
        kind(
            [
                ((pl.col("_auth") | cmd_event) & ambiguous, AMBIGUOUS),
                (pl.col("_auth") | cmd_event, EVENT),
                (failed_cmd, "noise:auth_reply"),
                (pl.col("_conn"), "noise:connect"),
                (has(" disconnected ") | has("event=closed") | has("smtp disconnected"), "noise:disconnect"),
                (has(" tls ") | has("event=starttls") | has("STARTTLS"), "noise:tls"),
                (has(" failed-command ") | has("event=failed-command"), "noise:reject"),
                (
                    has(" message ")
                    | has(" envelope ")
                    | has("mta ")
                    | has("delivery ")
                    | has(" relay ")
                    | has("event=message"),
                    "noise:delivery",
                ),
            ]
        ),
    )
    return done(out)


PARSER = register(
    LineParser(
        name="opensmtpd",
        claims=claims,
        programs=r"^(?:smtpd|opensmtpd)$",
        parse=parse,
        doc="OpenSMTPD 'smtp authentication user=... result=' lines and failed AUTH commands (address from the session).",
    )
)
