"""Takeover logins from an attacking hosting network.

A credential-stuffing or spraying campaign rents addresses in a few hosting networks. When it
finds a working password it logs in, often from a sibling address of the same network that never
failed anywhere: the login looks calm to the account model (one success, no failure) and the
address has no attack record of its own. What gives it away is the network: a hosting AS where,
tonight, several addresses with no legitimate user attack the mailboxes, and which the account
never used before. Such a login is a takeover; its rules' risk is raised to
``[scoring] account_compromised`` so that the account is compromised, the address is malicious,
the night's history does not learn it and the plan can block the network.

The network table is read across accounts (computed once over all events when accounts are
scored per shard); marking the events is row-wise.
"""

from __future__ import annotations

import polars as pl

from detector.config import Config
from detector.schema import C
from detector.score import aggregates as agg

HOSTED = "_hosted_takeover"
"""Working column: on a takeover login from an attacking hosting network, how many attacking
addresses the network holds tonight (null on other events)."""

N = "_n"
HOSTED_SCHEMA = pl.Schema({C.EVENT_ID: pl.Int64, C.ASN: pl.Int64, N: pl.UInt32})

_NEEDS = ("is_new_asn", C.IS_HOSTING, C.IS_VPN, C.ASN, C.IP_LEGIT_ACCOUNTS)


def _rented() -> pl.Expr:
    """A hosting address that is not a VPN exit (a VPN's customers share its exits)."""
    return pl.col(C.IS_HOSTING).fill_null(False) & ~pl.col(C.IS_VPN).fill_null(False)


def attacking_networks(events: pl.LazyFrame, attackers: pl.LazyFrame, min_sources: int) -> pl.LazyFrame:
    """``asn, _n``: hosting AS numbers holding at least ``min_sources`` of the ``attackers``
    (a frame of ``source_ip, asn``: tonight's unshared malicious addresses with no legitimate user)."""
    rented = events.filter(_rented()).select(C.SOURCE_IP).unique()
    return (
        attackers.join(rented, on=C.SOURCE_IP, how="semi")
        .filter(pl.col(C.ASN).is_not_null())
        .group_by(C.ASN)
        .agg(pl.len().cast(pl.UInt32).alias(N))
        .filter(pl.col(N) >= min_sources)
    )


def hosted_takeovers(events: pl.LazyFrame, attackers: pl.LazyFrame, cfg: Config) -> pl.LazyFrame:
    """``event_id, asn, _n``: the takeover logins from an attacking hosting network.

    A success from a hosting address (not a VPN exit) in an :func:`attacking_networks` AS
    (``[scoring] takeover_network_sources`` attackers at least; 0 turns the rule off), into an
    account with a history (past its cold start) that never logged in from that AS
    (``is_new_asn``), from an address that is not shared (``ip_legit_accounts`` below
    ``shared_address_min_accounts``). An owner's own server or VPS would be in the history.
    """
    s = cfg.scoring
    if s.takeover_network_sources <= 0 or not set(_NEEDS) <= set(events.collect_schema().names()):
        return pl.LazyFrame(schema=HOSTED_SCHEMA)
    networks = attacking_networks(events, attackers, s.takeover_network_sources)
    new_network = pl.col("is_new_asn") == 1
    unshared = pl.col(C.IP_LEGIT_ACCOUNTS).fill_null(0) < s.shared_address_min_accounts
    return (
        events.filter(agg.is_success() & pl.col(C.ACCOUNT).is_not_null() & _rented() & new_network & unshared)
        .select(C.EVENT_ID, C.ASN)
        .join(networks, on=C.ASN)
        .select(list(HOSTED_SCHEMA))
    )


def mark(events: pl.LazyFrame, hosted: pl.DataFrame, cfg: Config, columns: list[str]) -> pl.LazyFrame:
    """Raise ``columns`` (risk columns) of the ``hosted`` events to ``account_compromised`` and
    ``source_malicious`` at least, and put the network's attacker count in :data:`HOSTED`."""
    floor = pl.lit(max(cfg.scoring.account_compromised, cfg.scoring.source_malicious))
    marked = hosted.lazy().select(C.EVENT_ID, pl.col(N).alias(HOSTED))
    hit = pl.col(HOSTED).is_not_null()
    return events.join(marked, on=C.EVENT_ID, how="left", maintain_order="left").with_columns(
        pl.when(hit).then(pl.max_horizontal(c, floor)).otherwise(pl.col(c)).alias(c) for c in columns
    )


def reasons(events: pl.LazyFrame) -> pl.LazyFrame:
    """``account, _hosted_why``: each account's first hosted takeover login, in words."""
    if HOSTED not in events.collect_schema().names():
        return pl.LazyFrame(schema={C.ACCOUNT: pl.String, "_hosted_why": pl.String})
    why = pl.format(
        "taken over: a login from AS{} {}, a hosting network where {} attacking addresses operate "
        "tonight, which the account never used before",
        pl.col(C.ASN),
        pl.col(C.AS_ORG).fill_null(""),
        pl.col(HOSTED),
    )
    return (
        events.filter(pl.col(HOSTED).is_not_null())
        .sort(C.EVENT_ID)
        .group_by(C.ACCOUNT)
        .agg(why.first().alias("_hosted_why"))
    )
