"""Shared-address awareness: how many accounts log in legitimately from an address or prefix.

A CGNAT gateway, a hospital NAT or a VPN exit carries successful logins of many accounts; an
attacker's address carries failures. The counts table has one row per (``scope``, ``key``):
``scope`` is ``"ip"`` (key = source address) or ``"prefix"`` (key = its /24 or /64),
``legit_accounts`` the distinct accounts with a successful login from it, ``last_seen`` the last
such login. Tables from several windows merge by taking the maximum (never a sum, which would
count an account seen on two nights twice), so the state can keep one row per key across nights.
"""

from __future__ import annotations

import polars as pl

from detector.enrich.geoip import classify
from detector.parts import key_part
from detector.schema import UTC_US, Action, C, Outcome, check

SCOPE = "scope"
KEY = "key"
LEGIT_ACCOUNTS = "legit_accounts"
LAST_SEEN = "last_seen"
SCOPE_IP = "ip"
SCOPE_PREFIX = "prefix"

SHARED_SCHEMA = pl.Schema({SCOPE: pl.String, KEY: pl.String, LEGIT_ACCOUNTS: pl.Int32, LAST_SEEN: UTC_US})
"""Shape of :func:`shared_address_counts` and of the history passed back in from the state."""


def is_successful_login() -> pl.Expr:
    return (
        (pl.col(C.ACTION) == Action.LOGIN)
        & (pl.col(C.OUTCOME) == Outcome.SUCCESS)
        & pl.col(C.ACCOUNT).is_not_null()
        & pl.col(C.SOURCE_IP).is_not_null()
    )


PART_EVENTS = 1_000_000
"""Events per part of a group-by over every event whose groups are about as many as its events
(the (address, account) pairs of an IMAP front end: about half): :func:`collect_pairs`."""


def success_pairs(events: pl.LazyFrame) -> pl.LazyFrame:
    """Distinct (``source_ip``, lower-cased ``account``) with a successful login, and its last time."""
    return (
        events.filter(is_successful_login())
        .group_by(C.SOURCE_IP, pl.col(C.ACCOUNT).str.to_lowercase())
        .agg(pl.col(C.TIMESTAMP).max().cast(UTC_US).alias(LAST_SEEN))
    )


def collect_pairs(events: pl.LazyFrame, n_events: int, part_events: int = PART_EVENTS) -> pl.DataFrame:
    """:func:`success_pairs`, streamed in parts of about ``part_events`` events by a hash of the
    address (:func:`key_part`): a streamed group-by's memory grows with the rows it reads, and
    this one's groups are about as many as the logins. The same rows, in another order."""
    parts = max(1, -(-n_events // max(part_events, 1)))
    if parts == 1:
        return success_pairs(events).collect(engine="streaming")
    return pl.concat(
        [
            success_pairs(events.filter(key_part(C.SOURCE_IP, parts, j))).collect(engine="streaming")
            for j in range(parts)
        ]
    )


def counts_from_pairs(pairs: pl.DataFrame, addresses: pl.DataFrame | None = None) -> pl.DataFrame:
    """The counts table from :func:`success_pairs` output.

    Args:
        pairs: ``source_ip``, ``account``, ``last_seen``.
        addresses: A table with ``source_ip`` and ``prefix`` covering the pairs' addresses
            (the GeoIP address table); computed from the addresses when absent.
    """
    if addresses is None:
        addresses = classify(pairs.get_column(C.SOURCE_IP).unique())
    with_prefix = pairs.join(addresses.select(C.SOURCE_IP, C.PREFIX), on=C.SOURCE_IP, how="left")
    per_ip = with_prefix.group_by(C.SOURCE_IP).agg(
        pl.col(C.ACCOUNT).n_unique().alias(LEGIT_ACCOUNTS), pl.col(LAST_SEEN).max()
    )
    per_prefix = (
        with_prefix.filter(pl.col(C.PREFIX).is_not_null())
        .group_by(C.PREFIX)
        .agg(pl.col(C.ACCOUNT).n_unique().alias(LEGIT_ACCOUNTS), pl.col(LAST_SEEN).max())
    )
    parts = [
        per_ip.select(
            pl.lit(SCOPE_IP).alias(SCOPE), pl.col(C.SOURCE_IP).alias(KEY), LEGIT_ACCOUNTS, LAST_SEEN
        ),
        per_prefix.select(
            pl.lit(SCOPE_PREFIX).alias(SCOPE), pl.col(C.PREFIX).alias(KEY), LEGIT_ACCOUNTS, LAST_SEEN
        ),
    ]
    return (
        pl.concat([p.cast(dict(SHARED_SCHEMA)) for p in parts], how="vertical")
        .sort(SCOPE, KEY)
        .select(list(SHARED_SCHEMA))
    )


def shared_address_counts(events: pl.LazyFrame | pl.DataFrame) -> pl.DataFrame:
    """Distinct accounts with successful logins per source address and per prefix (see module doc)."""
    return counts_from_pairs(success_pairs(events.lazy()).collect())


def merge_shared(*tables: pl.DataFrame | None) -> pl.DataFrame:
    """Merge counts tables (tonight's and the history's) by maximum per key.

    Raises:
        SchemaError: a table is not of :data:`SHARED_SCHEMA` shape.
    """
    frames = []
    for table in tables:
        if table is None:
            continue
        check(table.schema, SHARED_SCHEMA, what="shared-address counts")
        frames.append(table.select(list(SHARED_SCHEMA)))
    if not frames:
        return pl.DataFrame(schema=SHARED_SCHEMA)
    return (
        pl.concat(frames, how="vertical")
        .group_by(SCOPE, KEY)
        .agg(pl.col(LEGIT_ACCOUNTS).max(), pl.col(LAST_SEEN).max())
        .sort(SCOPE, KEY)
        .select(list(SHARED_SCHEMA))
    )


def add_shared_columns(events: pl.LazyFrame, counts: pl.DataFrame) -> pl.LazyFrame:
    """Add ``ip_legit_accounts`` and ``prefix_legit_accounts`` (0 where none; needs ``prefix``)."""

    def table(scope: str, on: str, name: str) -> pl.LazyFrame:
        return (
            counts.lazy()
            .filter(pl.col(SCOPE) == scope)
            .select(pl.col(KEY).alias(on), pl.col(LEGIT_ACCOUNTS).alias(name))
        )

    def zero_filled(name: str, on: str) -> pl.Expr:
        return pl.when(pl.col(on).is_not_null()).then(pl.col(name).fill_null(0)).cast(pl.Int32).alias(name)

    return (
        events.join(
            table(SCOPE_IP, C.SOURCE_IP, C.IP_LEGIT_ACCOUNTS),
            on=C.SOURCE_IP,
            how="left",
            maintain_order="left",
        )
        .join(
            table(SCOPE_PREFIX, C.PREFIX, C.PREFIX_LEGIT_ACCOUNTS),
            on=C.PREFIX,
            how="left",
            maintain_order="left",
        )
        .with_columns(
            zero_filled(C.IP_LEGIT_ACCOUNTS, C.SOURCE_IP), zero_filled(C.PREFIX_LEGIT_ACCOUNTS, C.PREFIX)
        )
    )
