"""Small expression helpers shared by the parsers: cutting fields, canonical addresses, output.

Everything here returns ``pl.Expr`` (or maps a LazyFrame), so parsers stay vectorised.
"""

from __future__ import annotations

import ipaddress
import re

import polars as pl

from detector.ingest.registry import KIND
from detector.schema import EVENT_SCHEMA, C

MSG = "message"


def after(expr: pl.Expr, marker: str) -> pl.Expr:
    """The text after the first ``marker`` (null where it is missing)."""
    return expr.str.slice(expr.str.find(marker, literal=True) + len(marker))


def before(expr: pl.Expr, marker: str) -> pl.Expr:
    """The text before the first ``marker`` (the whole text where it is missing)."""
    return pl.coalesce(expr.str.head(expr.str.find(marker, literal=True)), expr)


def between(expr: pl.Expr, start: str, end: str) -> pl.Expr:
    """The text between ``start`` and the next ``end`` (to the end of text if ``end`` is missing).

    One regex pass with a bounded capture (``start([^e]*)`` for a one-character ``end``);
    :func:`after`/:func:`before` are a find and a slice (faster than a regex capturing to the end),
    so pass them a column rather than a long expression, which would be evaluated per reference.
    """
    if len(end) == 1:
        return expr.str.extract(re.escape(start) + "([^" + re.escape(end) + "]*)", 1)
    return expr.str.extract(re.escape(start) + "(.*?)(?:" + re.escape(end) + "|$)", 1)


def kv(expr: pl.Expr, key: str, end: str = ",") -> pl.Expr:
    """Value of ``key=`` up to ``end``; ``key`` must include its leading separator, e.g. ``" rip="``."""
    return between(expr, key, end)


def angle(expr: pl.Expr, key: str) -> pl.Expr:
    """Value of ``key=<...>`` (Dovecot ``user=<x>``, Postfix ``from=<x>``); empty gives null."""
    return expr.str.extract(re.escape(key) + "=<([^>]+)>", 1)


def _canon_one(text: str) -> str | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _canon_v6(s: pl.Series) -> pl.Series:
    mask = s.str.contains(":", literal=True).fill_null(False)
    if not mask.any():
        return s
    v6 = s.filter(mask)
    mapping = {u: _canon_one(u.split("%", 1)[0]) for u in v6.unique().to_list()}
    # only the IPv6 rows are looked up (a replace over the whole column hashes every row)
    out = s.clone()
    out.scatter(mask.arg_true(), v6.replace(mapping))
    return out


def canonical_ip(expr: pl.Expr) -> pl.Expr:
    """Canonical address text: brackets and ``%zone`` removed, IPv6 compressed lower case,
    ``::ffff:a.b.c.d`` -> ``a.b.c.d``; IPv6 text that is not an address becomes null.

    IPv4 text is kept as is (its shape is already canonical); IPv6 goes through
    :mod:`ipaddress` once per distinct value, which is cheap because such values are few.
    """
    t = expr.str.strip_chars("[] ")
    return t.map_batches(_canon_v6, return_dtype=pl.String).replace("", None)


def to_int(expr: pl.Expr, dtype: pl.DataType = pl.Int64) -> pl.Expr:
    """Leading digits of ``expr`` as an integer (null where there are none)."""
    return expr.str.extract(r"^\s*(\d+)", 1).cast(dtype, strict=False)


OUTPUT_SCHEMA = pl.Schema({**EVENT_SCHEMA, KIND: pl.String})


def finish(lf: pl.LazyFrame, keep: tuple[str, ...] = ()) -> pl.LazyFrame:
    """Exactly the EVENT_SCHEMA columns + ``kind``, cast, missing ones as nulls.

    ``keep`` names private String columns (``_stage``, ...) a parser passes on to
    :mod:`detector.ingest.correlate`; they are added as nulls when missing.
    """
    have = lf.collect_schema()
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
    "canonical_ip",
    "finish",
    "kv",
    "to_int",
]
