"""Group attacking sources into campaigns instead of judging each address alone.

Sources are nodes of a graph whose edges are shared keys: an account both tried, a busy hour in
which both were active, the same /24 (/64), the same password hash. Connected components are found
by vectorised min-label propagation (a few joins per round), so thousands of sources cost
milliseconds. Three kinds of campaign, each with stable ids:

- ``cs-``: credential stuffing (T1110.004): sources with few accounts and at most a couple of tries
  per account, linked by target accounts, busy hours and prefixes;
- ``ps-``: password spraying (T1110.003): sources trying many accounts, linked by prefix and
  password hash;
- ``db-``: distributed brute force (T1110.001): the many sources against one account in a window;
- ``gs-``: guessing (T1110.001): sources that fail many times and never log in, whatever the
  account (``guessing_source``), linked by prefix and ASN: several of them sharing a network.

Identities across nights (:func:`relink`, with the campaigns kept in the state): tonight's
stuffing or spraying campaign *is* an earlier campaign of the same kind when it shares
infrastructure with it: at least one source address, or at least
:data:`LINK_MIN_SHARED_PREFIXES` /24 (/64) prefixes. It then keeps the earlier id (of several
candidates, the one sharing the most addresses, then prefixes, then the smallest id); its
``first_seen`` is the earlier campaign's. A distributed brute force is identified by its target
account, so it keeps its id for as long as the account is attacked that way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import polars as pl

from detector.detect.findings import CAMPAIGN_SCHEMA, stable_ids
from detector.features import BUCKET
from detector.features import expressions as x
from detector.schema import UTC_US, C, Column

NODE, KEY, LABEL = "_node", "_key", "_label"
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _seconds(duration: str) -> float:
    """Seconds in a validated polars duration such as ``30m`` or ``1h``."""
    unit = duration.lstrip("0123456789")
    return int(duration[: len(duration) - len(unit)]) * _UNITS[unit]


def components(edges: pl.DataFrame, max_rounds: int = 200) -> pl.DataFrame:
    """Connected components of a bipartite node-key graph: node -> smallest node of its component."""
    edges = edges.select(NODE, KEY).unique()
    labels = edges.select(NODE).unique().with_columns(pl.col(NODE).alias(LABEL))
    for _ in range(max_rounds):
        by_key = edges.join(labels, on=NODE).group_by(KEY).agg(pl.col(LABEL).min())
        new = edges.join(by_key, on=KEY).group_by(NODE).agg(pl.col(LABEL).min())
        # pointer jumping: follow the label's own label once (halves the rounds on long chains)
        new = (
            new.join(new.rename({NODE: LABEL, LABEL: "_l2"}), on=LABEL, how="left")
            .with_columns(pl.min_horizontal(LABEL, pl.col("_l2").fill_null(pl.col(LABEL))).alias(LABEL))
            .drop("_l2")
        )
        changed = (
            new.join(labels, on=NODE, suffix="_old").filter(pl.col(LABEL) != pl.col(f"{LABEL}_old")).height
        )
        labels = new
        if changed == 0:
            break
    return labels


def _stuffing_candidates(df: pl.LazyFrame, stuffing: Any, dbf: Any) -> pl.LazyFrame:
    """Failed logins of sources that look like a stuffing proxy (few accounts, 1-2 tries each).

    Per-source facts are group-by tables joined back (not window functions: a night has hundreds
    of thousands of account+source pairs, and a window over them costs a join each).
    """
    dbf_target = (pl.col("acct_fail_sources") >= dbf.min_sources) & (
        pl.col("acct_max_fail_per_source") <= dbf.max_failures_per_source
    )
    # users, not proxies: a source that got in after failing on the same account (a typo), that logs
    # one account in again and again, or whose unknown user is the local part of an account that got
    # in from it (the domain left out)
    ok = x.is_success()
    local = pl.col(C.ACCOUNT).str.split("@").list.first()
    retried = df.group_by(BUCKET, C.SOURCE_IP).agg(
        (ok & (pl.col("seg_failures") >= 1)).any().alias("_retried")
    )
    recurring = (
        df.group_by(C.SOURCE_IP, C.ACCOUNT)
        .agg((pl.col("_ok").sum() >= 2).alias("_recurring"))
        .group_by(C.SOURCE_IP)
        .agg(pl.col("_recurring").any())
    )
    users = df.filter(ok).select(C.SOURCE_IP, local.alias("_local")).unique()
    typo = (
        df.filter(x.is_unknown_user())
        .select(C.SOURCE_IP, local.alias("_local"))
        .join(users, on=[C.SOURCE_IP, "_local"], how="semi")
        .select(C.SOURCE_IP, pl.lit(True).alias("_typo"))
        .unique()
    )
    user_like = pl.any_horizontal(pl.col("_retried", "_recurring", "_typo").fill_null(False))
    cand = (
        df.join(retried, on=[BUCKET, C.SOURCE_IP], how="left", nulls_equal=True, maintain_order="left")
        .join(recurring, on=C.SOURCE_IP, how="left", nulls_equal=True, maintain_order="left")
        .join(typo, on=C.SOURCE_IP, how="left", nulls_equal=True, maintain_order="left")
        .filter(~user_like)
        .drop("_retried", "_recurring", "_typo")
        .filter(
            x.is_failed()
            & pl.col(C.SOURCE_IP).is_not_null()
            & (pl.col("src_max_tries_per_account") <= stuffing.max_tries_per_account)
            & (pl.col("src_accounts") <= stuffing.max_accounts_per_source)
            & (pl.col("src_success_share") <= stuffing.max_success_share)
            & (pl.col("_n_legit") < stuffing.max_legit_accounts)
            & ~dbf_target
        )
    )
    # a source whose candidate failures mostly come from networks the account uses is not a proxy
    usual = cand.group_by(BUCKET, C.SOURCE_IP).agg(
        (pl.col("acct_prefix_logins") > 0).cast(pl.Float64).mean().alias("_usual")
    )
    return (
        cand.join(usual, on=[BUCKET, C.SOURCE_IP], how="left", nulls_equal=True, maintain_order="left")
        .filter(pl.col("_usual") < 0.5)
        .drop("_usual")
    )


STUFFING_CANDIDATE_SCHEMA = {
    C.SOURCE_IP: pl.String,
    C.ACCOUNT: pl.String,
    C.PREFIX: pl.String,
    C.TIMESTAMP: UTC_US,
}


def _stuffing_rows(df: pl.DataFrame, stuffing: Any, dbf: Any) -> pl.DataFrame:
    """The candidate failures of stuffing proxies (per source: any set of whole sources)."""
    # lazily, so that only the columns the rule reads are filtered and joined (not the wide frame)
    return (
        _stuffing_candidates(df.lazy(), stuffing, dbf)
        .select(C.SOURCE_IP, C.ACCOUNT, C.PREFIX, C.TIMESTAMP)
        .collect()
    )


def _stuffing(cand: pl.DataFrame, stuffing: Any) -> pl.DataFrame:
    """``cs-`` campaigns over the candidate failures of all sources (:func:`_stuffing_rows`)."""
    if cand.is_empty():
        return pl.DataFrame(schema={C.SOURCE_IP: pl.String, C.CAMPAIGN: pl.String})
    # two grids of time slots offset by half a slot, so that busy consecutive slots chain up
    half = pl.duration(seconds=_seconds(stuffing.slot_window) / 2)
    grids = [
        pl.col(C.TIMESTAMP).dt.truncate(stuffing.slot_window),
        (pl.col(C.TIMESTAMP) + half).dt.truncate(stuffing.slot_window),
    ]
    slots = [
        cand.select(pl.col(C.SOURCE_IP).alias(NODE), (f"t{i}:" + g.cast(pl.String)).alias(KEY))
        .with_columns(pl.col(NODE).n_unique().over(KEY).alias("_n"))
        .filter(pl.col("_n") >= stuffing.min_sources)
        .drop("_n")
        for i, g in enumerate(grids)
    ]
    edges = pl.concat(
        [
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("a:" + pl.col(C.ACCOUNT)).alias(KEY)),
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("p:" + pl.col(C.PREFIX)).alias(KEY)),
            *slots,
        ]
    ).drop_nulls()
    comp = components(edges)
    stats = (
        cand.join(comp, left_on=C.SOURCE_IP, right_on=NODE)
        .group_by(LABEL)
        .agg(
            pl.col(C.SOURCE_IP).n_unique().alias("_ns"),
            pl.col(C.ACCOUNT).n_unique().alias("_na"),
            pl.col(C.TIMESTAMP).min().alias("_t0"),
        )
        .filter((pl.col("_ns") >= stuffing.min_sources) & (pl.col("_na") >= stuffing.min_accounts))
        .with_columns(stable_ids("cs-", [LABEL, "_t0"]).alias(C.CAMPAIGN))
    )
    return comp.join(stats.select(LABEL, C.CAMPAIGN), on=LABEL).select(
        pl.col(NODE).alias(C.SOURCE_IP), C.CAMPAIGN
    )


def spraying_sources(spray: Any) -> pl.Expr:
    """Source-level spraying rule (shared with the detector): many accounts, few tries each, mostly failing."""
    return (
        (pl.col("src_accounts") >= spray.min_accounts)
        & (pl.col("src_failures") <= spray.max_tries_per_account * pl.col("src_accounts"))
        & (pl.col("src_success_share") <= spray.max_success_share)
    )


def _spraying_rows(df: pl.DataFrame, spray: Any) -> pl.DataFrame:
    """The failures of spraying sources (a row filter)."""
    return (
        df.lazy()
        .filter(x.is_failed() & pl.col(C.SOURCE_IP).is_not_null() & spraying_sources(spray))
        .select(C.SOURCE_IP, C.PREFIX, C.PASSWORD_HASH, C.TIMESTAMP)
        .collect()
    )


def _spraying(cand: pl.DataFrame) -> pl.DataFrame:
    """``ps-`` campaigns over the failures of all spraying sources (:func:`_spraying_rows`)."""
    if cand.is_empty():
        return pl.DataFrame(schema={C.SOURCE_IP: pl.String, C.CAMPAIGN: pl.String})
    edges = pl.concat(
        [
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("p:" + pl.col(C.PREFIX)).alias(KEY)),
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("h:" + pl.col(C.PASSWORD_HASH)).alias(KEY)),
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("s:" + pl.col(C.SOURCE_IP)).alias(KEY)),
        ]
    ).drop_nulls()
    comp = components(edges)
    first = (
        cand.join(comp, left_on=C.SOURCE_IP, right_on=NODE)
        .group_by(LABEL)
        .agg(pl.col(C.TIMESTAMP).min().alias("_t0"))
        .with_columns(stable_ids("ps-", [LABEL, "_t0"]).alias(C.CAMPAIGN))
    )
    return comp.join(first.select(LABEL, C.CAMPAIGN), on=LABEL).select(
        pl.col(NODE).alias(C.SOURCE_IP), C.CAMPAIGN
    )


def _distributed_rows(df: pl.DataFrame, dbf: Any) -> pl.DataFrame:
    """The failures against accounts under a distributed brute force (a row filter)."""
    return (
        df.lazy()
        .filter(
            x.is_failed()
            & (pl.col("acct_fail_sources") >= dbf.min_sources)
            & (pl.col("acct_max_fail_per_source") <= dbf.max_failures_per_source)
        )
        .select(C.EVENT_ID, BUCKET, C.ACCOUNT, C.TIMESTAMP)
        .collect()
    )


def _distributed(hit: pl.DataFrame) -> pl.DataFrame:
    """``db-`` campaigns over all such failures (:func:`_distributed_rows`)."""
    if hit.is_empty():
        return pl.DataFrame(schema={C.EVENT_ID: pl.UInt64, C.CAMPAIGN: pl.String})
    ids = (
        hit.group_by(BUCKET, C.ACCOUNT)
        .agg(pl.col(C.TIMESTAMP).min().alias("_t0"))
        .with_columns(stable_ids("db-", [C.ACCOUNT]).alias(C.CAMPAIGN))
    )
    return hit.join(ids, on=[BUCKET, C.ACCOUNT]).select(C.EVENT_ID, C.CAMPAIGN)


def _guessing_rows(df: pl.DataFrame, guess: Any) -> pl.DataFrame:
    """The sources :func:`guessing_sources` judges, one row each (per source, its prefix and
    ASN: any set of whole sources, with their prefixes and ASNs)."""
    from detector.detect.detectors.guessing import guessing_sources

    sources = guessing_sources(df.lazy(), guess)
    return (
        df.lazy()
        .join(sources, on=C.SOURCE_IP, how="semi")
        .group_by(C.SOURCE_IP)
        .agg(
            pl.col(C.PREFIX).drop_nulls().first(),
            pl.col(C.ASN).drop_nulls().first(),
            pl.col(C.TIMESTAMP).min().alias("_t0"),
        )
        .collect()
    )


def _guessing(cand: pl.DataFrame, guess: Any) -> pl.DataFrame:
    """``gs-`` campaigns: the sources :func:`guessing_sources` judges (:func:`_guessing_rows`),
    linked by /24 (/64) and ASN, where at least ``min_sources_prefix`` of them share a component."""
    empty = pl.DataFrame(schema={C.SOURCE_IP: pl.String, C.CAMPAIGN: pl.String})
    if cand.height < max(guess.min_sources_prefix, 2):
        return empty
    edges = pl.concat(
        [
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("p:" + pl.col(C.PREFIX)).alias(KEY)),
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("a:" + pl.col(C.ASN).cast(pl.String)).alias(KEY)),
            cand.select(pl.col(C.SOURCE_IP).alias(NODE), ("s:" + pl.col(C.SOURCE_IP)).alias(KEY)),
        ]
    ).drop_nulls()
    comp = components(edges)
    ids = (
        cand.join(comp, left_on=C.SOURCE_IP, right_on=NODE)
        .group_by(LABEL)
        .agg(pl.len().alias("_n"), pl.col("_t0").min())
        .filter(pl.col("_n") >= max(guess.min_sources_prefix, 2))
        .with_columns(stable_ids("gs-", [LABEL, "_t0"]).alias(C.CAMPAIGN))
    )
    return comp.join(ids.select(LABEL, C.CAMPAIGN), on=LABEL).select(
        pl.col(NODE).alias(C.SOURCE_IP), C.CAMPAIGN
    )


@dataclass(frozen=True)
class CampaignKeys:
    """Which events belong to a campaign: spraying and stuffing campaigns by source address (every
    event of the source), distributed brute force by event; an event in several takes the first
    of spraying, stuffing, distributed brute force."""

    spraying: pl.DataFrame
    """source_ip, campaign"""
    stuffing: pl.DataFrame
    """source_ip, campaign"""
    distributed: pl.DataFrame
    """event_id, campaign"""
    guessing: pl.DataFrame | None = None
    """source_ip, campaign (last: a source already in another campaign keeps it)"""


@dataclass(frozen=True)
class CampaignCandidates:
    """What the campaign rules keep of the login events before linking them (narrow rows).

    Each part is computed per source (any set of whole sources, with their prefixes and ASNs,
    gives its own rows: :func:`campaign_candidates` per source shard, then :func:`concat`); the
    links between sources (:func:`campaigns_from`) need them all.
    """

    spraying: pl.DataFrame
    """source_ip, prefix, password_hash, timestamp"""
    stuffing: pl.DataFrame
    """source_ip, account, prefix, timestamp"""
    distributed: pl.DataFrame
    """event_id, window bucket, account, timestamp"""
    guessing: pl.DataFrame
    """source_ip, prefix, asn, _t0"""

    @staticmethod
    def concat(parts: list[CampaignCandidates]) -> CampaignCandidates:
        return CampaignCandidates(
            *(pl.concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(CampaignCandidates))
        )

    def prefixes(self) -> pl.DataFrame:
        """``source_ip, prefix`` of the candidate sources (every source a campaign can hold)."""
        return pl.concat(
            [t.select(C.SOURCE_IP, C.PREFIX) for t in (self.spraying, self.stuffing, self.guessing)]
        ).unique()


def campaign_candidates(
    df: pl.DataFrame, params: dict[str, Any], enabled: dict[str, bool]
) -> CampaignCandidates:
    """The candidate rows of the campaign rules in the feature frame ``df`` (login events; whole
    sources with their prefixes and ASNs). Reads the columns of :data:`CAMPAIGN_INPUT_COLUMNS`."""
    df = df.with_columns(pl.col(C.IP_LEGIT_ACCOUNTS).fill_null(0).alias("_n_legit"))
    none = df.clear()
    return CampaignCandidates(
        spraying=_spraying_rows(
            df if enabled.get("password_spraying", True) else none, params["password_spraying"]
        ),
        stuffing=_stuffing_rows(
            df if enabled.get("credential_stuffing", True) else none,
            params["credential_stuffing"],
            params["distributed_brute_force"],
        ),
        distributed=_distributed_rows(
            df if enabled.get("distributed_brute_force", True) else none, params["distributed_brute_force"]
        ),
        guessing=_guessing_rows(
            df if enabled.get("guessing_source", True) else none, params["guessing_source"]
        ),
    )


def campaigns_from(
    cand: CampaignCandidates, params: dict[str, Any], enabled: dict[str, bool]
) -> CampaignKeys:
    """The campaigns: the candidate rows of every source linked into components."""
    by_source = pl.DataFrame(schema={C.SOURCE_IP: pl.String, C.CAMPAIGN: pl.String})
    by_event = pl.DataFrame(schema={C.EVENT_ID: pl.UInt64, C.CAMPAIGN: pl.String})
    return CampaignKeys(
        spraying=_spraying(cand.spraying) if enabled.get("password_spraying", True) else by_source,
        stuffing=_stuffing(cand.stuffing, params["credential_stuffing"])
        if enabled.get("credential_stuffing", True)
        else by_source,
        distributed=_distributed(cand.distributed)
        if enabled.get("distributed_brute_force", True)
        else by_event,
        guessing=_guessing(cand.guessing, params["guessing_source"])
        if enabled.get("guessing_source", True)
        else by_source,
    )


def campaign_keys(df: pl.DataFrame, params: dict[str, Any], enabled: dict[str, bool]) -> CampaignKeys:
    """The campaigns of the feature frame ``df`` (it may hold only the login events, in event order).

    Reads the columns of :data:`CAMPAIGN_INPUT_COLUMNS`.
    """
    return campaigns_from(campaign_candidates(df, params, enabled), params, enabled)


CAMPAIGN_INPUT_COLUMNS: tuple[str, ...] = (
    C.EVENT_ID,
    BUCKET,
    C.TIMESTAMP,
    C.ACTION,
    C.OUTCOME,
    C.ATTEMPTS,
    C.ACCOUNT,
    C.SOURCE_IP,
    C.PREFIX,
    C.PASSWORD_HASH,
    C.IP_LEGIT_ACCOUNTS,
    C.ASN,
    "_fa",
    "_ok",
    "seg_failures",
    "acct_prefix_logins",
    "acct_fail_sources",
    "acct_max_fail_per_source",
    "src_accounts",
    "src_failures",
    "src_max_tries_per_account",
    "src_success_share",
)
"""Columns :func:`campaign_keys` reads."""


def event_campaigns(df: pl.DataFrame, keys: CampaignKeys) -> pl.DataFrame:
    """``campaign`` of each event of ``df`` (one row per event, in order; null outside campaigns)."""
    ids = df.lazy().select(C.EVENT_ID, C.SOURCE_IP)
    parts = [(keys.spraying, C.SOURCE_IP), (keys.stuffing, C.SOURCE_IP), (keys.distributed, C.EVENT_ID)]
    if keys.guessing is not None:
        parts.append((keys.guessing, C.SOURCE_IP))
    for i, (table, on) in enumerate(parts):
        ids = ids.join(
            table.lazy().select(on, pl.col(C.CAMPAIGN).alias(f"_c{i}")),
            on=on,
            how="left",
            maintain_order="left",
        )
    first = pl.coalesce([f"_c{i}" for i in range(len(parts))])
    return ids.select(C.EVENT_ID, first.alias(C.CAMPAIGN)).collect()


def campaign_sizes(members: pl.DataFrame) -> pl.DataFrame:
    """``campaign, campaign_sources, campaign_accounts`` from the events in campaigns
    (``campaign, source_ip, account``)."""
    return members.group_by(C.CAMPAIGN).agg(
        pl.col(C.SOURCE_IP).n_unique().alias("campaign_sources"),
        pl.col(C.ACCOUNT).n_unique().alias("campaign_accounts"),
    )


def apply_campaigns(df: pl.DataFrame, keys: CampaignKeys, sizes: pl.DataFrame | None = None) -> pl.DataFrame:
    """Add ``campaign``, ``campaign_sources`` and ``campaign_accounts`` to the feature frame.

    ``sizes`` (:func:`campaign_sizes` over all events) when ``df`` holds one account shard; by
    default they are counted over ``df``.
    """
    per_event = event_campaigns(df, keys)
    if sizes is None:
        members = pl.concat([per_event, df.select(C.SOURCE_IP, C.ACCOUNT)], how="horizontal").filter(
            pl.col(C.CAMPAIGN).is_not_null()
        )
        sizes = campaign_sizes(members)
    columns = per_event.join(sizes, on=C.CAMPAIGN, how="left", maintain_order="left")
    return df.hstack(columns.drop(C.EVENT_ID).get_columns())


def assign_campaigns(df: pl.DataFrame, params: dict[str, Any], enabled: dict[str, bool]) -> pl.DataFrame:
    """Add ``campaign``, ``campaign_sources`` and ``campaign_accounts`` to the feature frame."""
    return apply_campaigns(df, campaign_keys(df, params, enabled))


TECHNIQUE_BY_PREFIX = {"cs-": "T1110.004", "ps-": "T1110.003", "db-": "T1110.001", "gs-": "T1110.001"}


def campaign_table(events: pl.DataFrame) -> pl.DataFrame:
    """One row per campaign (CAMPAIGN_SCHEMA)."""
    used = [C.CAMPAIGN, C.SOURCE_IP, C.PREFIX, C.ASN, C.ACCOUNT, C.ACTION, C.OUTCOME, C.ATTEMPTS, C.TIMESTAMP]
    camp = events.lazy().select(used).filter(pl.col(C.CAMPAIGN).is_not_null()).collect()
    technique = pl.col(C.CAMPAIGN).str.slice(0, 3).replace_strict(TECHNIQUE_BY_PREFIX, default=None)
    out = (
        camp.group_by(C.CAMPAIGN)
        .agg(
            pl.col(C.SOURCE_IP).drop_nulls().unique().sort().alias("sources"),
            pl.col(C.PREFIX).drop_nulls().unique().sort().alias("prefixes"),
            pl.col(C.ASN).drop_nulls().unique().sort().alias("asns"),
            pl.col(C.SOURCE_IP).n_unique().cast(pl.Int64).alias("n_sources"),
            pl.col(C.ACCOUNT)
            .filter(x.is_login())
            .drop_nulls()
            .n_unique()
            .cast(pl.Int64)
            .alias("accounts_targeted"),
            pl.when(x.is_login()).then(x.attempts()).otherwise(0).sum().cast(pl.Int64).alias("attempts"),
            x.is_success().sum().cast(pl.Int64).alias("successes"),
            pl.col(C.TIMESTAMP).min().alias("start"),
            pl.col(C.TIMESTAMP).max().alias("end"),
        )
        .with_columns(technique.alias("technique"))
        .sort("start", C.CAMPAIGN)
    )
    return out.select([pl.col(n).cast(t) for n, t in CAMPAIGN_SCHEMA.items()])


LINK_MIN_SHARED_PREFIXES = 2
"""/24 (/64) prefixes a campaign must share with an earlier one to continue it (when no address is shared)."""
_BY_SOURCE_KINDS = ("cs-", "ps-")


def _members(known: pl.DataFrame, column: str, name: str) -> pl.DataFrame:
    return (
        known.select(pl.col(C.CAMPAIGN).alias("_prev"), pl.col(column).alias(name))
        .explode(name)
        .drop_nulls()
        .unique()
    )


def relink(keys: CampaignKeys, known: pl.DataFrame | None, prefixes: pl.DataFrame) -> CampaignKeys:
    """Tonight's stuffing and spraying campaigns renamed to the earlier campaigns they continue.

    Args:
        keys: tonight's campaigns (:func:`campaign_keys`).
        known: earlier campaigns (``campaign``, ``sources``, ``prefixes``), e.g. from the state.
        prefixes: ``source_ip, prefix`` of tonight's sources.

    The rule is the module's (shared addresses, else at least :data:`LINK_MIN_SHARED_PREFIXES`
    shared prefixes, same kind).
    """
    if known is None or known.is_empty():
        return keys
    known = known.filter(pl.col(C.CAMPAIGN).str.slice(0, 3).is_in(_BY_SOURCE_KINDS))
    prev_sources = _members(known, "sources", C.SOURCE_IP)
    prev_prefixes = _members(known, "prefixes", C.PREFIX)
    src_prefix = prefixes.select(C.SOURCE_IP, C.PREFIX).drop_nulls().unique()

    def rename(table: pl.DataFrame) -> pl.DataFrame:
        if table.is_empty():
            return table
        kind = pl.col(C.CAMPAIGN).str.slice(0, 3) == pl.col("_prev").str.slice(0, 3)
        by_source = (
            table.join(prev_sources, on=C.SOURCE_IP)
            .filter(kind)
            .group_by(C.CAMPAIGN, "_prev")
            .agg(pl.col(C.SOURCE_IP).n_unique().alias("_addresses"))
        )
        by_prefix = (
            table.join(src_prefix, on=C.SOURCE_IP)
            .select(C.CAMPAIGN, C.PREFIX)
            .unique()
            .join(prev_prefixes, on=C.PREFIX)
            .filter(kind)
            .group_by(C.CAMPAIGN, "_prev")
            .agg(pl.len().alias("_prefixes"))
        )
        best = (
            by_source.join(by_prefix, on=[C.CAMPAIGN, "_prev"], how="full", coalesce=True)
            .with_columns(pl.col("_addresses").fill_null(0), pl.col("_prefixes").fill_null(0))
            .filter((pl.col("_addresses") >= 1) | (pl.col("_prefixes") >= LINK_MIN_SHARED_PREFIXES))
            .sort(["_addresses", "_prefixes", "_prev"], descending=[True, True, False])
            .unique(C.CAMPAIGN, keep="first", maintain_order=True)
            .select(C.CAMPAIGN, "_prev")
        )
        return (
            table.join(best, on=C.CAMPAIGN, how="left", maintain_order="left")
            .with_columns(pl.coalesce("_prev", C.CAMPAIGN).alias(C.CAMPAIGN))
            .drop("_prev")
        )

    return CampaignKeys(
        spraying=rename(keys.spraying),
        stuffing=rename(keys.stuffing),
        distributed=keys.distributed,
        guessing=keys.guessing,
    )


CAMPAIGN_HISTORY_COLUMNS: tuple[Column, ...] = (
    Column(
        "first_seen",
        UTC_US,
        "First event of the campaign on any night the state remembers (its start without a state).",
    ),
    Column("last_seen", UTC_US, "Last event of the campaign (tonight's end)."),
    Column("nights", pl.Int64, "Runs in which the campaign was active, tonight's included."),
)
"""Columns campaigns.parquet adds to :data:`~detector.detect.findings.CAMPAIGN_COLUMNS` (:func:`with_history`)."""


def with_history(tonight: pl.DataFrame, known: pl.DataFrame | None) -> pl.DataFrame:
    """Tonight's campaigns with ``first_seen``, ``last_seen`` and ``nights`` from the earlier ones."""
    out = tonight.with_columns(
        pl.col("start").alias("first_seen"),
        pl.col("end").alias("last_seen"),
        pl.lit(1, pl.Int64).alias("nights"),
    )
    if known is None or known.is_empty():
        return out
    prev = known.select(
        C.CAMPAIGN,
        (pl.col("first_seen") if "first_seen" in known.columns else pl.col("start")).alias("_first"),
        (pl.col("nights") if "nights" in known.columns else pl.lit(1, pl.Int64)).alias("_nights"),
    )
    return (
        out.join(prev, on=C.CAMPAIGN, how="left", maintain_order="left")
        .with_columns(
            pl.min_horizontal("_first", "first_seen").alias("first_seen"),
            (pl.col("_nights").fill_null(0) + 1).alias("nights"),
        )
        .drop("_first", "_nights")
    )
