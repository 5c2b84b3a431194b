"""Credential-access detectors: brute force, password spraying, credential stuffing, distributed brute force."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from detector.detect.detectors.common import detector, first_campaign, ramp, spans
from detector.detect.findings import evidence
from detector.features import BUCKET
from detector.features import expressions as x
from detector.schema import C, Outcome

CA = "Credential Access"


@dataclass(frozen=True)
class BruteForceParams:
    min_failures: int = 10
    """Wrong-password attempts against the account in the window."""
    max_sources: int = 3
    """At most this many sources (more is distributed brute force)."""
    min_passwords: int = 3
    """Where Dovecot logs password hashes: distinct passwords needed (one retyped password is not guessing)."""
    stale_gap_cv: float = 0.5
    """A source on the account's usual network retrying at a steady rhythm (gap CV at most this)..."""
    stale_min_gap_seconds: float = 60.0
    """...and slowly (median gap at least this) is a stale-password device, left to stale_password_device."""


@detector(
    BruteForceParams,
    name="brute_force",
    technique="T1110.001",
    tactic=CA,
    severity="medium",
    kind="attack",
    description="Many wrong passwords against one account from one or a few sources within the window.",
    false_positives="A user who forgot a password and keeps retrying by hand; a misconfigured client on a new network.",
    triage="Check whether a success followed from the same sources (see suspicious_success); compare the sources with the account's usual networks; if the password was guessed, reset it.",
    affected="Blocking the sources affects whoever shares them (check shared_address); locking the account locks out its owner.",
)
def brute_force(lf: pl.LazyFrame, p: BruteForceParams) -> pl.LazyFrame:
    stale_like = (pl.col("pair_passwords") == 1) | (
        (pl.col("pair_usual_logins") > 0)
        & (pl.col("pair_gap_cv") <= p.stale_gap_cv)
        & (pl.col("pair_gap_median_s") >= p.stale_min_gap_seconds)
    )
    tried = x.is_failed() & (pl.col(C.OUTCOME) != Outcome.UNKNOWN_USER) & ~stale_like.fill_null(False)
    return (
        lf.filter(tried & pl.col(C.ACCOUNT).is_not_null())
        .group_by(BUCKET, C.ACCOUNT)
        .agg(
            pl.col("_fa").sum().alias("failures"),
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            pl.col(C.PASSWORD_HASH).drop_nulls().n_unique().alias("passwords"),
            *spans(),
        )
        .filter(
            (pl.col("failures") >= p.min_failures)
            & (pl.col("sources") <= p.max_sources)
            & ((pl.col("passwords") == 0) | (pl.col("passwords") >= p.min_passwords))
        )
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            ramp(pl.col("failures"), p.min_failures).alias("score"),
            evidence(
                failures=pl.col("failures"),
                sources=pl.col("sources"),
                distinct_passwords=pl.col("passwords"),
                min_failures=pl.lit(p.min_failures),
            ).alias("evidence"),
        )
    )


@dataclass(frozen=True)
class SprayingParams:
    min_accounts: int = 10
    """Distinct accounts failing from one source, prefix or ASN in the window."""
    max_tries_per_account: float = 3.0
    """Average failed attempts per account at most this (few tries each)."""
    max_success_share: float = 0.2
    """Share of successful logins among the entity's attempts at most this (shared addresses succeed often)."""
    min_sources_aggregate: int = 2
    """A prefix or ASN finding needs at least this many sources (one source is already a source finding)."""
    levels: tuple[str, ...] = ("source_ip", "prefix", "asn")
    """Entities judged: source_ip, prefix, asn."""
    min_accounts_same_password: int = 5
    """Where password hashes are logged: accounts tried with one password from one prefix."""


_LEVEL_COL = {"source_ip": C.SOURCE_IP, "prefix": C.PREFIX, "asn": C.ASN}


def _spray_level(lf: pl.LazyFrame, level: str, p: SprayingParams) -> pl.LazyFrame:
    col = _LEVEL_COL[level]
    failed = x.is_failed()
    grouped = (
        lf.filter(x.is_login() & pl.col(col).is_not_null())
        .group_by(BUCKET, col)
        .agg(
            pl.col(C.ACCOUNT).filter(failed).n_unique().alias("accounts"),
            pl.col("_fa").sum().alias("failures"),
            pl.col("_ok").sum().alias("successes"),
            pl.col(C.SOURCE_IP).filter(failed).n_unique().alias("sources"),
            x.is_unknown_user().sum().alias("unknown_user"),
            pl.col(C.TIMESTAMP).filter(failed).min().alias("start"),
            pl.col(C.TIMESTAMP).filter(failed).max().alias("end"),
            pl.col(C.EVENT_ID).filter(failed).alias("event_ids"),
            first_campaign("ps-"),
        )
    )
    keep = (
        (pl.col("accounts") >= p.min_accounts)
        & (pl.col("failures") <= p.max_tries_per_account * pl.col("accounts"))
        & (pl.col("successes") <= p.max_success_share * (pl.col("successes") + pl.col("failures")))
    )
    if level != "source_ip":
        keep = keep & (pl.col("sources") >= p.min_sources_aggregate)
    entity = pl.col(col).cast(pl.String)
    return grouped.filter(keep).with_columns(
        pl.lit(level).alias("key"),
        pl.lit(level).alias("entity_type"),
        (pl.lit("AS") + entity if level == "asn" else entity).alias("entity"),
        ramp(pl.col("accounts"), p.min_accounts).alias("score"),
        evidence(
            level=pl.lit(level),
            accounts=pl.col("accounts"),
            failures=pl.col("failures"),
            successes=pl.col("successes"),
            sources=pl.col("sources"),
            unknown_user=pl.col("unknown_user"),
        ).alias("evidence"),
    )


def _spray_password(lf: pl.LazyFrame, p: SprayingParams) -> pl.LazyFrame:
    return (
        lf.filter(x.is_failed() & pl.col(C.PASSWORD_HASH).is_not_null() & pl.col(C.PREFIX).is_not_null())
        .group_by(BUCKET, C.PREFIX, C.PASSWORD_HASH)
        .agg(
            pl.col(C.ACCOUNT).n_unique().alias("accounts"),
            pl.col("_fa").sum().alias("failures"),
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            *spans(),
            first_campaign("ps-"),
        )
        .filter(pl.col("accounts") >= p.min_accounts_same_password)
        .with_columns(
            ("password:" + pl.col(C.PASSWORD_HASH)).alias("key"),
            pl.lit("prefix").alias("entity_type"),
            pl.col(C.PREFIX).alias("entity"),
            (ramp(pl.col("accounts"), p.min_accounts_same_password) + 0.2).clip(0, 1).alias("score"),
            evidence(
                level=pl.lit("password_hash"),
                password_hash=pl.col(C.PASSWORD_HASH),
                accounts=pl.col("accounts"),
                failures=pl.col("failures"),
                sources=pl.col("sources"),
            ).alias("evidence"),
        )
    )


_COLS = ["entity_type", "entity", "start", "end", "score", "evidence", "event_ids", C.CAMPAIGN, "key"]


@detector(
    SprayingParams,
    name="password_spraying",
    scope="source",
    technique="T1110.003",
    tactic=CA,
    severity="high",
    kind="attack",
    description="One source, prefix or ASN trying many accounts with few attempts each; or the same password (hash) against many accounts.",
    false_positives="A shared address (CGNAT, hospital NAT, VPN exit) where many users mistype on the same day: the success-share cap and shared_address explain most; a mail client roll-out with a wrong default password.",
    triage="Look at the accounts tried and whether any succeeded from the same infrastructure; check the campaign's other sources; hosting prefixes with no legitimate users are safe to block.",
    affected="Blocking the prefix or ASN affects every legitimate user behind it (see collateral counts); blocking single sources rarely does.",
)
def password_spraying(lf: pl.LazyFrame, p: SprayingParams) -> pl.LazyFrame:
    parts = [_spray_level(lf, level, p).select(_COLS) for level in p.levels if level in _LEVEL_COL]
    parts.append(_spray_password(lf, p).select(_COLS))
    return pl.concat(parts)


@dataclass(frozen=True)
class StuffingParams:
    max_tries_per_account: int = 2
    """A candidate source tries each account at most this often."""
    max_accounts_per_source: int = 5
    """And at most this many accounts (more is judged by password_spraying)."""
    max_success_share: float = 0.5
    """And succeeds on at most this share of its attempts."""
    max_legit_accounts: int = 3
    """Sources where this many accounts log in legitimately are not candidates (shared addresses)."""
    min_sources: int = 10
    """A campaign needs this many sources (also: sources active in an hour slot that links them)."""
    min_accounts: int = 10
    """And this many distinct accounts tried."""
    min_unknown_share: float = 0.1
    """And this share of attempts naming accounts that do not exist (leaked lists are stale)."""
    slot_window: str = "1h"
    """Time slot in which simultaneously active candidate sources are linked."""


@detector(
    StuffingParams,
    name="credential_stuffing",
    scope="source",
    technique="T1110.004",
    tactic=CA,
    severity="high",
    kind="attack",
    description="A campaign of many sources (residential proxies) each trying one or two leaked credentials on a few accounts, with many unknown accounts; sources are grouped by shared time slots, target accounts and prefixes.",
    false_positives="Many unrelated users failing in the same busy hour from new networks (travellers, a mobile outage): their sources can be swept into a real campaign's component; a campaign of legitimate sources shows a low unknown-user share.",
    triage="Check the campaign's success list first: every success is a likely compromised account; reset those credentials. Blocking individual proxy addresses is of little use.",
    affected="Residential proxies are real households: blocking them affects few mail users but may hit customers on the same ISP; prefer resetting the compromised accounts.",
)
def credential_stuffing(lf: pl.LazyFrame, p: StuffingParams) -> pl.LazyFrame:
    return (
        lf.filter(pl.col(C.CAMPAIGN).str.starts_with("cs-") & x.is_login())
        .group_by(C.CAMPAIGN)
        .agg(
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            pl.col(C.ACCOUNT).n_unique().alias("accounts"),
            pl.col("_att").sum().alias("attempts"),
            pl.col("_ok").sum().alias("successes"),
            pl.when(x.is_unknown_user()).then(pl.col("_att")).otherwise(0).sum().alias("unknown_user"),
            pl.col(C.ASN).n_unique().alias("asns"),
            *spans(),
        )
        .with_columns(x.share(pl.col("unknown_user"), pl.col("attempts")).alias("unknown_share"))
        .filter(pl.col("unknown_share") >= p.min_unknown_share)
        .with_columns(
            pl.lit("campaign").alias("entity_type"),
            pl.col(C.CAMPAIGN).alias("entity"),
            ramp(pl.col("sources"), p.min_sources, 10).alias("score"),
            evidence(
                sources=pl.col("sources"),
                accounts=pl.col("accounts"),
                attempts=pl.col("attempts"),
                successes=pl.col("successes"),
                unknown_share=pl.col("unknown_share").round(3),
                asns=pl.col("asns"),
            ).alias("evidence"),
        )
    )


@dataclass(frozen=True)
class DistributedParams:
    min_sources: int = 10
    """Distinct sources failing against one account in the window."""
    max_failures_per_source: int = 3
    """Each source stays at or below this many failures (below any per-source threshold)."""


@detector(
    DistributedParams,
    name="distributed_brute_force",
    technique="T1110.001",
    tactic=CA,
    severity="high",
    kind="attack",
    description="Many sources against one account, each staying below any per-source threshold (low and slow).",
    false_positives="A shared or role mailbox used from many devices whose password changed; a user on a mobile network whose address rotates while a client retries.",
    triage="Check whether any attempt succeeded and from where; the account is being targeted: enforce a password reset or second factor rather than blocking thousands of sources.",
    affected="Blocking the sources is impractical and hits their other users; restricting the account to its usual networks affects only its owner.",
)
def distributed_brute_force(lf: pl.LazyFrame, p: DistributedParams) -> pl.LazyFrame:
    return (
        lf.filter(
            x.is_failed()
            & pl.col(C.ACCOUNT).is_not_null()
            & (pl.col("acct_fail_sources") >= p.min_sources)
            & (pl.col("acct_max_fail_per_source") <= p.max_failures_per_source)
        )
        .group_by(BUCKET, C.ACCOUNT)
        .agg(
            pl.col(C.SOURCE_IP).n_unique().alias("sources"),
            pl.col("_fa").sum().alias("failures"),
            pl.col(C.ASN).n_unique().alias("asns"),
            pl.col("pair_failures").max().alias("max_per_source"),
            *spans(),
            first_campaign("db-"),
        )
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            ramp(pl.col("sources"), p.min_sources).alias("score"),
            evidence(
                sources=pl.col("sources"),
                failures=pl.col("failures"),
                asns=pl.col("asns"),
                max_failures_per_source=pl.col("max_per_source"),
            ).alias("evidence"),
        )
    )
