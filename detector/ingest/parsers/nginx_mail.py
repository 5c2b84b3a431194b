"""nginx mail proxy (also the front of Mailu and similar stacks): ``client login failed`` and
``client logged in`` lines of nginx's error log, with the service told by the listening port."""

from __future__ import annotations

import polars as pl

from detector.ingest.fields import before, between, canonical_ip, repeated
from detector.ingest.parsers._common import (
    EVENT,
    M,
    by_words,
    has,
    kind,
    lower_or_null,
    narrowed_columns,
    program_starts,
    service_from_port,
)
from detector.ingest.registry import LineParser, register
from detector.ingest.screen import AMBIGUOUS
from detector.schema import Action, C, Outcome

_ERRLOG = r"^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} )?\[(?:debug|info|notice|warn|error|crit|alert|emerg)\] \d+#\d+: "
_FAILED = "client login failed: "
_LOGGED_IN = "client logged in, "

_OUTCOMES = (
    ("credentials invalid", Outcome.FAILURE),
    ("invalid login or password", Outcome.FAILURE),
    ("password", Outcome.FAILURE),
    ("unknown user", Outcome.UNKNOWN_USER),
    ("no such user", Outcome.UNKNOWN_USER),
    ("disabled", Outcome.DISABLED),
    ("locked", Outcome.DISABLED),
    ("rate-limit", Outcome.POLICY),
    ("rate limit", Outcome.POLICY),
    ("not supported", Outcome.POLICY),
    ("starttls", Outcome.POLICY),
    ("temporary", Outcome.TEMPFAIL),
)


def claims() -> pl.Expr:
    nginx_prog = program_starts("nginx")
    shaped = M.str.contains(_ERRLOG).fill_null(False) | M.str.contains(r"^\*\d+ ").fill_null(False)
    return nginx_prog | (
        shaped & (has(_FAILED) | has(_LOGGED_IN) | has(" while in ") | has("proxied session"))
    )


_HEAD = r"^(?:(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} )?\[\w+\] \d+#\d+: )?\*\d+ "
"""The start of an nginx error-log message up to the connection number: the outcome words follow."""


def parse(lf: pl.LazyFrame) -> pl.LazyFrame:
    # the outcome from the words nginx writes right after ``*N`` (the login, the client's words,
    # comes last); a line with a second ``client:``/``login:`` field is ambiguous
    failed = M.str.contains(_HEAD + _FAILED).fill_null(False)
    # "logged in" without a login is inbound mail (SMTP with auth none), not an account login.
    ok = M.str.contains(_HEAD + _LOGGED_IN).fill_null(False) & has(', login: "')
    ambiguous = repeated(M, ", client: ", ", server: ", ', login: "')
    login = M.str.extract(r'(?s), login: "(.*)"(?:, upstream: \S+)?$', 1)
    client = before(between(M, ", client: ", ","), " ")
    server = between(M, ", server: ", ",")
    port = server.str.extract(r":(\d+)$", 1)
    reason = pl.when(failed).then(between(M, _FAILED + '"', '"'))
    columns = [
        pl.lit("nginx").alias(C.DAEMON),
        service_from_port(port).alias(C.SERVICE),
        pl.lit(Action.LOGIN).alias(C.ACTION),
        pl.when(ok)
        .then(pl.lit(Outcome.SUCCESS))
        .otherwise(by_words(pl.coalesce(reason, pl.lit("")), _OUTCOMES, Outcome.FAILURE))
        .alias(C.OUTCOME),
        lower_or_null(login).alias(C.ACCOUNT),
        canonical_ip(client).alias(C.SOURCE_IP),
        pl.when(~server.str.contains(r"^(?:0\.0\.0\.0|\[?::\]?):").fill_null(True))
        .then(canonical_ip(server.str.replace(r":\d+$", "")))
        .alias(C.LOCAL_IP),
        pl.when(has(" using starttls")).then(pl.lit(True)).alias(C.TLS),
        M.str.extract(r"(?:^|\s)\*(\d+) ", 1).alias(C.SESSION_ID),
        pl.lit(1).alias(C.ATTEMPTS),
        reason.alias(C.REASON),
        kind(
            [
                ((failed | ok) & ambiguous, AMBIGUOUS),
                (failed | ok, EVENT),
                (M.str.contains(r"(?:^|\s)\*\d+ client \S+ connected to ").fill_null(False), "noise:connect"),
                (has(_LOGGED_IN), "noise:inbound_smtp"),
                (has("proxied session done") | has("upstream timed out"), "noise:session_end"),
                (has("SSL_") | has("ssl handshake") | has("SSL handshake"), "noise:tls"),
                (has("could not be resolved") | has("while in resolving"), "noise:resolve"),
                (
                    has(', request: "') | has("directory index") | has('open() "') | has(" HTTP/"),
                    "noise:http",
                ),
                (
                    has("client sent invalid") | has("client sent too long") | has("client timed out"),
                    "noise:protocol",
                ),
                (has("auth http server") & ~has(_FAILED), "noise:auth_backend"),
            ]
        ),
    ]
    return narrowed_columns(lf, columns)


PARSER = register(
    LineParser(
        name="nginx_mail",
        claims=claims,
        programs=r"^nginx",
        messages=r"^(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} )?\[(?:debug|info|notice|warn|error|crit|alert|emerg)\] |^\*\d",
        parse=parse,
        doc="nginx mail proxy error-log 'client login failed' / 'client logged in' lines (Mailu/mailcow fronts).",
    )
)
