"""Choosing the scope of blocks: address, prefix, /48, AS number, within a collateral budget.

The collateral of a scope is the set of accounts with a legitimate successful login from inside it
(on the services the block would cover), practitioners counted apart. Widening is evidence-led:
a prefix (or an IPv6 /48) is blocked when several attacking addresses share it, or it is
hosting/VPN/Tor infrastructure (attackers rent the neighbouring addresses next); an AS number when
it is hosting/VPN/Tor infrastructure, and only when nobody legitimate logs in from it on any
service. Residential and mobile networks are not widened on thinner evidence (a lone campaign
address, attackers scattered over an ISP's prefixes): proxies and bots sit on home lines, and the
next day's travellers and neighbours log in from the same /24s and AS numbers
(``widen_residential`` restores it). What cannot be
blocked (shared addresses, allow-listed networks, exits of a VPN legitimate users log in through,
collateral over budget) is returned with the reason, so that the plan protects the targeted
accounts instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from detector.config import PlanConfig
from detector.recommend import nets
from detector.recommend.guard import Guard
from detector.schema import C, Service

KEY = "key"
LEVEL = "level"
SERVICES = "services"
SOURCES = "sources"
COLLATERAL = "collateral_accounts"
COLLATERAL_PRACT = "collateral_practitioners"
COLLATERAL_LIST = "collateral_list"
"""The accounts counted in ``collateral_accounts`` (sorted), for the collateral report."""
WHY = "why"
EXCEPT = "except_addresses"
"""Block column: legitimate users' own addresses inside the target that stay allowed."""
ANONYMOUS = "anonymous"
"""Attacker column: the source is hosting, VPN or Tor infrastructure (widens to its prefix)."""
VPN = "vpn"
"""Attacker column: the source is a commercial VPN exit (customers rotate through its exits)."""

LEVEL_IP = "ip"
LEVEL_PREFIX = "prefix"
LEVEL_PREFIX48 = "prefix48"
LEVEL_ASN = "asn"

SERVICE_GROUPS: dict[str, tuple[str, ...]] = {
    Service.SMTP: (Service.SMTP, Service.SUBMISSION),
    Service.SUBMISSION: (Service.SMTP, Service.SUBMISSION),
}
"""Services that are one door for an attacker: SMTP AUTH on port 25 and on submission."""

WHY_HOLDS_ALLOWLISTED = "AS holding an allow-listed network"
WHY_SHARED = "shared address with legitimate users"
WHY_VPN = "exit of a VPN service legitimate users log in through"
WHY_BUDGET = "legitimate users behind it exceed the collateral budget"

ATTACKER_COLUMNS = {
    C.SOURCE_IP: pl.String,
    C.PREFIX: pl.String,
    C.PREFIX48: pl.String,
    C.ASN: pl.Int64,
    C.CAMPAIGN: pl.String,
    "shared_address": pl.Boolean,
    SERVICES: pl.List(pl.String),
}
"""What :func:`choose_blocks` needs per attacking source (more columns are carried along)."""

LEGIT_COLUMNS = {
    C.ACCOUNT: pl.String,
    C.IS_PRACTITIONER: pl.Boolean,
    C.SOURCE_IP: pl.String,
    C.PREFIX: pl.String,
    C.PREFIX48: pl.String,
    C.ASN: pl.Int64,
    C.SERVICE: pl.String,
}
"""One row per distinct legitimate successful login (account, where from, which service)."""


REFUSED_SCHEMA = {LEVEL: pl.String, KEY: pl.String, WHY: pl.String}


@dataclass(frozen=True)
class Scoping:
    """Result of :func:`choose_blocks`.

    Attributes:
        blocks: one row per block: ``level`` (ip, prefix, prefix48, asn), ``key`` (the address,
            CIDR or ``AS<n>``), ``services`` (empty = all), ``sources`` (attacking addresses
            covered), ``collateral_accounts``, ``collateral_practitioners``.
        unblocked: attacking sources left unblocked, with ``why`` and their own collateral.
        refused: ``level``, ``key``, ``why`` of every block the guard refused (a refused wide
            block falls back to narrower ones; see :mod:`detector.recommend.guard`).
    """

    blocks: pl.DataFrame
    unblocked: pl.DataFrame
    refused: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REFUSED_SCHEMA))


def expand_services(services: list[str] | None) -> list[str]:
    """Attacked services -> the services a measure covers (SMTP AUTH covers submission too); [] = all."""
    if not services:
        return []
    out = set()
    for s in services:
        out.update(SERVICE_GROUPS.get(s, (s,)))
    return sorted(out)


def expand_services_expr(services: pl.Expr) -> pl.Expr:
    """Vectorised :func:`expand_services` over a list column."""
    smtp = services.list.contains(Service.SMTP) | services.list.contains(Service.SUBMISSION)
    extra = (
        pl.when(smtp)
        .then(pl.lit([Service.SMTP, Service.SUBMISSION]))
        .otherwise(pl.lit([], pl.List(pl.String)))
    )
    return pl.concat_list(services, extra).list.unique().list.sort()


def services_union() -> pl.Expr:
    """Aggregate the ``services`` of grouped rows: [] (all) when any row covers all services."""
    return (
        pl.when(pl.col(SERVICES).list.len().min() == 0)
        .then(pl.lit([], pl.List(pl.String)))
        .otherwise(
            pl.col(SERVICES).list.explode(keep_nulls=False, empty_as_null=False).unique().sort().implode()
        )
        .first()
        .alias(SERVICES)
    )


def keyed(frame: pl.DataFrame | pl.LazyFrame, level: str) -> pl.Expr:
    """The scope key of a frame's rows at ``level`` as text (``AS<n>`` for AS numbers)."""
    if level == LEVEL_ASN:
        return pl.when(pl.col(C.ASN).is_not_null()).then(pl.format("AS{}", pl.col(C.ASN))).alias(KEY)
    column = {LEVEL_IP: C.SOURCE_IP, LEVEL_PREFIX: C.PREFIX, LEVEL_PREFIX48: C.PREFIX48}[level]
    return pl.col(column).alias(KEY)


def collateral(
    cands: pl.DataFrame, legit: pl.DataFrame, level: str, *, all_services: bool = False
) -> pl.DataFrame:
    """Add collateral counts to candidates (``key``, ``services``) at ``level``.

    A legitimate login counts when it comes from inside the key and its service is one the
    candidate covers (every service when ``services`` is empty or ``all_services``; a login of
    unknown service always counts). A practitioner's login counts on every service: an address a
    practitioner logs in from is a home or practice line, used for every protocol the next day.
    """
    hits = (
        cands.select(KEY, SERVICES)
        .join(legit.select(keyed(legit, level), C.SERVICE, C.ACCOUNT, C.IS_PRACTITIONER), on=KEY, how="inner")
        .filter(
            pl.lit(all_services)
            | pl.col(C.IS_PRACTITIONER).fill_null(False)
            | (pl.col(SERVICES).list.len().fill_null(0) == 0)
            | pl.col(C.SERVICE).is_null()
            | pl.col(SERVICES).list.contains(pl.col(C.SERVICE))
        )
        .group_by(KEY)
        .agg(
            pl.col(C.ACCOUNT).n_unique().cast(pl.Int64).alias(COLLATERAL),
            pl.col(C.ACCOUNT)
            .filter(pl.col(C.IS_PRACTITIONER).fill_null(False))
            .n_unique()
            .cast(pl.Int64)
            .alias(COLLATERAL_PRACT),
            pl.col(C.ACCOUNT).unique().sort().alias(COLLATERAL_LIST),
        )
    )
    return cands.join(hits, on=KEY, how="left").with_columns(
        pl.col(COLLATERAL).fill_null(0),
        pl.col(COLLATERAL_PRACT).fill_null(0),
        pl.col(COLLATERAL_LIST).fill_null(pl.lit([], pl.List(pl.String))),
    )


def _within(cfg: PlanConfig, *, zero: bool = False) -> pl.Expr:
    acc = 0 if zero else cfg.collateral_budget_accounts
    pra = 0 if zero else cfg.collateral_budget_practitioners
    return (pl.col(COLLATERAL) <= acc) & (pl.col(COLLATERAL_PRACT) <= pra)


def _refused_keys(
    keys: list[str], level: str, guard: Guard, allow: list[nets.Net], addresses: pl.DataFrame
) -> dict[str, str]:
    """Keys (addresses, CIDRs, ``AS<n>``) the plan may not block at ``level``, with the reason.

    Addresses and CIDRs: :meth:`Guard.refusal` (valid, not too wide, clear of never-block
    networks). An AS number: listed itself, or an address seen in the logs inside an allow-listed
    CIDR belongs to it.
    """
    out: dict[str, str] = {}
    if level == LEVEL_IP:
        refused = guard.addresses(pl.Series(keys, dtype=pl.String))
        return dict(
            zip(refused.get_column(C.SOURCE_IP).to_list(), refused.get_column(WHY).to_list(), strict=True)
        )
    if level != LEVEL_ASN:
        for k in keys:
            why = guard.refusal(k)
            if why is not None:
                out[k] = why
        return out
    holding: set[str] = set()
    cidrs = [n for n in allow if n.kind != nets.ASN]
    if cidrs and addresses.height:
        inside = nets.containing(addresses.get_column(C.SOURCE_IP), cidrs)
        holding = set(
            addresses.join(inside, on=C.SOURCE_IP, how="semi")
            .select(pl.format("AS{}", pl.col(C.ASN)))
            .drop_nulls()
            .to_series()
            .to_list()
        )
    for k in keys:
        why = guard.asn_refusal(k) or (WHY_HOLDS_ALLOWLISTED if k in holding else None)
        if why is not None:
            out[k] = why
    return out


def _groups(attackers: pl.DataFrame, level: str) -> pl.DataFrame:
    return (
        attackers.with_columns(keyed(attackers, level))
        .filter(pl.col(KEY).is_not_null())
        .group_by(KEY)
        .agg(
            pl.col(C.SOURCE_IP).unique().sort().alias(SOURCES),
            services_union(),
            pl.col(C.CAMPAIGN).drop_nulls().n_unique().alias("_campaigns"),
            pl.col(C.PREFIX).n_unique().alias("_prefixes"),
            (
                pl.col(ANONYMOUS).fill_null(False).any() if ANONYMOUS in attackers.columns else pl.lit(False)
            ).alias("_anonymous"),
        )
        .with_columns(pl.col(SOURCES).list.len().alias("_n"), pl.lit(level).alias(LEVEL))
        .sort(KEY)
    )


BLOCK_SCHEMA = {
    LEVEL: pl.String,
    KEY: pl.String,
    SERVICES: pl.List(pl.String),
    SOURCES: pl.List(pl.String),
    COLLATERAL: pl.Int64,
    COLLATERAL_PRACT: pl.Int64,
    EXCEPT: pl.List(pl.String),
    COLLATERAL_LIST: pl.List(pl.String),
}


def _carve(
    groups: pl.DataFrame,
    legit: pl.DataFrame,
    cfg: PlanConfig,
    refuse: Callable[[pl.DataFrame, str], pl.DataFrame],
) -> pl.DataFrame:
    """Hosting/VPN/Tor prefixes whose few legitimate users have their own addresses: block the prefix
    except those addresses (servers keep their addresses; attackers rent the neighbouring ones).

    Only when every legitimate user there has a known address (not only a prefix from earlier
    nights) and the exceptions number at most ``cfg.carve_max_addresses``; an attacking address
    that is also a user's stays unblocked (its targets are protected instead).
    """
    if groups.is_empty() or cfg.carve_max_addresses <= 0:
        return pl.DataFrame(schema=BLOCK_SCHEMA)
    users = (
        groups.select(KEY)
        .join(legit.select(keyed(legit, LEVEL_PREFIX), C.SOURCE_IP, C.ACCOUNT), on=KEY)
        .group_by(KEY)
        .agg(
            pl.col(C.SOURCE_IP).drop_nulls().unique().sort().alias(EXCEPT),
            pl.col(C.SOURCE_IP).is_null().any().alias("_unknown_address"),
        )
        .filter(~pl.col("_unknown_address"))
    )
    g = (
        groups.join(users, on=KEY, how="inner")
        .with_columns(pl.col(SOURCES).list.set_difference(pl.col(EXCEPT)).list.sort().alias(SOURCES))
        .filter((pl.col(EXCEPT).list.len() <= cfg.carve_max_addresses) & (pl.col(SOURCES).list.len() > 0))
    )
    return refuse(g, LEVEL_PREFIX).select(
        LEVEL,
        KEY,
        SERVICES,
        SOURCES,
        pl.lit(0, pl.Int64).alias(COLLATERAL),
        pl.lit(0, pl.Int64).alias(COLLATERAL_PRACT),
        EXCEPT,
    )


def choose_blocks(
    attackers: pl.DataFrame,
    legit: pl.DataFrame,
    cfg: PlanConfig,
    addresses: pl.DataFrame | None = None,
) -> Scoping:
    """Cover attacking sources with blocks of the right width (see module doc).

    Args:
        attackers: one row per attacking source (:data:`ATTACKER_COLUMNS`); ``services`` are the
            services it attacked, already expanded (:func:`expand_services`), [] = all.
        legit: distinct legitimate successful logins (:data:`LEGIT_COLUMNS`).
        cfg: budgets, widening thresholds and the allowlist.
        addresses: ``source_ip`` and ``asn`` of the addresses seen, to tell which AS numbers hold
            allow-listed CIDRs (defaults to the attackers' and legitimate logins' addresses).
    """
    allow = nets.parse_nets(cfg.allowlist)
    guard = Guard.from_config(cfg)
    legit = legit.select([pl.col(k).cast(v) for k, v in LEGIT_COLUMNS.items()])
    if addresses is None:
        addresses = pl.concat(
            [attackers.select(C.SOURCE_IP, C.ASN), legit.select(C.SOURCE_IP, C.ASN)]
        ).unique()
    left = attackers
    blocks: list[pl.DataFrame] = []

    def unblock(frame: pl.DataFrame, why: str) -> pl.DataFrame:
        return frame.select(C.SOURCE_IP).with_columns(pl.lit(why).alias(WHY))

    refused: list[pl.DataFrame] = []

    def refuse(groups: pl.DataFrame, level: str) -> pl.DataFrame:
        """``groups`` without the keys the guard refuses at ``level`` (recorded in ``refused``)."""
        bad = _refused_keys(groups.get_column(KEY).to_list(), level, guard, allow, addresses)
        if bad:
            refused.append(pl.DataFrame({LEVEL: level, KEY: list(bad), WHY: list(bad.values())}))
        return groups.filter(~pl.col(KEY).is_in(list(bad)))

    # sources that may not be blocked even alone: malformed, reserved or allow-listed addresses,
    # and those of an allow-listed AS (or one holding an allow-listed network)
    by_address = guard.addresses(left.get_column(C.SOURCE_IP))
    by_asn = _refused_keys(
        sorted({f"AS{a}" for a in left.get_column(C.ASN).drop_nulls().to_list()}),
        LEVEL_ASN,
        guard,
        allow,
        addresses,
    )
    listed = left.join(by_address.rename({WHY: "_why"}), on=C.SOURCE_IP, how="left").select(
        C.SOURCE_IP,
        pl.coalesce(
            "_why",
            pl.format("AS{}", pl.col(C.ASN)).replace_strict(by_asn, default=None, return_dtype=pl.String),
        ).alias(WHY),
    )
    listed = listed.filter(pl.col(WHY).is_not_null())
    refused.append(listed.select(pl.lit(LEVEL_IP).alias(LEVEL), pl.col(C.SOURCE_IP).alias(KEY), WHY))
    unblocked = [listed]
    left = left.filter(~pl.col(C.SOURCE_IP).is_in(listed.get_column(C.SOURCE_IP).implode()))
    shared = pl.col("shared_address").fill_null(False)
    unblocked.append(unblock(left.filter(shared), WHY_SHARED))
    left = left.filter(~shared)
    if VPN in left.columns:
        customers = legit.get_column(C.ASN).drop_nulls().unique().implode()
        vpn = pl.col(VPN).fill_null(False) & pl.col(C.ASN).is_in(customers)
        unblocked.append(unblock(left.filter(vpn), WHY_VPN))
        left = left.filter(~vpn)

    def take(level: str, eligible: pl.Expr, *, zero: bool = False, all_services: bool = False) -> None:
        nonlocal left
        groups = _groups(left, level).filter(eligible)
        if groups.is_empty():
            return
        if all_services:
            groups = groups.with_columns(pl.lit([], pl.List(pl.String)).alias(SERVICES))
        groups = collateral(groups, legit, level, all_services=all_services)
        chosen = refuse(groups.filter(_within(cfg, zero=zero)), level)
        if chosen.is_empty():
            return
        blocks.append(
            chosen.select(LEVEL, KEY, SERVICES, SOURCES, COLLATERAL, COLLATERAL_PRACT, COLLATERAL_LIST)
        )
        covered = chosen.get_column(SOURCES).explode().to_list()
        left = left.filter(~pl.col(C.SOURCE_IP).is_in(covered))

    residential = pl.lit(cfg.widen_residential)
    take(
        LEVEL_ASN,
        (residential & (pl.col("_n") >= cfg.asn_min_sources) & (pl.col("_prefixes") >= 2))
        | pl.col("_anonymous"),
        zero=True,
        all_services=True,
    )
    take(LEVEL_PREFIX48, (pl.col("_prefixes") >= 2) | ((pl.col("_campaigns") > 0) & (pl.col("_n") >= 2)))
    take(
        LEVEL_PREFIX,
        (pl.col("_n") >= cfg.prefix_min_sources)
        | (residential & (pl.col("_campaigns") > 0))
        | pl.col("_anonymous"),
    )
    carved = _carve(_groups(left, LEVEL_PREFIX).filter(pl.col("_anonymous")), legit, cfg, refuse)
    if carved.height:
        blocks.append(carved)
        left = left.filter(~pl.col(C.SOURCE_IP).is_in(carved.get_column(SOURCES).explode().to_list()))
    singles = collateral(left.select(keyed(left, LEVEL_IP), SERVICES), legit, LEVEL_IP)
    ok = refuse(singles.filter(_within(cfg)), LEVEL_IP)
    if ok.height:
        blocks.append(
            ok.select(
                pl.lit(LEVEL_IP).alias(LEVEL),
                KEY,
                SERVICES,
                pl.concat_list(pl.col(KEY)).alias(SOURCES),
                COLLATERAL,
                COLLATERAL_PRACT,
                COLLATERAL_LIST,
            )
        )
    unblocked.append(
        unblock(left.filter(~pl.col(C.SOURCE_IP).is_in(ok.get_column(KEY).to_list())), WHY_BUDGET)
    )
    all_blocks = (
        pl.concat(
            [
                b.select(
                    [
                        pl.col(k).cast(v) if k in b.columns else pl.lit(None, v).alias(k)
                        for k, v in BLOCK_SCHEMA.items()
                    ]
                )
                for b in blocks
            ]
        )
        if blocks
        else pl.DataFrame(schema=BLOCK_SCHEMA)
    )
    left_out = pl.concat(unblocked).unique(C.SOURCE_IP, keep="first", maintain_order=True)
    left_out = collateral(
        left_out.join(attackers.select(C.SOURCE_IP, SERVICES), on=C.SOURCE_IP, how="left").rename(
            {C.SOURCE_IP: KEY}
        ),
        legit,
        LEVEL_IP,
    ).rename({KEY: C.SOURCE_IP})
    return Scoping(
        blocks=all_blocks,
        unblocked=left_out.sort(C.SOURCE_IP),
        refused=pl.concat(refused).cast(REFUSED_SCHEMA).unique(maintain_order=True),
    )
