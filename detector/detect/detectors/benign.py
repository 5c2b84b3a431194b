"""Benign explainers: patterns that look like attacks but are not, and that lower the risk.

They fire as findings of ``kind = "benign"``; their ``technique`` is the one whose false positive
they explain. Scoring treats their hits as evidence against an attack.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from detector.detect.detectors.common import detector, ramp, spans
from detector.detect.findings import evidence
from detector.features import BUCKET
from detector.features import expressions as x
from detector.schema import C

BENIGN = "Benign explanation"


@dataclass(frozen=True)
class StaleParams:
    min_failures: int = 6
    """Failures from one source against one account in the window."""
    max_gap_cv: float = 0.5
    """Steady rhythm: the spread (coefficient of variation) of the gaps between failures at most this."""
    min_gap_seconds: float = 60.0
    """Median gap at least this (a device polling, not a script)."""
    require_usual_network: bool = True
    """Where no password hash is logged, the source's prefix must have seen a success of the account earlier."""


@detector(
    StaleParams,
    name="stale_password_device",
    technique="T1110.001",
    tactic=BENIGN,
    severity="info",
    kind="benign",
    description="A device retrying one (stale) password at a steady, slow rhythm from one residential source: the same password hash every time, or, where hashes are not logged, from a network the account logged in from.",
    false_positives="An attacker on the same home network or a compromised device of the user retrying slowly (rare); a slow brute force that spoofs a steady rhythm from the user's own ISP prefix.",
    triage="Tell the user to update the password on the device (phone, tablet, old laptop); nothing to block.",
    affected="Nobody: it lowers risk. Acting on the underlying failures would lock out the user's own device.",
)
def stale_password_device(lf: pl.LazyFrame, p: StaleParams) -> pl.LazyFrame:
    cond = (
        x.is_failed()
        & pl.col(C.ACCOUNT).is_not_null()
        & (pl.col("pair_failures") >= p.min_failures)
        & (pl.col("pair_passwords") <= 1)
        & (
            (pl.col("pair_usual_logins") > 0)
            | (pl.col("pair_passwords") == 1)
            | pl.lit(not p.require_usual_network)
        )
        & (pl.col("pair_gap_cv") <= p.max_gap_cv)
        & (pl.col("pair_gap_median_s") >= p.min_gap_seconds)
        & ~(pl.col(C.IS_HOSTING).fill_null(False) | pl.col(C.IS_TOR).fill_null(False))
    )
    return (
        lf.filter(cond)
        .group_by(BUCKET, C.ACCOUNT, C.SOURCE_IP)
        .agg(
            pl.col("_fa").sum().alias("failures"),
            pl.col("pair_gap_cv").first().round(3).alias("gap_cv"),
            pl.col("pair_gap_median_s").first().round(1).alias("median_gap_s"),
            pl.col("pair_usual_logins").max().alias("logins_from_prefix"),
            *spans(),
        )
        .with_columns(
            pl.lit("account").alias("entity_type"),
            pl.col(C.ACCOUNT).alias("entity"),
            ramp(pl.col("failures"), p.min_failures, 5).alias("score"),
            evidence(
                source_ip=pl.col(C.SOURCE_IP),
                failures=pl.col("failures"),
                gap_cv=pl.col("gap_cv"),
                median_gap_s=pl.col("median_gap_s"),
                logins_from_prefix=pl.col("logins_from_prefix"),
            ).alias("evidence"),
        )
    )


@dataclass(frozen=True)
class TypoParams:
    max_failures: int = 3
    """At most this many failures before the success."""
    max_gap_seconds: float = 300.0
    """The success follows the last failure within this many seconds, from the same source."""


@detector(
    TypoParams,
    name="typo_then_success",
    technique="T1078",
    tactic=BENIGN,
    severity="info",
    kind="benign",
    description="One to a few failures followed shortly by a success from the same source: a mistyped password, or the user name typed without its domain (an unknown user) and then the full address.",
    false_positives="An attacker who knows the password and mistypes it (the success itself is then judged by suspicious_success).",
    triage="Nothing to do unless the source is unusual for the account.",
    affected="Nobody: it lowers risk.",
)
def typo_then_success(lf: pl.LazyFrame, p: TypoParams) -> pl.LazyFrame:
    closing = x.is_success() & (pl.col("_seg_gap_s") <= p.max_gap_seconds)
    segment = [C.ACCOUNT, C.SOURCE_IP, "_seg"]
    logins = lf.filter(x.is_login())
    # segments closed by a quick success (a semi-join: a window over every segment costs far more)
    closed = logins.filter(closing).select(segment).unique()
    cond = (
        pl.col(C.ACCOUNT).is_not_null()
        & pl.col("seg_failures").is_between(1, p.max_failures)
        & (x.is_failed() | x.is_success())
    )
    password = (
        logins.filter(cond)
        .join(closed, on=segment, how="semi", nulls_equal=True)
        .group_by(segment)
        .agg(pl.col("seg_failures").max().cast(pl.Int64).alias("failures"), *spans())
        .with_columns(pl.lit("password").alias("_typo"))
    )
    # the user name without its domain (an unknown user), then the full address from the same source
    local = pl.col(C.ACCOUNT).str.split("@").list.first()
    misses = lf.filter(x.is_unknown_user() & ~pl.col(C.ACCOUNT).str.contains("@", literal=True)).select(
        C.SOURCE_IP,
        pl.col(C.ACCOUNT).alias("_local"),
        pl.col(C.EVENT_ID).alias("_miss"),
        pl.col(C.TIMESTAMP).alias("_t"),
    )
    hits = lf.filter(x.is_success() & pl.col(C.ACCOUNT).str.contains("@", literal=True)).select(
        C.SOURCE_IP, C.ACCOUNT, local.alias("_local"), C.EVENT_ID, C.TIMESTAMP
    )
    gap = (pl.col(C.TIMESTAMP) - pl.col("_t")).dt.total_seconds(fractional=True)
    user = (
        misses.join(hits, on=[C.SOURCE_IP, "_local"])
        .filter(gap.is_between(0, p.max_gap_seconds))
        .group_by(C.ACCOUNT, C.SOURCE_IP, "_miss")
        .agg(
            pl.len().alias("failures"),
            pl.col("_t").min().alias("start"),
            pl.col(C.TIMESTAMP).min().alias("end"),
            pl.concat_list(pl.col("_miss").first(), pl.col(C.EVENT_ID).first()).first().alias("event_ids"),
        )
        .with_columns(pl.lit(1, pl.Int64).alias("failures"), pl.lit("user_name").alias("_typo"))
    )
    cols = [C.ACCOUNT, C.SOURCE_IP, "failures", "start", "end", "event_ids", "_typo"]
    return pl.concat([password.select(cols), user.select(cols)]).with_columns(
        pl.lit("account").alias("entity_type"),
        pl.col(C.ACCOUNT).alias("entity"),
        pl.lit(0.8).alias("score"),
        pl.col("_typo").alias("key"),
        evidence(source_ip=pl.col(C.SOURCE_IP), failures=pl.col("failures"), typo=pl.col("_typo")).alias(
            "evidence"
        ),
    )


@dataclass(frozen=True)
class SharedParams:
    min_ip_accounts: int = 3
    """Distinct accounts logging in successfully from the address (enrichment's ip_legit_accounts)."""
    min_prefix_accounts: int = 10
    """...or from its prefix (prefix_legit_accounts)."""
    min_success_share: float = 0.3
    """The address's attempts mostly succeed (an attacking address succeeds rarely)."""


@detector(
    SharedParams,
    name="shared_address",
    scope="source",
    technique="T1110",
    tactic=BENIGN,
    severity="info",
    kind="benign",
    description="An address or prefix (CGNAT, hospital NAT, VPN exit) behind which many accounts log in successfully; failures from it are mostly its users' mistakes.",
    false_positives="A commercial VPN exit shared by legitimate users and attackers: the attacker's own events are still judged by the attack detectors.",
    triage="Do not block the address; act on accounts instead.",
    affected="Every user behind the address would be hit by a block (see legit_accounts).",
)
def shared_address(lf: pl.LazyFrame, p: SharedParams) -> pl.LazyFrame:
    shared = (pl.col(C.IP_LEGIT_ACCOUNTS).fill_null(0) >= p.min_ip_accounts) | (
        pl.col(C.PREFIX_LEGIT_ACCOUNTS).fill_null(0) >= p.min_prefix_accounts
    )
    cond = (
        x.is_login()
        & pl.col(C.SOURCE_IP).is_not_null()
        & shared
        & (pl.col("src_success_share") >= p.min_success_share)
        & ~(pl.col(C.IS_HOSTING).fill_null(False) | pl.col(C.IS_TOR).fill_null(False))
    )
    return (
        lf.filter(cond)
        .group_by(BUCKET, C.SOURCE_IP)
        .agg(
            pl.col(C.IP_LEGIT_ACCOUNTS).max().alias("legit_accounts"),
            pl.col(C.PREFIX_LEGIT_ACCOUNTS).max().alias("prefix_legit_accounts"),
            pl.col("_fa").sum().alias("failures"),
            pl.col("_ok").sum().alias("successes"),
            *spans(),
        )
        .with_columns(
            pl.lit("source_ip").alias("entity_type"),
            pl.col(C.SOURCE_IP).alias("entity"),
            ramp(pl.col("legit_accounts").fill_null(0).cast(pl.Float64), p.min_ip_accounts, 5).alias("score"),
            evidence(
                legit_accounts=pl.col("legit_accounts"),
                prefix_legit_accounts=pl.col("prefix_legit_accounts"),
                failures=pl.col("failures"),
                successes=pl.col("successes"),
            ).alias("evidence"),
        )
    )
