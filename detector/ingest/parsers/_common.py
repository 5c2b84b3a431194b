"""Expression helpers shared by the parsers of the daemons beyond Dovecot and Postfix.

Each parser classifies a line with a list of ``(condition, kind)`` cases tried in order; a line
that matches none is ``unparsed`` (quarantined) when it looks authentication-related and
``noise:other`` otherwise, so that nothing is dropped silently and nothing auth-like is hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from detector.ingest.fields import MSG, OUTPUT_SCHEMA, finish
from detector.ingest.registry import KIND
from detector.schema import C, Service

M = pl.col(MSG)
PROGRAM = pl.col("program")
EVENT = "event"

AUTH_HINT = r"(?i)auth|login|passw"
"""Words that make an unrecognised line worth quarantining rather than counting as noise."""


def has(text: str) -> pl.Expr:
    """The message contains ``text`` (literal; null-safe)."""
    return M.str.contains(text, literal=True).fill_null(False)


def program_is(*names: str) -> pl.Expr:
    """The envelope's program is one of ``names`` (null-safe)."""
    return PROGRAM.is_in(list(names)).fill_null(False)


def program_starts(*prefixes: str) -> pl.Expr:
    """The envelope's program starts with one of ``prefixes`` (null-safe)."""
    out = pl.lit(False)
    for p in prefixes:
        out = out | PROGRAM.str.starts_with(p).fill_null(False)
    return out


def kind(cases: Sequence[tuple[pl.Expr, str]], hint: pl.Expr | None = None) -> pl.Expr:
    """The ``kind`` column: the first matching case, else ``unparsed``/``noise:other``."""
    hint = M.str.contains(AUTH_HINT).fill_null(False) if hint is None else hint
    expr = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.String))
    for cond, name in cases:
        expr = expr.when(cond).then(pl.lit(name))
    return expr.when(hint).then(pl.lit("unparsed")).otherwise(pl.lit("noise:other")).alias(KIND)


def first(cases: Sequence[tuple[pl.Expr, pl.Expr | str | int | bool | None]]) -> pl.Expr:
    """``when(c1).then(v1).when(c2).then(v2)...`` (null where no case holds)."""
    expr = pl.when(pl.lit(False)).then(pl.lit(None))
    for cond, value in cases:
        expr = expr.when(cond).then(value if isinstance(value, pl.Expr) else pl.lit(value))
    return expr


def by_words(text: pl.Expr, table: Sequence[tuple[str, str]], default: str | None) -> pl.Expr:
    """Map ``text`` to the value of the first ``(word, value)`` whose word it contains (case-insensitive)."""
    low = text.str.to_lowercase()
    expr = pl.when(pl.lit(False)).then(pl.lit(None, dtype=pl.String))
    for word, value in table:
        expr = expr.when(low.str.contains(word.lower(), literal=True)).then(pl.lit(value))
    return expr.otherwise(pl.lit(default, dtype=pl.String))


def service_from_port(port: pl.Expr, default: str | None = None) -> pl.Expr:
    """Mail service of a listening port; proxies often use 1xxxx ports ending like the standard ones."""
    p = port.cast(pl.String)
    return (
        pl.when(p.str.ends_with("993") | p.str.ends_with("143"))
        .then(pl.lit(Service.IMAP))
        .when(p.str.ends_with("995") | p.str.ends_with("110"))
        .then(pl.lit(Service.POP3))
        .when(p.str.ends_with("587") | p.str.ends_with("465"))
        .then(pl.lit(Service.SUBMISSION))
        .when(p.str.ends_with("25"))
        .then(pl.lit(Service.SMTP))
        .when(p.str.ends_with("4190"))
        .then(pl.lit(Service.MANAGESIEVE))
        .otherwise(pl.lit(default, dtype=pl.String))
    )


def lower_or_null(expr: pl.Expr) -> pl.Expr:
    """Lower-cased text; empty text becomes null."""
    t = expr.str.strip_chars().str.to_lowercase()
    return pl.when(t.str.len_bytes() > 0).then(t)


def mechanism(name: pl.Expr) -> pl.Expr:
    """SASL mechanism from an authenticator/method name (``dovecot_plain`` -> ``PLAIN``)."""
    low = name.str.to_lowercase()
    return (
        pl.when(low.str.contains("cram", literal=True))
        .then(pl.lit("CRAM-MD5"))
        .when(low.str.contains("digest", literal=True))
        .then(pl.lit("DIGEST-MD5"))
        .when(low.str.contains("xoauth2", literal=True))
        .then(pl.lit("XOAUTH2"))
        .when(low.str.contains("plain", literal=True))
        .then(pl.lit("PLAIN"))
        .when(low.str.contains("login", literal=True))
        .then(pl.lit("LOGIN"))
        .otherwise(name.str.to_uppercase())
    )


_KEEP = (C.TIMESTAMP, C.HOST, C.DAEMON, C.SOURCE_FILE, C.LINE_NUMBER, KIND)


def done(lf: pl.LazyFrame) -> pl.LazyFrame:
    """:func:`finish`, with the event columns nulled on rows that are not events."""
    out = finish(lf)
    is_event = pl.col(KIND) == EVENT
    return out.with_columns(
        pl.when(is_event).then(pl.col(name)).alias(name) for name in OUTPUT_SCHEMA if name not in _KEEP
    )


def narrowed(
    lf: pl.LazyFrame,
    daemon: str | pl.Expr,
    kind_expr: pl.Expr,
    fields: Callable[[pl.LazyFrame], pl.LazyFrame],
    keep: tuple[str, ...] = (),
) -> pl.LazyFrame:
    """Classify every row with ``kind_expr`` (cheap literal tests), then cut the fields with
    ``fields`` on the event rows only: the regexes never run on noise, which is most lines.
    ``keep`` names private columns for :mod:`detector.ingest.correlate` (see ``finish``)."""
    daemon_expr = daemon if isinstance(daemon, pl.Expr) else pl.lit(daemon)
    lf = lf.with_columns(kind_expr, daemon_expr.alias(C.DAEMON))
    is_event = pl.col(KIND) == EVENT
    events = finish(fields(lf.filter(is_event)), keep)
    others = finish(lf.filter(~is_event), keep)
    return pl.concat([events, others], how="vertical")


def narrowed_columns(lf: pl.LazyFrame, columns: Sequence[pl.Expr]) -> pl.LazyFrame:
    """Like ``lf.with_columns(columns)`` followed by :func:`finish`, but only the ``kind`` and
    ``daemon`` expressions run on every row; the field expressions run on the event rows only."""
    by_name = {e.meta.output_name(): e for e in columns}
    lf = lf.with_columns(by_name.pop(KIND), by_name.pop(C.DAEMON))
    is_event = pl.col(KIND) == EVENT
    events = finish(lf.filter(is_event).with_columns(by_name.values()))
    return pl.concat([events, finish(lf.filter(~is_event))], how="vertical")
