"""Small expression helpers shared by the parsers: cutting fields, canonical addresses, output.

Everything here returns ``pl.Expr`` (or maps a LazyFrame), so parsers stay vectorised.
"""

from __future__ import annotations

import functools
import ipaddress

import polars as pl

from detector.ingest.registry import KIND
from detector.schema import EVENT_SCHEMA, C

MSG = "message"


@functools.cache
def _str_find_counts_bytes() -> bool:
    """Whether this polars's ``str.find`` gives byte offsets (before 2.2) or characters (2.2 on,
    which has ``bin.find`` for bytes instead). Asked of polars itself, once, not of its version."""
    return pl.select(pl.lit("\u00e9:").str.find(":", literal=True)).item() == 2


def byte_find(expr: pl.Expr, marker: str) -> pl.Expr:
    """Byte offset of the first literal ``marker`` in ``expr`` (null where it is missing), whatever
    unit this polars's ``str.find`` counts in: the offset :func:`byte_slice` and :func:`byte_head`
    cut at. Every position the parsers cut at comes from here (never from ``str.find``)."""
    if _str_find_counts_bytes():
        return expr.str.find(marker, literal=True)
    return expr.cast(pl.Binary).bin.find(pl.lit(marker.encode()))


def byte_slice(expr: pl.Expr, offset: pl.Expr | int, length: pl.Expr | int | None = None) -> pl.Expr:
    """``expr`` cut at byte offsets (:func:`byte_find`'s; ``str.slice`` counts characters).

    Offsets found next to an ASCII marker fall on character boundaries, so the result is valid text.
    """
    return expr.cast(pl.Binary).bin.slice(offset, length).cast(pl.String)


def byte_head(expr: pl.Expr, n: pl.Expr | int) -> pl.Expr:
    """The first ``n`` bytes of ``expr`` (see :func:`byte_slice`)."""
    return expr.cast(pl.Binary).bin.head(n).cast(pl.String)


def after(expr: pl.Expr, marker: str) -> pl.Expr:
    """The text after the first ``marker`` (null where it is missing)."""
    if not marker:
        return expr
    return expr.str.splitn(marker, 2).struct.field("field_1")


def before(expr: pl.Expr, marker: str) -> pl.Expr:
    """The text before the first ``marker`` (the whole text where it is missing)."""
    if not marker:
        return pl.when(expr.is_not_null()).then(pl.lit(""))
    return expr.str.splitn(marker, 2).struct.field("field_0")


def between(expr: pl.Expr, start: str, end: str) -> pl.Expr:
    """The text between the first ``start`` and the next ``end`` (to the end of text if ``end`` is
    missing; null if ``start`` is).

    Two literal splits, each reading ``expr`` once (so nesting does not multiply the work, as
    ``find`` + ``slice`` would); a regex capture costs 1.5-3x as much.
    """
    return before(after(expr, start), end)


def kv(expr: pl.Expr, key: str, end: str = ",") -> pl.Expr:
    """Value of ``key=`` up to ``end``; ``key`` must include its leading separator, e.g. ``" rip="``."""
    return between(expr, key, end)


def angle(expr: pl.Expr, key: str) -> pl.Expr:
    """Value of the first ``key=<...>`` (Dovecot ``user=<x>``, Postfix ``from=<x>``); empty or
    unclosed gives null."""
    rest = after(expr, key + "=<")
    close = byte_find(rest, ">")
    return pl.when(close > 0).then(byte_head(rest, close))


def _canon_one(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text  # kept as written: :func:`detector.ingest.screen.screen` quarantines it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _canon_v6(s: pl.Series) -> pl.Series:
    mask = s.str.contains(":", literal=True).fill_null(False)
    if not mask.any():
        return s
    v6 = s.filter(mask)
    mapping = {u: _canon_one(u) for u in v6.unique().to_list()}
    # only the IPv6 rows are looked up (a replace over the whole column hashes every row)
    out = s.clone()
    out.scatter(mask.arg_true(), v6.replace(mapping))
    return out


def canonical_ip(expr: pl.Expr) -> pl.Expr:
    """Canonical address text: brackets and ``%zone`` removed, IPv6 compressed lower case,
    ``::ffff:a.b.c.d`` -> ``a.b.c.d``.

    IPv4 text is kept as is (its shape is already canonical); IPv6 goes through
    :mod:`ipaddress` once per distinct value, which is cheap because such values are few.
    Text that is not an address is kept as written, so that the ingestion screen
    (:mod:`detector.ingest.screen`) quarantines the line as ``invalid_address`` instead of
    silently dropping the address.
    """
    t = expr.str.strip_chars("[] ")
    return t.map_batches(_canon_v6, return_dtype=pl.String).replace("", None)


def occurs(expr: pl.Expr, marker: str) -> pl.Expr:
    """How many times the literal ``marker`` occurs in ``expr`` (0 where null)."""
    return expr.str.count_matches(marker, literal=True).fill_null(0)


def repeated(expr: pl.Expr, *markers: str) -> pl.Expr:
    """One of the daemon's own ``markers`` occurs more than once: an attacker-written field
    (user name, HELO, form field) carries a copy, and which one the daemon wrote cannot be told
    (the line is quarantined as ``ambiguous_field``, never guessed)."""
    out = pl.lit(False)
    for m in markers:
        out = out | (occurs(expr, m) > 1)
    return out


def to_int(expr: pl.Expr, dtype: pl.DataType = pl.Int64) -> pl.Expr:
    """Leading digits of ``expr`` (after white space) as an integer (null where there are none)."""
    return expr.str.strip_chars_start().str.replace(r"(?s)[^0-9].*$", "").cast(dtype, strict=False)


OUTPUT_SCHEMA = pl.Schema({**EVENT_SCHEMA, KIND: pl.String})


_HAVE: dict[tuple, frozenset[str]] = {}


def finish(lf: pl.LazyFrame, keep: tuple[str, ...] = (), memo: tuple | None = None) -> pl.LazyFrame:
    """Exactly the EVENT_SCHEMA columns + ``kind``, cast, missing ones as nulls.

    ``keep`` names private String columns (``_stage``, ...) a parser passes on to
    :mod:`detector.ingest.correlate`; they are added as nulls when missing.
    ``memo`` (the call site and the names of the columns its plan starts from) remembers which
    columns the plan has: resolving the schema of a plan of a few hundred nodes costs about a
    millisecond, a dozen times per batch, and the answer is the same for every batch.
    """
    have = _HAVE.get(memo) if memo is not None else None
    if have is None:
        have = frozenset(lf.collect_schema().names())
        if memo is not None and len(_HAVE) < 256:
            _HAVE[memo] = have
    cols = [
        (pl.col(name) if name in have else pl.lit(None)).cast(dtype).alias(name)
        for name, dtype in OUTPUT_SCHEMA.items()
    ]
    cols += [(pl.col(k) if k in have else pl.lit(None)).cast(pl.String).alias(k) for k in keep]
    return lf.select(cols)


__all__ = [
    "MSG",
    "OUTPUT_SCHEMA",
    "C",
    "after",
    "angle",
    "before",
    "between",
    "byte_find",
    "byte_head",
    "byte_slice",
    "canonical_ip",
    "finish",
    "kv",
    "occurs",
    "repeated",
    "to_int",
]
