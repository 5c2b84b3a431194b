"""The screen every parser's output goes through before correlation: what no event may carry.

* An address that is not a valid IPv4 or IPv6 address in canonical text (``9.9.9.8>``,
  ``010.1.2.3``, ``::zz``) makes the line ``invalid_address``: quarantined, never an event.
  Parsers canonicalise (:func:`detector.ingest.fields.canonical_ip`: brackets and zones removed,
  IPv6 compressed, IPv4-mapped IPv6 as plain IPv4); the screen checks the result, vectorised (an
  IPv4 regex over the column, :mod:`ipaddress` once per distinct IPv6 value).
* A parser marks a line whose daemon markers occur twice (``rip=`` in a user name, a forged
  passdb identifier, ``rhost=`` twice, ...) with kind ``quarantine:ambiguous_field``: quarantined.
* Control characters in an account name (C0, DEL, C1) are **escaped**, not quarantined: each
  becomes ``\\xNN`` (so ``a\\nb`` is the 6 characters ``a\\x0ab``). The attempt stays evidence
  against its source (quarantining it would let a guesser hide behind one control character),
  the name can never equal a real account's, and no line break, escape sequence or NUL reaches a
  report, export or terminal through it.
"""

from __future__ import annotations

import ipaddress

import polars as pl

from detector.ingest.registry import KIND
from detector.schema import C

QUARANTINE = "quarantine:"
"""Prefix of the ``kind`` of a line a parser sends to the quarantine with a reason
(``quarantine:ambiguous_field``); ``unparsed`` is the other quarantined kind."""
AMBIGUOUS = QUARANTINE + "ambiguous_field"
INVALID_ADDRESS = "invalid_address"

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"^{_OCTET}(?:\.{_OCTET}){{3}}$"
"""A dotted quad in canonical text (no leading zeros, which some libraries read as octal)."""
CONTROL = "[\x00-\x1f\x7f-\x9f]"
"""Control characters (C0, DEL, C1) escaped in account names."""
_CONTROL_CHARS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
_ESCAPES = [f"\\x{ord(c):02x}" for c in _CONTROL_CHARS]


def _canonical_v6(text: str) -> bool:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None and str(ip) == text


def valid_ip(s: pl.Series) -> pl.Series:
    """True where ``s`` holds a valid address in canonical text, null where it is null."""
    ok = s.str.contains(IPV4)
    v6 = s.str.contains(":", literal=True).fill_null(False) & ~ok.fill_null(False)
    if v6.any():
        values = s.filter(v6)
        mapping = {u: _canonical_v6(u) for u in values.unique().to_list()}
        ok = ok.clone()
        ok.scatter(v6.arg_true(), values.replace_strict(mapping, return_dtype=pl.Boolean))
    return ok


def escape_controls(expr: pl.Expr) -> pl.Expr:
    """``expr`` with every control character written ``\\xNN`` (see the module doc)."""
    return (
        pl.when(expr.str.contains(CONTROL).fill_null(False))
        .then(expr.str.replace_many(_CONTROL_CHARS, _ESCAPES))
        .otherwise(expr)
    )


def screen(out: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """``out`` (a parser's output) with account names escaped, and per row the quarantine
    reason (null: keep the row) -- ``invalid_address``, a parser's ``quarantine:<reason>``
    or ``unparsed``."""
    kind = out[KIND]
    is_event = kind == "event"
    bad_ip = pl.repeat(False, len(out), dtype=pl.Boolean, eager=True)
    for col in (C.SOURCE_IP, C.LOCAL_IP):
        values = out[col]
        if values.null_count() == len(values):
            continue
        # checked once per distinct value (a night has far fewer addresses than lines)
        distinct = values.drop_nulls().unique()
        invalid = distinct.filter(~valid_ip(distinct).fill_null(False))
        if len(invalid):
            bad_ip = bad_ip | values.is_in(invalid.implode()).fill_null(False)
    bad_ip = bad_ip & is_event
    k = pl.col(KIND)
    reason = (
        pl.DataFrame({"bad": bad_ip, KIND: kind})
        .select(
            pl.when(pl.col("bad"))
            .then(pl.lit(INVALID_ADDRESS))
            .when(k.str.starts_with(QUARANTINE))
            .then(k.str.strip_prefix(QUARANTINE))
            .when(k == "unparsed")
            .then(pl.lit("unparsed"))
            .alias("reason")
        )
        .to_series()
    )
    accounts = out[C.ACCOUNT]
    if accounts.str.contains(CONTROL).fill_null(False).any():
        out = out.with_columns(escape_controls(pl.col(C.ACCOUNT)))
    return out, reason
